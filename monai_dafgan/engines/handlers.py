"""Ignite/MONAI handlers for :class:`~monai_dafgan.engines.ConditionalGanTrainer`.

- :class:`GanCheckpoint`: atomic checkpoints of everything a run needs to resume exactly (both networks,
  optimisers, the AMP scaler, LR schedulers, RNG states, epoch and iteration), resumed automatically, and only into
  the same run (:class:`RunIdentity`); more epochs extend the learning-rate schedule.
- :class:`RunIdentity`: the settings and data that make a run, kept in its checkpoints (also MONAI's
  ``CheckpointSaver``/``CheckpointLoader``); a checkpoint of another run is refused, never silently resumed.
- :class:`ReseedTransforms`: with ``num_workers=0``, reseeds the dataset's random transforms every epoch from
  torch's RNG, as worker processes are, so that resuming is exact with any worker count.
- :class:`LossGuard`: stops training with a clear error on a NaN/infinite or exploding loss, before the broken
  state can be checkpointed, so the last good checkpoint stays.
- :class:`FreezeParameters`: keeps a parameter group fixed for the first N epochs (pix2pixHD's
  ``niter_fix_global``: the global generator inside a local enhancer).
- :class:`GanImageGrid`: condition | real | generated grids to TensorBoard and PNG files.
- :class:`LossProgressBar`: a progress bar showing the losses.

:class:`LossGuard` and :class:`LossProgressBar` also serve MONAI's ``SupervisedTrainer`` (``keys=["loss"]``), whose
decollated output is a list of per-sample dicts that each hold the batch loss.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data.utils import set_rnd

from ..utils import atomic_write, remove_stale_temporaries, unwrap
from .schedules import restore_lr_schedule
from .trainer import GanOutputKeys

logger = logging.getLogger(__name__)


def _first_output(output):
    """A trainer's output dict; a decollated output (list of per-sample dicts) gives its first item."""
    if isinstance(output, (list, tuple)):
        return output[0] if output else {}
    return output if isinstance(output, dict) else {}


class TrainingDivergedError(RuntimeError):
    """A loss became NaN/infinite or exploded; training was stopped."""


class CheckpointError(RuntimeError):
    """A checkpoint cannot be resumed: unreadable, of other networks, past the run's end, or of another run."""


_AFRESH = "start afresh with --resume false (the checkpoint is then overwritten) or in another bundle folder"


def _plain(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples as lists, paths and other objects as text), for comparing."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


class RunIdentity:
    """What makes a training run: the settings and the data that shape its result, but not its length (epochs may
    grow) nor where or how fast it runs (device, workers, logging).

    Checkpoints keep it: pass it as ``GanCheckpoint(run_identity=...)``, or add it to the ``save_dict`` of MONAI's
    ``CheckpointSaver`` and the ``load_dict`` of its ``CheckpointLoader`` (it has ``state_dict`` and
    ``load_state_dict``). Loading a checkpoint written with other values raises :class:`CheckpointError` naming
    each difference, so a rerun with another dataset or preset never continues, or silently keeps, the old run.

    Args:
        identity: JSON-like settings, e.g. ``{"data": samples_fingerprint(tiles), "preset": "small", ...}``.
    """

    def __init__(self, identity: Mapping[str, Any]):
        self.identity = _plain(dict(identity))

    def state_dict(self) -> dict:
        return dict(self.identity)

    def differences(self, saved: Mapping[str, Any]) -> list[str]:
        """``"key: saved -> this run's"`` for every setting that differs (missing ones included)."""
        saved = _plain(dict(saved))
        return [
            f"{key}: {saved.get(key, '(not recorded)')!r} -> {self.identity.get(key, '(not set)')!r}"
            for key in sorted(set(saved) | set(self.identity))
            if saved.get(key) != self.identity.get(key)
        ]

    def check(self, saved: Mapping[str, Any], source: str = "the checkpoint") -> None:
        """Raise :class:`CheckpointError` when ``saved`` (another run's identity) differs from this one."""
        differences = self.differences(saved)
        if differences:
            raise CheckpointError(
                f"{source} was written by another run ({'; '.join(differences)}). Rerun with the settings it was "
                f"made with to continue it, or {_AFRESH}."
            )

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        self.check(saved)

    def __repr__(self) -> str:
        return f"RunIdentity({self.identity})"


