"""What the report's figures show: axes that cannot lie, shared scales, literal names."""

from __future__ import annotations

from typing import Any

import pytest

from dropkit.report import plots

from .conftest import small_metrics

pytest.importorskip("matplotlib")


def _figure(draw: Any, *args: Any) -> Any:
    import matplotlib as mpl

    with mpl.rc_context(plots._STYLE):
        return draw.__wrapped__(*args)


@pytest.mark.parametrize("accs", [[0.95, 0.99, 1.0], [0.999, 0.998, 0.9995], [1.0, 1.0, 1.0]])
def test_sweep_accuracy_axis_never_runs_past_one(accs: list[float]) -> None:
    sweep = small_metrics()["sweep"]
    for trial, acc in zip(sweep["trials"], accs):
        trial["val_acc"] = acc
    fig = _figure(plots.sweep, sweep)
    twin = [ax for ax in fig.axes if ax.get_ylabel() == "validation accuracy"]
    assert len(twin) == 1
    low, high = twin[0].get_ylim()
    assert high <= 1.0 and low <= min(accs) and low >= 0.0
    assert max(accs) <= high  # every point is on the axis


def test_ood_histograms_share_one_y_axis() -> None:
    methods = small_metrics()["methods"]
    # different sizes of score sets: fractions differ, the axis must not
    methods[1]["scores_in"] = methods[1]["scores_in"][:20]
    fig = _figure(plots.uncertainty_histograms, methods)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])
    assert axes[0].get_ylim() == axes[1].get_ylim()


def test_names_are_drawn_literally() -> None:
    methods = small_metrics()["methods"]
    methods[0]["name"] = "cost $5 $\\frac{1}{0}$"
    png = plots.reliability(methods)  # a TeX parse error would raise here
    assert png.startswith(b"\x89PNG")
    fig = _figure(plots.reliability, methods)
    assert fig.axes[0].get_title().startswith("cost \\$5 \\$\\frac")
