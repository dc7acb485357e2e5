"""pix2pixHD losses on hand-made discriminator outputs."""

from __future__ import annotations

import math

import pytest
import torch

from monai_dafgan.losses import (
    FeatureMatchingLoss,
    MultiScaleGANLoss,
)

# two scales; logits 0.5, -1 (scale 0) and 2 (scale 1)
LOGITS = ([0.5, -1.0], [2.0])


def _outputs(logits=LOGITS, features: int = 1) -> list[list[torch.Tensor]]:
    return [[torch.ones(1, 2, 2, 2)] * features + [torch.tensor(values).view(1, 1, 1, -1)] for values in logits]


def _mean(values):
    return sum(values) / len(values)


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


CASES = {
    # mode: (per-logit D real, D fake, G)
    "least_squares": (lambda x: (x - 1) ** 2, lambda x: x**2, lambda x: (x - 1) ** 2),
    "hinge": (lambda x: max(0.0, 1 - x), lambda x: max(0.0, 1 + x), lambda x: -x),
    "bce": (lambda x: _softplus(-x), lambda x: _softplus(x), lambda x: _softplus(-x)),
}


@pytest.mark.parametrize("mode", sorted(CASES))
@pytest.mark.parametrize("scale_reduction", ["sum", "mean"])
def test_gan_loss_hand_computed(mode, scale_reduction):
    loss = MultiScaleGANLoss(mode, scale_reduction=scale_reduction)
    reduce = sum if scale_reduction == "sum" else _mean
    for term, (target_is_real, for_discriminator) in zip(CASES[mode], [(True, True), (False, True), (True, False)]):
        expected = reduce([_mean([term(x) for x in values]) for values in LOGITS])
        got = loss(_outputs(), target_is_real, for_discriminator)
        assert got.shape == () and got.dtype == torch.float32
        assert got.item() == pytest.approx(expected, rel=1e-6), (mode, target_is_real, for_discriminator)


def test_gan_loss_uses_only_the_logits_and_checks_its_input():
    loss = MultiScaleGANLoss()
    assert loss(_outputs(features=3), True, True).item() == loss(_outputs(features=0), True, True).item()
    with pytest.raises(ValueError, match="target_is_real=True"):
        loss(_outputs(), False, False)
    with pytest.raises(TypeError, match="list over scales"):
        loss([torch.zeros(1, 1, 2, 2)], True, True)
    with pytest.raises(ValueError, match="mode"):
        MultiScaleGANLoss("wasserstein")


def test_gan_losses_autocast_safe_and_differentiable():
    logits = torch.randn(1, 1, 4, 4, requires_grad=True)
    for mode in CASES:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = MultiScaleGANLoss(mode)([[logits.bfloat16()]], True, True)
        assert value.dtype == torch.float32
        (grad,) = torch.autograd.grad(value, logits)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_feature_matching_weights():
    # scale 0: 3 feature maps + logits, scale 1: 1 feature map + logits; real features hold c, fake ones 0
    real = [[torch.full((1, 2, 3, 3), c) for c in (1.0, 2.0, 3.0)] + [torch.zeros(1, 1, 2, 2)],
            [torch.full((1, 4, 2, 2), 5.0), torch.zeros(1, 1, 1, 1)]]  # fmt: skip
    fake = [[torch.zeros_like(t, requires_grad=True) for t in scale] for scale in real]
    real[0][0].requires_grad_(True)
    loss = FeatureMatchingLoss(weight=10.0)(fake, real)
    num_d = 2
    expected = (1 / num_d) * 10.0 * ((4 / 3) * (1.0 + 2.0 + 3.0) + (4 / 1) * 5.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert fake[0][0].grad is not None and real[0][0].grad is None  # real features are detached
    assert fake[0][-1].grad is None  # logits are not matched


def test_feature_matching_pix2pixhd_default_factor():
    # pix2pixHD, n_layers_D = 3: 4 feature maps per scale, 4 / (n_layers_D + 1) = 1, so each L1 term weighs 10 / num_d
    real = [[torch.ones(1, 1, 2, 2)] * 4 + [torch.zeros(1, 1, 1, 1)]] * 2
    fake = [[torch.zeros(1, 1, 2, 2)] * 4 + [torch.zeros(1, 1, 1, 1)]] * 2
    assert FeatureMatchingLoss()(fake, real).item() == pytest.approx(2 * 4 * 10.0 / 2)
    with pytest.raises(ValueError, match="same number"):
        FeatureMatchingLoss()(fake, real[:1])
