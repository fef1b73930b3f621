"""The output folder of a scoring run: blocks, manifest, resume.

``SCORES.parquet`` is a folder (a Parquet dataset, readable whole by
``pyarrow.parquet.read_table`` or ``pandas.read_parquet``):

* ``part-BBBBBB.parquet``: the scores of block ``B`` (positions
  ``[B * block_rows, (B + 1) * block_rows)`` of the pool), written to a
  temporary file and renamed into place, so a part either exists complete or
  not at all;
* ``_manifest.json``: what decides the numbers (model fingerprint, pool,
  samples, seed, sites, output, block size). A re-run with the same manifest
  skips the parts that exist; a different one is refused, naming what differs;
* ``_ranked-ACQUIRE.parquet``: with an acquisition, the top ``K`` rows
  (``rank``, ``row_id``, ``score``).

Names starting with ``_`` or ``.`` are skipped by Parquet dataset readers, so
the folder reads as the score table alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dropkit._io import atomic_write_bytes

MANIFEST = "_manifest.json"
_PART = re.compile(r"^part-(\d{6})\.parquet$")
FORMAT = 1


def part_name(block: int) -> str:
    """File name of block ``block``."""
    return f"part-{block:06d}.parquet"


def model_fingerprint(model: Any) -> str:
    """SHA-256 of a module's class, dropout rates and state (names, shapes, dtypes, bytes)."""
    import torch

    from dropkit.sites import find_dropout

    digest = hashlib.sha256(type(model).__qualname__.encode())
    for site in find_dropout(model):  # rates live outside the state dict
        digest.update(f"{site.path}:{site.kind}:{site.attr}:{site.p!r}".encode())
    for name, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            continue
        t = value.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_table(path: Path, table: Any) -> Path:
    """Write a ``pyarrow.Table`` as Parquet atomically (temporary file, rename)."""
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def write_part(folder: Path, block: int, table: Any) -> Path:
    """Write one block's table atomically as ``part-BBBBBB.parquet``."""
    return write_table(folder / part_name(block), table)


def finished_blocks(folder: Path) -> set[int]:
    """Blocks whose part file exists (complete, thanks to the atomic rename)."""
    if not folder.is_dir():
        return set()
    return {int(m.group(1)) for p in folder.iterdir() if (m := _PART.match(p.name))}


def _describe(key: str, ours: Any, theirs: Any) -> str:
    if key == "model":
        return "model (another model, other weights or other dropout rates)"
    if key == "pool":
        return f"pool ({_short(theirs)} != {_short(ours)})"
    return f"{key} ({theirs!r} != {ours!r})"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def prepare(folder: Path, manifest: dict[str, Any], caller: str) -> set[int]:
    """Create or reuse the output folder; return the blocks already finished.

    Raises:
        ValueError: If ``folder`` is a file, or holds another run's blocks (its
            manifest differs: the message names the fields), or holds part
            files without a manifest.
    """
    if folder.exists() and not folder.is_dir():
        raise ValueError(
            f"{caller}: expected the output to be a folder (a Parquet dataset), but got the "
            f"existing file {str(folder)!r}. Pass a new name, e.g. --out scores.parquet."
        )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST
    done = finished_blocks(folder)
    if path.exists():
        try:
            theirs = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"{caller}: expected a readable {MANIFEST} in {str(folder)!r}, but got "
                f"{exc!r}. Delete the folder or pass another --out."
            ) from None
        diff = [
            _describe(k, manifest.get(k), theirs.get(k))
            for k in sorted(set(manifest) | set(theirs))
            if manifest.get(k) != theirs.get(k)
        ]
        if diff:
            raise ValueError(
                f"{caller}: expected {str(folder)!r} to hold blocks of this run, but got another "
                f"run's blocks: {'; '.join(diff)} (theirs != ours). Pass another --out, or "
                "delete the folder to start over."
            )
        return done
    if done:
        raise ValueError(
            f"{caller}: expected {str(folder)!r} to be empty or to hold a dropkit score run, but "
            f"got {len(done)} part files and no {MANIFEST}. Pass another --out."
        )
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
    return done


def read_parts(folder: Path, blocks: range, columns: list[str] | None = None) -> Iterator[Any]:
    """Yield each block's table, in block order."""
    import pyarrow.parquet as pq

    for b in blocks:
        yield pq.read_table(folder / part_name(b), columns=columns)
