"""Training runs that cannot silently do nothing or continue the wrong run: resume with more epochs, reruns with
other settings or data, unreadable checkpoints, killed writes, worker counts and empty training data."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
from monai.data import DataLoader, Dataset
from monai.handlers import LrScheduleHandler
from monai.transforms import RandGaussianNoised

from monai_dafgan.data import make_toy_consep, select_tiles
from monai_dafgan.engines import (
    CheckpointError,
    ConditionalGanTrainer,
    GanCheckpoint,
    LinearDecayLR,
    RunIdentity,
    restore_lr_schedule,
)
from monai_dafgan.losses import FeatureMatchingLoss, MultiScaleGANLoss
from monai_dafgan.networks import DAFFGenerator, MultiScaleDiscriminator
from monai_dafgan.records import samples_fingerprint

REPO = Path(__file__).resolve().parents[1]
TINY_G = dict(ngf=8, n_downsampling=2, n_blocks=1, local_enhancer=False)
IDENTITY = {"data": "abc", "preset": "small"}


def _data(n=4, size=32):
    g = torch.Generator().manual_seed(0)
    cond = torch.zeros(n, 5, size, size)
    cond[:, 0] = 1
    cond[:, 0, 8:12, 8:12], cond[:, 2, 8:12, 8:12] = 0, 1
    return [{"condition": cond[i], "target": torch.rand(3, size, size, generator=g) * 2 - 1} for i in range(n)]


def _trainer(max_epochs, folder, decay=(1, 1), identity=IDENTITY, num_workers=0, ngf=8, seed=0, resume=True):
    """A tiny GAN run whose data pass through a random transform (drawn in-process with num_workers=0)."""
    torch.manual_seed(seed)
    g = DAFFGenerator(5, 3, **{**TINY_G, "ngf": ngf})
    d = MultiScaleDiscriminator(8, ndf=8, n_layers=2, num_d=1)
    g_opt = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, LinearDecayLR(*decay)) for o in (g_opt, d_opt)]
    noisy = RandGaussianNoised(keys="target", prob=1.0, std=0.5)
    loader = DataLoader(Dataset(_data(), noisy), batch_size=2, shuffle=True, num_workers=num_workers)
    handlers = [LrScheduleHandler(s, print_lr=False) for s in schedulers]
    handlers.append(GanCheckpoint(folder, resume=resume, lr_schedulers=schedulers,
                                  generator_path=Path(folder) / "model.pt", run_identity=identity))
    return ConditionalGanTrainer(
        device="cpu", max_epochs=max_epochs, train_data_loader=loader, g_network=g, g_optimizer=g_opt,
        d_network=d, d_optimizer=d_opt, gan_loss=MultiScaleGANLoss("least_squares"),
        feature_matching_loss=FeatureMatchingLoss(10.0), train_handlers=handlers,
    )


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.g_network.state_dict().items()}


def _assert_same(a, b):
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_resume_is_exact_without_workers(tmp_path):
    """MONAI's DataLoader seeds in-process transforms once; the trainer reseeds them per epoch from the RNG that
    checkpoints restore, so a resumed run draws the same augmentations as an uninterrupted one."""
    straight = _trainer(4, tmp_path / "straight", decay=(2, 2))
    straight.run()
    _trainer(2, tmp_path / "resumed", decay=(2, 2)).run()
    resumed = _trainer(4, tmp_path / "resumed", decay=(2, 2), seed=7)
    resumed.run()
    assert resumed.state.iteration == 8
    _assert_same(_weights(straight), _weights(resumed))


def test_more_epochs_extend_the_schedule(tmp_path):
    """A finished run (learning rate decayed to 0) rerun with more epochs trains on at the new schedule's rates."""
    first = _trainer(2, tmp_path, decay=(1, 1))
    first.run()
    assert first.g_optimizer.param_groups[0]["lr"] == 0.0
    finished = _weights(first)
    extended = _trainer(4, tmp_path, decay=(2, 2))
    rates = []
    extended.add_event_handler(Events.EPOCH_STARTED, lambda e: rates.append(e.g_optimizer.param_groups[0]["lr"]))
    extended.run()
    schedule = LinearDecayLR(2, 2)
    assert rates == pytest.approx([2e-4 * schedule(2), 2e-4 * schedule(3)])  # epochs 3 and 4 of a fresh 4-epoch run
    assert any(not torch.equal(finished[k], v) for k, v in _weights(extended).items())


