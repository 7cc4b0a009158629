"""Callbacks of a training phase: epoch seeds, checkpoints, history, throughput, NaN guard."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from restransfer.training import checkpoint
from restransfer.training.best_epoch import better, should_stop
from restransfer.training.seeds import reseed


class EpochSeeds(keras.callbacks.Callback):
    """At each epoch's start, set what decides the epoch's randomness from ``(seed, epoch)``.

    The data order (``counters``: each an `restransfer.data.memory_store.epoch_counter`,
    assigned the epoch's number) and the seed generators of ``owners`` (the augmentation) and
    of the model being fitted (dropout; `restransfer.training.seeds.reseed`). Epoch ``k`` then
    draws the same in any process: a run resumed after epoch ``k - 1`` repeats the
    uninterrupted run's epoch ``k``.

    Args:
        seed: the run's seed.
        counters: epoch counters of the training data (variables with ``assign``).
        owners: other objects whose seed generators an epoch draws from (`reseed`).
    """

    def __init__(self, seed: int, counters: Sequence[Any] = (), owners: Sequence[object] = ()):
        super().__init__()
        self.seed = seed
        self.counters = [c for c in counters if c is not None]
        self.owners = [o for o in owners if o is not None]

    def on_epoch_begin(self, epoch, logs=None):
        # Keras creates the epoch's data iterator after this hook, so the pass takes this order.
        for counter in self.counters:
            counter.assign(epoch)
        reseed([*self.owners, self.model], self.seed, epoch)


class EpochRecorder(keras.callbacks.Callback):
    """After each complete epoch: append a history row, save ``last`` (and ``best``) atomically.

    A NaN or infinite training loss stops training at once; the epoch is not saved, so the
    last good checkpoint stays the one to resume from.

    Args:
        folder: the run's ``checkpoints/`` folder.
        history: rows of earlier epochs (resumed runs), extended in place.
        state: fields stored with every checkpoint (phase index and name).
        num_train: training images per epoch, for images/s.
        on_epoch: called with the history after each saved epoch (writes history.csv).
        monitor: the ``val_`` metric that picks the best checkpoint (`best_epoch.better`).
        saved: the model whose weights the checkpoints hold, when ``fit`` trains another model
            over its layers (a feature-cache suffix); the optimizer is the trained model's.
        early_stopping: ``(patience, min_delta)`` of the phase, or None; the phase stops when
            its rows (``state["phase"]``) went ``patience`` epochs without improving the monitor.
        end_epoch: the phase's last epoch in the whole run; a phase that stops early saves its
            last checkpoint as that epoch's, so a resumed run goes on with the next phase.
    """

    # The per-batch NaN check only reads the loss and sets flags that on_epoch_end reads after
    # Keras has flushed every batch hook: it may run on Keras' callback thread, so that on
    # thread-safe backends (JAX) the host queues the next step instead of waiting for each one.
    async_safe = True

    def __init__(self, folder: Path, history: list[dict], state: dict, num_train: int,
                 on_epoch: Callable[[list[dict]], None] | None = None, monitor: str = "val_accuracy",
                 best: dict | None = None, saved: keras.Model | None = None,
                 early_stopping: tuple[int, float] | None = None, end_epoch: int | None = None):
        super().__init__()
        self.saved = saved
        self.early_stopping = early_stopping
        self.end_epoch = end_epoch
        self.stopped_at: int | None = None
        self.folder = Path(folder)
        self.history = history
        self.state = state
        self.num_train = num_train
        self.on_epoch = on_epoch
        self.monitor = monitor
        self.best = best or {}
        self.bad_loss: dict | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._train_seconds = None
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches = batch + 1
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.bad_loss = {"epoch": self._epoch_number(), "batch": batch + 1, "loss": float(loss)}
            self.model.stop_training = True

    def on_test_begin(self, logs=None):
        if self._train_seconds is None and hasattr(self, "_start"):
            self._train_seconds = time.perf_counter() - self._start

    def _epoch_number(self) -> int:
        return len(self.history) + 1

    def on_epoch_end(self, epoch, logs=None):
        if self.bad_loss is not None:
            return
        logs = {k: float(np.asarray(v)) for k, v in (logs or {}).items()}
        seconds = time.perf_counter() - self._start
        train_seconds = self._train_seconds or seconds
        row = {
            "epoch": epoch + 1,
            "phase": self.state["phase"],
            "phase_name": self.state["phase_name"],
            "learning_rate": _current_rate(self.model.optimizer),
            **logs,
            "seconds": round(seconds, 3),
            "images_per_s": round(self.num_train / train_seconds, 1) if train_seconds else 0.0,
        }
        self.history.append(row)
        value = logs.get(self.monitor)
        if better(value, self.best.get(self.monitor), self.monitor):
            self.best = {"epoch": epoch + 1, "phase": self.state["phase"], "monitor": self.monitor,
                         **{k: v for k, v in logs.items() if k.startswith("val_")}}
            checkpoint.save_best(self.saved or self.model, self.folder)
        saved_epoch = epoch + 1
        if self.early_stopping is not None and self.end_epoch is not None and epoch + 1 < self.end_epoch:
            patience, min_delta = self.early_stopping
            rows = [r for r in self.history if r["phase"] == self.state["phase"]]
            if should_stop(rows, self.monitor, patience, min_delta):
                self.stopped_at = epoch + 1
                saved_epoch = self.end_epoch  # the phase is done: a resume goes on with the next one
                self.model.stop_training = True
        checkpoint.save_checkpoint(self.saved or self.model, self.folder, {
            **self.state, "epoch": saved_epoch, "history": self.history, "best": self.best,
            **({"stopped_early": {"phase": self.state["phase"], "epoch": self.stopped_at}} if self.stopped_at else {}),
        }, optimizer=self.model.optimizer)
        if self.on_epoch is not None:
            self.on_epoch(self.history)


def epoch_tensorboard(log_dir: str | Path) -> keras.callbacks.TensorBoard:
    """Keras' TensorBoard callback writing once per epoch, without holding up the training steps.

    Its batch hook does nothing at ``update_freq="epoch"`` with profiling off, so it is marked
    safe for Keras' asynchronous batch callbacks (otherwise its mere presence makes every step wait
    for the device on JAX).
    """
    board = keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False, update_freq="epoch",
                                        profile_batch=0)
    board.async_safe = True
    return board


def _current_rate(optimizer) -> float:
    rate = optimizer.learning_rate
    return float(np.asarray(keras.ops.convert_to_numpy(rate)))


class EpochLine(keras.callbacks.Callback):
    """One line per epoch, for logs that are not a terminal (Keras' ``verbose=2`` prints two).

    ``epoch 3/6 'finetune': loss 0.4030 accuracy 0.8800 | val_loss 3.0161 val_accuracy 0.5200 | 4.1 s``

    Args:
        total_epochs: epochs of the whole run, for ``epoch N/total``.
        phase_name: the phase, shown in quotes.
        write: where the line goes (``print`` by default).
    """

    def __init__(self, total_epochs: int, phase_name: str, write: Callable[[str], None] = print):
        super().__init__()
        self.total_epochs = total_epochs
        self.phase_name = phase_name
        self.write = write

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        values = {k: float(np.asarray(v)) for k, v in (logs or {}).items() if k != "learning_rate"}
        train = " ".join(f"{k} {v:.4f}" for k, v in values.items() if not k.startswith("val_"))
        val = " ".join(f"{k} {v:.4f}" for k, v in values.items() if k.startswith("val_"))
        seconds = time.perf_counter() - getattr(self, "_start", time.perf_counter())
        self.write(f"epoch {epoch + 1}/{self.total_epochs} '{self.phase_name}': {train}"
                   + (f" | {val}" if val else "") + f" | {seconds:.1f} s")
