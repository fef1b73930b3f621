from __future__ import annotations

import json

import pytest
import torch

from dropkit.bench import digits


def test_splits_are_stratified_per_class():
    # the split itself is dropkit.demo.digits.split_digits (tests/demo/test_digits.py)
    ood = digits.ood_split(0)
    for c in range(5):
        n = [int((part == c).sum()) for part in (ood.y_train, ood.y_val, ood.y_test)]
        assert n[0] == round(0.6 * sum(n)) and n[1] == round(0.2 * sum(n))
    assert len(ood.x_ood) == 1797 - sum(len(p) for p in (ood.y_train, ood.y_val, ood.y_test))
    al = digits.al_split(0)
    pool, test = torch.bincount(al.y_train), torch.bincount(al.y_test)
    assert len(al.y_val) == 0 and len(al.x_ood) == 0
    # per class, the pool takes round((1 - 500 / 1797) n_c) images and the test set the rest
    assert pool.tolist() == [round((1 - 500 / 1797) * int(n)) for n in pool + test]
    assert abs(len(al.y_test) - 500) <= 5  # ten roundings of at most half an image each


def test_quick_run_writes_json(tmp_path, capsys):
    out = tmp_path / "digits.json"
    assert digits.main(["--quick", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "(a) OOD AUROC" in text and "(c) labels to reach 90%" in text
    # outside a terminal no progress is drawn: no per-seed lines, nothing on stderr
    assert "seed 0 done" not in text and captured.err == ""
    payload = json.loads(out.read_text())
    summary = payload["summary"]
    assert payload["quick"] is True and payload["config"]["seeds"] == 1
    assert set(summary["calibration"]) == {"softmax", "mc_dropout", "ensemble", "laplace"}
    for stat in summary["ood_auroc"].values():
        assert 0.0 <= stat["mean"] <= 1.0 and stat["std"] == 0.0
    run = payload["ood_runs"][0]
    # every number in the JSON comes from the metrics of one compare_uncertainty run
    assert run["mc_dropout"]["forward_passes"] == payload["config"]["samples"]
    # one deterministic pass has zero mutual information everywhere: all ties, AUROC 1/2
    assert run["softmax"]["auroc"]["mutual_information"] == 0.5
    assert set(payload["al_runs"]) == {"bald", "max_entropy", "random"}
    for runs in payload["al_runs"].values():
        assert runs[0]["labels"][0] == payload["config"]["al_initial"]
        assert runs[0]["labels"][-1] <= payload["config"]["al_budget"]


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"^bench digits: expected --seeds >= 1, but got 0\."):
        digits.main(["--quick", "--seeds", "0"])
    with pytest.raises(ValueError, match=r"^bench digits: expected --skip among \['al', 'ood'\]"):
        digits.main(["--quick", "--skip", "calibration"])
