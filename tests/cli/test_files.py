"""The real ``dropkit`` entry point: nothing lost, nothing corrupted, quiet pipes, Ctrl-C.

Each test runs the installed console script (``.venv/bin/dropkit``) in a
subprocess, as a user would.
"""

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
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
DROPKIT = str(Path(sys.executable).with_name("dropkit"))
FACTORY = "tests.cli.test_files:tiny_classifier"


def tiny_classifier() -> nn.Module:
    import torch

    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))


def all_zero() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.0), nn.Linear(8, 3))


def many_sites() -> nn.Module:
    # an audit of this prints far more than a pipe buffer holds (64 KiB)
    return nn.Sequential(*[nn.Dropout(0.1) for _ in range(3000)])


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def dropkit(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DROPKIT, *args], capture_output=True, text=True, timeout=timeout, env=ENV, cwd=ROOT
    )


def error_line(done: subprocess.CompletedProcess[str], match: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dropkit: error: "), done.stderr
    assert re.search(match, lines[0]), lines[0]
    return lines[0]


def records(done: subprocess.CompletedProcess[str]) -> list[dict]:
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


# -- CSV and text inputs ----------------------------------------------------------------------


def test_csv_in_scientific_notation_keeps_every_row(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(6, 4))
    np.savetxt(tmp_path / "x.csv", x, delimiter=",")  # '%.18e': every row has an 'e'
    assert "e" in (tmp_path / "x.csv").read_text().splitlines()[0]
    np.save(tmp_path / "x.npy", x)
    sci = records(dropkit("predict", FACTORY, "--input", str(tmp_path / "x.csv"), "--seed", "1"))
    ref = records(dropkit("predict", FACTORY, "--input", str(tmp_path / "x.npy"), "--seed", "1"))
    assert [r["index"] for r in sci] == list(range(6))
    # same numbers as the binary file (the CSV holds them to 18 digits)
    for a, b in zip(sci, ref):
        assert a["prediction"] == b["prediction"]
        assert np.allclose(a["probs"], b["probs"], atol=1e-6)


def test_csv_header_is_detected_by_parsing_and_said(tmp_path: Path) -> None:
    body = "4.9e-01,1,2,3\n-1e+00,0,0,1\n"
    (tmp_path / "head.csv").write_text("sepal,width,e,inf_rate\n" + body)
    done = dropkit("predict", FACTORY, "--input", str(tmp_path / "head.csv"))
    assert [r["index"] for r in records(done)] == [0, 1]
    assert "row 1 ('sepal,width,e,inf_rate') is not numbers; read it as a header" in done.stderr
    # no header: both rows are data and nothing is said
    (tmp_path / "plain.csv").write_text(body)
    done = dropkit("predict", FACTORY, "--input", str(tmp_path / "plain.csv"))
    assert len(records(done)) == 2 and "header" not in done.stderr


def test_csv_nan_and_inf_rows_are_numbers_not_headers(tmp_path: Path) -> None:
    (tmp_path / "nan.csv").write_text("nan,1,2,3\n1,2,3,4\n")
    error_line(
        dropkit("predict", FACTORY, "--input", str(tmp_path / "nan.csv")),
        r"expected finite numbers in .*nan\.csv', but got NaN or inf",
    )
    (tmp_path / "inf.csv").write_text("1,2,3,4\n-inf,1,2,3\n")
    error_line(
        dropkit("predict", FACTORY, "--input", str(tmp_path / "inf.csv")),
        r"expected finite numbers in .*inf\.csv'",
    )


def test_single_row_csv_with_a_word_names_row_and_column(tmp_path: Path) -> None:
    (tmp_path / "one.csv").write_text("1,2,abc\n")
    error_line(
        dropkit("predict", FACTORY, "--input", str(tmp_path / "one.csv")),
        r"expected comma-separated numbers in .*one\.csv', but got 'abc' at row 1, column 3\. "
        r"A single row is read as data",
    )
    (tmp_path / "ragged.csv").write_text("1,2,3,4\n1,2,3\n")
    error_line(
        dropkit("predict", FACTORY, "--input", str(tmp_path / "ragged.csv")),
        r"expected 4 numbers on every row in .*ragged\.csv', but got 3 at row 2",
    )


def test_text_index_is_the_line_number(tmp_path: Path) -> None:
    from dropkit.cli._inputs import read_inputs

    (tmp_path / "t.txt").write_text("first\nsecond\n\nfourth\n")
    inputs = read_inputs(str(tmp_path / "t.txt"))
    assert inputs.texts == ["first", "second", "fourth"]
    assert [inputs.index(k) for k in range(3)] == [0, 1, 3]


# -- predict / audit: rates from the shell ----------------------------------------------------


def test_all_zero_model_error_suggests_the_flag_and_the_flag_works(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32))
    model = "tests.cli.test_files:all_zero"
    error_line(
        dropkit("predict", model, "--input", str(tmp_path / "x.npy")),
        r"expected at least one dropout rate above 0, .* with all 1 sites at p = 0 \(element 1\)"
        r".*pass rates with --p KIND=P, e.g\. --p element=0\.1",
    )
    done = dropkit("predict", model, "--input", str(tmp_path / "x.npy"), "--p", "element=0.5")
    out = records(done)
    assert "--p changed 1 site rates (element)" in done.stderr
    assert len(out) == 3 and all(r["mutual_information"] > 0 for r in out)
    # audit shows the rate the flag set; bad flags are one-line errors
    audit = json.loads(dropkit("audit", model, "--json", "--p", "0.25").stdout)
    assert [s["p"] for s in audit["sites"]] == [0.25]
    error_line(dropkit("audit", model, "--p", "elemnt=0.1"), r"expected --p KIND=P with KIND one")
    error_line(dropkit("audit", model, "--p", "element=1.0"), r"with P in \[0, 1\), but got")
    zero = dropkit("audit", model, "--plain")
    assert "from the shell with --p element=0.1" in zero.stdout