def test_restore_lr_schedule_keeps_the_new_factor_objects():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    old = torch.optim.lr_scheduler.LambdaLR(optimizer, LinearDecayLR(1, 1))
    for _ in range(2):
        optimizer.step()
        old.step()
    new = torch.optim.lr_scheduler.LambdaLR(optimizer, LinearDecayLR(5, 5))
    restore_lr_schedule(new, old.state_dict())
    assert new.last_epoch == 2 and new.lr_lambdas[0].num_constant == 5
    assert optimizer.param_groups[0]["lr"] == 1.0 and new.get_last_lr() == [1.0]


def test_a_finished_run_rerun_as_is_says_so_and_trains_nothing(tmp_path, caplog):
    _trainer(2, tmp_path).run()
    before = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    rerun = _trainer(2, tmp_path)
    with caplog.at_level(logging.INFO, logger="monai_dafgan.engines.handlers"):
        rerun.run()
    assert "is a finished run of 2 epochs: nothing to train" in caplog.text
    assert rerun.state.iteration == before["iteration"]
    _assert_same(before["g_network"], _weights(rerun))


def test_a_checkpoint_past_the_run_is_refused(tmp_path):
    _trainer(3, tmp_path).run()
    with pytest.raises(CheckpointError, match=r"is at epoch 3, past this run's 2 epochs: pass --epochs 3 or more"):
        _trainer(2, tmp_path).run()


def test_a_checkpoint_of_another_run_is_refused_with_what_differs(tmp_path):
    _trainer(1, tmp_path).run()
    other = {"data": "def", "preset": "small"}
    with pytest.raises(CheckpointError, match=r"written by another run \(data: 'abc' -> 'def'\).*--resume false"):
        _trainer(2, tmp_path, identity=other).run()
    _trainer(1, tmp_path, identity=other, resume=False).run()  # the way out: a fresh run overwrites it
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["run"] == other


def test_a_checkpoint_without_identity_is_resumed_with_a_warning(tmp_path, caplog):
    _trainer(1, tmp_path, identity=None).run()
    with caplog.at_level(logging.WARNING, logger="monai_dafgan.engines.handlers"):
        resumed = _trainer(2, tmp_path)
        resumed.run()
    assert "does not record the run that wrote it" in caplog.text and resumed.state.epoch == 2


def test_run_identity_in_monai_checkpoints():
    """The same object serves MONAI's CheckpointSaver/CheckpointLoader through state_dict/load_state_dict."""
    identity = RunIdentity({"data": "abc", "patch": (160, 160)})
    identity.load_state_dict({"data": "abc", "patch": [160, 160]})  # tuples and lists are the same setting
    with pytest.raises(CheckpointError, match=r"patch: \[160, 160\] -> \[256, 256\]; seed: '\(not recorded\)' -> 1"):
        RunIdentity({"data": "abc", "patch": (256, 256), "seed": 1}).load_state_dict(identity.state_dict())


@pytest.mark.parametrize("damage", ["truncated", "empty", "not_a_checkpoint"])
def test_unreadable_checkpoints_name_the_file_and_the_way_out(tmp_path, damage):
    _trainer(1, tmp_path).run()
    path = tmp_path / "checkpoint.pt"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match=rf"{path}.*(cannot be read|is not a GAN training checkpoint).*afresh"):
        _trainer(2, tmp_path).run()


def test_a_checkpoint_of_other_networks_is_refused(tmp_path):
    _trainer(1, tmp_path, identity=None).run()
    with pytest.raises(CheckpointError, match=r"holds networks of another shape than this run's"):
        _trainer(2, tmp_path, identity=None, ngf=16).run()


