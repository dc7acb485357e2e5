"""Ignite/MONAI handlers for :class:`~monai_dafgan.engines.ConditionalGanTrainer`.

- :class:`GanCheckpoint`: atomic checkpoints of everything a run needs to resume exactly (both networks,
  optimisers, the AMP scaler, LR schedulers, RNG states, epoch and iteration), resumed automatically.
- :class:`LossGuard`: stops training with a clear error on a NaN/infinite or exploding loss, before the broken
  state can be checkpointed, so the last good checkpoint stays.
- :class:`FreezeParameters`: keeps a parameter group fixed for the first N epochs (pix2pixHD's
  ``niter_fix_global``: the global generator inside a local enhancer).
- :class:`LinearDecayLR`: pix2pixHD's learning-rate factor, constant then linear to zero, for ``LambdaLR``.
- :class:`GanImageGrid`: condition | real | generated grids to TensorBoard and PNG files.
- :class:`LossProgressBar`: a progress bar showing the losses.

:class:`LossGuard` and :class:`LossProgressBar` also serve MONAI's ``SupervisedTrainer`` (``keys=["loss"]``), whose
decollated output is a list of per-sample dicts that each hold the batch loss.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from ..data.io import atomic_write
from .trainer import GanOutputKeys

logger = logging.getLogger(__name__)


def _first_output(output):
    """A trainer's output dict; a decollated output (list of per-sample dicts) gives its first item."""
    if isinstance(output, (list, tuple)):
        return output[0] if output else {}
    return output if isinstance(output, dict) else {}


class TrainingDivergedError(RuntimeError):
    """A loss became NaN/infinite or exploded; training was stopped."""


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: a reader never sees half a file."""
    atomic_write(path, lambda f: torch.save(obj, f))


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel``/``DataParallel`` wrapper (checkpoints hold plain keys)."""
    return network.module if isinstance(network, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)) else network


class GanCheckpoint:
    """Save and resume a :class:`~monai_dafgan.engines.ConditionalGanTrainer` run.

    Every ``save_interval`` epochs and at the end, writes ``<save_dir>/checkpoint.pt`` (atomically) with the
    generator, discriminator, both optimisers, the GradScaler, the given LR schedulers, the RNG states of
    python/numpy/torch, and the epoch and iteration; at the end also writes the generator's ``state_dict`` alone
    to ``generator_path`` (a bundle's ``models/model.pt``). On start, when ``resume`` and the checkpoint exist,
    everything is restored and training continues after the saved epoch. In a distributed run only rank 0
    writes, and every rank resumes.

    Args:
        save_dir: folder of ``checkpoint.pt``.
        save_interval: epochs between checkpoints.
        resume: resume from an existing checkpoint.
        lr_schedulers: schedulers to save and restore with the rest.
        generator_path: where the final generator weights go (optional).
        keep_every: also keep ``checkpoint_epoch<N>.pt`` every this many epochs (0: never).
    """

    FILENAME = "checkpoint.pt"

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_interval: int = 1,
        resume: bool = True,
        lr_schedulers: Sequence | None = None,
        generator_path: str | os.PathLike | None = None,
        keep_every: int = 0,
    ):
        self.save_dir, self.save_interval, self.resume = Path(save_dir), save_interval, resume
        self.lr_schedulers = list(lr_schedulers or [])
        self.generator_path = None if generator_path is None else Path(generator_path)
        self.keep_every = keep_every

    @property
    def path(self) -> Path:
        return self.save_dir / self.FILENAME

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.save)
        engine.add_event_handler(Events.COMPLETED, self.save_final)

    def state_dict(self, engine) -> dict:
        return {
            "epoch": engine.state.epoch,
            "iteration": engine.state.iteration,
            "g_network": unwrap(engine.g_network).state_dict(),
            "d_network": unwrap(engine.d_network).state_dict(),
            "g_optimizer": engine.g_optimizer.state_dict(),
            "d_optimizer": engine.d_optimizer.state_dict(),
            "scaler": engine.scaler.state_dict(),
            "lr_schedulers": [s.state_dict() for s in self.lr_schedulers],
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }

    @staticmethod
    def _is_writer() -> bool:
        """Only rank 0 of a distributed run writes; every rank resumes."""
        return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or torch.distributed.get_rank() == 0

    def save(self, engine) -> None:
        if not self._is_writer():
            return
        state = self.state_dict(engine)
        atomic_torch_save(state, self.path)
        if self.keep_every and engine.state.epoch % self.keep_every == 0:
            atomic_torch_save(state, self.save_dir / f"checkpoint_epoch{engine.state.epoch}.pt")
        logger.info(f"saved checkpoint of epoch {engine.state.epoch} to {self.path}")

    def save_final(self, engine) -> None:
        if engine.state.epoch % self.save_interval:
            self.save(engine)
        if self.generator_path is not None and self._is_writer():
            atomic_torch_save(unwrap(engine.g_network).state_dict(), self.generator_path)
            logger.info(f"saved generator weights to {self.generator_path}")

    def load(self, engine) -> None:
        if not (self.resume and self.path.is_file()):
            return
        state = torch.load(self.path, map_location=engine.state.device, weights_only=False)
        unwrap(engine.g_network).load_state_dict(state["g_network"])
        unwrap(engine.d_network).load_state_dict(state["d_network"])
        engine.g_optimizer.load_state_dict(state["g_optimizer"])
        engine.d_optimizer.load_state_dict(state["d_optimizer"])
        engine.scaler.load_state_dict(state["scaler"])
        if len(state["lr_schedulers"]) != len(self.lr_schedulers):
            raise ValueError(f"{self.path} holds {len(state['lr_schedulers'])} LR schedulers, this run has {len(self.lr_schedulers)}.")
        for scheduler, saved in zip(self.lr_schedulers, state["lr_schedulers"]):
            scheduler.load_state_dict(saved)
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"].cpu())
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        engine.state.epoch, engine.state.iteration = state["epoch"], state["iteration"]
        logger.info(f"resumed from {self.path} at epoch {state['epoch']}, iteration {state['iteration']}")


