"""pix2pixHD losses over :class:`~monai_dafgan.networks.MultiScaleDiscriminator` outputs.

Discriminator outputs are ``outputs[i][j]``: scale i, layer j, the last layer being raw logits (no sigmoid).

MONAI's ``PatchAdversarialLoss`` computes the least-squares term (with ``no_activation_leastsq=True``, i.e. MSE of
the raw logits against 1/0 as in pix2pixHD; its default would pass logits through a LeakyReLU first). It is not used
for the other two modes: its "bce" is sigmoid + ``BCELoss``, which autocast refuses (here: BCE-with-logits), and its
"hinge" squashes the logits with tanh first (here: the usual hinge on raw logits, as in SPADE).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import PatchAdversarialLoss
from torch import nn

__all__ = [
    "GAN_MODES",
    "FeatureMatchingLoss",
    "MultiScaleGANLoss",
]

GAN_MODES = ("least_squares", "hinge", "bce")

DiscriminatorOutputs = Sequence[Sequence[torch.Tensor]]


def _check_outputs(outputs: DiscriminatorOutputs, name: str) -> None:
    if isinstance(outputs, torch.Tensor) or len(outputs) == 0 or isinstance(outputs[0], torch.Tensor):
        raise TypeError(
            f"{name} must be a multi-scale discriminator output: a non-empty list over scales of lists of layer "
            "outputs (last = logits)."
        )


class MultiScaleGANLoss(nn.Module):
    """Adversarial loss on the logits (last entry) of every scale, summed (pix2pixHD) or averaged over scales.

    Per scale, with logits x (means over all elements):

    ================  ==========================  ==========================  ===================
    mode              D, real                     D, fake                     G (fake, "real")
    ================  ==========================  ==========================  ===================
    least_squares     mean((x - 1)^2)             mean(x^2)                   mean((x - 1)^2)
    hinge             mean(relu(1 - x))           mean(relu(1 + x))           -mean(x)
    bce               BCE-with-logits(x, 1)       BCE-with-logits(x, 0)       BCE-with-logits(x, 1)
    ================  ==========================  ==========================  ===================

    The loss is computed in float32 (AMP-safe).

    Args:
        mode: ``"least_squares"`` (pix2pixHD's LSGAN default), ``"hinge"`` or ``"bce"`` (the paper's log-loss
            objective, non-saturating for G).
        scale_reduction: ``"sum"`` over scales (pix2pixHD) or ``"mean"``.

    Call: ``loss(outputs, target_is_real, for_discriminator) -> scalar tensor``. For the generator
    (``for_discriminator=False``) ``target_is_real`` must be True.
    """

    def __init__(self, mode: str = "least_squares", scale_reduction: str = "sum") -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"mode must be one of {GAN_MODES}, got {mode!r}.")
        if scale_reduction not in ("sum", "mean"):
            raise ValueError(f"scale_reduction must be 'sum' or 'mean', got {scale_reduction!r}.")
        self.mode = mode
        self.scale_reduction = scale_reduction
        self._least_squares = PatchAdversarialLoss(criterion="least_squares", no_activation_leastsq=True)

    def forward(self, outputs: DiscriminatorOutputs, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        _check_outputs(outputs, "outputs")
        if not for_discriminator and not target_is_real:
            raise ValueError("the generator loss is computed against the 'real' target: pass target_is_real=True.")
        losses = torch.stack(
            [self._scale_loss(scale[-1].float(), target_is_real, for_discriminator) for scale in outputs]
        )
        return losses.sum() if self.scale_reduction == "sum" else losses.mean()

    def _scale_loss(self, logits: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        if self.mode == "least_squares":
            return self._least_squares(logits, target_is_real, for_discriminator)
        if self.mode == "hinge":
            if not for_discriminator:
                return -logits.mean()
            return F.relu(1.0 - logits).mean() if target_is_real else F.relu(1.0 + logits).mean()
        target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits, target)


class FeatureMatchingLoss(nn.Module):
    """pix2pixHD discriminator feature matching: L1 between the fake's and the (detached) real's features of every
    layer but the logits, at every scale::

        sum_i sum_{j < L_i - 1} (1 / num_d) * (4 / (L_i - 1)) * weight * L1(fake[i][j], real[i][j].detach())

    with ``L_i`` the number of outputs of scale i. For pix2pixHD's discriminator ``L_i - 1 = n_layers + 1``, so the
    factor is pix2pixHD's ``4 / (n_layers_D + 1)`` (1 with 3 layers).

    Args:
        weight: pix2pixHD's ``lambda_feat`` (10).

    Call: ``loss(fake_outputs, real_outputs) -> scalar tensor`` (float32), both from the same discriminator: D on
    ``concat(condition, fake)`` (not detached) and on ``concat(condition, real)``.
    """

    def __init__(self, weight: float = 10.0) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, fake_outputs: DiscriminatorOutputs, real_outputs: DiscriminatorOutputs) -> torch.Tensor:
        _check_outputs(fake_outputs, "fake_outputs")
        _check_outputs(real_outputs, "real_outputs")
        if len(fake_outputs) != len(real_outputs) or any(len(f) != len(r) for f, r in zip(fake_outputs, real_outputs)):
            raise ValueError("fake_outputs and real_outputs must have the same number of scales and layers.")
        num_d = len(fake_outputs)
        loss = torch.zeros((), device=fake_outputs[0][-1].device)
        for fake_scale, real_scale in zip(fake_outputs, real_outputs):
            num_features = len(fake_scale) - 1
            if num_features == 0:
                continue
            layer_weight = self.weight * 4.0 / (num_d * num_features)
            for fake, real in zip(fake_scale[:-1], real_scale[:-1]):
                loss = loss + layer_weight * F.l1_loss(fake.float(), real.detach().float())
        return loss