def test_temporary_files_of_a_killed_write_are_removed(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    stale = [tmp_path / name for name in (".checkpoint.pt.abc123.tmp", ".model.pt.xyz.tmp", ".checkpoint_epoch3.pt.q.tmp")]
    for path in stale:
        path.write_bytes(b"half a file")
    keep = tmp_path / ".other.pt.abc.tmp"  # not one of this run's files
    keep.write_bytes(b"")
    _trainer(1, tmp_path).run()
    assert not any(p.exists() for p in stale) and keep.exists()


def test_no_batch_is_an_error_not_an_empty_run(tmp_path):
    with pytest.raises(ValueError, match=r"yields no batch: 4 samples per epoch, batch_size 8"):
        torch.manual_seed(0)
        loader = DataLoader(_data(), batch_size=8, drop_last=True)
        ConditionalGanTrainer(
            device="cpu", max_epochs=1, train_data_loader=loader, g_network=torch.nn.Identity(), g_optimizer=None,
            d_network=torch.nn.Identity(), d_optimizer=None, gan_loss=MultiScaleGANLoss("least_squares"),
        )


def test_select_tiles_refuses_unknown_names_and_empty_selections():
    tiles = [{"name": f"t_{i}"} for i in range(1, 4)]
    assert [t["name"] for t in select_tiles(tiles, exclude=["t_2"])] == ["t_1", "t_3"]
    assert [t["name"] for t in select_tiles(tiles, include=["t_2"])] == ["t_2"]
    assert select_tiles(tiles, include=[], allow_empty=True) == []
    with pytest.raises(ValueError, match=r"tiles \['t_9'\] are not in the dataset \(its tiles: t_1, t_2, t_3\)"):
        select_tiles(tiles, exclude=["t_9"])
    with pytest.raises(ValueError, match=r"no tile is left of the dataset's 3"):
        select_tiles(tiles, exclude=["t_1", "t_2", "t_3"])


def test_samples_fingerprint_is_content_not_place(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_toy_consep(a, num_tiles=2, size=64, seed=0)
    shutil.copytree(a, b)
    from monai_dafgan.data import load_consep

    assert samples_fingerprint(load_consep(a)) == samples_fingerprint(load_consep(b))
    make_toy_consep(b, num_tiles=2, size=64, seed=1, overwrite=True)
    assert samples_fingerprint(load_consep(a)) != samples_fingerprint(load_consep(b))


FAST = dict(epochs=1, decay_epochs=0, window=64, patch_size=64, num_workers=0, log_enabled=False)


def _train_bundle(bundle: Path, dataset_dir: Path, **overrides):
    workflow = ConfigWorkflow(
        config_file=str(bundle / "configs" / "train.yaml"), workflow_type="train", bundle_root=str(bundle),
        dataset_dir=str(dataset_dir), **{**FAST, **overrides},
    )
    workflow.initialize()
    try:
        workflow.run()
    except RuntimeError as error:  # MONAI wraps what a config expression raises
        cause = error
        while cause.__cause__ is not None:
            cause = cause.__cause__
        raise cause from error
    finally:
        workflow.finalize()


def test_bundle_rerun_with_other_data_or_holdout_is_refused(tmp_path):
    """The issue's case: a finished generator run rerun in the same folder with another dataset exited 0 at once and
    kept the old weights."""
    data_a, data_b = tmp_path / "a", tmp_path / "b"
    make_toy_consep(data_a, num_tiles=2, size=64, seed=0)
    make_toy_consep(data_b, num_tiles=2, size=64, seed=1)
    bundle = tmp_path / "bundle"
    shutil.copytree(REPO / "bundles" / "dafgan_mask2image", bundle, ignore=shutil.ignore_patterns("*.pt", "runs"))
    _train_bundle(bundle, data_a)
    with pytest.raises(CheckpointError, match=r"checkpoint.pt was written by another run \(data: "):
        _train_bundle(bundle, data_b)
    with pytest.raises(ValueError, match=r"\['toy_9'\] are not in the dataset"):
        _train_bundle(bundle, data_a, holdout=["toy_9"])
    _train_bundle(bundle, data_a, epochs=2)  # the same run with more epochs continues
    assert torch.load(bundle / "runs" / "checkpoint.pt", weights_only=False)["epoch"] == 2


def test_hovernet_bundle_without_a_batch_is_an_error(tmp_path):
    data = tmp_path / "data"
    make_toy_consep(data, num_tiles=2, size=64, seed=0)
    bundle = tmp_path / "hovernet"
    ignored = shutil.ignore_patterns("*.pt", "runs")
    shutil.copytree(REPO / "bundles" / "hovernet_consep_synthetic", bundle, ignore=ignored)
    workflow = ConfigWorkflow(
        config_file=str(bundle / "configs" / "train.yaml"), workflow_type="train", bundle_root=str(bundle),
        dataset_dir=str(data), holdout=["toy_2"], encoder="resnet18", patch_size=64, out_size=48, batch_size=4,
        num_train_patches=2, lr_schedule="step", val_interval=0, num_workers=0, device="cpu", epochs=1,
    )
    workflow.initialize()
    with pytest.raises(RuntimeError) as error:
        workflow.run()
    expected = "the training data yields no batch: 2 samples per epoch, batch_size 4, drop_last"
    assert expected in str(error.value.__cause__)
