"""A torchvision ResNet state dict's keys and shapes, written out for the tests (torchvision is not a dependency)."""

from __future__ import annotations


def torchvision_resnet_shapes(block: str, layers: tuple[int, ...]) -> dict[str, tuple]:
    """Key -> shape of a torchvision ResNet state dict; ``block`` "basic" (ResNet-18/34) or "bottleneck" (ResNet-50)."""
    shapes: dict[str, tuple] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix, channels):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (channels,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    bn("bn1", 64)
    expansion, in_channels = (4 if block == "bottleneck" else 1), 64
    for layer, (units, width) in enumerate(zip(layers, (64, 128, 256, 512)), 1):
        for unit in range(units):
            p, stride = f"layer{layer}.{unit}", (2 if unit == 0 and layer > 1 else 1)
            if expansion == 4:
                convs = [(width, in_channels, 1, 1), (width, width, 3, 3), (4 * width, width, 1, 1)]
            else:
                convs = [(width, in_channels, 3, 3), (width, width, 3, 3)]
            for index, shape in enumerate(convs, 1):
                shapes[f"{p}.conv{index}.weight"] = shape
                bn(f"{p}.bn{index}", shape[0])
            if unit == 0 and (stride != 1 or in_channels != width * expansion):
                shapes[f"{p}.downsample.0.weight"] = (width * expansion, in_channels, 1, 1)
                bn(f"{p}.downsample.1", width * expansion)
            in_channels = width * expansion
    shapes["fc.weight"], shapes["fc.bias"] = (1000, 512 * expansion), (1000,)
    return shapes
