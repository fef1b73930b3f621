"""Reference-counted claims on ``(object, attribute)`` values, shared by all open blocks.

:func:`dropkit.mc_mode`, the probe forward of :func:`dropkit.find_dropout` and
``mc_predict`` change training flags and rates of a model that other threads may
be using. Each change is a claim by a holder token: the value is the one asked
for by the most recently opened holder still open, and the original comes back
when the last holder releases, in any order and from any thread.

No paper here: plumbing for :mod:`dropkit.sites.modes`.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn


class _Claim:
    """The holders of one ``(object, attribute)`` and its value before the first one."""

    __slots__ = ("ref", "attr", "original", "holders")

    def __init__(self, ref: weakref.ref[Any], attr: str, original: Any) -> None:
        self.ref = ref
        self.attr = attr
        self.original = original
        # holder token -> the value it asked for, in opening order
        self.holders: dict[int, Any] = {}


# (id(object), attribute) -> its claim, while at least one open block holds it. An entry
# keeps only a weak reference: a model dropped with a block left open does not leak.
CLAIMS: dict[tuple[int, str], _Claim] = {}
# Re-entrant: a weakref callback may run (garbage collection) while the lock is held.
LOCK = threading.RLock()


def _forget(key: tuple[int, str], claim: _Claim) -> Callable[[Any], None]:
    def callback(_ref: Any) -> None:
        with LOCK:
            if CLAIMS.get(key) is claim:
                del CLAIMS[key]

    return callback


def take(token: int, obj: Any, attr: str, value: Any) -> tuple[int, str]:
    """Set ``obj.attr = value`` on behalf of ``token``; the caller holds ``LOCK``."""
    key = (id(obj), attr)
    claim = CLAIMS.get(key)
    fresh = claim is None or claim.ref() is not obj
    original = getattr(obj, attr) if fresh else claim.original  # type: ignore[union-attr]
    setattr(obj, attr, value)  # may raise: nothing is registered yet
    if fresh:
        claim = _Claim(None, attr, original)  # type: ignore[arg-type]
        claim.ref = weakref.ref(obj, _forget(key, claim))
        CLAIMS[key] = claim
    claim.holders[token] = value  # type: ignore[union-attr]
    return key


def release(token: int, keys: list[tuple[int, str]]) -> None:
    """Drop ``token``'s claims: each value returns to the latest open holder's, or the original."""
    with LOCK:
        for key in reversed(keys):
            claim = CLAIMS.get(key)
            if claim is None or claim.holders.pop(token, _MISSING) is _MISSING:
                continue
            obj = claim.ref()
            if obj is None:
                del CLAIMS[key]
                continue
            if claim.holders:
                setattr(obj, claim.attr, next(reversed(claim.holders.values())))
            else:
                del CLAIMS[key]
                setattr(obj, claim.attr, claim.original)


@contextmanager
def held(values: Iterable[tuple[Any, str, Any]]) -> Iterator[None]:
    """Hold ``obj.attr = value`` for each triple while the block runs, as one claim holder.

    The values share :func:`mc_mode`'s reference counts, so blocks of both kinds
    restore one another correctly in any order and from any thread.
    """
    token = next_token()
    keys: list[tuple[int, str]] = []
    try:
        with LOCK:
            for obj, attr, value in values:
                keys.append(take(token, obj, attr, value))
        yield
    finally:
        release(token, keys)


def original(obj: Any, attr: str) -> Any:
    """``obj.attr`` as it was before any open block changed it (None if absent)."""
    claim = CLAIMS.get((id(obj), attr))
    if claim is not None and claim.ref() is obj:
        return claim.original
    return getattr(obj, attr, None)


def switched_on(module: nn.Module) -> bool:
    """Whether an open :func:`mc_mode` block holds ``module``'s flag on."""
    claim = CLAIMS.get((id(module), "training"))
    return bool(claim is not None and claim.ref() is module and claim.holders and module.training)


_MISSING = object()
_TOKENS = itertools.count()


def next_token() -> int:
    """A fresh holder token (one per open block)."""
    return next(_TOKENS)
