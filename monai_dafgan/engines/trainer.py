"""``ConditionalGanTrainer``: a MONAI ``Trainer`` for conditional GANs (pix2pix / pix2pixHD / DAFF-GAN).

MONAI's ``GanTrainer`` feeds its generator latent noise and never shows it the batch, and ``AdversarialTrainer``
shows the discriminator no condition; a conditional GAN needs both. One iteration here:

1. ``condition, real = prepare_batch(batch)``; ``fake = output_transform(G(condition))``.
2. Discriminator step on ``cat(condition, real)`` (label real) vs ``cat(condition, fake.detach())`` (label fake):
   ``d_loss = 0.5 * (gan(D(real), real) + gan(D(fake), fake))``.
3. Generator step with D frozen: ``g_loss = gan(D(cat(condition, fake)), real) + feature_matching(D features of
   fake vs the detached ones of real) + recon_weight * recon(fake, real) + perceptual_weight * perceptual(fake, real)``.

AMP (autocast + one GradScaler for both optimisers) is used on CUDA only. ``engine.state.output`` holds the
tensors (``condition``, ``real``, ``fake``) and float losses (``g_loss``, ``d_loss`` and every named term) for
MONAI/ignite handlers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from monai.engines import Trainer
from monai.inferers import Inferer, SimpleInferer
from monai.utils import CommonKeys
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from ..utils import unwrap


class GanOutputKeys:
    """Keys of ``engine.state.output`` of :class:`ConditionalGanTrainer`."""

    CONDITION = "condition"
    REAL = "real"
    FAKE = "fake"
    G_LOSS = "g_loss"
    D_LOSS = "d_loss"
    G_GAN = "g_gan"
    G_FEATURE_MATCHING = "g_feature_matching"
    G_RECONSTRUCTION = "g_reconstruction"
    G_PERCEPTUAL = "g_perceptual"
    D_REAL = "d_real"
    D_FAKE = "d_fake"

    LOSSES = (G_LOSS, D_LOSS, G_GAN, G_FEATURE_MATCHING, G_RECONSTRUCTION, G_PERCEPTUAL, D_REAL, D_FAKE)


def prepare_condition_batch(condition_key: str = "condition", target_key: str = "target") -> Callable:
    """A ``prepare_batch`` that returns ``(batch[condition_key], batch[target_key])`` on the device."""

    def prepare(batchdata: dict, device=None, non_blocking: bool = False, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        missing = [k for k in (condition_key, target_key) if k not in batchdata]
        if missing:
            raise KeyError(f"batch lacks {missing}; it has {sorted(batchdata)} (set condition_key/target_key).")
        return tuple(
            torch.as_tensor(batchdata[k]).to(device=device, non_blocking=non_blocking, **kwargs).float()
            for k in (condition_key, target_key)
        )

    return prepare


def require_batches(loader: Iterable) -> Iterable:
    """``loader`` if it yields at least one batch per epoch, else ``ValueError`` saying why (a run without batches
    would end at once, without weights)."""
    if len(loader) == 0:
        sampler, batch_size = getattr(loader, "sampler", None), getattr(loader, "batch_size", None)
        size = "?" if sampler is None else len(sampler)
        raise ValueError(
            f"the training data yields no batch: {size} samples per epoch, batch_size {batch_size}"
            f"{', drop_last' if getattr(loader, 'drop_last', False) else ''}. Use a smaller batch_size or more data."
        )
    return loader


def _set_requires_grad(network: torch.nn.Module, flag: bool) -> None:
    for p in network.parameters():
        p.requires_grad_(flag)


class ConditionalGanTrainer(Trainer):
    """Conditional GAN training workflow (see the module docstring for one iteration).

    Args:
        device: device of the networks and data.
        max_epochs: epochs to train.
        train_data_loader: yields batches ``prepare_batch`` understands.
        g_network: generator, ``(B, Cc, H, W) -> (B, Ct, H, W)``.
        g_optimizer: optimiser of the generator.
        d_network: discriminator on ``cat(condition, target)``, returning per-scale lists of features (last =
            logits), e.g. :class:`monai_dafgan.networks.MultiScaleDiscriminator`.
        d_optimizer: optimiser of the discriminator.
        gan_loss: ``(d_outputs, target_is_real, for_discriminator) -> Tensor``.
        feature_matching_loss: ``(fake_outputs, real_outputs) -> Tensor`` or None (weights live in the loss).
        reconstruction_loss: optional ``(fake, real) -> Tensor`` term weighted by ``reconstruction_weight``.
        perceptual_loss: optional ``(fake, real) -> Tensor`` term weighted by ``perceptual_weight`` (off by
            default: no pretrained network is needed).
        g_output_transform: applied to the generator output before D and the losses (e.g. a softmax for a
            generator of class logits); identity by default.
        prepare_batch: ``(batch, device, non_blocking, **kwargs) -> (condition, real)``; defaults to keys
            ``condition`` and ``target``.
        g_inferer: how G is run on the condition (``SimpleInferer`` by default).
        amp: autocast + GradScaler, on CUDA devices only (ignored on CPU).
        other arguments: as in ``monai.engines.SupervisedTrainer``.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: DataLoader,
        g_network: torch.nn.Module,
        g_optimizer: Optimizer,
        d_network: torch.nn.Module,
        d_optimizer: Optimizer,
        gan_loss: Callable,
        feature_matching_loss: Callable | None = None,
        reconstruction_loss: Callable | None = None,
        reconstruction_weight: float = 1.0,
        perceptual_loss: Callable | None = None,
        perceptual_weight: float = 10.0,
        g_output_transform: Callable | None = None,
        prepare_batch: Callable | None = None,
        g_inferer: Inferer | None = None,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        iteration_update: Callable | None = None,
        postprocessing: Callable | None = None,
        key_train_metric: dict | None = None,
        additional_metrics: dict | None = None,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        optim_set_to_none: bool = True,
        to_kwargs: dict | None = None,
        amp_kwargs: dict | None = None,
    ):
        device = torch.device(device)
        if epoch_length is None:
            require_batches(train_data_loader)
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch or prepare_condition_batch(),
            iteration_update=iteration_update,
            postprocessing=postprocessing,
            key_metric=key_train_metric,
            additional_metrics=additional_metrics,
            handlers=train_handlers,
            amp=amp and device.type == "cuda",
            decollate=False,
            to_kwargs=to_kwargs,
            amp_kwargs=amp_kwargs,
        )
        self.g_network, self.g_optimizer = g_network, g_optimizer
        self.d_network, self.d_optimizer = d_network, d_optimizer
        self.gan_loss, self.feature_matching_loss = gan_loss, feature_matching_loss
        self.reconstruction_loss, self.reconstruction_weight = reconstruction_loss, reconstruction_weight
        self.perceptual_loss, self.perceptual_weight = perceptual_loss, perceptual_weight
        self.g_output_transform = g_output_transform
        self.g_inferer = g_inferer or SimpleInferer()
        self.optim_set_to_none = optim_set_to_none
        # created here, not in run(), so that checkpoints can save and restore it
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        from .handlers import ReseedTransforms  # the handlers module builds on this one

        ReseedTransforms().attach(self)

    def run(self) -> None:  # Trainer.run would replace the scaler (and with it a restored state)
        super(Trainer, self).run()

    def _autocast(self):
        return torch.autocast(device_type=self.state.device.type, enabled=self.amp, **self.amp_kwargs)

    def _iteration(self, engine: ConditionalGanTrainer, batchdata: dict) -> dict[str, Any]:
        if batchdata is None:
            raise ValueError("must provide batch data for current iteration.")
        condition, real = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        engine.state.output = {CommonKeys.IMAGE: condition}
        g, d, scaler = engine.g_network, engine.d_network, engine.scaler
        g.train()
        d.train()

        with engine._autocast():
            fake = engine.g_inferer(condition, g)
            if engine.g_output_transform is not None:
                fake = engine.g_output_transform(fake)

        # discriminator step: real vs detached fake, both with their condition
        _set_requires_grad(d, True)
        engine.d_optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with engine._autocast():
            d_real_out = d(torch.cat([condition, real], dim=1))
            d_fake_out = d(torch.cat([condition, fake.detach()], dim=1))
            d_real = engine.gan_loss(d_real_out, True, True)
            d_fake = engine.gan_loss(d_fake_out, False, True)
            d_loss = 0.5 * (d_real + d_fake)
        scaler.scale(d_loss).backward()
        scaler.step(engine.d_optimizer)

        # generator step with D frozen (no wasted D gradients); a DDP-wrapped D is called unwrapped here, since
        # its frozen parameters produce no gradients for DDP to reduce
        _set_requires_grad(d, False)
        engine.g_optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        terms: dict[str, torch.Tensor] = {}
        d_plain = unwrap(d)
        with engine._autocast():
            g_fake_out = d_plain(torch.cat([condition, fake], dim=1))
            terms[GanOutputKeys.G_GAN] = engine.gan_loss(g_fake_out, True, False)
            if engine.feature_matching_loss is not None:
                real_features = [[f.detach() for f in scale] for scale in d_real_out]
                terms[GanOutputKeys.G_FEATURE_MATCHING] = engine.feature_matching_loss(g_fake_out, real_features)
            if engine.reconstruction_loss is not None:
                terms[GanOutputKeys.G_RECONSTRUCTION] = engine.reconstruction_weight * engine.reconstruction_loss(fake, real)
            if engine.perceptual_loss is not None:
                terms[GanOutputKeys.G_PERCEPTUAL] = engine.perceptual_weight * engine.perceptual_loss(fake, real)
            g_loss = sum(terms.values())
        scaler.scale(g_loss).backward()
        scaler.step(engine.g_optimizer)
        scaler.update()
        _set_requires_grad(d, True)

        output: dict[str, Any] = {
            GanOutputKeys.CONDITION: condition.detach(),
            GanOutputKeys.REAL: real.detach(),
            GanOutputKeys.FAKE: fake.detach(),
            GanOutputKeys.G_LOSS: g_loss.item(),
            GanOutputKeys.D_LOSS: d_loss.item(),
            GanOutputKeys.D_REAL: d_real.item(),
            GanOutputKeys.D_FAKE: d_fake.item(),
        }
        output.update({k: v.item() for k, v in terms.items()})
        return output