def test_timm_model_built_with_rate_zero_can_be_mc_sampled(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype("f4"))
    args = ("predict", "resnet10t", "--input", str(tmp_path / "x.npy"), "--samples", "4")
    error_line(dropkit(*args), r"all 1 sites at p = 0 .*--p element=0\.1")
    out = records(dropkit(*args, "--p", "element=0.3", "--seed", "0"))
    assert len(out) == 2 and all(r["mutual_information"] > 0 for r in out)


# -- report: refuse to overwrite the input -----------------------------------------------------


def test_report_refuses_an_output_that_is_the_input(tmp_path: Path) -> None:
    from tests.report.conftest import small_metrics

    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps(small_metrics()))
    before = metrics.read_bytes()
    error_line(
        dropkit("report", str(metrics), "--out", str(metrics)),
        r"expected an output other than the input, but got --out .*m\.json', which is the "
        r"metrics file itself",
    )
    error_line(
        dropkit("report", str(metrics), "--out", str(tmp_path / "." / "m.json")),
        r"which is the metrics file itself",
    )
    os.symlink(metrics, tmp_path / "link.html")
    error_line(
        dropkit("report", str(metrics), "--out", str(tmp_path / "link.html")),
        r"which is the metrics file itself",
    )
    assert metrics.read_bytes() == before
    named = tmp_path / "report.html"  # metrics saved as report.html, default output
    named.write_bytes(before)
    error_line(dropkit("report", str(named)), r"got the default output .*report\.html'")
    assert named.read_bytes() == before


