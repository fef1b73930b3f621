"""``--sites`` on every command that picks dropout sites: audit, predict, score.

One parser (:func:`dropkit.cli._common.parse_sites`) turns repeated or
comma-separated flags into the library's ``sites=`` selector; each bad value is
a one-line error (exit 2) naming the flag, the value and the fix.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dropkit import mc_predict
from dropkit.cli import main
from dropkit.cli._common import CLIError, apply_rates, parse_sites

ROOT = Path(__file__).resolve().parents[2]
NET = "tests.cli.test_sites:net"
FLAT = "tests.cli.test_sites:flat"


# -- factories used through package.module:factory -------------------------------------------


class Block(nn.Module):
    """One repeated block: element and alpha dropout after a tanh layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.drop = nn.Dropout(0.1)
        self.noise = nn.AlphaDropout(0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.noise(self.drop(torch.tanh(self.fc(x))))


class Net(nn.Module):
    """Three blocks (sites ``blocks.i.drop`` / ``blocks.i.noise``) and a head (``head_drop``)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.Sequential(Block(), Block(), Block())
        self.head_drop = nn.Dropout(0.2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head_drop(self.blocks(x)))


def net() -> nn.Module:
    return Net()


def flat() -> nn.Module:
    # one dropout module and no repeated blocks
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.3), nn.Linear(8, 3))


BLOCK_SITES = [f"blocks.{i}.{name}" for i in range(3) for name in ("drop", "noise")]


@pytest.fixture(autouse=True)
def _importable_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> str:
    code, _, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("dropkit: error: "), err
    assert re.search(match, lines[0]), lines[0]
    return lines[0]


def audit_paths(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    code, out, err = run(capsys, "audit", NET, "--json", *argv)
    assert code == 0, err
    return [s["path"] for s in json.loads(out)["sites"]]


@pytest.fixture
def x_file(tmp_path: Path) -> Path:
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "x.npy"


# -- the parser ------------------------------------------------------------------------------


def test_parse_sites_splits_strips_and_keeps_each_entry_once() -> None:
    assert parse_sites("dropkit audit", []) is None
    assert parse_sites("dropkit audit", [" head "]) == "head"  # one entry: the entry itself
    assert parse_sites("dropkit audit", ["head,alpha", "last:1", "head", "blocks.0.*"]) == [
        "head",
        "alpha",
        "last:1",
        "blocks.0.*",
    ]


@pytest.mark.parametrize("value", ["", "head,", ",head", "head,,alpha", " "])
def test_parse_sites_refuses_an_empty_entry(value: str) -> None:
    message = (
        f"dropkit audit: expected --sites ENTRY[,ENTRY...] with no empty entry, but got "
        f"{value!r}. Write e.g. --sites head or --sites attention,classifier.*."
    )
    with pytest.raises(CLIError, match=f"^{re.escape(message)}$"):
        parse_sites("dropkit audit", ["alpha", value])


@pytest.mark.parametrize("entry", ["last:", "last:x", "last:-1", "blocks:3", "blocks:3-1"])
def test_parse_sites_refuses_a_malformed_depth_entry(entry: str) -> None:
    message = (
        f"dropkit predict: expected --sites last:K or blocks:I-J with integers K >= 0 and "
        f"0 <= I <= J, but got {entry!r}. Write e.g. --sites last:2 or --sites blocks:0-3."
    )
    with pytest.raises(CLIError, match=f"^{re.escape(message)}$"):
        parse_sites("dropkit predict", [entry])


# -- audit -----------------------------------------------------------------------------------


def test_audit_json_lists_and_totals_only_the_selected_sites(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "audit", NET, "--json")
    assert code == 0
    everything = json.loads(out)
    assert everything["selection"] is None
    assert [s["path"] for s in everything["sites"]] == [*BLOCK_SITES, "head_drop"]
    code, out, _ = run(capsys, "audit", NET, "--json", "--sites", "head")
    assert code == 0
    audit = json.loads(out)
    assert audit["selection"] == ["head"]
    assert [(s["path"], s["kind"], s["p"]) for s in audit["sites"]] == [
        ("head_drop", "element", 0.2)
    ]
    assert audit["totals"] == {"element": 1}
    assert audit["params"] == everything["params"]  # the model is the same, only the list


def test_audit_union_of_repeated_and_comma_separated_entries(
    capsys: pytest.CaptureFixture[str],
) -> None:
    alpha = [p for p in BLOCK_SITES if p.endswith("noise")]
    assert audit_paths(capsys, "--sites", "alpha") == alpha
    union = [*alpha, "head_drop"]
    assert audit_paths(capsys, "--sites", "alpha", "--sites", "head") == union
    assert audit_paths(capsys, "--sites", "alpha,head") == union
    assert audit_paths(capsys, "--sites", "head,alpha") == union  # module order, not flag order
    # a glob over paths, and the last block plus every site after the blocks (the head)
    assert audit_paths(capsys, "--sites", "blocks.0.*") == BLOCK_SITES[:2]
    assert audit_paths(capsys, "--sites", "last:1") == [*BLOCK_SITES[4:], "head_drop"]
    assert audit_paths(capsys, "--sites", "blocks:0-1,head") == [*BLOCK_SITES[:4], "head_drop"]


def test_audit_plain_names_the_selection_and_judges_only_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "audit", NET, "--plain", "--sites", "alpha", "--p", "alpha=0")
    assert code == 0
    assert out.startswith("tests.cli.test_sites:net: Net, ") and "; --sites alpha\n" in out
    assert "totals: alpha 3 (3 sites, 0 active now)" in out
    # the selected sites are all at 0 now; the element sites outside it are not judged:
    # no train-mode warning although the model is in training mode with element rates > 0
    assert "[all-zero] Every dropout rate of the --sites selection is 0 (3 sites)" in out
    assert "[train-mode]" not in out


def test_audit_rates_with_sites_change_only_the_selected_sites(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "audit", NET, "--json", "--sites", "last:1", "--p", "0.4")
    assert code == 0
    assert "--p changed 3 site rates (alpha, element) of the --sites selection" in err
    assert [(s["path"], s["p"]) for s in json.loads(out)["sites"]] == [
        ("blocks.2.drop", 0.4),
        ("blocks.2.noise", 0.4),
        ("head_drop", 0.4),
    ]
    # apply_rates is what the flag calls: sites outside the selection keep their rates
    model = net()
    apply_rates("dropkit audit", model, {"element": 0.4}, ["blocks.0.*", "head"])
    rates = {name: m.p for name, m in model.named_modules() if isinstance(m, nn.Dropout)}
    assert rates == {
        "blocks.0.drop": 0.4,
        "blocks.1.drop": 0.1,
        "blocks.2.drop": 0.1,
        "head_drop": 0.4,
    }
    assert [m.p for m in model.modules() if isinstance(m, nn.AlphaDropout)] == [0.05] * 3
    assert "--p changed 2 site rates (element) of the --sites selection" in (
        capsys.readouterr().err
    )


# -- predict ---------------------------------------------------------------------------------


def _library_probs(x_file: Path, sites: str | list[str], samples: int, seed: int) -> list:
    x = torch.from_numpy(np.load(x_file))
    result = mc_predict(net(), x, samples=samples, seed=seed, sites=sites)
    return [[round(float(v), 6) for v in row] for row in result.mean]


@pytest.mark.parametrize(
    ("flags", "sites"),
    [
        (["--sites", "head"], "head"),
        (["--sites", "head", "--sites", "alpha"], ["head", "alpha"]),
        (["--sites", "head,alpha"], ["head", "alpha"]),
        (["--sites", "last:1"], "last:1"),
    ],
)
def test_predict_samples_only_the_selected_sites(
    capsys: pytest.CaptureFixture[str], x_file: Path, flags: list[str], sites: str | list[str]
) -> None:
    code, out, err = run(
        capsys, "predict", NET, "--input", str(x_file), "--samples", "6", "--seed", "1", *flags
    )
    assert code == 0, err
    probs = [json.loads(line)["probs"] for line in out.splitlines()]
    # the command is mc_predict(model, x, sites=...): same op, same shapes, same masks, so
    # the same numbers once both are rounded to the 6 decimals the command prints
    assert probs == _library_probs(x_file, sites, samples=6, seed=1)
    assert all(r["mutual_information"] > 0 for r in map(json.loads, out.splitlines()))


def test_predict_head_alone_differs_from_every_site(
    capsys: pytest.CaptureFixture[str], x_file: Path
) -> None:
    base = ["predict", NET, "--input", str(x_file), "--samples", "6", "--seed", "1"]
    head = run(capsys, *base, "--sites", "head")[1]
    every = run(capsys, *base)[1]
    assert head != every


# -- score -----------------------------------------------------------------------------------


def test_score_takes_the_same_sites(
    capsys: pytest.CaptureFixture[str], x_file: Path, tmp_path: Path
) -> None:
    pytest.importorskip("pyarrow", reason="dropkit score writes Parquet: needs the 'ray' extra")
    import pyarrow.parquet as pq

    for flags, sites, name in [
        (["--sites", "head"], "head", "one"),
        (["--sites", "head", "--sites", "alpha"], ["head", "alpha"], "union"),
    ]:
        out = tmp_path / f"{name}.parquet"
        argv = ["score", NET, "--input", str(x_file), "--out", str(out), "--samples", "6"]
        code, printed, err = run(capsys, *argv, "--seed", "1", *flags)
        assert code == 0, err
        assert "5 rows" in printed
        manifest = json.loads((out / "_manifest.json").read_text())
        assert manifest["sites"] == repr(sites)  # one entry is stored as before: 'head'
        table = pq.read_table(out).sort_by("row_id")
        assert table.num_rows == 5
        ref = mc_predict(net(), torch.from_numpy(np.load(x_file)), samples=6, seed=1, sites=sites)
        probs = np.asarray(table.column("probs").combine_chunks().flatten().to_numpy())
        # one block of all 5 rows in one batch: the forwards of mc_predict on the same
        # rows, same shapes and masks (keyed by row id), so the same float32 numbers
        assert np.array_equal(probs.reshape(5, 3), ref.mean.numpy())
        assert min(table.column("mutual_information").to_pylist()) > 0


def test_score_refuses_bad_sites_before_writing(
    capsys: pytest.CaptureFixture[str], x_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "s.parquet"
    argv = ["score", NET, "--input", str(x_file), "--out", str(out)]
    one_line_error(capsys, [*argv, "--sites", "hed"], r"^dropkit: error: dropkit score: .*'hed'")
    one_line_error(capsys, [*argv, "--sites", "last:x"], r"dropkit score: expected --sites last:K")
    assert not out.exists()


# -- errors that need the model, on every command ----------------------------------------------


def _argv(command: str, model: str, x_file: Path, tmp_path: Path) -> list[str]:
    if command == "audit":
        return ["audit", model]
    if command == "predict":
        return ["predict", model, "--input", str(x_file)]
    return ["score", model, "--input", str(x_file), "--out", str(tmp_path / "s.parquet")]


COMMANDS = ["audit", "predict", "score"]


@pytest.mark.parametrize("command", COMMANDS)
def test_an_entry_that_selects_nothing_names_the_flag_and_the_fix(
    capsys: pytest.CaptureFixture[str], x_file: Path, tmp_path: Path, command: str
) -> None:
    argv = _argv(command, NET, x_file, tmp_path)
    line = one_line_error(
        capsys,
        [*argv, "--sites", "head", "--sites", "attentoin"],
        rf"^dropkit: error: dropkit {command}: expected --sites entry 'attentoin' to select at "
        r"least one of the 7 dropout sites of 'tests\.cli\.test_sites:net', but it selects "
        r"none\. Did you mean 'attention'\? Pass a kind \(element, spatial, alpha, .*, "
        r"concrete\), head, last:K, blocks:I-J or a glob over site paths; dropkit audit "
        r"tests\.cli\.test_sites:net \(no --sites\) lists every path\.$",
    )
    assert "Traceback" not in line
    # a glob that matches no path gets no guess, and a typo of a path gets the path
    one_line_error(
        capsys,
        [*argv, "--sites", "encoder.*"],
        r"expected --sites entry 'encoder\.\*' to select .* but it selects none\. Pass a kind",
    )
    one_line_error(
        capsys,
        [*argv, "--sites", "head_dorp"],
        r"but it selects none\. Did you mean 'head_drop'\? Pass a kind",
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_depth_entries_that_do_not_fit_the_blocks(
    capsys: pytest.CaptureFixture[str], x_file: Path, tmp_path: Path, command: str
) -> None:
    argv = _argv(command, NET, x_file, tmp_path)
    one_line_error(
        capsys,
        [*argv, "--sites", "last:4"],
        rf"^dropkit: error: dropkit {command}: expected --sites last:K with K <= 3 \(the "
        r"blocks under 'blocks'\), but got 'last:4'\. Pass --sites last:3 for every block\.$",
    )
    one_line_error(
        capsys,
        [*argv, "--sites", "blocks:1-3"],
        rf"^dropkit: error: dropkit {command}: expected --sites blocks:I-J with J < 3 \(the "
        r"blocks under 'blocks'\), but got 'blocks:1-3'\. Pass e\.g\. --sites blocks:0-2\.$",
    )
    flat_argv = _argv(command, FLAT, x_file, tmp_path)
    one_line_error(
        capsys,
        [*flat_argv, "--sites", "last:1"],
        rf"^dropkit: error: dropkit {command}: expected a model with repeated blocks \(at "
        r"least 2 children of one class holding dropout sites\) for --sites last:1, but got "
        r"'tests\.cli\.test_sites:flat' \(Sequential\) with none\. Select sites by kind or "
        r"path instead; dropkit audit tests\.cli\.test_sites:flat \(no --sites\) lists every "
        r"path\.$",
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_malformed_entries_fail_before_the_model_loads(
    capsys: pytest.CaptureFixture[str], x_file: Path, tmp_path: Path, command: str
) -> None:
    argv = _argv(command, "no_such_pkg.mod:make", x_file, tmp_path)
    one_line_error(
        capsys, [*argv, "--sites", "head,"], rf"dropkit {command}: expected --sites ENTRY"
    )
    one_line_error(
        capsys, [*argv, "--sites", "blocks:2-1"], rf"dropkit {command}: expected --sites last:K"
    )


# -- help --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_help_documents_the_flag(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    text = " ".join(out.split())  # argparse wraps the help lines
    assert "--sites ENTRY" in text and "last:K, blocks:I-J" in text
    assert "(repeatable or comma-separated; the union)" in text


def test_sweep_help_says_why_it_has_no_sites(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "sweep", "--help")
    assert code == 0
    assert "There is no --sites: each trial's task builds its own model" in out
    assert "dropkit.set_dropout(model, p, sites=...)" in out


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["demo", "--help"], ["audit", "--help"], ["predict", "--help"],
     ["score", "--help"], ["report", "--help"], ["sweep", "--help"], ["bench"]],
)  # fmt: skip
def test_help_carries_no_machine_timings(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, _ = run(capsys, *argv)
    assert code == 0 and out.strip()
    timing = r"~\s*\d|\b\d+(\.\d+)?\s*(s|sec|seconds|min|minutes)\b|idle cores"
    assert not re.search(timing, out), out
