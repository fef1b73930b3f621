"""Run the UCI MC-dropout protocol on many splits at once, resumably.

The 2018 grid-search protocol of Gal & Ghahramani's ``DropoutUncertaintyExps``
(see :mod:`dropkit.bench.uci.data`): for every split, fit the ``p x tau`` grid on the
first 80% of the training rows, score the validation log-likelihood with ``T``
MC passes, keep the first best, refit it on the whole training split and score
the test split. All grid models of all pending splits train as one
:class:`~dropkit.bench.uci.batched.BatchedMLP`, then all refits as another.

Resuming: finished splits are ``split_K.json`` files; grid choices are kept in
``grid.json``; a phase in progress is checkpointed to ``state-PHASE.pt`` (weights,
Adam moments, random streams) every ``checkpoint_seconds``. Every file is
written atomically, and each carries the settings it was produced with, so a
run never mixes results of different settings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dropkit._io import read_json, read_torch, write_json, write_torch
from dropkit.bench.uci.batched import BatchedMLP
from dropkit.bench.uci.data import UCIData, fit_validation, regularization, standardize
from dropkit.bench.uci.mc import mc_regression

_WHERE = "run_uci"


@dataclass(frozen=True)
class ProtocolSettings:
    """What a UCI run trains and scores with.

    Attributes:
        epochs: Training epochs; ``None`` means the protocol's ``100 x n_epochs``
            times ``epochs_scale``.
        epochs_scale: Multiplier on the protocol's epochs when ``epochs`` is None.
        samples: MC passes ``T`` for validation and test scores.
        seed: Run seed; model ``(split, config)`` gets stream ``(seed, split, config, phase)``.
        batch_size: Mini-batch rows.
        dtype: ``"float32"`` or ``"float64"``.
        backend: Batched trainer backend (``"auto"``, ``"numba"``, ``"torch"``).
        checkpoint_seconds: Minimum seconds between training-state checkpoints.
    """

    epochs: int | None = None
    epochs_scale: float = 1.0
    samples: int = 10_000
    seed: int = 0
    batch_size: int = 128
    dtype: str = "float32"
    backend: str = "auto"
    checkpoint_seconds: float = 120.0

    def epochs_for(self, data: UCIData) -> int:
        """Epochs this run trains ``data`` for."""
        if self.epochs is not None:
            return self.epochs
        return max(1, int(round(data.n_epochs * 100 * self.epochs_scale)))

    def fingerprint(self, data: UCIData) -> dict[str, Any]:
        """The settings that decide the numbers (not speed knobs)."""
        return {
            "dataset": data.name,
            "epochs": self.epochs_for(data),
            "samples": self.samples,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "n_hidden": data.n_hidden,
            "grid": [list(g) for g in data.grid],
        }


def _check_file(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
    record = read_json(path)
    if record.get("settings") != fingerprint:
        raise ValueError(
            f"{_WHERE}: expected {path.name} to come from the settings {fingerprint!r}, but got "
            f"{record.get('settings')!r}. Use another --out folder, or delete {path.parent}."
        )
    return record


def _phase(
    name: str,
    folder: Path,
    fingerprint: dict[str, Any],
    net: BatchedMLP,
    epochs: int,
    settings: ProtocolSettings,
    log: Callable[[str], None],
    label: str,
) -> float:
    """Train ``net`` to ``epochs`` epochs, resuming from and checkpointing to a state file.

    Returns:
        Training seconds spent by earlier, interrupted runs of this phase.
    """
    state_path = folder / f"state-{name}.pt"
    meta = {"settings": fingerprint, "label": label, "models": net.m}
    previous = 0.0
    if state_path.exists():
        state = read_torch(state_path)
        if state.get("meta") == meta:
            net.load_state_dict(state["net"])
            previous = float(state.get("seconds", 0.0))
            log(f"{label}: resumed at epoch {net.epoch}/{epochs}")
    start = last_save = last_log = time.monotonic()
    first = net.epoch

    def tick(trained: BatchedMLP) -> bool:
        nonlocal last_save, last_log
        now = time.monotonic()
        # the last epoch is saved too: an interrupted MC evaluation keeps the training
        if now - last_save >= settings.checkpoint_seconds or trained.epoch == epochs:
            seconds = previous + now - start
            write_torch(state_path, {"meta": meta, "net": trained.state_dict(), "seconds": seconds})
            last_save = now
        if now - last_log >= 30.0 or trained.epoch == epochs:
            rate = (trained.epoch - first) / max(now - start, 1e-9)
            eta = (epochs - trained.epoch) / rate if rate > 0 else float("nan")
            log(f"{label}: epoch {trained.epoch}/{epochs} ({now - start:.0f} s, eta {eta:.0f} s)")
            last_log = now
        return False

    net.train(max(epochs - net.epoch, 0), callback=tick)
    return previous


def _tensors(data: UCIData, fit: np.ndarray, dtype: torch.dtype) -> dict[str, Any]:
    mx, sx = standardize(data.x[fit])
    my, sy = standardize(data.y[fit][:, None])
    return {
        "mx": mx,
        "sx": sx,
        "my": float(my[0]),
        "sy": float(sy[0]),
        "x": torch.from_numpy((data.x[fit] - mx) / sx).to(dtype),
        "y": torch.from_numpy((data.y[fit] - my[0]) / sy[0]).to(dtype),
    }


def _eval_x(data: UCIData, rows: np.ndarray, t: dict[str, Any], dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy((data.x[rows] - t["mx"]) / t["sx"]).to(dtype)


def run_uci(
    data: UCIData,
    splits: list[int],
    out_dir: str | Path,
    settings: ProtocolSettings | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> list[dict[str, Any]]:
    """Run (or resume) the protocol on ``splits`` of ``data``; return one record per split.

    Args:
        data: The dataset.
        splits: Split numbers to run.
        out_dir: Results folder; ``out_dir / data.name`` holds this dataset's files.
        settings: Epochs, samples, seed and the rest; defaults to the full protocol.
        log: Called with one progress line at a time.

    Returns:
        Per split: chosen ``p`` and ``tau``, validation log-likelihoods of the
        grid, test ``rmse`` and ``ll`` (target units) and the seconds spent.

    Raises:
        ValueError: On split numbers out of range, or if ``out_dir`` holds
            results made with other settings.
    """
    settings = settings or ProtocolSettings()
    bad = [k for k in splits if not 0 <= k < data.n_splits]
    if bad or not splits:
        raise ValueError(
            f"{_WHERE}: expected split numbers in [0, {data.n_splits}), but got {bad or splits!r}. "
            f"{data.name} has {data.n_splits} splits."
        )
    dtype = {"float32": torch.float32, "float64": torch.float64}[settings.dtype]
    folder = Path(out_dir) / data.name
    folder.mkdir(parents=True, exist_ok=True)
    fp = settings.fingerprint(data)
    epochs = settings.epochs_for(data)
    done = {
        k: _check_file(folder / f"split_{k}.json", fp)
        for k in splits
        if (folder / f"split_{k}.json").exists()
    }
    pending = [k for k in splits if k not in done]
    if not pending:
        return [done[k] for k in splits]
    grid_path = folder / "grid.json"
    grid = _check_file(grid_path, fp)["splits"] if grid_path.exists() else {}
    todo = [k for k in pending if str(k) not in grid]
    configs = data.grid
    if todo:
        t0 = time.monotonic()
        fits = {k: fit_validation(data.train[k]) for k in todo}
        ts = {k: _tensors(data, fits[k][0], dtype) for k in todo}
        models = [(k, c) for k in todo for c in range(len(configs))]
        net = BatchedMLP(
            [ts[k]["x"] for k, _ in models],
            [ts[k]["y"] for k, _ in models],
            p=[configs[c][0] for _, c in models],
            reg=[_reg(configs[c], len(fits[k][0])) for k, c in models],
            seeds=[(settings.seed, k, c, 0) for k, c in models],
            n_hidden=data.n_hidden,
            batch_size=settings.batch_size,
            dtype=dtype,
            backend=settings.backend,
        )
        label = f"[{data.name}] grid, splits {_span(todo)} ({net.m} models)"
        earlier = _phase("grid", folder, fp, net, epochs, settings, log, label)
        log(f"{label}: validation with {settings.samples} MC samples")
        scores = mc_regression(
            net,
            [_eval_x(data, fits[k][1], ts[k], dtype) for k, _ in models],
            [data.y[fits[k][1]] for k, _ in models],
            y_mean=[ts[k]["my"] for k, _ in models],
            y_std=[ts[k]["sy"] for k, _ in models],
            tau=[configs[c][1] for _, c in models],
            samples=settings.samples,
        )
        share = (time.monotonic() - t0 + earlier) / len(todo)
        for k in todo:
            lls = [float(scores.ll[i]) for i, (kk, _) in enumerate(models) if kk == k]
            choice = int(np.argmax(lls))  # first maximum wins
            grid[str(k)] = {"val_ll": lls, "best": choice, "seconds": share}
        write_json(grid_path, {"settings": fp, "splits": grid})
        (folder / "state-grid.pt").unlink(missing_ok=True)
    t0 = time.monotonic()
    ts = {k: _tensors(data, data.train[k], dtype) for k in pending}
    best = {k: grid[str(k)]["best"] for k in pending}
    net = BatchedMLP(
        [ts[k]["x"] for k in pending],
        [ts[k]["y"] for k in pending],
        p=[configs[best[k]][0] for k in pending],
        reg=[_reg(configs[best[k]], data.train[k].size) for k in pending],
        seeds=[(settings.seed, k, best[k], 1) for k in pending],
        n_hidden=data.n_hidden,
        batch_size=settings.batch_size,
        dtype=dtype,
        backend=settings.backend,
    )
    label = f"[{data.name}] refit, splits {_span(pending)} ({net.m} models)"
    earlier = _phase("refit", folder, fp, net, epochs, settings, log, label)
    log(f"{label}: test with {settings.samples} MC samples")
    scores = mc_regression(
        net,
        [_eval_x(data, data.test[k], ts[k], dtype) for k in pending],
        [data.y[data.test[k]] for k in pending],
        y_mean=[ts[k]["my"] for k in pending],
        y_std=[ts[k]["sy"] for k in pending],
        tau=[configs[best[k]][1] for k in pending],
        samples=settings.samples,
    )
    share = (time.monotonic() - t0 + earlier) / len(pending)
    for i, k in enumerate(pending):
        p, tau = configs[best[k]]
        done[k] = {
            "settings": fp,
            "split": k,
            "p": p,
            "tau": tau,
            "val_ll": grid[str(k)]["val_ll"],
            "rmse": float(scores.rmse[i]),
            "ll": float(scores.ll[i]),
            "seconds": grid[str(k)]["seconds"] + share,
        }
        write_json(folder / f"split_{k}.json", done[k])
    (folder / "state-refit.pt").unlink(missing_ok=True)
    return [done[k] for k in splits]


def _reg(config: tuple[float, float], n: int) -> float:
    return regularization(config[0], config[1], n)


def _span(splits: list[int]) -> str:
    if splits == list(range(splits[0], splits[-1] + 1)):
        return f"{splits[0]}-{splits[-1]}" if len(splits) > 1 else str(splits[0])
    return ",".join(map(str, splits))


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean +- standard error of RMSE and LL over split records, and total seconds."""
    from dropkit.bench.uci.data import mean_se

    rmse = mean_se([r["rmse"] for r in records])
    ll = mean_se([r["ll"] for r in records])
    return {
        "rmse": {"mean": rmse[0], "se": rmse[1]},
        "ll": {"mean": ll[0], "se": ll[1]},
        "splits": len(records),
        "seconds": float(math.fsum(r["seconds"] for r in records)),
    }
