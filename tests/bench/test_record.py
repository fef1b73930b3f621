"""Every benchmark records the machine it ran on and writes its JSON atomically."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dropkit.bench import _record
from dropkit.bench._record import cpu_model, machine, machine_line, write_record

ROOT = Path(__file__).resolve().parents[2]
DROPKIT = str(Path(sys.executable).with_name("dropkit"))
BENCH_MODULES = ("kernels", "mc", "digits", "schedules", "sweep", "uci", "bayes", "score")


def _proc_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return " ".join(found.group(1).split()) if found else None


def test_cpu_model_reads_the_model_name_line(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 1\n"
        "model name\t: AMD EPYC  7B13 64-Core Processor\n\nprocessor\t: 1\n"
        "model name\t: AMD EPYC 7B13 64-Core Processor\n"
    )
    assert cpu_model(info) == "AMD EPYC 7B13 64-Core Processor"
    # no file, or no model line: a non-empty fallback, never a crash
    assert cpu_model(tmp_path / "missing") != ""
    (tmp_path / "bare").write_text("processor\t: 0\n")
    assert cpu_model(tmp_path / "bare") != "0"


def test_machine_names_this_cpu_and_torch() -> None:
    m = machine()
    expected = _proc_model()
    if expected is not None:
        assert m["cpu"] == expected
    assert m["torch"] == torch.__version__
    assert m["threads"] == torch.get_num_threads()
    assert m["cores"] >= 1
    line = machine_line(m)
    assert line == (
        f"machine: {m['cpu']}, {m['cores']} cores, torch {torch.__version__}, "
        f"{m['threads']} threads"
    )


def test_write_record_adds_machine_and_is_atomic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "sub" / "bench.json"
    write_record(target, {"bench": "x", "rows": [1, 2]})
    data = json.loads(target.read_text())
    assert data["bench"] == "x" and data["rows"] == [1, 2]
    assert data["machine"] == machine()
    # an interrupted write keeps the old file and leaves no temporary file
    monkeypatch.setattr("os.fsync", lambda fd: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        write_record(target, {"bench": "y"})
    monkeypatch.undo()
    assert json.loads(target.read_text())["bench"] == "x"
    assert [p.name for p in target.parent.iterdir()] == ["bench.json"]
    with pytest.raises(ValueError, match=r"expected --out to be a file, but got the folder"):
        write_record(tmp_path, {"bench": "x"})


@pytest.mark.parametrize("name", BENCH_MODULES)
def test_every_bench_writes_through_write_record(name: str) -> None:
    module = ROOT / "src" / "dropkit" / "bench" / f"{name}.py"
    if not module.is_file():  # a bench that is a package (bench/uci/): its command is __init__
        module = module.with_suffix("") / "__init__.py"
    source = module.read_text()
    assert "write_record(" in source
    # no non-atomic JSON writer (json.dump / write_text(json.dumps(...)))
    assert "json.dump" not in source


def test_progress_draws_nothing_outside_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(_record.progress(range(4), "x")) == [0, 1, 2, 3]
    assert capsys.readouterr() == ("", "")


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [DROPKIT, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


def test_dropkit_bench_without_a_name_lists_the_names() -> None:
    done = _run("bench")
    assert done.returncode == 0, done.stderr
    assert "names: kernels, mc, digits, schedules, sweep, uci" in done.stdout
    assert "None" not in done.stdout + done.stderr


def test_bench_prints_and_records_the_machine(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    out = tmp_path / "mc.json"
    done = _run("bench", "mc", "--quick", "--cases", "mlp", "--threads", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    first = done.stdout.splitlines()[0]
    expected = _proc_model() or cpu_model()
    assert first.startswith(f"machine: {expected}, ") and first.endswith(", 1 threads")
    assert f"torch {torch.__version__}" in first
    data = json.loads(out.read_text())
    assert data["machine"]["cpu"] == expected
    assert data["machine"]["threads"] == 1 and data["machine"]["torch"] == torch.__version__
    # help of a bench shows no Sphinx markup
    done = _run("bench", "kernels", "--help")
    assert done.returncode == 0
    assert "``" not in done.stdout and ":func:" not in done.stdout and ":mod:" not in done.stdout
    assert "F.dropout" in done.stdout


@pytest.mark.parametrize("name", ["bayes", "digits", "score"])
def test_a_bench_that_sets_its_threads_reports_those(name: str, tmp_path: Path) -> None:
    # these benches call torch.set_num_threads(THREADS) before timing anything: the
    # machine line (printed before the bench starts) names that count, not the default
    import importlib

    pinned = importlib.import_module(f"dropkit.bench.{name}").THREADS
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}
    bad = {"bayes": ["--splits", "0"], "digits": ["--seeds", "0"], "score": ["--cases", "x"]}
    done = subprocess.run(
        [DROPKIT, "bench", name, *bad[name], "--out", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode != 0 and f"bench {name}: expected --" in done.stderr  # no work done
    assert done.stdout.splitlines()[0].endswith(f", {pinned} threads"), done.stdout
    assert not (tmp_path / "x.json").exists()


# every file the harness writes goes through dropkit._io (atomic: a crash leaves the old file)
_PLAIN_WRITERS = {"write_text", "write_bytes", "dump", "save", "savez", "to_csv"}


def _plain_writes(source: str) -> list[int]:
    """Lines that call a non-atomic writer (``.write_text``, ``json.dump``, ``open(p, "w")``)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        fn = node.func
        if isinstance(fn, ast.Attribute) and fn.attr in _PLAIN_WRITERS:
            lines.append(node.lineno)
        elif isinstance(fn, ast.Name) and fn.id == "open":
            modes = [a for a in node.args[1:2]] + [
                k.value for k in node.keywords if k.arg == "mode"
            ]
            if any(isinstance(m, ast.Constant) and set(str(m.value)) & set("wax+") for m in modes):
                lines.append(node.lineno)
    return lines


def test_the_write_check_sees_plain_writers() -> None:
    src = "p.write_text('x')\njson.dump(v, f)\ntorch.save(t, p)\nopen(p, 'w')\n"
    src += "open(p)\nwrite_json(p, v)\n"
    assert _plain_writes(src) == [1, 2, 3, 4]


@pytest.mark.parametrize("folder", ["bench", "sweep", "cli", "report", "score"])
def test_harness_writes_only_through_dropkit_io(folder: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / "src" / "dropkit" / folder).rglob("*.py"))
        for line in _plain_writes(path.read_text())
    ]
    assert not offenders, offenders


def test_locked_makes_writers_take_turns(tmp_path) -> None:
    # two holders of one lock (separate descriptors, as two processes have): the second
    # waits until the first leaves its block; the lock file stays empty, the data untouched
    import threading

    from dropkit._io import locked

    target = tmp_path / "sub" / "record.json"
    order: list[str] = []
    inside = threading.Event()

    def second() -> None:
        inside.wait()
        with locked(target):
            order.append("second in")

    thread = threading.Thread(target=second)
    thread.start()
    with locked(target):
        inside.set()
        thread.join(timeout=0.5)  # it cannot get in while the lock is held
        order.append("first out")
    thread.join(timeout=30)
    assert order == ["first out", "second in"]
    assert (tmp_path / "sub" / "record.json.lock").read_bytes() == b""
    assert not target.exists()
