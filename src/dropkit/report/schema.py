"""A full check of ``metrics.json`` against the schema in :mod:`dropkit.report`.

Every value the report renders is type-checked here, before any HTML or plot
is made, so a malformed or hostile file fails with one message naming the
field (``expected methods[0].ood_score to be a string, but got 5``) instead
of a raw ``KeyError`` from deep inside the renderer. Strings are escaped
where they are rendered (:mod:`dropkit.report.render`); what this module
guarantees is that everything that is not a string is the number, list or
object the renderer expects.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

SCHEMA_VERSION = 1
WHERE = "dropkit.report.render"
_FIX = "Regenerate it with dropkit demo, or fix the field (schema in dropkit.report)."

# column key, header, format, better ("min" / "max" / None)
COLUMNS: tuple[tuple[str, str, str, str | None], ...] = (
    ("accuracy", "Accuracy", "{:.1%}", "max"),
    ("nll", "NLL", "{:.3f}", "min"),
    ("ece", "ECE", "{:.3f}", "min"),
    ("brier", "Brier", "{:.3f}", "min"),
    ("auroc", "OOD AUROC", "{:.3f}", "max"),
    ("aurc", "AURC", "{:.3g}", "min"),
    ("forward_passes", "Forward passes", "{:d}", "min"),
    ("time_s", "Time (s)", "{:.2f}", "min"),
    ("params", "Parameters", "{:,d}", "min"),
)
_INTEGER_COLUMNS = ("forward_passes", "params")


class SchemaError(ValueError):
    """``metrics.json`` does not follow the schema; the message names the field."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(field: str, what: str, value: Any, fix: str = _FIX) -> SchemaError:
    return SchemaError(f"{WHERE}: expected {field} to be {what}, but got {_shown(value)}. {fix}")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_finite(x: Any) -> bool:
    return _is_number(x) and math.isfinite(x)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _string(obj: dict[str, Any], key: str, field: str, *, required: bool = False) -> None:
    if key not in obj or obj[key] is None:
        if required:
            raise _fail(_at(field, key), "a string", None)
        return
    if not isinstance(obj[key], str):
        raise _fail(_at(field, key), "a string", obj[key])


def _number(
    obj: dict[str, Any], key: str, field: str, *, required: bool = False, integer: bool = False
) -> None:
    what = "an integer" if integer else "a finite number"
    if key not in obj or obj[key] is None:
        if required:
            raise _fail(_at(field, key), what, obj.get(key))
        return
    ok = _is_int(obj[key]) if integer else _is_finite(obj[key])
    if not ok:
        raise _fail(_at(field, key), what, obj[key])


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(field, "an object", value)
    return value


_ONE = {
    "finite numbers": "a finite number",
    "finite numbers or null": "a finite number or null",
    "integers": "an integer",
    "integers >= 1": "an integer >= 1",
    "strings": "a string",
}


def _list(
    value: Any,
    field: str,
    item: Callable[[Any], bool],
    what: str,
    *,
    non_empty: bool = False,
) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(field, f"a list of {what}", value)
    if non_empty and not value:
        raise _fail(field, f"a non-empty list of {what}", value)
    for i, x in enumerate(value):
        if not item(x):
            raise _fail(f"{field}[{i}]", _ONE[what], x)
    return value


