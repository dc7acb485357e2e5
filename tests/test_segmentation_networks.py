"""HoVer-Net on a selectable encoder: building each, output keys and sizes, a training step through the package's
transforms and MONAI's loss, whole-tile inference, encoder freezing and pretrained ResNet weights, and checkpoints
that record their architecture."""

from __future__ import annotations

import logging
import re

import pytest
import torch
from monai.apps.pathology.engines.utils import PrepareBatchHoVerNet
from monai.apps.pathology.losses import HoVerNetLoss
from monai.data import list_data_collate
from monai.networks.nets import HoVerNet
from monai.utils import HoVerNetBranch

from monai_dafgan.data import make_toy_sample
from monai_dafgan.segmentation import (
    HOVERNET_ENCODERS,
    MONAIHoVerNet,
    ResNetHoVerNet,
    build_hovernet,
    hovernet_encoder_parameters,
    hovernet_train_transforms,
    load_hovernet_weights,
    load_pretrained_encoder,
    network_architecture,
    predict_tile,
)
from torchvision_layout import torchvision_resnet_shapes

RESNETS = ("resnet18", "resnet34", "resnet50")
KEYS = {HoVerNetBranch.NP.value: 2, HoVerNetBranch.HV.value: 2, HoVerNetBranch.NC.value: 5}


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread):
    yield


def _batch(patch: int, out: int, count: int = 2):
    transform = hovernet_train_transforms(patch, out, augment=False)
    samples = [transform(make_toy_sample(patch + 16, seed=0, index=i)) for i in range(count)]
    return PrepareBatchHoVerNet(extra_keys=["label_type", "hover_label_inst"])(list_data_collate(samples), "cpu")


@pytest.mark.parametrize("encoder", RESNETS)
def test_resnet_encoders_give_hovernet_outputs_at_the_centre_size(encoder):
    torch.manual_seed(0)
    network = build_hovernet(encoder, out_classes=5, patch_size=96, out_size=64)
    assert isinstance(network, ResNetHoVerNet)
    assert network_architecture(network) == {
        "encoder": encoder, "in_channels": 3, "np_out_channels": 2, "out_classes": 5,
        "decoder_channels": [256, 128, 64, 32, 16], "output_crop": 16,
    }
    outputs = network.eval()(torch.rand(2, 3, 96, 96))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {k: (2, c, 64, 64) for k, c in KEYS.items()}
    # the output is the centre of a same-size prediction, for sides that are not multiples of 32 too
    full = build_hovernet(encoder, patch_size=70, out_size=70)
    full.load_state_dict(network.state_dict(), strict=False)  # same weights, another crop
    image = torch.rand(1, 3, 70, 90)
    with torch.no_grad():
        whole, centre = full.eval()(image), network(image)
    nucleus = HoVerNetBranch.NP.value
    assert whole[nucleus].shape[-2:] == (70, 90) and centre[nucleus].shape[-2:] == (38, 58)
    torch.testing.assert_close(centre[nucleus], whole[nucleus][..., 16:54, 16:74])
    untyped = build_hovernet(encoder, out_classes=0, patch_size=64, out_size=64).eval()
    assert set(untyped(torch.rand(1, 3, 64, 64))) == {HoVerNetBranch.NP.value, HoVerNetBranch.HV.value}


def test_hovernet_encoder_is_monais_hovernet():
    network = build_hovernet("hovernet", out_classes=5)
    assert isinstance(network, HoVerNet) and isinstance(network, MONAIHoVerNet)
    assert network_architecture(network)["encoder"] == "hovernet" and network.mode == "FAST"
    assert network_architecture(HoVerNet(mode="fast", out_classes=5)) == {"encoder": "hovernet"}
    assert build_hovernet("hovernet", patch_size=270, out_size=80).mode == "ORIGINAL"
    assert HOVERNET_ENCODERS == ("hovernet", "resnet18", "resnet34", "resnet50")


