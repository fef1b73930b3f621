"""The dropkit command line: help on every command, one-line errors, audit, predict, demo."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dropkit import __version__
from dropkit.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, match: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dropkit: error: ")
    assert "Traceback" not in err
    assert re.search(match, lines[0]), lines[0]


# -- factories used through package.module:factory -------------------------------------------


def tiny_classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))


def dropout_into_batchnorm() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.0), nn.BatchNorm1d(8), nn.Linear(8, 2))


def not_a_module() -> int:
    return 3


FACTORY = "tests.cli.test_cli:tiny_classifier"


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A 2-layer BERT classifier (random weights) with MiniLM's real tokenizer."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny-bert")
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, num_labels=3,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def _importable_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))


# -- help and version --------------------------------------------------------------------------


def test_top_level_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("demo", "audit", "predict", "report", "sweep", "bench"):
        assert f"\n  {command}" in out
    assert "examples:" in out
    assert run(capsys, "--version")[:2] == (0, f"dropkit {__version__}\n")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("demo", "--quick"),
        ("audit", "package.module:factory"),
        ("predict", "--samples"),
        ("report", "METRICS_JSON"),
    ],
)
def test_each_command_has_help_with_examples(
    capsys: pytest.CaptureFixture[str], command: str, expected: str
) -> None:
    code, out, err = run(capsys, command, "--help")
    assert code == 0 and err == ""
    assert f"usage: dropkit {command}" in out
    assert expected in out
    assert "examples:\n  dropkit " + command in out


def test_bench_help_lists_benches(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "bench", "--help")
    assert code == 0
    assert "kernels, mc, digits, schedules, sweep, uci" in out
    assert "examples:" in out


# -- plumbing errors -------------------------------------------------------------------------


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "train")
    one_line_error(code, err, r"expected a command \(demo, audit, .*\), but got 'train'")


def test_unknown_bench(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "bench", "nope")
    one_line_error(code, err, r"bench: expected one of kernels, .*, but got 'nope'")


def test_argparse_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "predict", FACTORY)
    one_line_error(code, err, r"dropkit predict: the following arguments are required: --input")
    code, _, err = run(capsys, "demo", "--seed", "x")
    one_line_error(code, err, r"dropkit demo: argument --seed: invalid int value: 'x'")


def test_ctrl_c_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("dropkit.cli.audit.audit_model", interrupted)
    code, _, err = run(capsys, "audit", FACTORY)
    one_line_error(code, err, r"interrupted \(Ctrl-C\) before the command finished\. Re-run")


def test_unexpected_error_is_one_line_unless_debugging(
    capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr("dropkit.cli.audit.audit_model", broken)
    code, _, err = run(capsys, "audit", FACTORY)
    one_line_error(code, err, r"KeyError: 'boom' \(DROPKIT_DEBUG=1 for details\)")
    monkeypatch.setenv("DROPKIT_DEBUG", "1")
    with pytest.raises(KeyError, match="boom"):
        main(["audit", FACTORY])


# -- audit -------------------------------------------------------------------------------------


def test_audit_factory_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "audit", FACTORY, "--json")
    assert code == 0
    audit = json.loads(out)
    assert audit["cls"] == "Sequential"
    assert audit["params"] == 4 * 8 + 8 + 8 * 3 + 3
    assert audit["training"] is True  # a factory's fresh module is in training mode
    assert [(s["path"], s["kind"], s["p"], s["control"]) for s in audit["sites"]] == [
        ("2", "element", 0.3, "module")
    ]
    assert audit["totals"] == {"element": 1}
    assert [w["code"] for w in audit["warnings"]] == ["train-mode"]


def test_audit_warns_about_zero_rates_and_batchnorm(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "audit", "tests.cli.test_cli:dropout_into_batchnorm", "--plain")
    assert code == 0
    assert "[all-zero] Every dropout rate is 0 (1 sites)" in out
    assert "[placement] dropout '1' feeds BatchNorm '2' directly" in out


def test_audit_hf_folder_flags_attention_sites(
    capsys: pytest.CaptureFixture[str], tiny_bert_dir: Path
) -> None:
    code, out, _ = run(capsys, "audit", str(tiny_bert_dir), "--plain")
    assert code == 0
    assert "BertForSequenceClassification" in out and "eval mode" in out
    # the attention-probability dropout is read by the fused attention of its parent
    row = r"bert\.encoder\.layer\.0\.attention\.self\.dropout\s+attention\s+0\.1\s+module \*"
    assert re.search(row, out)
    assert "totals: attention 2, element 6 (8 sites, 0 active now)" in out
    assert "[module-mc-unreachable] 2 sites (2 attention)" in out


def test_audit_timm_model_rich(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("timm")
    pytest.importorskip("rich")
    code, out, _ = run(capsys, "audit", "resnet10t")
    assert code == 0
    assert "resnet10t: ResNet" in out
    assert "drop_rate" in out and "attribute *" in out
    assert "[all-zero]" in out


def test_audit_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "audit", str(tmp_path / "missing"))
    one_line_error(code, err, r"expected an existing model folder, but got .*missing', which")
    code, _, err = run(capsys, "audit", str(tmp_path))
    one_line_error(code, err, r"expected a Hugging Face folder with config.json, but got")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-arch"}))
    code, _, err = run(capsys, "audit", str(tmp_path))
    one_line_error(
        code,
        err,
        r"expected a config.json whose model_type transformers knows, .*"
        r"'no-such-arch'",
    )
    code, _, err = run(capsys, "audit", "vit_tiy")
    one_line_error(
        code, err, r"but got 'vit_tiy', which is none of them\. Close timm names: vit_tiny"
    )
    code, _, err = run(capsys, "audit", "tests.cli.test_cli:not_a_module")
    one_line_error(
        code, err, r"expected tests.cli.test_cli:not_a_module to return a torch.nn.Module"
    )
    code, _, err = run(capsys, "audit", "no_such_pkg.mod:make")
    one_line_error(code, err, r"expected an importable module in 'no_such_pkg.mod:make'")


# -- predict -----------------------------------------------------------------------------------


def test_predict_tensor_inputs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    torch.save(torch.from_numpy(x), tmp_path / "x.pt")
    (tmp_path / "x.csv").write_text("a,b,c,d\n" + "\n".join(",".join(map(str, r)) for r in x))
    outputs = []
    for name in ("x.npy", "x.pt", "x.csv"):
        code, out, _ = run(
            capsys,
            "predict",
            FACTORY,
            "--input",
            str(tmp_path / name),
            "--samples",
            "7",
            "--seed",
            "3",
        )
        assert code == 0
        outputs.append([json.loads(line) for line in out.splitlines()])
    records = outputs[0]
    assert len(records) == 5
    for rec in records:
        assert abs(sum(rec["probs"]) - 1) < 1e-5
        assert rec["samples_used"] == 7
        assert rec["prediction"] == int(np.argmax(rec["probs"]))
        assert rec["mutual_information"] >= 0
        assert rec["predictive_entropy"] >= rec["expected_entropy"] - 1e-9
    # Same inputs and seed: same numbers whatever the file format (csv is float64 text).
    for other in outputs[1:]:
        for a, b in zip(records, other):
            assert a["prediction"] == b["prediction"]
            assert np.allclose(a["probs"], b["probs"], atol=1e-5)


def test_predict_text_through_tokenizer(
    capsys: pytest.CaptureFixture[str], tiny_bert_dir: Path, tmp_path: Path
) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("hello world\n\nthe cat sat\n")
    code, out, err = run(
        capsys,
        "predict",
        str(tiny_bert_dir),
        "--input",
        str(texts),
        "--samples",
        "4",
        "--sites",
        "head",
        "--seed",
        "0",
    )
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    # index is the line number: the blank line 1 gets no record but keeps the numbering
    assert [r["index"] for r in records] == [0, 2]
    assert all(len(r["probs"]) == 3 and r["samples_used"] == 4 for r in records)
    assert all(r["label"] == f"LABEL_{r['prediction']}" for r in records)
    code, out, _ = run(
        capsys, "predict", str(tiny_bert_dir), "--input", "one text", "--samples", "2"
    )
    assert code == 0 and len(out.splitlines()) == 1


def test_predict_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "predict", FACTORY, "--input", str(tmp_path / "x.npy"))
    one_line_error(code, err, r"expected an existing input file, but got .*x\.npy', which does")
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3,4\n5,6,oops,8\n")
    code, _, err = run(capsys, "predict", FACTORY, "--input", str(bad))
    one_line_error(
        code,
        err,
        r"expected comma-separated numbers in .*bad\.csv', but got 'oops' at row 2, "
        r"column 3\. Fix that cell",
    )
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    code, _, err = run(capsys, "predict", FACTORY, "--input", str(tmp_path / "bad.npy"))
    one_line_error(code, err, r"expected a numpy array saved with numpy\.save in .*bad\.npy'")
    torch.save({"x": torch.zeros(2)}, tmp_path / "dict.pt")
    code, _, err = run(capsys, "predict", FACTORY, "--input", str(tmp_path / "dict.pt"))
    one_line_error(code, err, r"expected one tensor in .*dict\.pt', but got dict")
    (tmp_path / "empty.txt").write_text("\n \n")
    code, _, err = run(capsys, "predict", FACTORY, "--input", str(tmp_path / "empty.txt"))
    one_line_error(code, err, r"expected one text per line in .*empty\.txt', but got an empty")
    (tmp_path / "x.json").write_text("[]")
    code, _, err = run(capsys, "predict", FACTORY, "--input", str(tmp_path / "x.json"))
    one_line_error(code, err, r"expected an input file ending in \.txt, \.npy, \.pt, \.csv")
    code, _, err = run(capsys, "predict", FACTORY, "--input", "some text")
    one_line_error(code, err, r"expected a Hugging Face model folder for text inputs, but got")
    code, _, err = run(capsys, "predict", FACTORY, "--input", "t", "--samples", "0")
    one_line_error(code, err, r"expected --samples >= 1, but got 0")


# -- demo / report -----------------------------------------------------------------------------


def _unwritable(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        return folder
    # root ignores permission bits; sysfs refuses new files even for root
    if not Path("/sys").is_dir() or os.access("/sys", os.W_OK) and Path("/sys/x").exists():
        pytest.skip("no read-only folder available")
    return Path("/sys")


def test_unwritable_output_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = _unwritable(tmp_path)
    code, _, err = run(capsys, "demo", "--quick", "--out", str(folder))
    one_line_error(code, err, r"dropkit demo: expected a writable output folder, but got")
    code, _, err = run(capsys, "report", "m.json", "--out", str(folder / "r.html"))
    one_line_error(code, err, r"dropkit report: expected a writable output folder")
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(capsys, "demo", "--out", str(blocker / "sub"))
    one_line_error(code, err, r"expected a writable output folder, but got .*file/sub'")


def test_report_command_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "report", str(tmp_path / "metrics.json"))
    one_line_error(code, err, r"expected an existing metrics\.json, but got")


def test_report_command_rerenders(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from tests.report.conftest import small_metrics

    (tmp_path / "metrics.json").write_text(json.dumps(small_metrics()))
    code, out, _ = run(capsys, "report", str(tmp_path / "metrics.json"))
    assert code == 0 and out.strip() == str(tmp_path / "report.html")
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64,") == 6


def _demo_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "dropkit.cli", "demo", "--quick", "--out", str(out)]


def test_demo_ctrl_c_leaves_nothing_half_written(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        _demo_cmd(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 60
    while not out.is_dir() and time.monotonic() < deadline:  # folder made: training starts
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err[-2000:]
    one_line_error(2, err, r"interrupted before any output was written; .*demo' is as it was")
    # no report, no temporary files, no staging folder
    assert list(out.iterdir()) == []


def test_demo_ctrl_c_before_the_demo_stages_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the window between making the folder and run_demo's own handler (a loaded
    # machine can stretch it): the same message, and the folder is left as it was
    import dropkit.demo

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(dropkit.demo, "run_demo", interrupted)
    out = tmp_path / "demo"
    code, _, err = run(capsys, "demo", "--quick", "--out", str(out))
    one_line_error(code, err, r"interrupted before any output was written; .*demo' is as it was")
    assert list(out.iterdir()) == []


def test_demo_quick_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(_demo_cmd(out), capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.json", "report.html"]
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["quick"] is True and config["seed"] == 0
    names = [m["name"] for m in metrics["methods"]]
    assert names == [
        "Softmax", "Temperature scaling", "MC dropout (T=20)", "Last-layer Laplace",
        "Deep ensemble (M=3)",
    ]  # fmt: skip
    assert [s["name"] for s in metrics["settings"]][0] == "no dropout"
    assert {s["name"] for s in metrics["settings"]} >= {"schedule", "ConcreteDropout"}
    for m in metrics["methods"]:
        assert 0.9 < m["accuracy"] <= 1.0  # digits 0-4 are easy
        assert 0.5 < m["auroc"] <= 1.0  # held-out digits look less certain
    mc = metrics["methods"][2]
    assert mc["forward_passes"] == 20 and metrics["methods"][4]["params"] == 3 * mc["params"]
    # the schedule really moved p, ConcreteDropout really learned one
    sched = next(s for s in metrics["settings"] if s["name"] == "schedule")
    assert sched["p"][0] > sched["p"][-1]
    concrete = next(s for s in metrics["settings"] if s["name"] == "ConcreteDropout")
    assert len(set(concrete["p"])) > 1
    # the monitor's notes are read against the sweep, with rounded rates
    notes = [n for n in metrics["notes"] if n.startswith("OverfitMonitor on ")]
    assert len(notes) == len(metrics["settings"])
    for note in notes:
        assert re.search(r"\(final p \d(\.\d{1,2})?\)", note), note
        assert not re.search(r"\d\.\d{4,}", note), note
        assert "so p* stands" in note or "the sweep" in note or "next step:" in note, note
    assert all("verdict" not in s for s in metrics["settings"])
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 6
    assert "http://" not in html and "https://" not in html


def test_demo_training_is_reproducible() -> None:
    from dropkit.demo.training import DemoConfig, load_data, make_mlp, train

    cfg = DemoConfig.make(quick=True, seed=3)
    cfg.epochs = 3
    data = load_data(cfg)
    runs = [train(make_mlp(cfg, 0.2, seed=7), data, cfg, seed=7, fixed_p=0.2) for _ in range(2)]
    assert runs[0]["val_loss"] == runs[1]["val_loss"]
    assert runs[0]["train_loss"] == runs[1]["train_loss"]
    other = train(make_mlp(cfg, 0.2, seed=8), data, cfg, seed=8, fixed_p=0.2)
    assert other["val_loss"] != runs[0]["val_loss"]
    # the split: classes 0-4 in, 5-9 out, no overlap between train / val / test
    assert set(data.y_train.tolist()) == {0, 1, 2, 3, 4}
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) + len(data.x_ood) == 1797


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["demo", "--help"], ["audit", "--help"], ["predict", "--help"],
     ["report", "--help"], ["sweep", "--help"], ["bench"], ["bench", "mc", "--help"],
     ["bench", "uci", "--help"], ["bench", "digits", "--help"]],
)  # fmt: skip
def test_help_has_no_sphinx_markup(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 0 and err == "" and out.strip()
    assert not re.search(r"``|:(func|mod|class|meth|attr):`", out), out
    assert "3 min" not in out  # the demo takes seconds


def test_predict_and_audit_help_show_the_rate_flag(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("predict", "audit"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and "--p KIND=P" in out and "--p element=0.1" in out
