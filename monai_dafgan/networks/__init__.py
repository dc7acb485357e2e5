"""DAFF-GAN networks: criss-cross attention, pix2pixHD generators with attention and long skip, and the
multi-scale PatchGAN discriminator."""

from .attention import CrissCrossAttention, criss_cross_attention, criss_cross_softmax
from .blocks import ResnetBlock, get_norm_layer, init_weights
from .discriminators import DISCRIMINATOR_PRESETS, MultiScaleDiscriminator, NLayerDiscriminator
from .generators import GENERATOR_PRESETS, DAFFGenerator, GlobalGenerator, LocalEnhancer

__all__ = [
    "DISCRIMINATOR_PRESETS",
    "GENERATOR_PRESETS",
    "CrissCrossAttention",
    "DAFFGenerator",
    "GlobalGenerator",
    "LocalEnhancer",
    "MultiScaleDiscriminator",
    "NLayerDiscriminator",
    "ResnetBlock",
    "criss_cross_attention",
    "criss_cross_softmax",
    "get_norm_layer",
    "init_weights",
]
