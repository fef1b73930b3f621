"""Schedules: values against naive formulas, composition, validation of steps and rates."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import dropkit
import dropkit.functional as DF
from dropkit import schedules as S


def test_reexported_as_dropkit_schedules() -> None:
    assert dropkit.schedules.cosine is S.cosine
    assert dropkit.schedules.linear_depth is dropkit.training.linear_depth
    assert S.cosine.__module__ == "dropkit.schedules.time"
    assert S.linear_depth.__module__ == "dropkit.schedules.depth"


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("dropkit.training.schedules", "cosine", "dropkit.schedules.time"),
        ("dropkit.training.schedules", "check_step", "dropkit.schedules.time"),
        ("dropkit.training.depth", "linear_depth", "dropkit.schedules.depth"),
    ],
)
def test_old_module_paths_warn_and_resolve(old: str, name: str, new: str) -> None:
    module = importlib.import_module(old)
    with pytest.warns(
        DeprecationWarning, match=rf"{old}\.{name} is deprecated: import {name} from {new}\."
    ):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        module.nope  # noqa: B018


def test_drop_path_rates_is_linear_depth_at_block_fractions() -> None:
    # One formula: the functional's rates are the depth profile read at the blocks.
    for depth in (1, 2, 5, 12):
        fractions = S.depth.block_fractions(depth)
        assert DF.drop_path_rates(0.3, depth) == [S.linear_depth(0.3)(d) for d in fractions]
    assert S.depth.block_fractions(3) == [0.0, 0.5, 1.0]
    assert S.time.lerp(0.1, 0.7, 0.0) == 0.1 and S.time.lerp(0.1, 0.7, 1.0) == 0.7


@given(step=st.integers(0, 3000))
def test_linear_and_cosine_match_naive_formulas(step: int) -> None:
    t = min(step / 1000, 1.0)
    assert S.linear(0.5, 0.1, 1000)(step) == pytest.approx(0.5 + (0.1 - 0.5) * t, abs=1e-12)
    naive = 0.0 + 0.5 * (0.5 * (1 + math.cos(math.pi * t)))
    assert S.cosine(0.5, 0.0, 1000)(step) == pytest.approx(naive, abs=1e-12)
    assert S.warmup(0.2, 1000)(step) == pytest.approx(0.2 * t, abs=1e-12)
    assert S.curriculum(0.4, 1e-3)(step) == pytest.approx(0.4 * (1 - math.exp(-1e-3 * step)))


def test_endpoints_and_holding() -> None:
    s = S.cosine(0.5, 0.0, steps=10)
    assert s(0) == 0.5 and s(10) == 0.0 and s(10_000) == 0.0
    rising = S.cosine(0.0, 0.3, steps=10)
    assert rising(0) == 0.0 and rising(10) == pytest.approx(0.3)
    assert all(s(i) >= s(i + 1) for i in range(12))


def test_early_late_piecewise() -> None:
    on_early, on_late = S.early(0.1, until=5), S.late(0.2, start=5)
    assert [on_early(i) for i in range(4, 7)] == [0.1, 0.0, 0.0]
    assert [on_late(i) for i in range(4, 7)] == [0.0, 0.2, 0.2]
    pw = S.piecewise([3, 6], [0.0, 0.3, 0.05])  # off, on, nearly off near convergence
    assert [pw(i) for i in range(8)] == [0.0] * 3 + [0.3] * 3 + [0.05] * 2


def test_sequence_restarts_each_part() -> None:
    s = S.sequence([S.warmup(0.3, 10), S.cosine(0.3, 0.0, 90)], boundaries=[10])
    assert s(0) == 0.0 and s(5) == pytest.approx(0.15) and s(10) == pytest.approx(0.3)
    assert s(55) == pytest.approx(S.cosine(0.3, 0.0, 90)(45))
    assert s(100) == 0.0


def test_scale_clip_min_max_and_mul() -> None:
    base = S.linear(0.0, 0.6, steps=10)
    assert S.scale(base, 0.5)(10) == pytest.approx(0.3)
    assert (0.5 * base)(10) == pytest.approx(0.3) and (base * 0.5)(4) == pytest.approx(0.12)
    assert S.clip(base, 0.1, 0.3)(0) == 0.1 and S.clip(base, 0.1, 0.3)(10) == 0.3
    assert S.minimum(base, 0.2)(10) == 0.2 and S.minimum(base, 0.2)(1) == pytest.approx(0.06)
    assert S.maximum(S.cosine(0.5, 0.0, 10), 0.05)(10) == 0.05


def test_any_callable_and_numbers_become_schedules() -> None:
    s = S.as_schedule(lambda step: 0.1 * (step % 2))
    assert s(3) == 0.1 and s(4) == 0.0
    assert S.as_schedule(0.2)(99) == 0.2
    assert S.as_schedule(s) is s


def test_readable_repr() -> None:
    assert repr(S.cosine(0.5, 0.0, steps=100)) == "cosine(0.5 -> 0, steps=100)"
    assert repr(S.early(0.1, until=3)) == "early(0.1, until=3)"
    seq = S.sequence([S.constant(0.1), S.late(0.2, 0)], [5])
    assert repr(seq) == "sequence([constant(0.1), late(0.2, start=0)], boundaries=[5])"
    assert repr(0.5 * S.constant(0.2)) == "0.5 * constant(0.2)"


def test_negative_or_non_int_step_rejected() -> None:
    s = S.cosine(0.5, 0.0, steps=10)
    with pytest.raises(
        ValueError, match=r"cosine\(0.5 -> 0, steps=10\): expected step >= 0, but got -1"
    ):
        s(-1)
    with pytest.raises(TypeError, match="expected step to be an int, but got 1.5"):
        s(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected step to be an int, but got True"):
        s(True)


@pytest.mark.parametrize("bad", [1.5, 1.0, -0.1, float("nan")])
def test_user_callable_returning_bad_p_names_step_and_value(bad: float) -> None:
    s = S.as_schedule(lambda step: bad if step == 3 else 0.1, name="mine")
    assert s(2) == 0.1
    with pytest.raises(
        ValueError, match=rf"mine at step 3: expected p in \[0, 1\), but got {bad!r}"
    ):
        s(3)


def test_callable_returning_non_number_is_type_error() -> None:
    s = S.as_schedule(lambda step: torch.tensor(0.1))
    with pytest.raises(TypeError, match=r"at step 0: expected p to be a float.*p.item\(\)"):
        s(0)


def test_composition_validates_its_result() -> None:
    with pytest.raises(ValueError, match=r"2 \* constant\(0.6\) at step 0: expected p in \[0, 1\)"):
        S.scale(S.constant(0.6), 2.0)(0)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: S.constant(1.0), r"constant: expected p in \[0, 1\), but got 1.0"),
        (lambda: S.linear(0.5, 1.2, 10), r"linear: expected end in \[0, 1\), but got 1.2"),
        (lambda: S.cosine(0.5, 0.0, 0), r"cosine: expected steps >= 1, but got 0"),
        (lambda: S.warmup(0.1, -3), r"warmup: expected steps >= 1, but got -3"),
        (lambda: S.curriculum(0.1, 0.0), r"curriculum: expected gamma > 0, but got 0.0"),
        (lambda: S.early(0.1, until=0), r"early: expected until >= 1, but got 0"),
        (lambda: S.late(0.1, start=-1), r"late: expected start >= 0, but got -1"),
        (
            lambda: S.piecewise([5, 3], [0.1, 0.2, 0.3]),
            r"piecewise: expected 2 strictly increasing",
        ),
        (lambda: S.piecewise([5], [0.1]), r"piecewise: expected 0 strictly increasing"),
        (lambda: S.sequence([], []), r"sequence: expected at least one schedule"),
        (lambda: S.scale(S.constant(0.1), -1), r"scale: expected factor >= 0, but got -1"),
        (lambda: S.clip(0.1, 0.5, 0.2), r"clip: expected low <= high=0.2, but got 0.5"),
        (lambda: S.minimum(), r"minimum: expected at least one schedule"),
    ],
)
def test_bad_construction(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_as_schedule_rejects_non_callable() -> None:
    with pytest.raises(TypeError, match=r"as_schedule: expected a callable step -> p or a float"):
        S.as_schedule("cosine")  # type: ignore[arg-type]


def test_depth_profiles() -> None:
    f = S.linear_depth(0.3, low=0.1)
    with pytest.warns(DeprecationWarning, match=r"^linear_depth: the keyword p_min= is deprecated"):
        assert repr(S.linear_depth(0.3, p_min=0.1)) == repr(f)
    with pytest.warns(DeprecationWarning, match=r"^linear_depth: the keyword p_max= is deprecated"):
        assert repr(S.linear_depth(p_max=0.3)) == repr(S.linear_depth(0.3))
    with pytest.raises(ValueError, match=r"^linear_depth: expected high in \[0, 1\], but got 1.5"):
        S.linear_depth(1.5)
    assert f(0.0) == pytest.approx(0.1) and f(1.0) == pytest.approx(0.3)
    assert S.constant_depth(0.2)(0.5) == 0.2
    custom = S.depth_profile(lambda d: d**2, name="square")
    assert custom(0.5) == 0.25 and repr(custom) == "square"
    with pytest.raises(ValueError, match=r"linear_depth\(0.1 -> 0.3\): expected a depth fraction"):
        f(1.5)
    with pytest.raises(ValueError, match=r"bad at depth 1: expected p in \[0, 1\], but got 2.0"):
        S.depth_profile(lambda d: 2.0 * d, name="bad")(1.0)
    with pytest.raises(TypeError, match=r"depth_profile: expected a callable"):
        S.depth_profile(0.3)  # type: ignore[arg-type]