def test_sizes_and_names_an_encoder_cannot_take_are_refused():
    with pytest.raises(ValueError, match=r"encoder hovernet \(MONAI's HoVerNet\) takes 256 -> 164.*got 256 -> 192"):
        build_hovernet("hovernet", patch_size=256, out_size=192)
    with pytest.raises(ValueError, match=r"unknown encoder 'resnet19' \(--encoder\); choose one of hovernet, resnet18"):
        build_hovernet("resnet19")
    with pytest.raises(ValueError, match="even difference"):
        build_hovernet("resnet18", patch_size=256, out_size=163)
    with pytest.raises(ValueError, match=r"H, W > 2 \* output_crop = 92, got \(1, 3, 64, 64\)"):
        build_hovernet("resnet18").eval()(torch.rand(1, 3, 64, 64))


@pytest.mark.parametrize("encoder", RESNETS)
def test_resnet_training_steps_lower_the_loss(encoder):
    torch.manual_seed(0)
    network = build_hovernet(encoder, patch_size=64, out_size=32)
    images, targets = _batch(64, 32)
    loss_function = HoVerNetLoss(lambda_hv_mse=1.0)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        optimizer.zero_grad()
        loss = loss_function(network(images), targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0], losses


def test_hovernet_training_step_is_finite():
    torch.manual_seed(0)
    network = build_hovernet("hovernet", freeze_encoder=True)  # the frozen stage: half the cost of a step
    images, targets = _batch(256, 164, count=1)
    loss = HoVerNetLoss(lambda_hv_mse=1.0)(network(images), targets)
    loss.backward()
    assert torch.isfinite(loss)
    assert network.type_prediction.decoder_blocks.decoderblock1.conva.weight.grad is not None
    assert network.res_blocks.d3.layers.denselayer_0.layers.conv1.weight.grad is None


def test_whole_tile_prediction_with_a_resnet_encoder():
    torch.manual_seed(0)
    network = build_hovernet("resnet18", patch_size=64, out_size=32)
    tile = make_toy_sample(100, seed=1, index=0)
    inst, types = predict_tile(network, tile["image"], roi_size=64, out_size=32, sw_batch_size=4)
    assert inst.shape == types.shape == (100, 100) and inst.dtype == types.dtype


def test_freezing_a_resnet_encoder():
    network = build_hovernet("resnet18", freeze_encoder=True)
    frozen = {name for name, p in network.named_parameters() if not p.requires_grad}
    assert frozen == {f"encoder.{name}" for name, _ in network.encoder.named_parameters()}
    free = build_hovernet("resnet18")
    names = {id(p): name for name, p in free.named_parameters()}
    assert {names[id(p)] for p in hovernet_encoder_parameters(free)} == frozen


@pytest.mark.parametrize(
    "encoder,block,layers", [("resnet18", "basic", (2, 2, 2, 2)), ("resnet50", "bottleneck", (3, 4, 6, 3))]
)
def test_torchvision_layout_weights_load_into_a_resnet_encoder(encoder, block, layers, tmp_path, caplog):
    generator = torch.Generator().manual_seed(0)
    shapes = torchvision_resnet_shapes(block, layers)
    state = {k: torch.randn(s, generator=generator) if s else torch.tensor(7) for k, s in shapes.items()}
    torch.save(state, tmp_path / f"{encoder}.pth")
    network = build_hovernet(encoder)
    decoder_before = {k: v.clone() for k, v in network.state_dict().items() if not k.startswith(("encoder.", "_"))}
    with caplog.at_level(logging.INFO, logger="monai_dafgan.segmentation.weights"):
        loaded = load_pretrained_encoder(network, tmp_path / f"{encoder}.pth")
    assert loaded == len(shapes) - 2  # all but fc
    assert f"initialised {loaded} of the {encoder} encoder's {loaded} tensors" in caplog.text
    own = network.state_dict()
    for key in shapes:
        if not key.startswith("fc."):
            assert torch.equal(own[f"encoder.{key}"], state[key]), key
    for key, value in decoder_before.items():
        assert torch.equal(own[key], value), key


