"""One digits pipeline: the demo, ``bench digits`` and the sweep task get what they got before.

The reference code in ``_reference.py`` is each caller's pipeline as it was before the
callers shared :mod:`dropkit.demo.digits`. The comparisons are exact (``torch.equal``,
``==``): the shared code runs the same ops on the same shapes in the same order in the
same process, so every kernel gets the same inputs; a tolerance would only hide a
changed order of operations.
"""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
import torch

from dropkit.bench import digits as bench
from dropkit.demo import digits
from dropkit.demo import training as demo
from dropkit.sweep.space import site_rate
from dropkit.sweep.tasks import DigitsTask

from . import _reference as ref

SEEDS = (0, 1, 7)
FIELDS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "x_ood")


def _fields(split: digits.DigitsSplit, names: tuple[str, ...] = FIELDS) -> list[torch.Tensor]:
    return [getattr(split, f) for f in names]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b)):
        assert u.dtype == v.dtype and torch.equal(u, v), f"part {i} differs"


@pytest.mark.parametrize("seed", SEEDS)
def test_each_caller_gets_its_old_split_bit_for_bit(seed: int) -> None:
    cfg = demo.DemoConfig.make(quick=True, seed=seed)
    _same(_fields(demo.load_data(cfg)), ref.demo_split(seed))
    _same(_fields(bench.ood_split(seed)), ref.bench_ood_split(seed))
    al = bench.al_split(seed)
    assert len(al.y_val) == 0 and len(al.x_ood) == 0
    _same(_fields(al, ("x_train", "y_train", "x_test", "y_test")), ref.bench_al_split(seed))
    task = DigitsTask(seed=seed)
    _same([task.train_x, task.train_y, task.val_x, task.val_y], ref.sweep_split(seed))
    assert len(DigitsTask.split(seed).y_test) == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_the_callers_split_through_the_one_function(seed: int) -> None:
    # the same seed and arguments give the same tensors, whichever caller asks
    _same(
        _fields(demo.load_data(demo.DemoConfig.make(seed=seed))),
        _fields(digits.split_digits(seed, standardize=True)),
    )
    _same(
        _fields(bench.ood_split(seed)),
        _fields(digits.split_digits(seed, fractions=(0.6, 0.2, 0.2), stratify=True)),
    )
    _same(
        _fields(DigitsTask.split(seed)),
        _fields(digits.split_digits(seed, classes=range(10), fractions=(0.75, 0.25))),
    )


def test_split_parts_partition_the_classes() -> None:
    s = digits.split_digits(3, fractions=(0.6, 0.2, 0.2), stratify=True)
    ys = torch.cat([s.y_train, s.y_val, s.y_test])
    assert set(ys.tolist()) == set(digits.IN_CLASSES) and len(ys) + len(s.x_ood) == 1797
    counts = torch.bincount(ys)
    for part in (s.y_train, s.y_val, s.y_test):
        # stratified: every class in proportion, to within the rounding of one image
        share = torch.bincount(part, minlength=5) / counts
        assert (share - share.mean()).abs().max() <= 1.0 / counts.min()
    assert s.train[0] is s.x_train and s.val[1] is s.y_val and s.test[0] is s.x_test
    with pytest.raises(FrozenInstanceError):
        s.x_train = s.x_val  # type: ignore[misc]


def test_split_indices_cover_every_row_once() -> None:
    y = torch.tensor([0] * 10 + [1] * 5)
    for stratify in (True, False):
        parts = digits.split_indices(
            y, (0.6, 0.2, 0.2), stratify=stratify, generator=torch.Generator().manual_seed(0)
        )
        assert torch.equal(torch.cat(parts).sort().values, torch.arange(15))
        assert [len(p) for p in parts] == [9, 3, 3]
    parts = digits.split_indices(y, (0.5, 0.5), stratify=False, generator=torch.Generator())
    assert [len(p) for p in parts] == [7, 8]  # int(7.5) = 7, the last part takes the rest


def test_split_errors_name_the_argument() -> None:
    with pytest.raises(
        ValueError,
        match=r"^split_digits: expected 2 or 3 fractions in \[0, 1\] summing to at most 1 "
        r"\(train, validation\[, test\]\), but got \(0\.5,\)\. "
        r"Pass e\.g\. fractions=\(0\.6, 0\.2, 0\.2\)\.$",
    ):
        digits.split_digits(0, fractions=(0.5,))
    with pytest.raises(ValueError, match=r"^bench digits: expected 2 or 3 fractions .* \(1\.5, "):
        digits.split_digits(0, fractions=(1.5, 0.2), caller="bench digits")
    with pytest.raises(ValueError, match=r"summing to at most 1 .* \(0\.8, 0\.3\)\."):
        digits.split_digits(0, fractions=(0.8, 0.3))
    with pytest.raises(
        ValueError,
        match=r"^split_digits: expected distinct classes among 0-9, but got \(3, 10\)\. "
        r"Pass e\.g\. classes=\(0, 1, 2, 3, 4\)\.$",
    ):
        digits.split_digits(0, classes=(3, 10))
    with pytest.raises(ValueError, match=r"^split_digits: expected distinct classes .* \(1, 1\)"):
        digits.split_digits(0, classes=(1, 1))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bench_training_is_the_old_one() -> None:
    cfg = {**bench.QUICK, "steps": 5}
    s = bench.ood_split(0)
    old = ref.bench_train_mlp(*s.train, 5, 4, cfg)
    new = bench.train_mlp(*s.train, 5, 4, cfg)
    assert not new.training
    _same_weights(old, new)


