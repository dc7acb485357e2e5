"""Learning-rate schedules of the package's training recipes, and resuming them.

- :class:`LinearDecayLR`: pix2pixHD's factor (constant, then linear to zero) for ``LambdaLR``, the generators'.
- :class:`TwoStageStepLR` and :func:`hovernet_lr_scheduler`: the HoVer-Net bundle's (the model zoo's two-stage step
  schedule, or one cycle for short CPU runs).
- :func:`restore_lr_schedule`: resume a schedule's position without bringing back another run's length.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["LinearDecayLR", "TwoStageStepLR", "hovernet_lr_scheduler", "restore_lr_schedule"]


class LinearDecayLR:
    """pix2pixHD's learning-rate factor for ``torch.optim.lr_scheduler.LambdaLR`` stepped once per epoch:
    1 for ``num_constant`` epochs, then linearly down to 0 over ``num_decay`` epochs."""

    def __init__(self, num_constant: int, num_decay: int):
        self.num_constant, self.num_decay = num_constant, num_decay

    def __call__(self, epoch: int) -> float:
        if epoch < self.num_constant or self.num_decay <= 0:
            return 1.0
        return max(0.0, 1.0 - (epoch - self.num_constant + 1) / (self.num_decay + 1))


class TwoStageStepLR:
    """Learning-rate factor (for ``LambdaLR``, stepped per epoch) of two stages that each restart a ``StepLR``.

    The model zoo trains stage 0 (encoder frozen) and stage 1 (unfrozen) as two runs, each with ``StepLR(step_size,
    gamma)`` from the base rate; in one run the factor is ``gamma ** ((epoch - start) // step_size)``, ``start``
    being 0 in the first ``frozen_epochs`` epochs and ``frozen_epochs`` after.
    """

    def __init__(self, frozen_epochs: int, step_size: int = 25, gamma: float = 0.1):
        if frozen_epochs < 0 or step_size < 1:
            raise ValueError(f"need frozen_epochs >= 0 and step_size >= 1, got {frozen_epochs=}, {step_size=}.")
        self.frozen_epochs, self.step_size, self.gamma = int(frozen_epochs), int(step_size), float(gamma)

    def __call__(self, epoch: int) -> float:
        start = self.frozen_epochs if epoch >= self.frozen_epochs else 0
        return self.gamma ** ((epoch - start) // self.step_size)


def hovernet_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    epochs: int,
    iterations_per_epoch: int,
    frozen_epochs: int = 0,
    lr_step: int = 25,
    warmup_fraction: float = 0.15,
) -> torch.optim.lr_scheduler.LRScheduler:
    """The HoVer-Net bundle's learning-rate schedule, by name.

    Args:
        optimizer: its learning rate is the peak (``onecycle``) or the start of each stage (``step``).
        schedule: ``step``: :class:`TwoStageStepLR` (stepped per epoch, the model zoo's); ``onecycle``: torch's
            ``OneCycleLR`` over ``epochs * iterations_per_epoch`` iterations (stepped per iteration), warm-up over
            ``warmup_fraction`` of them, cosine decay after.
        epochs, iterations_per_epoch: the run's length.
        frozen_epochs, lr_step: of :class:`TwoStageStepLR`.
        warmup_fraction: of ``onecycle``.

    Raises:
        ValueError: an unknown schedule, or a run without iterations.
    """
    if schedule == "step":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, TwoStageStepLR(frozen_epochs, lr_step))
    if schedule == "onecycle":
        total = int(epochs) * int(iterations_per_epoch)
        if total < 1:
            raise ValueError(f"onecycle needs at least one iteration, got {epochs=} x {iterations_per_epoch=}.")
        peaks = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peaks, total_steps=total, pct_start=warmup_fraction
        )
    raise ValueError(f"unknown lr_schedule {schedule!r}; choose step or onecycle.")


def restore_lr_schedule(scheduler: torch.optim.lr_scheduler.LRScheduler, saved: Mapping) -> None:
    """Restore ``scheduler``'s position from ``saved`` but keep its own schedule, and set the optimiser's learning
    rate to what that schedule gives there.

    ``LambdaLR`` saves the attributes of its factor objects (a :class:`LinearDecayLR`'s epoch counts) and loading
    puts them back, so a run resumed with more epochs would follow the old, shorter schedule (its extra epochs at
    learning rate 0). Here the extended run has, from the resumed epoch on, the rates a fresh run of that length has.
    """
    saved = dict(saved)
    if "lr_lambdas" in saved:
        saved["lr_lambdas"] = [None] * len(saved["lr_lambdas"])
    scheduler.load_state_dict(saved)
    if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        rates = [base * factor(scheduler.last_epoch) for base, factor in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
        for group, rate in zip(scheduler.optimizer.param_groups, rates):
            group["lr"] = rate
        scheduler._last_lr = rates