def test_report_out_folder_is_a_clear_error(tmp_path: Path) -> None:
    from tests.report.conftest import small_metrics

    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps(small_metrics()))
    folder = tmp_path / "site"
    folder.mkdir()
    line = error_line(
        dropkit("report", str(metrics), "--out", str(folder)),
        r"expected --out to be an HTML file, but got the folder .*site'\. Pass a file name",
    )
    assert ".tmp" not in line
    assert list(folder.iterdir()) == []
    done = dropkit("report", str(metrics), "--out", str(folder / "r.html"))
    assert done.returncode == 0 and (folder / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_hostile_metrics_file_is_a_one_line_error(tmp_path: Path) -> None:
    from tests.report.conftest import small_metrics

    metrics = small_metrics()
    metrics["methods"][0]["ood_score"] = 5
    (tmp_path / "m.json").write_text(json.dumps(metrics))
    error_line(
        dropkit("report", str(tmp_path / "m.json")),
        r"expected methods\[0\]\.ood_score to be a string, but got 5",
    )
    assert not (tmp_path / "report.html").exists()


# -- pipes and Ctrl-C ----------------------------------------------------------------------------


def test_closed_stdout_ends_quietly() -> None:
    proc = subprocess.Popen(
        [DROPKIT, "audit", "tests.cli.test_files:many_sites", "--plain"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    with proc.stderr:
        err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert first.startswith(b"tests.cli.test_files:many_sites: Sequential")
    assert err == ""
    assert proc.returncode == 141  # what a shell shows for a tool stopped by SIGPIPE


def test_shell_pipeline_to_head_is_quiet() -> None:
    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; '{DROPKIT}' audit tests.cli.test_files:many_sites "
         "--plain | head -1; echo status=$?"],
        capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.stderr == ""
    assert done.stdout.splitlines()[-1] == "status=141"


@pytest.mark.parametrize("blocked", [False, True])
def test_sigint_as_the_command_ends_still_exits_2_with_a_message(blocked: bool) -> None:
    # main() has returned 0; a Ctrl-C lands before the process is gone (delivered
    # at once, or pending because it arrived while signals were held off)
    hold = "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}); " if blocked else ""
    code = (
        "import os, signal, dropkit.cli as c\n"
        f"def late():\n    {hold}os.kill(os.getpid(), signal.SIGINT)\n    return 0\n"
        "c.main = late\nc.entry()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "dropkit: error: interrupted (Ctrl-C) as the command was ending; its work was complete."
    )


def test_ctrl_c_at_any_moment_exits_2_with_one_line(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(64, 4)).astype("f4"))
    cmd = [DROPKIT, "predict", FACTORY, "--input", str(tmp_path / "x.npy"), "--samples", "50"]
    start = time.monotonic()
    subprocess.run(cmd, capture_output=True, env=ENV, cwd=ROOT, timeout=120, check=True)
    took = time.monotonic() - start
    for fraction in (0.3, 0.7, 0.97):
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT
        )
        time.sleep(took * fraction)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, 2), (fraction, proc.returncode, err)  # never -SIGINT
        assert "Traceback" not in err and "KeyboardInterrupt" not in err
        if proc.returncode == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("dropkit: error: interrupted")


def test_ctrl_c_dropped_by_a_c_callback_is_delivered_again(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # A Ctrl-C that lands in a Python callback called from C (numba's llvmlite
    # notifies its object cache that way while compiling on a cold cache) is
    # dropped by C and printed as "Exception ignored ... Traceback". Inside the
    # command's handler it is re-delivered instead, unprinted, and then stops
    # the command as any Ctrl-C does.
    import ctypes

    from dropkit.cli import _Interrupts

    @ctypes.CFUNCTYPE(None)
    def callback() -> None:
        raise KeyboardInterrupt

    before = sys.unraisablehook
    with pytest.raises(KeyboardInterrupt), _Interrupts() as interrupts:
        callback()  # C drops the KeyboardInterrupt raised in the callback
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the re-delivered SIGINT lands here
            time.sleep(0.01)
    assert interrupts.seen  # the re-sent SIGINT reached the handler
    assert sys.unraisablehook is before
    err = capfd.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def _demo(out: Path) -> list[str]:
    return [DROPKIT, "demo", "--quick", "--out", str(out)]


def test_interrupted_rerun_leaves_the_previous_set_intact(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(_demo(out), capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    names = ["config.json", "metrics.json", "report.html"]
    assert sorted(p.name for p in out.iterdir()) == names
    before = {n: (out / n).read_bytes() for n in names}
    proc = subprocess.Popen(
        _demo(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".dropkit-demo-") for p in out.iterdir()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)  # inside training
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().splitlines() == [
        f"dropkit: error: interrupted before any output was written; {str(out)!r} is as it was "
        "before this run (the demo writes its three files together at the end). Re-run to finish."
    ]
    # the old set, byte for byte, and nothing else (no staging folder, no temp file)
    assert sorted(p.name for p in out.iterdir()) == names
    assert {n: (out / n).read_bytes() for n in names} == before


def test_commit_holds_ctrl_c_until_the_set_is_in_place(tmp_path: Path) -> None:
    from dropkit.demo import pipeline

    staging, out = tmp_path / "stage", tmp_path / "out"
    staging.mkdir()
    out.mkdir()
    for name in pipeline.FILES:
        (staging / name).write_text(name)
        (out / name).write_text("old " + name)
    state = {"committed": False}
    original = Path.replace
    calls = []

    def replace_then_interrupt(self: Path, target: Path) -> Path:
        calls.append(self.name)
        if len(calls) == 1:  # Ctrl-C right after the first rename
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, target)

    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        Path.replace = replace_then_interrupt  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            pipeline._commit(staging, out, state)
    finally:
        Path.replace = original  # type: ignore[method-assign]
        signal.signal(signal.SIGINT, handler)
    # the interruption waited until every file was renamed, report last
    assert calls == ["config.json", "metrics.json", "report.html"]
    assert state["committed"] is True
    assert {p.name: p.read_text() for p in out.iterdir()} == {n: n for n in pipeline.FILES}
