"""metrics.json is checked field by field, and nothing in it reaches the page unescaped."""

from __future__ import annotations

import copy
import html
import json
from collections.abc import Iterator
from typing import Any

import pytest

from dropkit.report import render_html, validate_metrics
from dropkit.report.schema import SchemaError

from .conftest import small_metrics

HOSTILE = "<script>alert('x')</script>\"' onload=alert(1) $\\frac{1}{0}$ & </td></table>"


def _leaves(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every leaf of a JSON document (lists: their first and last entry only)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(obj, list) and obj:
        for i in sorted({0, len(obj) - 1}):
            yield from _leaves(obj[i], (*path, i))
    else:
        yield path, obj


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _name(path: tuple[Any, ...]) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


LEAVES = list(_leaves(small_metrics()))
STRING_LEAVES = [path for path, value in LEAVES if isinstance(value, str)]


def test_fixture_has_strings_everywhere_the_schema_has_them() -> None:
    # the hostile-string test below must cover every kind of string field
    names = {str(p[-1]) for p in STRING_LEAVES}
    assert names >= {"title", "created", "dropkit_version", "name", "description", "ood_score",
                     "metric", "engine", "parameter", "ece_binning"}  # fmt: skip


def _fresh() -> dict[str, Any]:
    # a deep copy: the fixture shares some lists between settings
    return json.loads(json.dumps(small_metrics()))


def test_hostile_strings_in_every_field_are_escaped() -> None:
    metrics = _fresh()
    for path in STRING_LEAVES:
        if path != ("ece_binning",):  # an enum, checked below
            _set(metrics, path, f"{_name(path)} {HOSTILE}")
    page = render_html(metrics)  # plots draw "$...$" as text, not TeX
    assert "<script" not in page and HOSTILE not in page
    # the only closing table tags are the report's own (each table sits in a div)
    assert page.count("</table>") == page.count("</table></div>")
    shown = [p for p in STRING_LEAVES if html.escape(f"{_name(p)} {HOSTILE}") in page]
    # every string the page shows is there, escaped (sweep.parameter is always "p"
    # and dataset.name is shown only without a description)
    unshown = set(STRING_LEAVES) - set(shown) - {("ece_binning",)}
    assert unshown == {("sweep", "parameter"), ("dataset", "name")}
    metrics["ece_binning"] = HOSTILE
    with pytest.raises(SchemaError, match=r"expected ece_binning to be 'width' or 'mass'"):
        render_html(metrics)


@pytest.mark.parametrize(("path", "value"), LEAVES, ids=[_name(p) for p, _ in LEAVES])
def test_wrong_type_in_every_field_names_that_field(path: tuple[Any, ...], value: Any) -> None:
    metrics = _fresh()
    wrong: Any = {"x": 1} if not isinstance(value, dict) else 5
    _set(metrics, path, wrong)
    with pytest.raises(SchemaError) as info:
        render_html(metrics)
    message = str(info.value)
    assert message.startswith("dropkit.report.render: expected ")
    # the field named is the one that was broken
    assert f"expected {_name(path)} to be " in message, message


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (
            lambda m: m["methods"][0].update(ood_score=5),
            r"expected methods\[0\]\.ood_score to be a string, but got 5",
        ),
        (lambda m: m.update(title=["a"]), r"expected title to be a string, but got \['a'\]"),
        (lambda m: m.update(dataset="digits"), r"expected dataset to be an object, but got 'dig"),
        (
            lambda m: m["dataset"].update(n_train="500"),
            r"expected dataset\.n_train to be an integer, but got '500'",
        ),
        (lambda m: m["methods"].__setitem__(0, "x"), r"expected methods\[0\] to be an object"),
        (lambda m: m["methods"][1].pop("name"), r"expected methods\[1\]\.name to be a string"),
        (
            lambda m: m["methods"][0].update(params=5000.5),
            r"expected methods\[0\]\.params to be an integer, but got 5000\.5",
        ),
        (
            lambda m: m["methods"][0].update(accuracy=True),
            r"expected methods\[0\]\.accuracy to be a finite number, but got True",
        ),
        (
            lambda m: m["methods"][0]["reliability"].pop("count"),
            r"expected methods\[0\]\.reliability\.count to be a list of integers, but got None",
        ),
        (
            lambda m: m["methods"][0]["reliability"]["accuracy"].append(0.5),
            r"methods\[0\]\.reliability\.accuracy to be a list of 10 entries",
        ),
        (
            lambda m: m["methods"][1]["scores_out"].__setitem__(3, "high"),
            r"expected methods\[1\]\.scores_out\[3\] to be a finite number, but got 'high'",
        ),
        (
            lambda m: m["methods"][0]["risk_coverage"]["risk"].pop(),
            r"expected methods\[0\]\.risk_coverage\.risk to be a list of 20 entries",
        ),
        (lambda m: m.update(settings={"a": 1}), r"expected settings to be a list of objects"),
        (
            lambda m: m["sweep"].update(lower_is_better="yes"),
            r"expected sweep\.lower_is_better to be true or false, but got 'yes'",
        ),
        (
            lambda m: m["sweep"]["trials"][1].update(p="0.2"),
            r"expected sweep\.trials\[1\]\.p to be a finite number, but got '0\.2'",
        ),
        (
            lambda m: m["convergence"].update(samples=[0, 1, 2, 4, 8, 16]),
            r"expected convergence\.samples\[0\] to be an integer >= 1, but got 0",
        ),
        (lambda m: m.update(notes=["ok", 3]), r"expected notes\[1\] to be a string, but got 3"),
        (lambda m: m.update(ece_bins="10"), r"expected ece_bins to be an integer, but got '10'"),
    ],
)
def test_schema_errors_name_the_field(mutate: Any, match: str) -> None:
    metrics = small_metrics()
    before = copy.deepcopy(metrics)
    mutate(metrics)
    assert metrics != before
    with pytest.raises(SchemaError, match=match):
        validate_metrics(metrics)
    with pytest.raises(ValueError, match=match):  # SchemaError is a ValueError
        render_html(metrics)


def test_valid_fixture_passes_unchanged() -> None:
    metrics = small_metrics()
    assert validate_metrics(metrics) is metrics
    assert metrics == small_metrics()