def test_sweep_task_reports_the_old_predictions() -> None:
    params = {"p": 0.3, "weight_decay": 1e-4}
    old = ref.sweep_train(2, epochs=2, samples=3, hidden=16, params=params, rate=site_rate)
    reported: list[tuple[int, torch.Tensor]] = []
    final = DigitsTask(epochs=2, samples=3, seed=2, hidden=16)(
        params, lambda epoch, preds: reported.append((epoch, preds.outputs))
    )
    assert [e for e, _ in reported] == [0, 1]
    _same([p for _, p in reported], old[1:])
    assert torch.equal(final.outputs, old[-1])


@pytest.mark.parametrize("setting", ["fixed", "schedule", "concrete"])
def test_demo_training_is_the_old_one(setting: str) -> None:
    import dropkit.schedules as schedules
    from dropkit.training import DropoutScheduler

    cfg = demo.DemoConfig.make(quick=True, seed=1)
    cfg.epochs, cfg.hidden = 3, 32
    data = demo.load_data(cfg)
    runs = []
    for make, train in ((ref.demo_make_mlp, ref.demo_train), (None, demo.train)):
        if setting == "concrete":
            kw = {"concrete_n": len(data.y_train)}
            model = make(32, 0.0, seed=5, **kw) if make else demo.make_mlp(cfg, 0.0, seed=5, **kw)
            curves = train(model, data, cfg, seed=5)
        else:
            model = make(32, 0.2, seed=6) if make else demo.make_mlp(cfg, 0.2, seed=6)
            sched = None
            if setting == "schedule":
                sched = DropoutScheduler(model, schedules.linear(0.4, 0.1, 3 * 4))
            curves = train(model, data, cfg, seed=6, scheduler=sched, fixed_p=0.2)
        runs.append((model, curves))
    (m_old, c_old), (m_new, c_new) = runs
    _same_weights(m_old, m_new)
    c_old.pop("time_s"), c_new.pop("time_s")
    assert c_old == c_new


def _numbers(path: Path) -> dict:
    metrics = json.loads((path / "metrics.json").read_text())
    for key in ("created", "timings"):
        metrics.pop(key)
    metrics["bayes"].pop("estimate_s", None)  # a timing: HMC's projected run time
    for entry in metrics["settings"] + metrics["methods"]:
        entry.pop("time_s")
    return metrics


@pytest.mark.slow
def test_demo_metrics_match_the_old_pipeline(tmp_path: Path, monkeypatch) -> None:
    """A small demo run through the old pipeline's data and training, then through the new."""
    from dropkit.demo import methods, pipeline

    make = demo.DemoConfig.make

    def small(*, quick: bool = False, seed: int = 0) -> demo.DemoConfig:
        cfg = make(quick=True, seed=seed)
        cfg.epochs, cfg.hidden, cfg.sweep_ps = 3, 32, [0.0, 0.3]
        cfg.ensemble_members, cfg.mc_samples, cfg.convergence_samples = 2, 4, [1, 2, 4]
        return cfg

    monkeypatch.setattr(demo.DemoConfig, "make", staticmethod(small))
    # the numbers are all in metrics.json; the HTML report (plots) is not drawn
    monkeypatch.setattr("dropkit.report.render", lambda metrics, out: Path(out).write_text(""))
    (tmp_path / "new").mkdir()
    pipeline.run_demo(tmp_path / "new", seed=2)

    def old_load(cfg: demo.DemoConfig) -> digits.DigitsSplit:
        return digits.DigitsSplit(*ref.demo_split(cfg.seed, cfg.splits), digits.IN_CLASSES)

    def old_make(cfg: demo.DemoConfig, p: float, **kw: object) -> torch.nn.Module:
        return ref.demo_make_mlp(cfg.hidden, p, **kw)  # type: ignore[arg-type]

    for module in (pipeline, methods):
        monkeypatch.setattr(module, "make_mlp", old_make)
        monkeypatch.setattr(module, "train", ref.demo_train)
    monkeypatch.setattr(pipeline, "load_data", old_load)
    (tmp_path / "old").mkdir()
    pipeline.run_demo(tmp_path / "old", seed=2)
    assert _numbers(tmp_path / "new") == _numbers(tmp_path / "old")
