"""Criss-cross attention, DAFF-GAN generators and the multi-scale discriminator (CPU, small sizes)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

import monai_dafgan.networks.attention as attention_module
from monai_dafgan.networks import (
    DISCRIMINATOR_PRESETS,
    GENERATOR_PRESETS,
    CrissCrossAttention,
    DAFFGenerator,
    MultiScaleDiscriminator,
    NLayerDiscriminator,
    criss_cross_softmax,
)

# tiny local-enhancer generator: size_divisor 2**(2 + 1) = 8
TINY = dict(ngf=8, n_downsampling=2, n_blocks=1, local_enhancer=True, n_blocks_local=1)


def _script(module: torch.nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(module)


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _cca_params(channels: int, reduction: int = 8) -> int:
    qk = max(1, channels // reduction)
    return 2 * (channels * qk + qk) + channels * channels + channels + 1


# --------------------------------------------------------------------------------------------- criss-cross attention


def _brute_force_pass(module: CrissCrossAttention, x: torch.Tensor) -> torch.Tensor:
    """One pass, pixel by pixel: softmax over the column without the pixel itself plus the whole row."""
    q, k, v = module.query(x), module.key(x), module.value(x)
    out = torch.zeros_like(v)
    batch, _, height, width = x.shape
    for b in range(batch):
        for h in range(height):
            for w in range(width):
                cross = [(i, w) for i in range(height) if i != h] + [(h, j) for j in range(width)]
                keys = torch.stack([k[b, :, i, j] for i, j in cross])
                values = torch.stack([v[b, :, i, j] for i, j in cross])
                weights = torch.softmax(keys @ q[b, :, h, w], dim=0)
                out[b, :, h, w] = weights @ values
    return module.gamma * out + x


@pytest.mark.parametrize("recurrence", [1, 2])
@pytest.mark.parametrize("size", [(5, 7), (1, 6), (6, 1), (1, 1)])
def test_cca_matches_brute_force(size, recurrence):
    torch.manual_seed(0)
    module = CrissCrossAttention(8, recurrence=recurrence)
    with torch.no_grad():
        module.gamma.fill_(0.7)
    x = torch.randn(2, 8, *size)
    reference = module.double()
    expected = x.double()
    with torch.no_grad():
        for _ in range(recurrence):
            expected = _brute_force_pass(reference, expected)
        module.float()
        got = module(x)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)


def test_cca_identity_at_init_and_shared_weights():
    module = CrissCrossAttention(16, recurrence=3)
    assert module.gamma.item() == 0.0
    x = torch.randn(2, 16, 6, 9)
    assert torch.equal(module(x), x)
    assert module.query.out_channels == 2 and module.value.out_channels == 16
    assert CrissCrossAttention(4).query.out_channels == 1  # C // 8 rounded up to one channel
    assert _n_params(module) == _cca_params(16)  # recurrence reuses the same weights


def test_cca_gradients_reach_all_parameters():
    torch.manual_seed(0)
    module = CrissCrossAttention(8)
    x = torch.randn(2, 8, 5, 6, requires_grad=True)
    module(x).square().sum().backward()
    assert module.gamma.grad.abs().item() > 0  # at gamma = 0 only gamma and x receive gradients
    module.zero_grad()
    with torch.no_grad():
        module.gamma.fill_(0.5)
    module(x).square().sum().backward()
    for name in ("query", "key", "value"):
        assert getattr(module, name).weight.grad.abs().sum().item() > 0, name
    assert module.gamma.grad.abs().item() > 0


@pytest.mark.parametrize("cpu_path", [True, False])
def test_cca_function_gradcheck_across_chunks(monkeypatch, cpu_path):
    """The hand-written backward of the chunked autograd function, in float64, with several chunks per block, on
    the CPU-tuned layout code and on the generic (GPU) one."""
    monkeypatch.setattr(attention_module, "_CPU_CHUNK_ELEMENTS", 20)
    monkeypatch.setattr(attention_module, "_CHUNK_ELEMENTS", 20)
    monkeypatch.setattr(attention_module, "_tuned_for_cpu", lambda device: cpu_path)
    torch.manual_seed(0)
    q = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(attention_module._CrissCrossFunction.apply, (q, k, v))
    weights = criss_cross_softmax(q, k).double()  # plain formulation, float32 softmax
    expected = torch.einsum("bciw,bhwi->bchw", v, weights[..., :4])
    expected = expected + torch.einsum("bchj,bhwj->bchw", v, weights[..., 4:])
    torch.testing.assert_close(attention_module._CrissCrossFunction.apply(q, k, v), expected, atol=1e-5, rtol=1e-5)


def test_cca_eager_equals_script_and_plain_autograd():
    torch.manual_seed(0)
    module = CrissCrossAttention(16)
    with torch.no_grad():
        module.gamma.fill_(0.3)
    scripted = _script(module)
    x = torch.randn(2, 16, 7, 9, requires_grad=True)
    eager_out = module(x)
    (eager_grad,) = torch.autograd.grad(eager_out.square().sum(), x)
    script_out = scripted(x)
    (script_grad,) = torch.autograd.grad(script_out.square().sum(), x)
    torch.testing.assert_close(eager_out, script_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eager_grad, script_grad, atol=1e-4, rtol=1e-4)


def test_criss_cross_softmax_support():
    q, k = torch.randn(1, 2, 4, 5), torch.randn(1, 2, 4, 5)
    weights = criss_cross_softmax(q, k)
    assert weights.shape == (1, 4, 5, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 4, 5))
    assert torch.all((weights > 0).sum(-1) == 4 + 5 - 1)
    assert torch.all(weights[0, 2, :, 2] == 0)  # a pixel never attends to itself in its column


def test_cca_autocast_bfloat16_on_cpu():
    torch.manual_seed(0)
    module = CrissCrossAttention(16)
    with torch.no_grad():
        module.gamma.fill_(0.5)
    x = torch.randn(1, 16, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = module(x)
        y.float().sum().backward()
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert torch.isfinite(module.query.weight.grad).all()
    with torch.no_grad():
        torch.testing.assert_close(y.float(), module(x), atol=0.1, rtol=0.05)


# ------------------------------------------------------------------------------------------------------ generators


@pytest.mark.parametrize("baseline", [False, True])
@pytest.mark.parametrize("local_enhancer", [True, False])
def test_small_preset_shapes(baseline, local_enhancer):
    torch.manual_seed(0)
    net = DAFFGenerator.from_preset("small", 6, 3, baseline=baseline, local_enhancer=local_enhancer)
    assert net.size_divisor == 2 ** (3 + local_enhancer)
    with torch.no_grad():
        y = net(torch.randn(2, 6, 32, 48))
    assert y.shape == (2, 3, 32, 48)
    assert y.abs().max() <= 1.0


def test_paper_preset_params_and_forward():
    torch.manual_seed(0)
    net = DAFFGenerator.from_preset("paper", 6, 3)
    baseline_params = _n_params(net) - _cca_params(1024) - _cca_params(64)
    assert 182e6 < baseline_params < 183e6  # pix2pixHD local enhancer (global ngf 64, 4 downsamplings, 9 blocks)
    assert net.size_divisor == 32
    with torch.no_grad():
        y = net(torch.randn(1, 6, 64, 64))
    assert y.shape == (1, 3, 64, 64)


def test_baseline_switch_removes_attention_and_skip():
    daff = DAFFGenerator(5, 3, **TINY)
    base = DAFFGenerator(5, 3, attention=False, long_skip=False, **TINY)
    cca = [m for m in daff.modules() if isinstance(m, CrissCrossAttention)]
    assert [m.in_channels for m in cca] == [8 * 2**2, 8]  # global bottleneck, local 2 * ngf_local
    assert not any(isinstance(m, CrissCrossAttention) for m in base.modules())
    assert daff.global_net.long_skip and daff.local_net.long_skip
    assert not base.global_net.long_skip and not base.local_net.long_skip
    # the long skips are parameter-free additions (channel counts match)
    assert _n_params(daff) - _n_params(base) == _cca_params(32) + _cca_params(8)


def test_attention_is_identity_at_init_and_long_skip_changes_output():
    torch.manual_seed(0)
    base = DAFFGenerator(5, 3, attention=False, long_skip=False, **TINY)
    attention_only = DAFFGenerator(5, 3, attention=True, long_skip=False, **TINY)
    skip_only = DAFFGenerator(5, 3, attention=False, long_skip=True, **TINY)
    attention_only.load_state_dict(base.state_dict(), strict=False)
    skip_only.load_state_dict(base.state_dict())
    x = torch.randn(1, 5, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(attention_only(x), base(x))
        assert not torch.allclose(skip_only(x), base(x))


def test_non_multiple_sizes_are_padded_and_cropped():
    torch.manual_seed(0)
    net = DAFFGenerator(5, 2, output_activation=None, **TINY).eval()
    x = torch.randn(1, 5, 19, 30)  # divisor 8: padded to 24 x 32, 5 and 2 pixels split as 2 + 3 and 1 + 1
    with torch.no_grad():
        y = net(x)
        padded = F.pad(x, [1, 1, 2, 3], mode="reflect")
        expected = net(padded)[:, :, 2:21, 1:31]
    assert y.shape == (1, 2, 19, 30)
    torch.testing.assert_close(y, expected)


def test_invalid_inputs_raise_before_work():
    net = DAFFGenerator(5, 3, **TINY)
    with pytest.raises(ValueError, match=r"too small.*> 8"):
        net(torch.randn(1, 5, 8, 64))
    with pytest.raises(ValueError, match=r"expects a \(B, 5, H, W\) input, got shape \[1, 4, 32, 32\]"):
        net(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match="expects a"):
        net(torch.randn(5, 32, 32))
    with pytest.raises(ValueError, match="ngf must be 2 \\* ngf_local"):
        DAFFGenerator(5, 3, ngf=64, ngf_local=16)
    with pytest.raises(ValueError, match="unknown generator preset"):
        DAFFGenerator.from_preset("huge", 5, 3)
    with pytest.raises(ValueError, match="output_activation"):
        DAFFGenerator(5, 3, output_activation="sigmoid", **TINY)


@pytest.mark.parametrize("local_enhancer", [True, False])
def test_generator_torchscript_matches_eager(local_enhancer):
    torch.manual_seed(0)
    net = DAFFGenerator(5, 3, **{**TINY, "local_enhancer": local_enhancer})
    for module in net.modules():
        if isinstance(module, CrissCrossAttention):
            with torch.no_grad():
                module.gamma.fill_(0.5)
    scripted = _script(net)
    x = torch.randn(2, 5, 21, 16)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(Exception, match="too small"):
        scripted(torch.randn(1, 5, 4, 4))


def test_load_global_from_global_only_generator():
    torch.manual_seed(0)
    global_only = DAFFGenerator(5, 3, **{**TINY, "local_enhancer": False})
    local = DAFFGenerator(5, 3, **TINY)
    result = local.load_global_from(global_only.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    source = global_only.global_net.state_dict()
    for name, tensor in local.global_net.state_dict().items():
        assert torch.equal(tensor, source[name]), name
    assert "head.1.weight" in source  # the global generator's output head is not part of the local one
    # a bare GlobalGenerator state dict and a DistributedDataParallel one work too; a different width does not
    local.load_global_from(global_only.global_net.state_dict())
    local.load_global_from({f"module.{k}": v for k, v in global_only.state_dict().items()})
    with pytest.raises(RuntimeError, match="size mismatch"):
        local.load_global_from(DAFFGenerator(5, 3, **{**TINY, "ngf": 16, "local_enhancer": False}).state_dict())


def test_parameter_groups_partition_parameters():
    net = DAFFGenerator(5, 3, **TINY)
    global_ids = {id(p) for p in net.global_parameters()}
    local_ids = {id(p) for p in net.local_parameters()}
    assert global_ids and local_ids and not global_ids & local_ids
    assert global_ids | local_ids == {id(p) for p in net.parameters()}
    assert all(name.startswith(("global_net.", "local_net.")) for name, _ in net.named_parameters())
    global_only = DAFFGenerator(5, 3, **{**TINY, "local_enhancer": False})
    assert list(global_only.local_parameters()) == []
    assert len(list(global_only.global_parameters())) == len(list(global_only.parameters()))


def test_generator_is_deterministic_and_initialised():
    torch.manual_seed(3)
    first = DAFFGenerator(5, 3, norm="batch", **TINY)
    torch.manual_seed(3)
    second = DAFFGenerator(5, 3, norm="batch", **TINY)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.randn(2, 5, 16, 16)
    first.eval()
    with torch.no_grad():
        assert torch.equal(first(x), first(x))
    stem = first.global_net.stem[1].weight
    assert abs(stem.std().item() - 0.02) < 0.005  # pix2pixHD init N(0, 0.02)


def test_generator_presets_and_config():
    assert set(GENERATOR_PRESETS) >= {"paper", "small"}
    net = DAFFGenerator.from_preset("small", 6, 5, baseline=True, output_activation=None, n_blocks=1)
    assert net.config["attention"] is False and net.config["long_skip"] is False
    assert net.config["n_blocks"] == 1 and net.config["output_activation"] is None
    assert DAFFGenerator(**net.config).config == net.config


# --------------------------------------------------------------------------------------------------- discriminator


def _conv_size(size: int, stride: int) -> int:
    return (size + 2 * 2 - 4) // stride + 1


@pytest.mark.parametrize("n_layers,num_d", [(3, 2), (2, 3)])
def test_discriminator_structure_and_shapes(n_layers, num_d):
    net = MultiScaleDiscriminator(7, ndf=8, n_layers=n_layers, num_d=num_d)
    x = torch.randn(2, 7, 40, 36)
    outputs = net(x)
    assert len(outputs) == num_d
    height, width = 40, 36
    for scale, features in enumerate(outputs):
        assert len(features) == n_layers + 2
        h, w = height, width
        for j, feature in enumerate(features):
            stride = 2 if j < n_layers else 1
            h, w = _conv_size(h, stride), _conv_size(w, stride)
            channels = 1 if j == n_layers + 1 else min(8 * 2**j, 512)
            assert feature.shape == (2, channels, h, w), (scale, j)
        height, width = (height + 1) // 2, (width + 1) // 2


def test_discriminator_matches_pix2pixhd_details():
    net = MultiScaleDiscriminator(8, ndf=8, n_layers=3, num_d=2)
    assert net(torch.randn(1, 8, 256, 256))[0][-1].shape[-2:] == (35, 35)  # pix2pixHD's 35x35 patch map
    first = net.scales[0].layers
    assert isinstance(first[0][1], torch.nn.Identity) and isinstance(first[1][1], torch.nn.InstanceNorm2d)
    assert all(layer[0].bias is not None for layer in first)
    capped = NLayerDiscriminator(3, ndf=64, n_layers=5)
    assert [layer[0].out_channels for layer in capped.layers] == [64, 128, 256, 512, 512, 512, 1]
    # scale 1 is scale-1's own PatchGAN on the average-pooled input
    x = torch.randn(1, 8, 32, 32)
    pooled = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
    torch.testing.assert_close(net(x)[1][-1], net.scales[1](pooled)[-1])


def test_monai_patch_discriminator_differs():
    """Why MONAI's PatchDiscriminator is not reused: same kernel and padding, different logits map."""
    from monai.networks.nets import PatchDiscriminator

    monai_net = PatchDiscriminator(
        spatial_dims=2, channels=8, in_channels=3, num_layers_d=3, padding=2, norm="INSTANCE"
    )
    ours = NLayerDiscriminator(3, ndf=8, n_layers=3)
    x = torch.randn(1, 3, 64, 64)
    assert monai_net(x)[-1].shape[-1] != ours(x)[-1].shape[-1]


def test_discriminator_presets_errors_and_script():
    assert DISCRIMINATOR_PRESETS["paper"] == dict(ndf=64, n_layers=3, num_d=2)
    net = MultiScaleDiscriminator.from_preset("small", 9, num_d=3)
    assert len(net.scales) == 3 and net.config["ndf"] == DISCRIMINATOR_PRESETS["small"]["ndf"]
    with pytest.raises(ValueError, match=r"expects a \(B, 9, H, W\)"):
        net(torch.randn(1, 8, 32, 32))
    with pytest.raises(ValueError, match="unknown discriminator preset"):
        MultiScaleDiscriminator.from_preset("tiny", 9)
    small = MultiScaleDiscriminator(4, ndf=4, n_layers=2)
    x = torch.randn(1, 4, 24, 24)
    for a, b in zip(_script(small)(x), small(x)):
        for fa, fb in zip(a, b):
            torch.testing.assert_close(fa, fb)


def test_copyable():
    net = DAFFGenerator(5, 3, **TINY)
    clone = copy.deepcopy(net)
    assert clone.config == net.config
