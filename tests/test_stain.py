"""H&E stain jitter: identity at zero range, stain-space behaviour, MONAI randomness conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.color import hed2rgb, hed_from_rgb, rgb2hed

from monai_dafgan.data import RandHEDJitter, RandHEDJitterd, make_toy_sample


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.clip(make_toy_sample(64, seed=0, index=0)["image"], 1, 255).astype(np.float32)


def test_zero_range_is_identity(image):
    np.testing.assert_allclose(RandHEDJitter(1.0, 0.0, 0.0)(image), image, atol=1e-3)


def test_matches_skimage_stain_space(image):
    """Scaling the haematoxylin amount alone equals doing it in skimage's rgb2hed / hed2rgb space (where skimage
    does not clip a negative stain amount to 0; ours stays linear there so that zero jitter is the identity)."""
    jitter = RandHEDJitter(1.0, 0.0, 0.0)
    jitter.randomize()
    jitter.scale = np.array([1.3, 1.0, 1.0])
    ours = jitter(image, randomize=False)
    hed = rgb2hed(image.transpose(1, 2, 0) / 255.0)
    hed[..., 0] *= 1.3
    reference = np.clip(hed2rgb(hed), 0, 1).transpose(2, 0, 1) * 255.0
    unclipped = (-np.log(image.transpose(1, 2, 0) / 255.0) @ hed_from_rgb).min(-1) > 0
    assert unclipped.mean() > 0.5
    np.testing.assert_allclose(ours[:, unclipped], reference[:, unclipped], atol=0.5)


def test_more_haematoxylin_darkens_nuclei_most(image):
    jitter = RandHEDJitter(1.0, 0.0, 0.0)
    jitter.randomize()
    jitter.scale = np.array([1.2, 1.0, 1.0])
    out = jitter(torch.as_tensor(image), randomize=False)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == image.shape
    darkening = (torch.as_tensor(image) - out).sum(0)
    dark = image.sum(0) < np.percentile(image.sum(0), 20)  # nuclei are the darkest pixels
    assert darkening[dark].mean() > 3 * darkening[~dark].mean() > 0


def test_dict_version_is_reproducible_and_shares_one_draw(image):
    data = {"image": image, "copy": image.copy(), "label": np.zeros((1, 64, 64))}
    a = RandHEDJitterd(["image", "copy"]).set_random_state(3)(data)
    b = RandHEDJitterd(["image", "copy"]).set_random_state(3)(data)
    c = RandHEDJitterd(["image", "copy"]).set_random_state(4)(data)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["image"], a["copy"])
    assert not np.array_equal(a["image"], c["image"]) and not np.array_equal(a["image"], image)
    assert a["label"] is data["label"]
    assert RandHEDJitterd("image", prob=0.0)(data)["image"] is image


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(3, H, W\) RGB image"):
        RandHEDJitter()(np.zeros((1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="ranges must be >= 0"):
        RandHEDJitter(scale_range=-0.1)
