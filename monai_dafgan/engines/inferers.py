"""An inferer that runs the network under autocast on any device, e.g. bf16 training on a CPU.

MONAI's ``SupervisedTrainer``/``SupervisedEvaluator`` autocast only on CUDA (``amp=True``); on a CPU that computes
bfloat16 natively (AVX512-BF16 or AMX) bf16 autocast halves the time of a HoVer-Net step. As the engines' inferer it
needs no other change: the loss, the optimiser and the weights stay float32.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.inferers import SimpleInferer

__all__ = ["AutocastInferer"]


def _to_float32(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, dict):
        return {key: _to_float32(value) for key, value in output.items()}
    if isinstance(output, (list, tuple)):
        return type(output)(_to_float32(value) for value in output)
    return output


class AutocastInferer(SimpleInferer):
    """``network(inputs)`` under ``torch.autocast`` on the inputs' device, outputs back to float32.

    Args:
        dtype: autocast dtype (``torch.bfloat16``; float16 on CUDA).
        enabled: False gives MONAI's ``SimpleInferer`` unchanged (e.g. ``enabled=device.type == "cpu"`` in a config
            whose CUDA runs use the engine's own ``amp``).
    """

    def __init__(self, dtype: torch.dtype = torch.bfloat16, enabled: bool = True) -> None:
        super().__init__()
        self.dtype, self.enabled = dtype, bool(enabled)

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.enabled:
            return super().__call__(inputs, network, *args, **kwargs)
        with torch.autocast(inputs.device.type, dtype=self.dtype):
            output = network(inputs, *args, **kwargs)
        return _to_float32(output)
