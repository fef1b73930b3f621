from __future__ import annotations

import inspect
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
    renamed_kwargs,
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


# --- one vocabulary: the ground truth is `target`; old keywords warn for one release ---


def _classification() -> tuple[torch.Tensor, torch.Tensor]:
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=torch.float64)
    return probs, torch.tensor([0, 1, 1])


def _deprecated(call, old: str, qualname: str):
    with pytest.warns(DeprecationWarning, match=rf"^{qualname}: the keyword {old}= is deprecated"):
        return call()


def test_renamed_kwargs_forwards_and_refuses_both() -> None:
    @renamed_kwargs(labels="target")
    def score(probs: int, target: int) -> int:
        return target

    assert score(0, target=1) == 1
    assert (
        _deprecated(
            lambda: score(0, labels=2),
            "labels",
            "test_renamed_kwargs_forwards_and_refuses_both.<locals>.score",
        )
        == 2
    )
    with pytest.raises(
        TypeError, match=r"expected one of labels= \(deprecated\) and target=, but got both"
    ):
        score(0, labels=1, target=1)  # type: ignore[call-arg]
    assert list(inspect.signature(score).parameters) == ["probs", "target"]


def test_metrics_take_target() -> None:
    import dropkit.metrics as M

    probs, target = _classification()
    for fn in (M.ece, M.mce, M.classwise_ece, M.brier, M.nll, M.accuracy, M.aurc):
        old = _deprecated(lambda fn=fn: fn(probs, labels=target), "labels", fn.__name__)
        assert old == fn(probs, target=target)


def test_calibrators_take_target() -> None:
    from dropkit.baselines import TemperatureScaling

    logits, target = torch.log(_classification()[0]), _classification()[1]
    fitted = _deprecated(
        lambda: TemperatureScaling().fit(logits, labels=target), "labels", "TemperatureScaling.fit"
    )
    assert fitted.temperature == TemperatureScaling().fit(logits, target=target).temperature


def test_acquisition_takes_target() -> None:
    from dropkit.active import balanced_initial

    target = torch.tensor([0, 0, 1, 1, 2, 2])
    old = _deprecated(
        lambda: balanced_initial(labels=target, n=3, generator=torch.Generator().manual_seed(0)),
        "labels",
        "balanced_initial",
    )
    new = balanced_initial(target, 3, torch.Generator().manual_seed(0))
    assert torch.equal(old, new)


def test_mc_results_take_target() -> None:
    from dropkit.uncertainty import MCAccumulator, MCResult, mc_predict

    x, y = torch.randn(4, 3), torch.randn(4, 1)
    net = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.3), nn.Linear(8, 1))
    old = _deprecated(
        lambda: mc_predict(net, x, output="regression", tau=2.0, targets=y, seed=0, samples=4),
        "targets",
        "mc_predict",
    )
    new = mc_predict(net, x, output="regression", tau=2.0, target=y, seed=0, samples=4)
    assert torch.equal(old.log_likelihood, new.log_likelihood)
    samples = torch.randn(5, 4, 1)
    ref = MCResult.from_samples(samples, task="regression", tau=2.0, target=y)
    got = _deprecated(
        lambda: MCResult.from_samples(samples, task="regression", tau=2.0, targets=y),
        "targets",
        "MCResult.from_samples",
    )
    assert torch.equal(got.log_likelihood, ref.log_likelihood)
    acc = _deprecated(
        lambda: MCAccumulator(4, task="regression", tau=2.0, targets=y),
        "targets",
        "MCAccumulator.__init__",
    )
    assert acc.target is y


def test_unknown_mc_predict_keyword_is_a_type_error() -> None:
    from dropkit.uncertainty import mc_predict

    net = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.3))
    with pytest.raises(
        TypeError, match=r"mc_predict\(\) got an unexpected keyword argument 'sample'"
    ):
        mc_predict(net, torch.randn(2, 3), sample=4)  # type: ignore[call-arg]