def latest_checkpoint(folder: str | os.PathLike, prefix: str = "checkpoint_epoch=") -> str | None:
    """Path of the newest ``<prefix><N>.pt`` in ``folder`` (MONAI ``CheckpointSaver``'s epoch files), or None.

    For resuming a MONAI trainer: ``CheckpointLoader(load_path=latest_checkpoint(dir), ...)``."""
    found = []
    for path in Path(folder).glob(f"{prefix}*.pt"):
        number = path.stem[len(prefix):]
        if number.isdigit():
            found.append((int(number), path))
    return str(max(found)[1]) if found else None


class LossGuard:
    """Raise :class:`TrainingDivergedError` when a loss in ``engine.state.output`` is NaN/infinite or above
    ``max_value``. Raised inside the iteration, before any checkpoint of the broken state is written."""

    def __init__(self, keys: Sequence[str] = (GanOutputKeys.G_LOSS, GanOutputKeys.D_LOSS), max_value: float = 1e4):
        self.keys, self.max_value = tuple(keys), max_value

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        output = _first_output(engine.state.output)
        for key in self.keys:
            value = output.get(key)
            if value is None:
                continue
            value = float(value)
            if not math.isfinite(value) or abs(value) > self.max_value:
                raise TrainingDivergedError(
                    f"{key} = {value} at epoch {engine.state.epoch}, iteration {engine.state.iteration}: training "
                    f"stopped. The last good checkpoint (if any) is unchanged; lower the learning rate or check the "
                    f"data, then resume."
                )


class FreezeParameters:
    """Keep ``parameters`` fixed (``requires_grad=False``) until ``num_epochs`` epochs have completed.

    Optimisers skip parameters without gradients, so the optimiser may hold all parameters from the start; when
    the group is released its Adam moments start fresh, as in pix2pixHD's ``update_fixed_params``.

    Args:
        parameters: a module or an iterable of parameters, or a callable returning either (e.g.
            ``generator.global_parameters``).
        num_epochs: epochs to keep them fixed (0 does nothing).
    """

    def __init__(self, parameters: torch.nn.Module | Iterable | Callable, num_epochs: int):
        self.parameters, self.num_epochs = parameters, num_epochs

    def _params(self) -> list[torch.nn.Parameter]:
        params = self.parameters() if callable(self.parameters) and not isinstance(self.parameters, torch.nn.Module) else self.parameters
        return list(params.parameters() if isinstance(params, torch.nn.Module) else params)

    def attach(self, engine: Engine) -> None:
        if self.num_epochs > 0:
            # decided as each epoch starts, so a resumed run (its epoch restored at start-up) gets it right too
            engine.add_event_handler(Events.EPOCH_STARTED, self._update)

    def _update(self, engine: Engine) -> None:
        frozen = engine.state.epoch <= self.num_epochs  # state.epoch counts from 1 once an epoch has started
        for p in self._params():
            p.requires_grad_(not frozen)


class LinearDecayLR:
    """pix2pixHD's learning-rate factor for ``torch.optim.lr_scheduler.LambdaLR`` stepped once per epoch:
    1 for ``num_constant`` epochs, then linearly down to 0 over ``num_decay`` epochs."""

    def __init__(self, num_constant: int, num_decay: int):
        self.num_constant, self.num_decay = num_constant, num_decay

    def __call__(self, epoch: int) -> float:
        if epoch < self.num_constant or self.num_decay <= 0:
            return 1.0
        return max(0.0, 1.0 - (epoch - self.num_constant + 1) / (self.num_decay + 1))


