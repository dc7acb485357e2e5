"""Samples of this package in plain MONAI code, with MONAI's defaults: tensors, default collate, decollate_batch
(SupervisedTrainer's default), samples without nuclei, and the mixers' size and reuse checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import DataLoader, MetaTensor, decollate_batch, list_data_collate
from monai.engines import SupervisedTrainer
from monai.transforms import Compose, Lambdad, ScaleIntensityRanged

from monai_dafgan.data import (
    LabelsToPointsd,
    SlidingWindowCropDataset,
    check_sample,
    contract_sample,
    make_toy_sample,
    nuclei_collate,
    sample_points,
)
from monai_dafgan.networks import DAFFGenerator
from monai_dafgan.points import CentroidLibrary
from monai_dafgan.synthesis import MixedNucleiDataset, NucleiSynthesizer, SyntheticNucleiDataset

pytestmark = pytest.mark.usefixtures("single_thread")

SIZE = 64
CONTRACT_KEYS = {"image", "label_inst", "label_type", "name"}


def empty_sample(size: int = SIZE) -> dict:
    zeros = np.zeros((1, size, size), np.int32)
    return contract_sample(np.full((3, size, size), 200, np.float32), zeros, zeros, "empty")


@pytest.fixture(scope="module")
def synthesizer() -> NucleiSynthesizer:
    torch.manual_seed(0)
    tiny = dict(ngf=8, n_downsampling=2, n_blocks=1, local_enhancer=False, output_activation=None)
    return NucleiSynthesizer(DAFFGenerator(5, 5, **tiny), DAFFGenerator(6, 3, **tiny), device="cpu")


@pytest.fixture(scope="module")
def synthetic(synthesizer) -> SyntheticNucleiDataset:
    library = CentroidLibrary.from_samples([make_toy_sample(128, seed=0, index=i) for i in range(2)])
    return SyntheticNucleiDataset(synthesizer, num_samples=4, spatial_size=SIZE, seed=0, point_source=library)


def test_samples_are_meta_tensors_with_exactly_the_contract_keys(synthetic):
    real = make_toy_sample(SIZE, seed=0, index=0)
    for sample in (real, synthetic[0], empty_sample()):
        check_sample(sample)
        assert set(sample) == CONTRACT_KEYS
        assert all(isinstance(sample[k], MetaTensor) for k in ("image", "label_inst", "label_type"))
        assert (sample["label_inst"] > 0).float().dtype == torch.float32  # what a user's Lambdad does


def test_default_collate_and_decollate_keep_samples_without_nuclei():
    samples = [make_toy_sample(SIZE, seed=0, index=0), empty_sample(), make_toy_sample(SIZE, seed=0, index=1)]
    batch = list_data_collate(samples)
    assert tuple(batch["label_inst"].shape) == (3, 1, SIZE, SIZE)
    back = decollate_batch(batch)
    assert [s["name"] for s in back] == ["toy_0", "empty", "toy_1"]
    for original, item in zip(samples, back):
        torch.testing.assert_close(item["label_inst"].as_tensor(), original["label_inst"].as_tensor())


def test_nuclei_collate_pads_points_so_decollate_gives_each_sample_its_rows():
    with_points = LabelsToPointsd()
    samples = [with_points(s) for s in (make_toy_sample(SIZE, seed=0, index=0), empty_sample())]
    with pytest.raises(RuntimeError):  # what MONAI's default does with (K, 3) rows of different K
        list_data_collate(samples)
    batch = nuclei_collate(samples)
    k = len(samples[0]["points"])
    assert k > 0 and tuple(batch["points"].shape) == (2, k, 3) and batch["num_points"].tolist() == [k, 0]
    assert torch.isnan(batch["points"][1]).all()
    back = decollate_batch(batch)
    np.testing.assert_allclose(back[0]["points"][: back[0]["num_points"]], sample_points(samples[0]))
    assert back[1]["num_points"] == 0


def test_supervised_trainer_on_mixed_real_and_synthetic_with_monai_defaults(synthetic):
    real = SlidingWindowCropDataset([make_toy_sample(128, seed=0, index=0)], window=SIZE)
    transform = Compose([ScaleIntensityRanged("image", 0, 255, 0, 1), Lambdad("label_inst", lambda x: (x > 0).float())])
    mixed = MixedNucleiDataset([*real, empty_sample()], synthetic, synthetic_fraction=0.4, transform=transform)
    loader = DataLoader(mixed, batch_size=3)  # MONAI's default collate
    net = torch.nn.Conv2d(3, 1, 3, padding=1)
    trainer = SupervisedTrainer(  # decollate=True by default
        "cpu", 1, loader, net, torch.optim.SGD(net.parameters(), 0.01), torch.nn.BCEWithLogitsLoss(),
        prepare_batch=lambda batch, device, non_blocking, **kwargs: (batch["image"], batch["label_inst"]),
    )
    trainer.run()
    assert trainer.state.iteration == len(loader) and len(trainer.state.batch) == (len(mixed) % 3 or 3)


def test_mixed_dataset_refuses_known_different_sizes_and_warns_on_reuse(synthetic):
    tiles = [make_toy_sample(128, seed=0, index=0)]
    with pytest.raises(ValueError, match=r"128x128 but synthetic ones 64x64.*window=64"):
        MixedNucleiDataset(SlidingWindowCropDataset(tiles, window=128), synthetic, 0.5)
    crops = SlidingWindowCropDataset(tiles * 4, window=SIZE)  # 16 real crops
    with pytest.warns(UserWarning, match=r"reused about 2\.\d times.*num_samples >= 1\d"):
        mixed = MixedNucleiDataset(crops, synthetic, 0.4)
    assert mixed.reuse == pytest.approx(mixed.num_synthetic / len(synthetic)) and mixed.reuse > 2
    flagged = MixedNucleiDataset(crops, synthetic, 0.2, mark_synthetic=True)
    assert {flagged[i]["synthetic"] for i in range(len(flagged))} == {True, False}
    assert "synthetic" not in MixedNucleiDataset(crops, synthetic, 0.2)[0]
