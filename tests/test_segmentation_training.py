"""HoVer-Net training and evaluation helpers: weight files, the two-stage schedule, tile selection, evaluation
output and the paired comparison of conditions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.networks.nets import HoVerNet

from monai_dafgan.data import evenly_spaced_subset, make_toy_sample, select_tiles
from monai_dafgan.engines import TwoStageStepLR, hovernet_lr_scheduler
from monai_dafgan.segmentation import (
    hovernet_encoder_parameters,
    load_hovernet_weights,
    load_pretrained_encoder,
    paired_comparison,
    read_state_dict,
    write_evaluation,
)
from monai_dafgan.segmentation.weights import ENCODER_PREFIXES
from torchvision_layout import torchvision_resnet_shapes


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return HoVerNet(mode="fast", out_classes=5)


def test_checkpoint_round_trip_and_wrappers(network, tmp_path):
    state = network.state_dict()
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.pt")
    other = HoVerNet(mode="fast", out_classes=5)
    load_hovernet_weights(other, tmp_path / "wrapped.pt")
    for key, value in other.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_checkpoint_of_another_class_count_is_named(network, tmp_path):
    torch.save(HoVerNet(mode="fast", out_classes=7).state_dict(), tmp_path / "seven.pt")
    with pytest.raises(ValueError, match=r"type head has 7 classes, this network 5 \(out_classes"):
        load_hovernet_weights(network, tmp_path / "seven.pt")
    torch.save(HoVerNet(mode="fast", out_classes=0).state_dict(), tmp_path / "untyped.pt")
    with pytest.raises(ValueError, match=r"tensors missing \(type_prediction"):
        load_hovernet_weights(network, tmp_path / "untyped.pt")
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        load_hovernet_weights(network, tmp_path / "absent.pt")
    torch.save({"epoch": 3}, tmp_path / "not_weights.pt")
    with pytest.raises(ValueError, match="holds no state dict"):
        read_state_dict(tmp_path / "not_weights.pt")


def test_pretrained_encoder_from_hovernet_keys_leaves_the_decoder(tmp_path):
    torch.manual_seed(1)
    source = HoVerNet(mode="fast", out_classes=5)
    torch.save(source.state_dict(), tmp_path / "source.pt")
    torch.manual_seed(2)
    target = HoVerNet(mode="fast", out_classes=5)
    decoder_before = {k: v.clone() for k, v in target.state_dict().items() if not k.startswith(ENCODER_PREFIXES)}
    loaded = load_pretrained_encoder(target, tmp_path / "source.pt")
    encoder = [k for k in target.state_dict() if k.startswith(ENCODER_PREFIXES)]
    assert loaded == len(encoder)
    for key in encoder:
        assert torch.equal(target.state_dict()[key], source.state_dict()[key]), key
    for key, value in decoder_before.items():
        assert torch.equal(target.state_dict()[key], value), key


def test_pretrained_encoder_from_torchvision_layout(tmp_path):
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=generator) if s else torch.tensor(7) for k, s in torchvision_resnet_shapes("bottleneck", (3, 4, 6, 3)).items()}
    torch.save(state, tmp_path / "resnet50.pth")
    target = HoVerNet(mode="fast", out_classes=5)
    loaded = load_pretrained_encoder(target, tmp_path / "resnet50.pth")
    own = target.state_dict()
    assert torch.equal(own["conv0.conv.weight"], state["conv1.weight"])
    assert torch.equal(own["conv0.bn.running_var"], state["bn1.running_var"])
    assert torch.equal(own["res_blocks.d2.layers.denselayer_3.layers.conv2.weight"], state["layer3.3.conv2.weight"])
    assert torch.equal(own["res_blocks.d1.layers.denselayer_1.layers.conv1/bn.bias"], state["layer2.1.bn1.bias"])
    assert torch.equal(own["res_blocks.d0.layers.denselayer_2.layers.preact/bn.weight"], state["layer1.1.bn3.weight"])
    assert torch.equal(own["res_blocks.d3.shortcut.weight"], state["layer4.0.downsample.0.weight"])
    assert torch.equal(own["res_blocks.d3.bna_block.bn.weight"], state["layer4.0.downsample.1.weight"])
    encoder = [k for k in own if k.startswith(ENCODER_PREFIXES)]
    # every torchvision tensor but fc and each block's last bn3 has a place in HoVer-Net's encoder
    assert loaded == len(torchvision_resnet_shapes("bottleneck", (3, 4, 6, 3))) - 2 - 4 * 5
    assert loaded >= 0.9 * len(encoder)


def test_pretrained_encoder_of_another_architecture_is_refused(tmp_path):
    torch.save({"backbone.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no tensor fits HoVer-Net's encoder"):
        load_pretrained_encoder(HoVerNet(mode="fast", out_classes=5), tmp_path / "other.pt")


def test_encoder_parameters_are_those_freeze_encoder_freezes():
    frozen = HoVerNet(mode="fast", out_classes=5, freeze_encoder=True)
    expected = {name for name, p in frozen.named_parameters() if not p.requires_grad}
    free = HoVerNet(mode="fast", out_classes=5)
    names = {id(p): name for name, p in free.named_parameters()}
    assert {names[id(p)] for p in hovernet_encoder_parameters(free)} == expected


def test_two_stage_step_lr_restarts_at_the_stage_switch():
    factor = TwoStageStepLR(frozen_epochs=4, step_size=2, gamma=0.1)
    assert [round(factor(e), 6) for e in range(8)] == [1, 1, 0.1, 0.1, 1, 1, 0.1, 0.1]
    assert [TwoStageStepLR(0, 3)(e) for e in (0, 2, 3)] == [1.0, 1.0, pytest.approx(0.1)]
    with pytest.raises(ValueError):
        TwoStageStepLR(-1)


def test_lr_scheduler_by_name():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=0.01)
    onecycle = hovernet_lr_scheduler(optimizer, "onecycle", epochs=2, iterations_per_epoch=10)
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        onecycle.step()
    peak = rates.index(max(rates))
    assert rates[0] < 0.001 and max(rates) == pytest.approx(0.01) and 1 <= peak <= 3 and rates[-1] < 1e-4
    assert rates[: peak + 1] == sorted(rates[: peak + 1]) and rates[peak:] == sorted(rates[peak:], reverse=True)
    step = hovernet_lr_scheduler(torch.optim.Adam([parameter], lr=0.01), "step", 10, 5, frozen_epochs=0, lr_step=2)
    assert isinstance(step, torch.optim.lr_scheduler.LambdaLR) and step.lr_lambdas[0](2) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown lr_schedule 'cosine'"):
        hovernet_lr_scheduler(optimizer, "cosine", 1, 1)
    with pytest.raises(ValueError, match="at least one iteration"):
        hovernet_lr_scheduler(optimizer, "onecycle", 0, 5)


def test_select_tiles_by_name_and_centre_crop():
    tiles = [make_toy_sample(96, seed=0, index=i) | {"name": f"t{i}"} for i in range(3)]
    chosen = select_tiles(tiles, include=["t2", "t0"], center_crop=64)
    assert [t["name"] for t in chosen] == ["t2_y16_x16", "t0_y16_x16"]
    assert chosen[0]["image"].shape == (3, 64, 64) and chosen[0]["label_inst"].shape == (1, 64, 64)
    np.testing.assert_array_equal(chosen[0]["image"], tiles[2]["image"][:, 16:80, 16:80])
    assert [t["name"] for t in select_tiles(tiles, center_crop=500)] == ["t0_y0_x0", "t1_y0_x0", "t2_y0_x0"]
    with pytest.raises(ValueError, match=r"tiles \['t9'\] are not in the dataset"):
        select_tiles(tiles, include=["t9"])


def test_evenly_spaced_subset():
    assert list(evenly_spaced_subset(list(range(10)), 4)) == [0, 2, 5, 7]
    data = list(range(3))
    assert evenly_spaced_subset(data, None) is data and evenly_spaced_subset(data, 5) is data
    with pytest.raises(ValueError):
        evenly_spaced_subset(data, 0)


def _run(scores: dict[str, float], key: str = "pq") -> dict:
    return {"tiles": [{"name": name, key: value} for name, value in scores.items()]}


def test_paired_comparison_hand_worked():
    results = {
        "real": [_run({"a": 0.5, "b": 0.4}), _run({"a": 0.7, "b": 0.2})],
        "synthetic": [_run({"a": 0.6, "b": 0.4}), _run({"a": 0.7, "b": 0.4})],
    }
    report = paired_comparison(results, "real", metrics=["pq"], num_bootstrap=2000)["synthetic"]["pq"]
    # per-tile differences averaged over seeds: a (0.1 + 0) / 2 = 0.05, b (0 + 0.2) / 2 = 0.1
    assert report["mean_difference"] == pytest.approx(0.075)
    assert 0.05 - 1e-9 <= report["ci95"][0] <= report["ci95"][1] <= 0.1 + 1e-9
    assert report["p_improved"] == 1.0
    assert report["seeds_improved"] == 2 and report["num_seeds"] == 2 and report["num_tiles"] == 2
    assert "real" not in paired_comparison(results, "real", metrics=["pq"])


def test_paired_comparison_refuses_what_cannot_pair():
    with pytest.raises(ValueError, match="baseline 'none'"):
        paired_comparison({"real": [_run({"a": 1})]}, "none", metrics=["pq"])
    with pytest.raises(ValueError, match="has 2 runs"):
        paired_comparison({"real": [_run({"a": 1})], "s": [_run({"a": 1})] * 2}, "real", metrics=["pq"])
    with pytest.raises(ValueError, match="different tiles"):
        paired_comparison({"real": [_run({"a": 1})], "s": [_run({"b": 1})]}, "real", metrics=["pq"])


def test_write_evaluation(tmp_path):
    result = {"tiles": [{"name": "t", "dice": 0.5}], "aggregate": {"dice": 0.5, "pq": 0.25}, "num_tiles": 1}
    content = write_evaluation(result, tmp_path / "eval", "real", checkpoint=tmp_path / "m.pt", split="Test")
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved == content and saved["condition"] == "real" and saved["checkpoint"] == str(tmp_path / "m.pt")
    table = (tmp_path / "eval" / "table1.md").read_text()
    assert table.splitlines()[2].startswith("| real | 0.5000 | - | - | - | 0.2500 |")
