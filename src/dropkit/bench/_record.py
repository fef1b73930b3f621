"""What every benchmark records about the machine, and how it writes its JSON.

A timing means little without the machine it came from: every ``dropkit
bench NAME`` prints :func:`machine_line` first and stores :func:`machine`
under ``"machine"`` in its ``--out`` JSON (the CPU model from
``/proc/cpuinfo``, the core count, torch's version and thread count). The
JSON is written atomically (temporary file in the same folder, then a
rename), so an interrupted run never leaves half a file behind.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch

from dropkit._io import atomic_write_text

T = TypeVar("T")


def cpu_model(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> str:
    """The CPU's model name (the first ``model name`` line of ``/proc/cpuinfo``).

    Falls back to :func:`platform.processor` (or ``"unknown"``) where that
    file does not exist or names no model (macOS, Windows, some ARM boards).

    Args:
        cpuinfo: The file to read.

    Returns:
        The model name, e.g. ``"AMD EPYC 7B13"``.

    Example:
        >>> isinstance(cpu_model(), str) and cpu_model() != ""
        True
    """
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if (
            sep
            and key.strip().lower() in ("model name", "cpu model", "processor")
            and (value.strip() and not value.strip().isdigit())
        ):
            return " ".join(value.split())
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict[str, Any]:
    """The machine a benchmark ran on, JSON-ready.

    Returns:
        ``cpu`` (model name), ``cores`` (logical CPUs this process may use),
        ``torch`` (version), ``threads`` (``torch.get_num_threads()`` now),
        ``python`` and ``platform``.

    Example:
        >>> sorted(machine())
        ['cores', 'cpu', 'platform', 'python', 'threads', 'torch']
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return {
        "cpu": cpu_model(),
        "cores": cores,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def machine_line(info: dict[str, Any] | None = None) -> str:
    """One printable line naming the machine (the header of every benchmark).

    Args:
        info: A :func:`machine` record (measured now when None).

    Returns:
        E.g. ``"machine: AMD EPYC 7B13, 2 cores, torch 2.5.1, 2 threads"``.
    """
    m = machine() if info is None else info
    return f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} threads"


def write_record(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write a benchmark's results as JSON, atomically, with the machine recorded.

    ``payload`` gets a ``"machine"`` entry (:func:`machine`, measured at
    write time so it shows the thread count the benchmark ran with) unless it
    has one; missing parent folders are created.

    Args:
        path: Destination file.
        payload: The benchmark's JSON-ready results.

    Returns:
        The written path.

    Raises:
        ValueError: If ``path`` is an existing folder.
    """
    target = Path(path)
    if target.is_dir():
        raise ValueError(
            f"dropkit bench: expected --out to be a file, but got the folder {str(target)!r}. "
            "Pass a file name such as out/bench.json."
        )
    record = {**payload, "machine": payload.get("machine") or machine()}
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(target, json.dumps(record, indent=2) + "\n")


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """Iterate ``items`` with a tqdm bar on stderr when stderr is a terminal.

    In pipes, logs and CI nothing is drawn and ``items`` is yielded as is.

    Args:
        items: What to iterate.
        desc: The bar's label.
        total: Length when ``items`` has none.

    Yields:
        The items of ``items``.
    """
    if not sys.stderr.isatty():
        yield from items
        return
    try:
        from tqdm import tqdm
    except ImportError:
        yield from items
        return
    yield from tqdm(items, desc=desc, total=total, leave=False)
