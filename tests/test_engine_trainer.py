"""ConditionalGanTrainer and its handlers, on tiny networks and data (CPU, seconds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from monai_dafgan.engines import (
    AutocastInferer,
    ConditionalGanTrainer,
    FreezeParameters,
    GanCheckpoint,
    GanImageGrid,
    LinearDecayLR,
    LossGuard,
    TrainingDivergedError,
)
from monai_dafgan.losses import FeatureMatchingLoss, MultiScaleGANLoss
from monai_dafgan.networks import DAFFGenerator, MultiScaleDiscriminator
from monai_dafgan.visualize import render_tensor

TINY_G = dict(ngf=8, n_downsampling=2, n_blocks=1, local_enhancer=True, ngf_local=4, n_blocks_local=1)


def _data(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    cond = torch.zeros(n, 5, size, size)
    cond[:, 0] = 1
    cond[:, 0, 8:12, 8:12], cond[:, 2, 8:12, 8:12] = 0, 1
    return [{"condition": cond[i], "target": torch.rand(3, size, size, generator=g) * 2 - 1} for i in range(n)]


def _trainer(max_epochs, handlers=(), gan_loss=None, shuffle=True, seed=0):
    torch.manual_seed(seed)
    g = DAFFGenerator(5, 3, **TINY_G)
    d = MultiScaleDiscriminator(8, ndf=8, n_layers=2, num_d=2)
    g_opt = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    loader = DataLoader(_data(), batch_size=2, shuffle=shuffle)
    return ConditionalGanTrainer(
        device="cpu", max_epochs=max_epochs, train_data_loader=loader, g_network=g, g_optimizer=g_opt,
        d_network=d, d_optimizer=d_opt, gan_loss=gan_loss or MultiScaleGANLoss("least_squares"),
        feature_matching_loss=FeatureMatchingLoss(10.0), train_handlers=list(handlers),
    )


def test_one_epoch_updates_both_networks_and_reports_losses():
    trainer = _trainer(1)
    g0 = [p.clone() for p in trainer.g_network.parameters()]
    d0 = [p.clone() for p in trainer.d_network.parameters()]
    trainer.run()
    out = trainer.state.output
    for key in ("g_loss", "d_loss", "g_gan", "g_feature_matching", "d_real", "d_fake"):
        assert math.isfinite(out[key]), key
    assert out["g_loss"] == pytest.approx(out["g_gan"] + out["g_feature_matching"], rel=1e-5)
    assert out["fake"].shape == out["real"].shape == (2, 3, 32, 32) and out["condition"].shape == (2, 5, 32, 32)
    assert any(not torch.equal(a, b) for a, b in zip(g0, trainer.g_network.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, trainer.d_network.parameters()))
    assert all(p.requires_grad for p in trainer.d_network.parameters())  # D is unfrozen again after the G step
    assert trainer.state.iteration == 2


def test_resume_is_exact(tmp_path):
    straight = _trainer(4)
    straight.run()
    first = _trainer(2, [GanCheckpoint(tmp_path)])
    first.run()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["epoch"] == 2
    resumed = _trainer(4, [GanCheckpoint(tmp_path)], seed=123)  # other init: everything must come from the checkpoint
    resumed.run()
    assert resumed.state.epoch == 4 and resumed.state.iteration == 8
    for a, b in zip(straight.g_network.state_dict().values(), resumed.g_network.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(straight.d_optimizer.state_dict()["state"].values(), resumed.d_optimizer.state_dict()["state"].values()):
        torch.testing.assert_close(a["exp_avg"], b["exp_avg"], rtol=0, atol=0)


class _NanAfter(MultiScaleGANLoss):
    """A GAN loss that turns NaN from the given iteration on (counted in generator calls)."""

    def __init__(self, after):
        super().__init__("least_squares")
        self.calls, self.after = 0, after

    def __call__(self, outputs, target_is_real, for_discriminator):
        loss = super().__call__(outputs, target_is_real, for_discriminator)
        if not for_discriminator:
            self.calls += 1
            if self.calls > self.after:
                return loss * float("nan")
        return loss


def test_diverging_loss_stops_training_and_keeps_last_good_checkpoint(tmp_path):
    trainer = _trainer(5, [LossGuard(), GanCheckpoint(tmp_path, generator_path=tmp_path / "model.pt")], gan_loss=_NanAfter(after=5))
    with pytest.raises(TrainingDivergedError, match=r"g_loss = nan at epoch 3, iteration 6"):
        trainer.run()
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert saved["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in saved["g_network"].values() if v.is_floating_point())
    assert not (tmp_path / "model.pt").exists()  # no final weights from a broken run


def test_freeze_parameters_holds_global_part_then_releases(tmp_path):
    trainer = _trainer(3, [FreezeParameters(lambda: trainer.g_network.global_parameters(), num_epochs=2)])
    global0 = [p.clone() for p in trainer.g_network.global_parameters()]
    local0 = [p.clone() for p in trainer.g_network.local_parameters()]
    trainer.state.max_epochs = 2
    trainer.run()
    assert all(torch.equal(a, b) for a, b in zip(global0, trainer.g_network.global_parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(local0, trainer.g_network.local_parameters()))
    trainer.state.max_epochs = 3
    trainer.run()  # continues with epoch 3: the global part trains now
    assert any(not torch.equal(a, b) for a, b in zip(global0, trainer.g_network.global_parameters()))


def test_linear_decay_schedule():
    f = LinearDecayLR(num_constant=3, num_decay=2)
    assert [round(f(e), 4) for e in range(6)] == [1.0, 1.0, 1.0, 0.6667, 0.3333, 0.0]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, LinearDecayLR(1, 1))
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_image_grid_writes_pictures(tmp_path):
    grid = GanImageGrid(
        condition_to_rgb=lambda x: render_tensor(x, "types"), target_to_rgb=lambda x: render_tensor(x, "image"),
        png_dir=tmp_path / "grids", log_dir=tmp_path / "tb", max_images=2,
    )
    _trainer(1, [grid]).run()
    from PIL import Image

    picture = np.asarray(Image.open(tmp_path / "grids" / "epoch0001.png"))
    assert picture.shape[0] > 2 * 32 and picture.shape[1] > 3 * 32
    grid4 = GanImageGrid(condition_to_rgb=lambda x: render_tensor(x, "types"), target_to_rgb=lambda x: render_tensor(x, "image"),
                         png_dir=tmp_path / "grids4", max_images=4)
    _trainer(1, [grid4]).run()  # 2 iterations of batch 2: the grid keeps all 4 samples
    four_rows = np.asarray(Image.open(tmp_path / "grids4" / "epoch0001.png"))
    assert four_rows.shape[0] > 2 * picture.shape[0] - 40
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())


def test_amp_is_off_on_cpu():
    assert _trainer(1).amp is False


def test_autocast_inferer_runs_the_network_in_bf16_and_returns_float32():
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    seen = []
    network[2].register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    x = torch.randn(2, 3, 16, 16)

    output = AutocastInferer()(x, network)
    assert seen == [torch.bfloat16] and output.dtype == torch.float32
    reference = network(x)
    assert 0 < (output - reference).abs().max() < 0.1  # bf16 arithmetic, close to float32's
    output.sum().backward()
    assert network[0].weight.grad is not None and network[0].weight.grad.dtype == torch.float32

    seen.clear()
    assert torch.equal(AutocastInferer(enabled=False)(x, network), reference) and seen == [torch.float32]
    wrapped = AutocastInferer()(x, lambda inputs: {"a": network(inputs), "n": torch.ones(1, dtype=torch.int64)})
    assert wrapped["a"].dtype == torch.float32 and wrapped["n"].dtype == torch.int64
