"""Adversarial and feature-matching losses of pix2pixHD / DAFF-GAN (they take :mod:`monai_dafgan.networks`
discriminator outputs: a list over scales of lists of layer outputs, last = logits)."""

from .adversarial import (
    GAN_MODES,
    FeatureMatchingLoss,
    MultiScaleGANLoss,
)

__all__ = [
    "GAN_MODES",
    "FeatureMatchingLoss",
    "MultiScaleGANLoss",
]
