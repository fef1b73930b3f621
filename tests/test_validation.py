from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import dropkit.metrics._checks as metric_checks
from dropkit._validation import (
    _fail,
    check_bool,
    check_callable,
    check_choice,
    check_flags,
    check_generator,
    check_int,
    check_module,
    check_names,
    check_p,
    check_rank,
)


@pytest.mark.parametrize("p", [0, 0.0, 0.5, 0.999])
def test_check_p_accepts(p: float) -> None:
    assert check_p("Layer", p) == float(p)


def test_check_p_allow_one() -> None:
    assert check_p("Layer", 1.0, allow_one=True) == 1.0
    with pytest.raises(ValueError, match=r"Layer: expected p in \[0, 1\), but got 1.0"):
        check_p("Layer", 1.0)


@pytest.mark.parametrize("p", [-0.1, 1.5, math.nan, math.inf])
def test_check_p_rejects_values(p: float) -> None:
    with pytest.raises(
        ValueError, match=r"Layer: expected p in \[0, 1\), but got .* Use a probability"
    ):
        check_p("Layer", p)


def test_check_p_rejects_types() -> None:
    with pytest.raises(TypeError, match=r"Layer: expected p to be a float, but got '0.1'"):
        check_p("Layer", "0.1")
    with pytest.raises(TypeError, match=r"Pass p.item\(\)"):
        check_p("Layer", torch.tensor(0.1))
    with pytest.raises(TypeError, match="expected p to be a float, but got True"):
        check_p("Layer", True)


def test_check_module() -> None:
    lin = nn.Linear(2, 2)
    assert check_module("f", lin) is lin
    with pytest.raises(
        TypeError, match=r"f: expected model to be a torch.nn.Module, but got 'dict'"
    ):
        check_module("f", {})


def test_check_int() -> None:
    assert check_int("f", 3, "samples") == 3
    with pytest.raises(ValueError, match=r"f: expected samples >= 1, but got 0"):
        check_int("f", 0, "samples")
    with pytest.raises(TypeError, match=r"f: expected samples to be an int, but got 2.5"):
        check_int("f", 2.5, "samples")


def test_check_rank() -> None:
    check_rank("L", torch.zeros(2, 3, 4), (3,), "(L, N, C)")
    with pytest.raises(ValueError, match=r"L: expected a 3-D input \(L, N, C\), but got \(2, 3\)"):
        check_rank("L", torch.zeros(2, 3), (3,), "(L, N, C)")


def test_check_choice() -> None:
    assert check_choice("f", "mass", "binning", ["width", "mass"]) == "mass"
    with pytest.raises(ValueError, match=r"expected binning to be one of \['mass', 'width'\]"):
        check_choice("f", "bogus", "binning", ["width", "mass"])


def test_check_generator() -> None:
    g = torch.Generator()
    assert check_generator("f", g) is g
    assert check_generator("f", None) is None
    with pytest.raises(TypeError, match="expected generator to be a torch.Generator or None"):
        check_generator("f", 3)


@pytest.mark.parametrize("bad", ["no", "False", 0, 1, 1.0, torch.tensor(True), [True]])
def test_check_bool_refuses_truthy_stand_ins(bad: object) -> None:
    with pytest.raises(TypeError, match=r"f: expected inplace to be True or False, but got "):
        check_bool("f", bad, "inplace")
    with pytest.raises(TypeError, match=r"expected training to be True or False"):
        check_flags("f", inplace=True, training=bad)


def test_check_bool_accepts_bools_and_optional_none() -> None:
    assert check_bool("f", True, "x") is True and check_bool("f", False, "x") is False
    assert check_bool("f", None, "progress", optional=True) is False
    with pytest.raises(TypeError, match=r"f: expected x to be True or False, but got None"):
        check_bool("f", None, "x")
    with pytest.raises(TypeError, match=r"expected progress to be None, True or False"):
        check_bool("f", "yes", "progress", optional=True)


def test_check_names_one_string_is_one_name() -> None:
    assert check_names("f", "weight", "weights") == ["weight"]
    assert check_names("f", ("a", "b"), "weights") == ["a", "b"]
    with pytest.raises(TypeError, match=r"f: expected weights to be a name or a list of names"):
        check_names("f", 5, "weights")
    with pytest.raises(TypeError, match=r"but got 3\. Pass weights=\['name', \.\.\.\]"):
        check_names("f", ["a", 3], "weights")


def test_check_callable_counts_positional_arguments() -> None:
    check_callable("f", lambda a, b: 0, "p", 2, "p=lambda s, d: 0.1")
    check_callable("f", lambda *a: 0, "p", 2, "p=lambda s, d: 0.1")
    check_callable("f", max, "p", 2, "p=...")  # builtins: signature may be unreadable
    with pytest.raises(TypeError, match=r"f: expected p to take 2 positional arguments, but got"):
        check_callable("f", lambda a: 0, "p", 2, "p=lambda s, d: 0.1")
    with pytest.raises(TypeError, match=r"expected where to take 1 positional argument, but"):
        check_callable("f", lambda a, b: 0, "where", 1, "where=lambda s: True")


def test_fail_is_the_one_error_helper() -> None:
    err = _fail(ValueError, "Layer", "p in [0, 1)", 1.5, "Use a probability such as 0.1.")
    assert isinstance(err, ValueError)
    assert str(err) == "Layer: expected p in [0, 1), but got 1.5. Use a probability such as 0.1."
    # metrics share it rather than keeping a copy
    assert metric_checks._fail is _fail