def test_resnet_weights_of_another_depth_are_refused(tmp_path):
    shapes = torchvision_resnet_shapes("bottleneck", (3, 4, 6, 3))
    torch.save({k: torch.zeros(s) for k, s in shapes.items()}, tmp_path / "resnet50.pth")
    with pytest.raises(ValueError, match=r"resnet50.pth does not fit the resnet18 encoder .* tensors of another shape"):
        load_pretrained_encoder(build_hovernet("resnet18"), tmp_path / "resnet50.pth")
    torch.save(build_hovernet("resnet34").state_dict(), tmp_path / "resnet34_hovernet.pt")
    with pytest.raises(ValueError, match=r"was trained with encoder resnet34, this network is resnet18 \(--encoder\)"):
        load_pretrained_encoder(build_hovernet("resnet18"), tmp_path / "resnet34_hovernet.pt")


def test_checkpoints_record_their_architecture_and_refuse_another(tmp_path, caplog):
    torch.manual_seed(0)
    resnet34 = build_hovernet("resnet34")
    path = tmp_path / "model.pt"
    torch.save(resnet34.state_dict(), path)
    saved = torch.load(path, weights_only=True)
    assert saved["_extra_state"]["architecture"]["encoder"] == "resnet34"

    expected = f"checkpoint {path} was trained with encoder resnet34, this network is resnet18 (--encoder)"
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_hovernet_weights(build_hovernet("resnet18"), path)
    with pytest.raises(ValueError, match=r"checkpoint .* was trained with encoder resnet34, this network is hovernet"):
        load_hovernet_weights(HoVerNet(mode="fast", out_classes=5), path)
    with pytest.raises(ValueError, match=r"was trained with encoder resnet34, this network is resnet50"):
        build_hovernet("resnet50").load_state_dict(saved)  # resumable checkpoints go through load_state_dict

    same = load_hovernet_weights(build_hovernet("resnet34"), path)
    assert all(torch.equal(v, saved[k]) for k, v in same.state_dict().items() if torch.is_tensor(v))
    with caplog.at_level(logging.WARNING, logger="monai_dafgan.segmentation.weights"):
        load_hovernet_weights(build_hovernet("resnet34", out_size=192), path)  # the margin changes no weight
    assert "output_crop=46 in the checkpoint, 32 here" in caplog.text
    expected = r"out_classes=5 in the checkpoint, 7 here.*type head has 5 classes, this network 7"
    with pytest.raises(ValueError, match=expected):
        load_hovernet_weights(build_hovernet("resnet34", out_classes=7), path)


def test_plain_hovernet_checkpoints_still_load(tmp_path):
    torch.manual_seed(0)
    plain = HoVerNet(mode="fast", out_classes=5)
    torch.save(plain.state_dict(), tmp_path / "old.pt")  # written before checkpoints recorded their architecture
    network = load_hovernet_weights(build_hovernet("hovernet"), tmp_path / "old.pt")
    key = "res_blocks.d1.layers.denselayer_0.layers.conv1.weight"
    assert torch.equal(network.state_dict()[key], plain.state_dict()[key])
    assert network.state_dict()["_extra_state"]["architecture"]["encoder"] == "hovernet"
    build_hovernet("hovernet").load_state_dict(plain.state_dict())  # strictly, as resuming an old run does
    with pytest.raises(ValueError, match=r"old.pt was trained with encoder hovernet, this network is resnet18"):
        load_hovernet_weights(build_hovernet("resnet18"), tmp_path / "old.pt")
    torch.save(network.state_dict(), tmp_path / "new.pt")  # and a recorded one loads into a plain HoVerNet
    load_hovernet_weights(HoVerNet(mode="fast", out_classes=5), tmp_path / "new.pt")
