"""segmentation.inference and .evaluation, with the training transform chain: whole-tile prediction, post-processing,
the evaluator and the Table I report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_dafgan.data import SlidingWindowCropDataset, make_toy_sample
from monai_dafgan.segmentation import (
    evaluate_tiles,
    format_table1,
    hovernet_postprocess,
    hovernet_train_transforms,
    infer_tile,
    predict_tile,
    split_disconnected_instances,
)


@pytest.fixture(scope="module")
def toy_tile():
    return make_toy_sample(540, seed=3, index=0)


@pytest.fixture(scope="module")
def hovernet(single_thread):
    from monai.networks.nets import HoVerNet

    torch.manual_seed(0)
    return HoVerNet(mode="fast", out_classes=5, pretrained_url=None)


def _check_training_sample(out: dict, patch: int = 256, size: int = 164) -> None:
    assert out["image"].shape == (3, patch, patch) and out["image"].dtype == torch.float32
    assert 0.0 <= float(out["image"].min()) and float(out["image"].max()) <= 1.0
    assert out["label"].shape == (2, size, size) and out["label_type"].shape == (5, size, size)
    assert out["hover_label_inst"].shape == (2, size, size) and out["hover_label_inst"].dtype == torch.float32
    assert float(out["hover_label_inst"].abs().max()) <= 1.0 + 1e-6
    assert out["label_inst"].shape == (1, size, size) and out["label_inst"].dtype == torch.int32
    for key in ("label", "label_type"):  # one-hot
        assert set(out[key].unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(out[key].sum(0), torch.ones(size, size))
    assert torch.equal(out["label"][1] > 0, out["label_inst"][0] > 0)
    assert "points" not in out


def test_train_transforms_shapes_and_ranges(toy_tile):
    transform = hovernet_train_transforms()
    transform.set_random_state(0)
    out = transform(toy_tile)
    _check_training_sample(out)
    assert out["name"] == toy_tile["name"]
    # every nucleus is typed in the toy data: the type foreground follows the instance foreground through the affine
    assert torch.equal(out["label_type"][0] > 0, out["label_inst"][0] == 0)  # channel 0 = background
    assert out["label"][1].sum() > 0 and float(out["image"].std()) > 0.01


def test_train_transforms_reproducible_and_random(toy_tile):
    first, second = hovernet_train_transforms(), hovernet_train_transforms()
    first.set_random_state(7)
    second.set_random_state(7)
    a, b = first(toy_tile), second(toy_tile)
    assert all(torch.equal(a[key], b[key]) for key in ("image", "label", "hover_label_inst"))
    assert not torch.equal(first(toy_tile)["image"], a["image"])


def test_validation_transforms_are_aligned_crops(toy_tile):
    out = hovernet_train_transforms(augment=False)(toy_tile)
    _check_training_sample(out)
    # 540 -> image crop starts at 142, label crop at 188: both centred
    expected_image = torch.as_tensor(toy_tile["image"][:, 142:398, 142:398]) / 255.0
    assert torch.allclose(out["image"], expected_image)
    expected_fg = torch.as_tensor(toy_tile["label_inst"][0, 188:352, 188:352] > 0)
    assert torch.equal(out["label"][1] > 0, expected_fg)
    expected_type = torch.as_tensor(toy_tile["label_type"][0, 188:352, 188:352]).long()
    assert torch.equal(out["label_type"].argmax(0), expected_type)


def test_train_transforms_on_sliding_window_crops_and_small_synthetic_sizes():
    tile = make_toy_sample((600, 620), seed=1, index=2)
    crops = SlidingWindowCropDataset([tile], window=540, stride=164, pad=188, transform=hovernet_train_transforms())
    _check_training_sample(crops[0])
    _check_training_sample(hovernet_train_transforms()(make_toy_sample(256, seed=1, index=3)))
    small = hovernet_train_transforms()(make_toy_sample(200, seed=1, index=4))  # zero-padded to 256
    _check_training_sample(small)
    empty = make_toy_sample(256, seed=1, index=5)
    empty["label_inst"][:] = 0
    empty["label_type"][:] = 0
    out = hovernet_train_transforms()(empty)
    _check_training_sample(out)
    assert out["label"][1].sum() == 0 and out["hover_label_inst"].abs().sum() == 0
    with pytest.raises(ValueError, match="even"):
        hovernet_train_transforms(256, 165)


def test_split_disconnected_instances():
    inst = np.zeros((1, 8, 8), np.int32)
    inst[0, 0:2, 0:2] = 5
    inst[0, 5:7, 5:7] = 5  # second piece of id 5
    inst[0, 0:2, 2:4] = 9  # touches id 5
    out = split_disconnected_instances(inst)
    assert out.shape == inst.shape and out.dtype == np.int32
    assert len(np.unique(out[out > 0])) == 3


def test_batch_feeds_prepare_batch_loss_and_network(toy_tile, hovernet):
    from monai.apps.pathology.engines.utils import PrepareBatchHoVerNet
    from monai.apps.pathology.losses import HoVerNetLoss
    from monai.data import list_data_collate
    from monai.utils import HoVerNetBranch

    transform = hovernet_train_transforms()
    transform.set_random_state(1)
    batch = list_data_collate([transform(toy_tile), transform(make_toy_sample(540, seed=3, index=1))])
    image, targets = PrepareBatchHoVerNet(extra_keys=["label_type", "hover_label_inst"])(batch, torch.device("cpu"))
    assert image.shape == (2, 3, 256, 256)
    assert targets[HoVerNetBranch.NP].shape == (2, 2, 164, 164)
    assert targets[HoVerNetBranch.NC].shape == (2, 5, 164, 164)
    assert targets[HoVerNetBranch.HV].shape == (2, 2, 164, 164)
    hovernet.train()
    with torch.no_grad():  # the shapes and the loss are the point; a backward pass would double time and memory
        outputs = hovernet(image)
        loss = HoVerNetLoss(lambda_hv_mse=1.0)(outputs, targets)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0


def test_predict_tile_random_network(hovernet):
    tile = make_toy_sample((300, 280), seed=2, index=0)
    hovernet.train()
    inst, types = predict_tile(hovernet, tile["image"], "cpu", sw_batch_size=4)
    assert hovernet.training  # mode restored
    assert inst.shape == (300, 280) and types.shape == (300, 280)
    assert inst.dtype == np.int32 and types.dtype == np.int32
    assert inst.min() >= 0 and 0 <= types.min() and types.max() <= 4
    ids = np.unique(inst[inst > 0])
    assert np.array_equal(ids, np.arange(1, len(ids) + 1))
    assert np.all(types[inst == 0] == 0)



def test_evaluator_is_the_whole_tile_path(hovernet):
    """evaluate_tiles (a MONAI evaluator: ScaleImaged, the HoVer-Net inferer, HoVerNetNucleid, NucleiMetricHandler)
    scores each tile exactly as predict_tile's maps measured by nuclei_metrics."""
    from monai_dafgan.metrics import nuclei_metrics

    tiles = [make_toy_sample((200, 180), seed=5, index=i) for i in range(2)]
    result = evaluate_tiles(hovernet, tiles, "cpu", sw_batch_size=4, keep_unmarked=True, progress=False)
    for tile, row in zip(tiles, result["tiles"]):
        inst, types = predict_tile(hovernet, tile["image"], "cpu", sw_batch_size=4, keep_unmarked=True)
        expected = nuclei_metrics(inst, tile["label_inst"][0], types, tile["label_type"][0])
        assert row == {"name": tile["name"], **expected}
    assert result["aggregate"]["tp"] == sum(row["tp"] for row in result["tiles"])

