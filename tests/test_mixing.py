"""On-the-fly mixing of synthetic samples into real training data: the exact, seeded MixedNucleiDataset layout, the
batch-level SyntheticBatchMixer, and both dropped into a MONAI SupervisedTrainer config with one change."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from ignite.engine import Events
from monai.data import list_data_collate

from monai_dafgan.data import make_toy_sample
from monai_dafgan.networks import DAFFGenerator
from monai_dafgan.points import CentroidLibrary
from monai_dafgan.synthesis import MixedNucleiDataset, NucleiSynthesizer, SyntheticBatchMixer, merge_batches

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = dict(ngf=8, n_downsampling=2, n_blocks=1, local_enhancer=True, ngf_local=4, n_blocks_local=1, output_activation=None)
SIZE = 64


@pytest.fixture(scope="module")
def synthesizer() -> NucleiSynthesizer:
    torch.manual_seed(0)
    return NucleiSynthesizer(DAFFGenerator(5, 5, **TINY), DAFFGenerator(6, 3, **TINY), device="cpu")


@pytest.fixture(scope="module")
def library() -> CentroidLibrary:
    return CentroidLibrary.from_samples([make_toy_sample(128, seed=0, index=i) for i in range(2)])


@pytest.fixture(scope="module")
def real_samples() -> list[dict]:
    return [make_toy_sample(SIZE, seed=0, index=i) for i in range(4)]


def labelled(prefix: str, count: int) -> list[dict]:
    return [{"id": f"{prefix}{i}"} for i in range(count)]


# ---------------------------------------------------------------------------------------------- MixedNucleiDataset
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 1 / 3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("seed", [0, 7])
def test_mixed_layout_is_exact_and_stratified(fraction, seed):
    num_samples = 101
    dataset = MixedNucleiDataset(
        labelled("r", 50), labelled("s", 500), fraction, num_samples=num_samples, seed=seed, mark_synthetic=True
    )
    flags = np.array([dataset.is_synthetic(i) for i in range(num_samples)])
    assert abs(flags.sum() - num_samples * fraction) < 1 and flags.sum() == dataset.num_synthetic
    window = 10
    runs = np.convolve(flags, np.ones(window, int), mode="valid")
    assert np.all(np.abs(runs - window * fraction) < 1 + 1e-9)  # every 10 consecutive items: the fraction within one
    assert [dataset[i]["synthetic"] for i in range(num_samples)] == flags.tolist()
    again = MixedNucleiDataset(labelled("r", 50), labelled("s", 500), fraction, num_samples=num_samples, seed=seed)
    assert [again[i]["id"] for i in range(num_samples)] == [dataset[i]["id"] for i in range(num_samples)]


@pytest.mark.parametrize("fraction", [0.2, 0.25, 0.5, 0.7])
def test_mixed_default_length_uses_every_real_sample_once(fraction):
    real = labelled("r", 37)
    dataset = MixedNucleiDataset(real, labelled("s", 200), fraction, seed=3)
    ids = [dataset[i]["id"] for i in range(len(dataset))]
    assert sorted(i for i in ids if i.startswith("r")) == sorted(r["id"] for r in real)
    assert len(dataset) - len(real) == dataset.num_synthetic
    assert abs(dataset.num_synthetic - len(dataset) * fraction) < 1
    assert len({i for i in ids if i.startswith("s")}) == dataset.num_synthetic  # no synthetic sample twice
    dataset.set_epoch(1)
    fresh = {dataset[i]["id"] for i in range(len(dataset)) if dataset.is_synthetic(i)}
    assert fresh.isdisjoint(ids)  # the next epoch draws the next synthetic samples of the pool


def test_mixed_applies_one_transform_to_both_and_flags_items_when_asked():
    def transform(item):
        return {**item, "seen": True}

    dataset = MixedNucleiDataset(
        labelled("r", 4), labelled("s", 1), 0.5, num_samples=2, transform=transform, mark_synthetic=True
    )
    items = [dataset[0], dataset[1]]
    assert all(item["seen"] for item in items)
    assert sorted((item["synthetic"], item["id"]) for item in items) == [(False, "r0"), (True, "s0")]
    unmarked = MixedNucleiDataset(labelled("r", 4), labelled("s", 1), 0.5, num_samples=2)
    assert [set(unmarked[i]) for i in range(2)] == [{"id"}, {"id"}]  # exactly the keys the samples come with
    with pytest.raises(ValueError, match=r"synthetic_fraction must lie in \[0, 1\]"):
        MixedNucleiDataset(labelled("r", 4), labelled("s", 4), 1.5)


# ---------------------------------------------------------------------------------------------- batch mixing
def test_merge_batches_append_and_replace():
    real = {"image": torch.zeros(3, 2, 4, 4), "name": ["a", "b", "c"], "meta": {"x": torch.zeros(3)}}
    synthetic = {"image": torch.ones(2, 2, 4, 4, dtype=torch.float64), "name": ["s", "t"], "meta": {"x": torch.ones(2)}, "extra": 1}
    appended = merge_batches(real, synthetic, "append")
    assert appended["image"].shape[0] == 5 and appended["image"].dtype == torch.float32 and "extra" not in appended
    assert appended["name"] == ["a", "b", "c", "s", "t"] and appended["meta"]["x"].tolist() == [0, 0, 0, 1, 1]
    replaced = merge_batches(real, synthetic, "replace")
    assert replaced["image"][:, 0, 0, 0].tolist() == [0, 1, 1] and replaced["name"] == ["a", "s", "t"]
    with pytest.raises(KeyError, match=r"lack keys \['name'\]"):
        merge_batches(real, {"image": synthetic["image"], "meta": synthetic["meta"]})
    with pytest.raises(ValueError, match="spatial_size"):
        merge_batches(real, {**synthetic, "image": torch.ones(2, 2, 8, 8)})


def test_mixer_ranks_draw_disjoint_samples(synthesizer, library, real_samples):
    """In a distributed run each rank takes every num_ranks-th sample of the run: none twice across ranks."""
    real_batch = list_data_collate([{k: s[k] for k in ("image", "label_inst", "name")} for s in real_samples[:2]])
    names = []
    for rank in (0, 1):
        mixer = SyntheticBatchMixer(synthesizer, library, fraction=1.0, rank=rank, num_ranks=2,
                                    prepare_batch=lambda b, *a, **k: b)
        names.append(mixer(real_batch, "cpu")["name"][2:])
    assert names == [["synthetic_s0_000000", "synthetic_s0_000002"], ["synthetic_s0_000001", "synthetic_s0_000003"]]
    with pytest.raises(ValueError, match="0 <= rank < num_ranks"):
        SyntheticBatchMixer(synthesizer, library, rank=2, num_ranks=2)


@pytest.mark.parametrize(
    "mode, fraction, batch_sizes, expected",
    [
        ("append", 0.25, [2, 2, 2, 2], [1, 0, 1, 0]),  # round(0.5) per batch, exact over the run
        ("append", 0.5, [4, 4, 3], [2, 2, 2]),
        ("append", 1.5, [2, 2], [3, 3]),
        ("replace", 1.0, [2, 3], [2, 3]),
    ],
)
def test_mixer_counts_are_exact_over_a_run(synthesizer, library, mode, fraction, batch_sizes, expected):
    mixer = SyntheticBatchMixer(synthesizer, library, fraction=fraction, mode=mode)
    assert [mixer.num_to_synthesize(b) for b in batch_sizes] == expected


def test_mixer_is_reproducible_and_fresh(synthesizer, library, real_samples):
    real_batch = list_data_collate([{k: s[k] for k in ("image", "label_inst", "name")} for s in real_samples[:2]])

    def run(seed):
        mixer = SyntheticBatchMixer(synthesizer, library, fraction=0.5, seed=seed, prepare_batch=lambda b, *a, **k: b)
        return [mixer(real_batch, "cpu") for _ in range(2)], mixer

    (first, second), mixer = run(seed=0)
    assert first["image"].shape == (3, 3, SIZE, SIZE) and first["name"][:2] == real_batch["name"]
    assert first["name"][2] == "synthetic_s0_000000" and second["name"][2] == "synthetic_s0_000001"
    assert not torch.equal(first["label_inst"][2], second["label_inst"][2])  # fresh samples every call
    torch.testing.assert_close(first["image"][:2], real_batch["image"])
    (again, _), _ = run(seed=0)
    torch.testing.assert_close(again["image"], first["image"])
    assert mixer.state_dict() == {"num_real_seen": 4, "num_synthesized": 2}
    with pytest.raises(KeyError, match="sample_transform"):
        SyntheticBatchMixer(synthesizer, library, fraction=0.5)({**real_batch, "label": real_batch["label_inst"]})


# ---------------------------------------------------------------------------------------------- SupervisedTrainer
def trainer_config() -> dict:
    """A small supervised segmentation setup (label_inst > 0) as a MONAI bundle-style config."""
    keys = ["image", "label"]
    return {
        "imports": ["$import numpy", "$import torch", "$import monai", "$import monai_dafgan"],
        "real": "$[monai_dafgan.data.make_toy_sample(64, seed=0, index=i) for i in range(4)]",
        "chain": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": 0, "a_max": 255, "b_min": 0, "b_max": 1},
                {"_target_": "CopyItemsd", "keys": "label_inst", "names": "label"},
                {"_target_": "Lambdad", "keys": "label", "func": "$lambda x: (x > 0).astype(numpy.float32)"},
                {"_target_": "RandFlipd", "keys": keys, "prob": 0.5, "spatial_axis": 1},
                {"_target_": "SelectItemsd", "keys": keys},
                {"_target_": "EnsureTyped", "keys": keys, "dtype": "$torch.float32", "track_meta": False},
            ],
        },
        "dataset": {"_target_": "Dataset", "data": "@real", "transform": "@chain"},
        "network": {"_target_": "BasicUNet", "spatial_dims": 2, "in_channels": 3, "out_channels": 1, "features": [4, 4, 4, 4, 4, 4]},
        "trainer": {
            "_target_": "SupervisedTrainer",
            "device": "$torch.device('cpu')",
            "max_epochs": 1,
            "train_data_loader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 2, "shuffle": True},
            "network": "@network",
            "optimizer": {"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 1e-3},
            "loss_function": {"_target_": "DiceLoss", "sigmoid": True},
            "prepare_batch": "$monai.engines.default_prepare_batch",
            "train_handlers": [],
        },
    }


MIXER = "$monai_dafgan.synthesis.SyntheticBatchMixer(synthesizer, library, fraction=0.5, sample_transform=@chain)"
ONE_CHANGE = {
    "dataset": {
        "dataset": {
            "_target_": "monai_dafgan.synthesis.MixedNucleiDataset",
            "real": "@real",
            "synthetic": "$monai_dafgan.synthesis.SyntheticNucleiDataset(synthesizer, 4, 64, seed=1, point_source=library)",
            "synthetic_fraction": 0.5,
            "num_samples": 8,
            "transform": "@chain",
        }
    },
    "prepare_batch": {"trainer#prepare_batch": MIXER},
    "handler": {"trainer#train_handlers": [MIXER]},
}


@pytest.mark.parametrize("form", [None, *ONE_CHANGE])
def test_supervised_trainer_with_one_config_change(form, synthesizer, library):
    parser = ConfigParser(trainer_config(), globals={"synthesizer": synthesizer, "library": library})
    for key, value in ONE_CHANGE.get(form, {}).items():
        parser[key] = value
    trainer = parser.get_parsed_content("trainer")
    batch_sizes = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: batch_sizes.append(len(engine.state.output)))
    trainer.run()
    assert math.isfinite(trainer.state.output[0]["loss"])  # outputs are decollated: one dict per sample
    expected = {None: [2, 2], "dataset": [2, 2, 2, 2], "prepare_batch": [3, 3], "handler": [3, 3]}[form]
    assert batch_sizes == expected  # the mixed dataset holds 4 real + 4 synthetic items; the mixer adds 1 per batch
