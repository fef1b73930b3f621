"""Ray adapters: MC-dropout scores as a ``ray.data.Dataset``, and Ray sessions.

Ray (Moritz et al., 2018) is an existing distributed engine; dropkit uses it
for the two jobs that outgrow one machine: scoring a large pool with ``T``
MC-dropout passes per row (:func:`mc_scores` here, and the ``engine="ray"`` of
:func:`dropkit.score_pool`) and running the UCI protocol's (dataset, split)
units as tasks (``dropkit bench uci --engine ray``).

:func:`session` is the one way dropkit starts or joins Ray: without an address
it starts an embedded local Ray on this machine (no dashboard, loopback only,
a few CPUs), with one it joins an existing cluster after checking that the
address answers. A session that dropkit started is shut down when it ends; one
that was already running (``ray.init`` called by the user) is left alone.

Same numbers everywhere: every row is scored by
:func:`dropkit.mc_predict` with ``row_ids=`` its row id, so its masks depend
only on ``(seed, sample, row id)``, never on which worker or block scored it.

References:
    Moritz et al., "Ray: A Distributed Framework for Emerging AI
    Applications", OSDI 2018.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from dropkit._optional import require

_WHERE = "dropkit.integrations.ray"


def _ray(caller: str) -> Any:
    require("pyarrow", "ray", caller)
    return require("ray", "ray", caller)


def check_address(address: str, caller: str, timeout: float = 3.0) -> None:
    """Raise ValueError unless ``host:port`` of a Ray address accepts a connection.

    ``ray.init(address=...)`` retries an unreachable address for minutes; this
    check answers within ``timeout`` seconds. ``"auto"`` and ``ray://`` client
    addresses without a port are left to Ray.

    Args:
        address: ``host:port``, ``ray://host:port`` or ``"auto"``.
        caller: Caller named in the error.
        timeout: Seconds to wait for the TCP connection.

    Raises:
        ValueError: If the address is malformed or nothing answers there.
    """
    if address == "auto":
        return
    bare = address.split("://", 1)[-1]
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(
            f"{caller}: expected a Ray address HOST:PORT (e.g. 127.0.0.1:6379), but got "
            f"{address!r}. Pass the address printed by 'ray start --head'."
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ValueError(
            f"{caller}: expected a reachable Ray cluster at --address, but got {address!r} "
            f"({exc.strerror or exc}). Start one with 'ray start --head --port {port}', "
            "check the address, or drop --address to run a local Ray on this machine."
        ) from None


def _loopback(address: str) -> bool:
    host = address.split("://", 1)[-1].rpartition(":")[0]
    return host in ("127.0.0.1", "localhost", "::1")


@contextlib.contextmanager
def session(
    address: str | None = None, *, workers: int | None = None, caller: str = _WHERE
) -> Iterator[Any]:
    """Start (or join) Ray for the duration of a ``with`` block; yields the module.

    Args:
        address: An existing cluster (``HOST:PORT``, ``"auto"``); None starts
            an embedded local Ray on this machine: ``include_dashboard=False``,
            bound to 127.0.0.1 only, ``num_cpus=workers`` (default 2).
        workers: CPUs of the embedded Ray (ignored when joining a cluster).
        caller: Caller named in errors.

    Yields:
        The ``ray`` module, initialised.

    Raises:
        ImportError: If the ``ray`` extra is not installed.
        ValueError: If ``address`` does not answer.
    """
    if address is None or _loopback(address):
        # Read when ray is imported: keep every address of this machine's Ray on 127.0.0.1
        # (by default Ray swaps 127.0.0.1 for the machine's outward address).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = _ray(caller)
    if ray.is_initialized():
        yield ray
        return
    # Token set-up is for clusters reachable from outside, not for an embedded Ray.
    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": "ERROR",
        "log_to_driver": False,
        "configure_logging": True,
    }
    if address is not None:
        check_address(address, caller)
        ray.init(address=address, **kwargs)
    else:
        ray.init(
            num_cpus=int(workers or 2),
            _node_ip_address="127.0.0.1",
            object_store_memory=200 * 2**20,
            **kwargs,
        )
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_cpus(ray: Any) -> int:
    """CPUs of the connected cluster (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


# -- mc_scores: a ray.data.Dataset of scores ----------------------------------------------


class _Scorer:
    """Ray Data callable class: loads the model once per worker, scores batches."""

    def __init__(self, model_factory: Callable[[], Any], options: dict[str, Any]) -> None:
        from dropkit.score.engine import ScoreSettings

        self.model = model_factory()
        self.settings = ScoreSettings(**options)
        make_tokenizer = self.settings.tokenizer
        self.tokenizer = make_tokenizer() if make_tokenizer is not None else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from dropkit.score.engine import score_rows
        from dropkit.score.pool import batch_from_columns

        ids = np.asarray(batch[self.settings.id_column], dtype=np.int64)
        rows = batch_from_columns(batch, self.settings.columns, _WHERE + ".mc_scores")
        return score_rows(self.model, rows, ids, self.settings, self.tokenizer).columns()


def mc_scores(
    dataset: Any,
    model_factory: Callable[[], Any],
    *,
    samples: int = 20,
    seed: int = 0,
    sites: Any = None,
    output: str = "logits",
    batch_size: int = 256,
    columns: list[str] | None = None,
    id_column: str = "row_id",
    tokenizer: Callable[[], Any] | None = None,
    workers: int = 1,
) -> Any:
    """MC-dropout scores of every row of a ``ray.data.Dataset``, as a Dataset.

    Built on ``dataset.map_batches`` with a callable class, so each of the
    ``workers`` actors builds the model once (``model_factory()``) and then
    scores batch after batch with :func:`dropkit.mc_predict`, ``row_ids`` taken
    from ``id_column``: a row's scores do not depend on the worker, the batch
    or the number of workers (masks exactly, outputs up to float rounding).

    Args:
        dataset: A ``ray.data.Dataset`` with an integer ``id_column`` and either
            one tensor column, numeric columns, or one text column.
        model_factory: Picklable callable returning the ``nn.Module``.
        samples: MC samples ``T`` per row.
        seed: Base seed of the masks.
        sites: Which dropout sites drop (as in :func:`dropkit.mc_mode`).
        output: ``"logits"``, ``"probs"`` or ``"regression"``.
        batch_size: Rows per ``map_batches`` batch (and per forward).
        columns: Input columns (default: every column but ``id_column``).
        id_column: Integer row ids, unique over the dataset.
        tokenizer: Picklable callable returning a tokenizer, for a text column.
        workers: Actors (each loads the model once).

    Returns:
        A lazy ``ray.data.Dataset`` with the columns of
        :func:`dropkit.score_pool`'s output (``row_id``, ``prediction``,
        ``probs``, ``predictive_entropy``, ... or ``mean``, ``epistemic_var``,
        ``aleatoric_var``).

    Raises:
        ImportError: If the ``ray`` extra is not installed.
    """
    _ray(_WHERE + ".mc_scores")
    from dropkit.score.engine import ScoreSettings

    options = {
        "samples": samples,
        "seed": seed,
        "sites": sites,
        "output": output,
        "batch_size": batch_size,
        "columns": columns,
        "id_column": id_column,
        "tokenizer": tokenizer,
    }
    ScoreSettings(**options)  # argument errors now, not inside a worker
    return dataset.map_batches(
        _Scorer,
        fn_constructor_args=(model_factory, options),
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=int(workers),
    )