class _CentreCropNet(torch.nn.Module):
    """Stands in for HoVerNet(mode="fast"): 256 in, the centre 164 of the input out, on every branch."""

    def forward(self, x):
        centre = x[..., 46:210, 46:210]
        return {"nucleus_prediction": centre[:, :2], "horizontal_vertical": centre[:, 1:], "type_prediction": centre}


def test_infer_tile_stitches_outputs_in_place():
    image = torch.rand(3, 301, 250) * 255.0
    outputs = infer_tile(_CentreCropNet(), image, "cpu", sw_batch_size=2)
    assert outputs["type_prediction"].shape == (3, 301, 250)
    assert torch.allclose(outputs["type_prediction"], image / 255.0, atol=1e-5)
    assert torch.allclose(outputs["nucleus_prediction"], image[:2] / 255.0, atol=1e-5)


def test_postprocess_empty_prediction():
    size = 64
    background = torch.zeros(2, size, size)
    background[0] = 10.0  # certain background everywhere
    outputs = {
        "nucleus_prediction": background,
        "horizontal_vertical": torch.zeros(2, size, size),
        "type_prediction": torch.randn(5, size, size),
    }
    inst, types = hovernet_postprocess(outputs)
    assert inst.shape == types.shape == (size, size)
    assert inst.dtype == types.dtype == np.int32 and not inst.any() and not types.any()


