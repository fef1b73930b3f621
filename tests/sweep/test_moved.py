"""The UCI engine moved from dropkit.sweep to dropkit.bench.uci: old names warn and still work."""

from __future__ import annotations

import pytest

import dropkit.sweep
from dropkit.bench.uci import batched, data, mc, protocol, reference, streams

MOVED = {
    "BatchedMLP": batched,
    "ModelStream": streams,
    "train_one": reference,
    "mc_regression": mc,
    "UCIData": data,
    "load_uci": data,
    "ProtocolSettings": protocol,
    "run_uci": protocol,
}


@pytest.mark.parametrize("name", sorted(MOVED))
def test_old_name_warns_with_the_new_path(name: str) -> None:
    new = MOVED[name].__name__
    with pytest.warns(
        DeprecationWarning,
        match=rf"^dropkit\.sweep\.{name} is deprecated: import {name} from {new}\. "
        r"The UCI benchmark engine is part of dropkit\.bench\.$",
    ):
        value = getattr(dropkit.sweep, name)
    assert value is getattr(MOVED[name], name)


def test_sweep_exports_the_study_only() -> None:
    assert dropkit.sweep.__all__ == [
        "DigitsTask",
        "OBJECTIVES",
        "Predictions",
        "SearchSpace",
        "UCITask",
        "load_task",
        "open_storage",
        "run_study",
        "site_rate",
    ]
    assert not set(MOVED) & set(dir(dropkit.sweep))