class ReseedTransforms:
    """At every epoch start, reseed the random transforms of an in-process (``num_workers=0``) data loader from
    torch's RNG.

    Worker processes get fresh seeds from torch's RNG each epoch, and checkpoints restore that RNG, so resuming is
    exact with workers. Without workers MONAI's ``DataLoader`` seeds the transforms once, when it is made, so a
    resumed run would replay the first epoch's augmentations. Loaders with workers are left alone.
    """

    def attach(self, engine: Engine) -> None:
        if not engine.has_event_handler(self, Events.EPOCH_STARTED):
            engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        loader = engine.data_loader
        if isinstance(loader, torch.utils.data.DataLoader) and loader.num_workers == 0:
            set_rnd(loader.dataset, int(torch.empty((), dtype=torch.int64).random_().item()))


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: a reader never sees half a file."""
    atomic_write(path, lambda f: torch.save(obj, f))


class GanCheckpoint:
    """Save and resume a :class:`~monai_dafgan.engines.ConditionalGanTrainer` run.

    Every ``save_interval`` epochs and at the end, writes ``<save_dir>/checkpoint.pt`` (atomically) with the
    generator, discriminator, both optimisers, the GradScaler, the given LR schedulers, the RNG states of
    python/numpy/torch, the epoch and iteration and the run's identity; at the end also writes the generator's
    ``state_dict`` alone to ``generator_path`` (a bundle's ``models/model.pt``). In a distributed run only rank 0
    writes, and every rank resumes.

    On start, when ``resume`` and the checkpoint exist, the run continues it only if it is the same run: another
    ``run_identity`` (settings, data), a checkpoint past the run's ``max_epochs``, one of other networks or an
    unreadable file raise :class:`CheckpointError` saying what is wrong and how to start afresh. A run with more
    epochs than the checkpoint's continues with the learning rates a fresh run of that length has from there on
    (:func:`restore_lr_schedule`); a run already at its last epoch ends at once and says so. Temporary files left by
    a write that was killed are removed.

    Args:
        save_dir: folder of ``checkpoint.pt``.
        save_interval: epochs between checkpoints.
        resume: resume from an existing checkpoint (false: start afresh and overwrite it).
        lr_schedulers: schedulers to save and restore with the rest.
        generator_path: where the final generator weights go (optional).
        keep_every: also keep ``checkpoint_epoch<N>.pt`` every this many epochs (0: never).
        run_identity: what makes this run (:class:`RunIdentity` or its mapping); a checkpoint written with another
            is refused. None: not checked (a checkpoint without one, from an older version, is resumed with a
            warning).
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
        run_identity: RunIdentity | Mapping[str, Any] | None = None,
    ):
        self.save_dir, self.save_interval, self.resume = Path(save_dir), save_interval, resume
        self.lr_schedulers = list(lr_schedulers or [])
        self.generator_path = None if generator_path is None else Path(generator_path)
        self.keep_every = keep_every
        if run_identity is not None and not isinstance(run_identity, RunIdentity):
            run_identity = RunIdentity(run_identity)
        self.run_identity = run_identity

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
            "run": None if self.run_identity is None else self.run_identity.state_dict(),
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

    def _remove_stale_temporaries(self) -> None:
        if self._is_writer():
            for path in (self.path, self.generator_path):
                if path is not None:
                    remove_stale_temporaries(path)
            for tmp in self.save_dir.glob(".checkpoint_epoch*.pt.*.tmp"):  # also of epochs whose file never landed
                tmp.unlink(missing_ok=True)

    def _read(self, device) -> dict:
        try:
            state = torch.load(self.path, map_location=device, weights_only=False)
        except Exception as error:  # torch names neither the file nor the way out
            raise CheckpointError(
                f"{self.path} cannot be read ({type(error).__name__}: {str(error).splitlines()[0]}): it is truncated "
                f"or not a checkpoint. Delete it, or {_AFRESH}."
            ) from error
        missing = {"epoch", "iteration", "g_network", "d_network"} - set(state if isinstance(state, dict) else ())
        if missing:
            raise CheckpointError(
                f"{self.path} is not a GAN training checkpoint (it lacks {sorted(missing)}); {_AFRESH}."
            )
        return state

    def load(self, engine) -> None:
        self._remove_stale_temporaries()
        if not self.path.is_file():
            return
        if not self.resume:
            logger.info(f"resume is off: starting afresh, {self.path} will be overwritten")
            return
        state = self._read(engine.state.device)
        if self.run_identity is not None:
            if state.get("run") is None:
                logger.warning(f"{self.path} does not record the run that wrote it (an older version); resuming it")
            else:
                self.run_identity.check(state["run"], str(self.path))
        if state["epoch"] > engine.state.max_epochs:
            raise CheckpointError(
                f"{self.path} is at epoch {state['epoch']}, past this run's {engine.state.max_epochs} epochs: pass "
                f"--epochs {state['epoch']} or more to continue it, or {_AFRESH}."
            )
        try:
            unwrap(engine.g_network).load_state_dict(state["g_network"])
            unwrap(engine.d_network).load_state_dict(state["d_network"])
            engine.g_optimizer.load_state_dict(state["g_optimizer"])
            engine.d_optimizer.load_state_dict(state["d_optimizer"])
        except (RuntimeError, KeyError, ValueError) as error:
            raise CheckpointError(
                f"{self.path} holds networks of another shape than this run's (another preset, baseline, num_types or "
                f"global_only?): {str(error).splitlines()[0]} ... Rerun with its settings to continue it, or {_AFRESH}."
            ) from error
        engine.scaler.load_state_dict(state["scaler"])
        if len(state["lr_schedulers"]) != len(self.lr_schedulers):
            raise CheckpointError(
                f"{self.path} holds {len(state['lr_schedulers'])} LR schedulers, this run has "
                f"{len(self.lr_schedulers)}."
            )
        for scheduler, saved in zip(self.lr_schedulers, state["lr_schedulers"]):
            restore_lr_schedule(scheduler, saved)
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"].cpu())
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        engine.state.epoch, engine.state.iteration = state["epoch"], state["iteration"]
        if state["epoch"] == engine.state.max_epochs:
            logger.info(
                f"{self.path} is a finished run of {state['epoch']} epochs: nothing to train (pass more --epochs to "
                f"continue it, or {_AFRESH})"
            )
        else:
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
