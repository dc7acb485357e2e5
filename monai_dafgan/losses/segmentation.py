"""Per-pixel class losses for generators whose output is a class map (the points-to-mask generator)."""

from __future__ import annotations

import torch
from torch import nn


class ProbabilityCrossEntropyLoss(nn.Module):
    """Cross-entropy between predicted class probabilities and one-hot (or soft) targets, both (B, C, H, W).

    For generators whose logits are turned into probabilities before the discriminator sees them (the trainer's
    ``g_output_transform``), so the loss takes probabilities, not logits. Probabilities are clamped at ``eps``.
    """

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, probabilities: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if probabilities.shape != target.shape:
            raise ValueError(f"probabilities {tuple(probabilities.shape)} and target {tuple(target.shape)} differ in shape.")
        return -(target * torch.log(probabilities.float().clamp_min(self.eps))).sum(dim=1).mean()
