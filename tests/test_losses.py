"""pix2pixHD losses on hand-made discriminator outputs."""

from __future__ import annotations

import math

import pytest
import torch

from monai_dafgan.losses import (
    FeatureMatchingLoss,
    MultiScaleGANLoss,
    Pix2PixHDDiscriminatorLoss,
    Pix2PixHDGeneratorLoss,
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


def test_generator_loss_terms_and_perceptual_hook():
    calls = []

    def perceptual(fake_image, real_image):
        calls.append((fake_image, real_image))
        return (fake_image - real_image).abs().mean()

    fake_image, real_image = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    gan, fm = MultiScaleGANLoss(), FeatureMatchingLoss()
    criterion = Pix2PixHDGeneratorLoss(gan, fm, perceptual=perceptual, perceptual_weight=2.0)
    fake_outputs = _outputs()
    real_outputs = _outputs(([1.0, 1.0], [1.0]))
    real_outputs[0][0] = torch.zeros(1, 2, 2, 2)
    terms = criterion(fake_outputs, real_outputs, fake_image, real_image)
    assert len(calls) == 1 and calls[0][0] is fake_image and calls[0][1] is real_image
    assert set(terms) == {"gan", "feature_matching", "perceptual", "total"}
    assert terms["gan"].item() == pytest.approx(gan(fake_outputs, True, False).item())
    assert terms["feature_matching"].item() == pytest.approx(fm(fake_outputs, real_outputs).item())
    assert terms["perceptual"].item() == pytest.approx(2.0)
    parts = ("gan", "feature_matching", "perceptual")
    assert terms["total"].item() == pytest.approx(sum(terms[k].item() for k in parts))
    with pytest.raises(ValueError, match="fake_image and real_image"):
        criterion(fake_outputs, real_outputs)
    plain = Pix2PixHDGeneratorLoss(gan, None)
    assert set(plain(fake_outputs)) == {"gan", "total"}
    with pytest.raises(ValueError, match="real_outputs"):
        Pix2PixHDGeneratorLoss(gan, fm)(fake_outputs)


def test_discriminator_loss_is_half_the_sum():
    gan = MultiScaleGANLoss()
    terms = Pix2PixHDDiscriminatorLoss(gan)(_outputs(), _outputs(([1.0, 0.0], [3.0])))
    assert terms["fake"].item() == pytest.approx(gan(_outputs(), False, True).item())
    assert terms["real"].item() == pytest.approx((0.5 + 4.0))
    assert terms["total"].item() == pytest.approx(0.5 * (terms["fake"].item() + terms["real"].item()))


def test_one_training_step_end_to_end():
    from monai_dafgan.networks import DAFFGenerator, MultiScaleDiscriminator

    torch.manual_seed(0)
    generator = DAFFGenerator(3, 2, ngf=8, n_downsampling=1, n_blocks=1, n_blocks_local=1)
    discriminator = MultiScaleDiscriminator(5, ndf=4, n_layers=2)
    condition, real = torch.randn(2, 3, 16, 16), torch.rand(2, 2, 16, 16) * 2 - 1
    gan = MultiScaleGANLoss()
    fake = generator(condition)
    real_outputs = discriminator(torch.cat([condition, real], 1))
    fake_outputs = discriminator(torch.cat([condition, fake], 1))
    g_terms = Pix2PixHDGeneratorLoss(gan, FeatureMatchingLoss())(fake_outputs, real_outputs)
    g_terms["total"].backward()
    assert all(p.grad is not None for p in generator.parameters() if p.requires_grad)
    discriminator.zero_grad()
    d_terms = Pix2PixHDDiscriminatorLoss(gan)(discriminator(torch.cat([condition, fake.detach()], 1)), real_outputs)
    d_terms["total"].backward()
    assert all(p.grad is not None for p in discriminator.parameters())