def _at(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


def _numbers(
    obj: dict[str, Any], key: str, field: str, *, required: bool = False, nulls: bool = False
) -> list[Any] | None:
    if key not in obj:
        if required:
            raise _fail(_at(field, key), "a list of finite numbers", None)
        return None
    check = (lambda x: x is None or _is_finite(x)) if nulls else _is_finite
    what = "finite numbers or null" if nulls else "finite numbers"
    items = _list(obj[key], _at(field, key), check, what, non_empty=required)
    return items


def _same_length(obj: dict[str, Any], keys: tuple[str, ...], field: str) -> None:
    present = [k for k in keys if obj.get(k) is not None]
    lengths = {k: len(obj[k]) for k in present}
    if len(set(lengths.values())) > 1:
        first = present[0]
        for k in present[1:]:
            if lengths[k] != lengths[first]:
                raise _fail(
                    f"{field}.{k}",
                    f"a list of {lengths[first]} entries (as long as {field}.{first})",
                    lengths[k],
                    "Record one value per entry of each list.",
                )


def _dataset(ds: Any) -> None:
    ds = _object(ds, "dataset")
    for key in ("name", "description"):
        _string(ds, key, "dataset")
    for key in ("n_train", "n_val", "n_test", "n_ood"):
        _number(ds, key, "dataset", integer=True)
    for key in ("in_classes", "ood_classes"):
        if ds.get(key) is not None:
            _list(ds[key], f"dataset.{key}", _is_int, "integers")


def _setting(s: Any, i: int) -> None:
    field = f"settings[{i}]"
    s = _object(s, field)
    _string(s, "name", field, required=True)
    _string(s, "description", field)
    epochs = _numbers(s, "epochs", field, required=True)
    for key in ("train_loss", "val_loss"):
        _numbers(s, key, field, required=True)
    for key in ("val_acc", "p"):
        _numbers(s, key, field)
    assert epochs is not None
    _same_length(s, ("epochs", "train_loss", "val_loss", "val_acc", "p"), field)
    _number(s, "time_s", field)


def _method(m: Any, i: int) -> None:
    field = f"methods[{i}]"
    m = _object(m, field)
    _string(m, "name", field, required=True)
    _string(m, "ood_score", field)
    for key, _, _, _ in COLUMNS:
        _number(m, key, field, required=True, integer=key in _INTEGER_COLUMNS)
    rel = m.get("reliability")
    if rel is not None:
        rel = _object(rel, f"{field}.reliability")
        sub = f"{field}.reliability"
        _numbers(rel, "confidence", sub, required=True, nulls=True)
        _numbers(rel, "accuracy", sub, required=True, nulls=True)
        if "count" not in rel:
            raise _fail(f"{sub}.count", "a list of integers", None)
        _list(rel["count"], f"{sub}.count", _is_int, "integers", non_empty=True)
        _same_length(rel, ("confidence", "accuracy", "count"), sub)
    for key in ("scores_in", "scores_out"):
        _numbers(m, key, field)
    rc = m.get("risk_coverage")
    if rc is not None:
        sub = f"{field}.risk_coverage"
        rc = _object(rc, sub)
        _numbers(rc, "coverage", sub, required=True)
        _numbers(rc, "risk", sub, required=True)
        _same_length(rc, ("coverage", "risk"), sub)


def _sweep(sweep: Any) -> None:
    sweep = _object(sweep, "sweep")
    for key in ("parameter", "engine"):
        _string(sweep, key, "sweep")
    trials = sweep.get("trials")
    if not trials:
        return
    _string(sweep, "metric", "sweep", required=True)
    if not isinstance(sweep.get("lower_is_better"), bool):
        raise _fail("sweep.lower_is_better", "true or false", sweep.get("lower_is_better"))
    if not isinstance(trials, list):
        raise _fail("sweep.trials", "a list of objects", trials)
    for i, t in enumerate(trials):
        t = _object(t, f"sweep.trials[{i}]")
        _number(t, "p", f"sweep.trials[{i}]", required=True)
        _number(t, "value", f"sweep.trials[{i}]", required=True)
        _number(t, "val_acc", f"sweep.trials[{i}]")


def _convergence(conv: Any) -> None:
    conv = _object(conv, "convergence")
    if not conv.get("samples"):
        return
    _list(conv["samples"], "convergence.samples", lambda x: _is_int(x) and x > 0, "integers >= 1")
    for key in ("nll", "accuracy", "change"):
        _numbers(conv, key, "convergence", required=True)
    _same_length(conv, ("samples", "nll", "accuracy", "change"), "convergence")


def validate_metrics(metrics: Any) -> dict[str, Any]:
    """Check every field of ``metrics`` the report renders; return it unchanged.

    Args:
        metrics: The parsed ``metrics.json``.

    Returns:
        ``metrics``.

    Raises:
        SchemaError: (a ``ValueError``) naming the first field that is
            missing or of the wrong type, e.g. ``expected
            methods[0].ood_score to be a string, but got 5``.

    Example:
        >>> validate_metrics({"schema_version": 1, "methods": [{"name": 5}]})
        Traceback (most recent call last):
        ...
        dropkit.report.schema.SchemaError: dropkit.report.render: expected methods[0].name to be a string, but got 5. Regenerate it with dropkit demo, or fix the field (schema in dropkit.report).
    """  # noqa: E501 - the doctest shows the whole message
    if not isinstance(metrics, dict):
        raise _fail(
            "metrics.json", "a JSON object", type(metrics).__name__, "Pass dropkit demo's file."
        )
    version = metrics.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise _fail(
            "schema_version",
            str(SCHEMA_VERSION),
            version,
            "Re-run dropkit demo with this dropkit version to regenerate metrics.json.",
        )
    for key in ("title", "created", "dropkit_version", "ece_binning"):
        _string(metrics, key, "")
    if metrics.get("ece_binning") not in (None, "width", "mass"):
        raise _fail("ece_binning", "'width' or 'mass'", metrics["ece_binning"])
    _number(metrics, "ece_bins", "", integer=True)
    if metrics.get("dataset") is not None:
        _dataset(metrics["dataset"])
    methods = metrics.get("methods")
    if not isinstance(methods, list) or not methods:
        raise _fail("methods", "a non-empty list of objects", methods)
    for i, m in enumerate(methods):
        _method(m, i)
    settings = metrics.get("settings")
    if settings is not None:
        if not isinstance(settings, list):
            raise _fail("settings", "a list of objects", settings)
        for i, s in enumerate(settings):
            _setting(s, i)
    if metrics.get("sweep") is not None:
        _sweep(metrics["sweep"])
    if metrics.get("convergence") is not None:
        _convergence(metrics["convergence"])
    notes = metrics.get("notes")
    if notes is not None:
        _list(notes, "notes", lambda x: isinstance(x, str), "strings")
    return metrics