def test_postprocess_finds_separated_nuclei():
    size = 64
    yy, xx = np.mgrid[:size, :size]
    centres = [(16, 16), (44, 40)]
    fg = np.zeros((size, size), bool)
    hv = np.zeros((2, size, size), np.float32)
    for r, c in centres:
        disk = (yy - r) ** 2 + (xx - c) ** 2 <= 8**2
        fg |= disk
        hv[0][disk] = ((xx - c) / 8.0)[disk]
        hv[1][disk] = ((yy - r) / 8.0)[disk]
    np_logits = torch.as_tensor(np.stack([~fg, fg]).astype(np.float32) * 10.0)
    nc_logits = torch.zeros(5, size, size)
    nc_logits[3] = 10.0
    outputs = {
        "nucleus_prediction": np_logits,
        "horizontal_vertical": torch.as_tensor(hv),
        "type_prediction": nc_logits,
    }
    inst, types = hovernet_postprocess(outputs)
    assert inst.max() == 2
    assert set(np.unique(types[inst > 0]).tolist()) == {3}


def test_postprocess_keep_unmarked_keeps_what_the_marker_step_misses():
    """A nucleus whose HV maps are noise gets no marker: HoVer-Net's rule drops it, keep_unmarked keeps it whole,
    and the well-marked nuclei come out the same either way."""
    size = 80
    yy, xx = np.mgrid[:size, :size]
    fg = np.zeros((size, size), bool)
    hv = np.zeros((2, size, size), np.float32)
    for r, c in [(16, 16), (44, 40)]:
        disk = (yy - r) ** 2 + (xx - c) ** 2 <= 8**2
        fg |= disk
        hv[0][disk], hv[1][disk] = ((xx - c) / 8.0)[disk], ((yy - r) / 8.0)[disk]
    noisy = (yy - 66) ** 2 + (xx - 66) ** 2 <= 7**2
    fg |= noisy
    checker = np.where((yy + xx) % 2 == 0, 1.0, -1.0).astype(np.float32)
    hv[0][noisy], hv[1][noisy] = checker[noisy], -checker[noisy]
    outputs = {
        "nucleus_prediction": torch.as_tensor(np.stack([~fg, fg]).astype(np.float32) * 10.0),
        "horizontal_vertical": torch.as_tensor(hv),
        "type_prediction": torch.zeros(5, size, size).index_fill_(0, torch.tensor([2]), 10.0),
    }
    dropped, _ = hovernet_postprocess(outputs)
    kept, types = hovernet_postprocess(outputs, keep_unmarked=True)
    assert dropped.max() == 2 and not dropped[noisy].any()
    assert kept.max() == 3 and len(np.unique(kept[noisy])) == 1 and (kept[noisy] > 0).all()
    assert ((kept > 0) & ~noisy).sum() == (dropped > 0).sum() and set(np.unique(types[kept > 0]).tolist()) == {2}