class GanImageGrid:
    """Every ``interval`` epochs, draw the last ``max_images`` training samples as rows of condition | real |
    generated (kept across iterations, so small batches still fill the grid).

    The grid goes to TensorBoard (``tag``) when ``log_dir`` or ``summary_writer`` is given, and to
    ``<png_dir>/epoch<N>.png`` when ``png_dir`` is given.

    Args:
        condition_to_rgb, target_to_rgb: turn one (C, H, W) tensor into an (H, W, 3) uint8 picture, e.g.
            :func:`monai_dafgan.visualize.render_tensor` with ``kind`` bound.
        max_images: rows drawn.
    """

    def __init__(
        self,
        condition_to_rgb: Callable,
        target_to_rgb: Callable,
        log_dir: str | os.PathLike | None = None,
        png_dir: str | os.PathLike | None = None,
        summary_writer=None,
        interval: int = 1,
        max_images: int = 4,
        tag: str = "condition | real | generated",
    ):
        self.condition_to_rgb, self.target_to_rgb = condition_to_rgb, target_to_rgb
        self.png_dir = None if png_dir is None else Path(png_dir)
        self.interval, self.max_images, self.tag = interval, max_images, tag
        self._writer, self._log_dir = summary_writer, log_dir
        self._recent: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.remember)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def remember(self, engine: Engine) -> None:
        """Keep the newest ``max_images`` (condition, real, generated) triples, on the CPU."""
        output = engine.state.output
        keys = (GanOutputKeys.CONDITION, GanOutputKeys.REAL, GanOutputKeys.FAKE)
        batch = [output[k].detach()[: self.max_images].float().cpu() for k in keys]
        self._recent = (self._recent + list(zip(*batch)))[-self.max_images :]

    def grid(self) -> np.ndarray:
        from ..visualize import image_grid

        rows = [[self.condition_to_rgb(c), self.target_to_rgb(r), self.target_to_rgb(f)] for c, r, f in self._recent]
        return image_grid(rows, titles=["condition", "real", "generated"])

    def __call__(self, engine: Engine) -> None:
        from ..visualize import save_png

        if not self._recent:
            return
        picture = self.grid()
        if self.png_dir is not None:
            save_png(picture, self.png_dir / f"epoch{engine.state.epoch:04d}.png")
        if self._writer is None and self._log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self._log_dir))
        if self._writer is not None:
            self._writer.add_image(self.tag, picture, engine.state.epoch, dataformats="HWC")
            self._writer.flush()


class LossProgressBar:
    """A progress bar over each epoch showing ``keys`` of the output (ignite's ``ProgressBar``) and, after each
    epoch, a log line with the run's elapsed time and an estimate of the time left (from the mean epoch time of
    this run, so a resumed run estimates from its own epochs)."""

    def __init__(self, keys: Sequence[str] = (GanOutputKeys.G_LOSS, GanOutputKeys.D_LOSS), persist: bool = True):
        self.keys, self.persist = tuple(keys), persist
        self._start: tuple[float, int] | None = None

    def attach(self, engine: Engine) -> None:
        from ignite.handlers import ProgressBar

        keys = self.keys

        def shown(output) -> dict:
            output = _first_output(output)
            return {k: output[k] for k in keys if k in output}

        ProgressBar(persist=self.persist).attach(engine, output_transform=shown)
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._log_eta)

    def _started(self, engine: Engine) -> None:
        self._start = (time.monotonic(), engine.state.epoch)

    def _log_eta(self, engine: Engine) -> None:
        if self._start is None:
            return
        elapsed, done = time.monotonic() - self._start[0], engine.state.epoch - self._start[1]
        left = engine.state.max_epochs - engine.state.epoch
        engine.logger.info(
            f"epoch {engine.state.epoch}/{engine.state.max_epochs}: elapsed {format_duration(elapsed)}, "
            f"ETA {format_duration(elapsed / max(done, 1) * left)}"
        )


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (``m:ss`` under an hour) of a duration in seconds."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def loss_terms(output: dict) -> dict[str, float]:
    """The float losses of a trainer output: an ``output_transform`` for MONAI's stats handlers."""
    return {k: v for k, v in output.items() if k in GanOutputKeys.LOSSES}


class SaveGeneratedImages:
    """Write each generated output of an evaluator as ``<output_dir>/<name><suffix>.png``.

    Works on a MONAI evaluator with ``decollate=True``: the names come from ``engine.state.batch`` (key
    ``name_key``), the outputs from ``engine.state.output`` (key ``output_key``), drawn with ``render`` (a
    (C, H, W) tensor -> (H, W, 3) uint8 function such as :func:`monai_dafgan.visualize.render_tensor`).
    """

    def __init__(self, output_dir: str | os.PathLike, render: Callable, output_key: str = "pred", name_key: str = "name", suffix: str = ""):
        self.output_dir, self.render = Path(output_dir), render
        self.output_key, self.name_key, self.suffix = output_key, name_key, suffix

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        from ..visualize import save_png

        for item, output in zip(engine.state.batch, engine.state.output):
            name = item.get(self.name_key) or f"sample_{engine.state.iteration}"
            save_png(self.render(output[self.output_key]), self.output_dir / f"{name}{self.suffix}.png")


def require_file(path: str | os.PathLike, hint: str = "") -> Path:
    """``path`` if it is a file, else ``FileNotFoundError`` with ``hint`` (used to check bundle weights early)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found. {hint}".strip())
    return path