@pytest.mark.parametrize("keep_unmarked", [False, True])
def test_postprocess_drops_one_pixel_thick_slivers(keep_unmarked):
    """MONAI's contour step raises IndexError on an instance one pixel thick (seen on whole CoNSeP tiles with a
    network early in training); such slivers are dropped and the nucleus beside them is kept."""
    size = 40
    yy, xx = np.mgrid[:size, :size]
    fg = np.zeros((size, size), bool)
    fg[10, 5:25] = True
    disk = (yy - 28) ** 2 + (xx - 28) ** 2 <= 6**2
    fg |= disk
    hv = np.zeros((2, size, size), np.float32)
    hv[0][disk], hv[1][disk] = ((xx - 28) / 6.0)[disk], ((yy - 28) / 6.0)[disk]
    outputs = {
        "nucleus_prediction": torch.as_tensor(np.stack([~fg, fg]).astype(np.float32) * 10.0),
        "horizontal_vertical": torch.as_tensor(hv),
        "type_prediction": torch.zeros(5, size, size),
    }
    inst, _ = hovernet_postprocess(outputs, keep_unmarked=keep_unmarked)
    assert inst.max() == 1 and not inst[10].any() and (inst[disk] == 1).mean() > 0.9


def _key(image) -> bytes:
    return np.asarray(image, dtype=np.float32).tobytes()


def _perfect(network, image, device):
    return network[_key(image)]


def test_evaluate_tiles_perfect_prediction_and_table():
    tiles = [make_toy_sample(128, seed=4, index=i) for i in range(3)]
    truth = {_key(t["image"]): (t["label_inst"][0], t["label_type"][0]) for t in tiles}
    result = evaluate_tiles(truth, tiles, "cpu", predict_fn=_perfect)
    assert result["num_tiles"] == 3 and len(result["tiles"]) == 3
    assert result["tiles"][0]["name"] == tiles[0]["name"]
    for key in ("dice", "aji", "aji_plus", "dq", "sq", "pq", "f1_detection", "accuracy_type"):
        assert result["aggregate"][key] == pytest.approx(1.0)
        assert all(tile[key] == pytest.approx(1.0) for tile in result["tiles"])
    assert result["aggregate"]["fp"] == 0 and result["aggregate"]["fn"] == 0
    assert result["aggregate"]["num_true"] == sum(int(t["label_inst"].max()) for t in tiles)

    empty = {key: (np.zeros_like(a), np.zeros_like(b)) for key, (a, b) in truth.items()}
    missed = evaluate_tiles(empty, tiles, "cpu", predict_fn=_perfect)
    assert missed["aggregate"]["pq"] == 0.0 and missed["aggregate"]["f1_detection"] == 0.0

    table = format_table1({"CoNSeP": result, "CoNSeP + DAFF-GAN": [missed["aggregate"], result["aggregate"]]})
    lines = table.strip().splitlines()
    assert lines[0] == "| Training data | Dice | AJI | DQ | SQ | PQ | AJI+ | F1d |"
    assert lines[2] == "| CoNSeP | " + " | ".join(["1.0000"] * 7) + " |"
    assert lines[3].startswith("| CoNSeP + DAFF-GAN | 0.5000 ± 0.7071 |")
    assert format_table1({"x": {"dice": 0.83811}}).splitlines()[2] == "| x | 0.8381 | - | - | - | - | - | - |"


def test_evaluate_tiles_rejects_wrong_shapes_and_no_tiles():
    tile = make_toy_sample(96, seed=0, index=0)
    with pytest.raises(ValueError, match="same shape"):
        evaluate_tiles(None, [tile], predict_fn=lambda n, i, d: (np.zeros((5, 5), int), np.zeros((5, 5), int)))
    with pytest.raises(ValueError, match="at least one"):
        evaluate_tiles(None, [], predict_fn=_perfect)
