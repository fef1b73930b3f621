"""mc_mode / mc_predict restore the model in any closing order and from any thread."""

from __future__ import annotations

import gc
import random
import threading
from collections.abc import Callable

import pytest
import torch
from torch import nn

from dropkit import find_dropout, mc_predict
from dropkit.sites import DropoutActiveWarning, MCMode, guard, mc_mode
from dropkit.sites.claims import CLAIMS
from tests._toy_models import Custom, Gated, make_net, same_state, state


def bn_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 8), Gated()
    ).eval()


class TwoRates(nn.Module):
    """One gate reading two rates: selecting one zeroes the other while open."""

    def __init__(self) -> None:
        super().__init__()
        self.dropout = 0.2
        self.layerdrop = 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.layerdrop > 0 and torch.rand(()) < self.layerdrop:
            return x
        return nn.functional.dropout(x, self.dropout, self.training)


def run_threads(n: int, body: Callable[[int], None]) -> None:
    """Run ``body(i)`` in ``n`` threads released together; re-raise the first error."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            body(i)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_out_of_order_handles_restore_everything() -> None:
    net = bn_net()
    before = state(net)
    a = mc_mode(net)
    b = mc_mode(net)
    a.restore()
    assert net[3].training and net[5].training  # b still open: its sites still drop
    b.restore()
    assert same_state(before, state(net))
    assert not CLAIMS


def test_out_of_order_with_different_sites() -> None:
    net = bn_net()
    before = state(net)
    a = mc_mode(net, sites="element")
    b = mc_mode(net, sites="attention")
    assert net[3].training and net[5].training
    a.restore()
    assert not net[3].training and net[5].training  # only b's site is left on
    b.restore()
    assert same_state(before, state(net))


def test_collateral_rate_comes_back_in_any_order() -> None:
    m = TwoRates().eval()
    a = mc_mode(m, sites="element")  # zeroes layerdrop while open
    assert m.layerdrop == 0.0
    b = mc_mode(m, sites="layer")  # the latest block wants layerdrop at its rate
    assert [s.name for s in b.enabled] == ["layerdrop"] and m.layerdrop == 0.5
    a.restore()
    assert m.layerdrop == 0.5 and m.training
    b.restore()
    assert m.layerdrop == 0.5 and m.dropout == 0.2 and not m.training
    c = mc_mode(m, sites="element")
    d = mc_mode(m, sites="layer")
    d.restore()  # back to c's value, not to the original
    assert m.layerdrop == 0.0 and m.training
    c.restore()
    assert m.layerdrop == 0.5 and not m.training


@pytest.mark.parametrize("order", range(6))
def test_random_open_close_orders_match_a_reference(order: int) -> None:
    # Reference: a flag is on iff some open handle selected a site it gates, otherwise
    # as before the first handle. Checked after every step of a random schedule.
    rng = random.Random(order)
    net = make_net()
    net[0].train()  # an unusual mix of flags must come back exactly
    before = state(net)
    original = {id(m): m.training for m in net.modules()}
    choices = ["element", "alpha", "gaussian", "spatial", None, ["4", "1"]]
    open_: list[MCMode] = []
    for _ in range(40):
        if open_ and (len(open_) >= 5 or rng.random() < 0.5):
            open_.pop(rng.randrange(len(open_))).restore()
        else:
            open_.append(mc_mode(net, sites=rng.choice(choices)))
        held = {id(g) for h in open_ for s in h.enabled for g in s.gates}
        for m in net.modules():
            assert m.training == (id(m) in held or original[id(m)])
    for h in reversed(open_):
        h.restore()
    assert same_state(before, state(net))


def test_threads_each_open_and_close_mc_mode() -> None:
    net = bn_net()
    before = state(net)
    x = torch.randn(4, 6)

    def body(i: int) -> None:
        for _ in range(50):
            with torch.no_grad(), mc_mode(net, sites="element" if i % 2 else None):
                assert net[3].training  # every open block's site drops
                net(x)

    run_threads(8, body)
    assert same_state(before, state(net))
    assert not CLAIMS


@pytest.mark.parametrize("train_first", [False, True])
def test_threads_calling_mc_predict_restore_the_model(train_first: bool) -> None:
    # Left in training mode or not, the model comes back exactly (BatchNorm running
    # statistics included: they would move if any call ran BatchNorm in training mode).
    net = nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 8)
    ).train(train_first)
    before = state(net)
    x = torch.randn(5, 6)
    reference = mc_predict(net, x, samples=4, seed=1, strategy="loop").mean

    def body(i: int) -> None:
        for _ in range(5):
            r = mc_predict(net, x, samples=4, seed=1, strategy="loop", progress=False)
            # Masks are per call (seeded per sample), so concurrent calls do not disturb
            # them; the same ops on the same shapes, float32: a few eps of slack in case
            # another thread count rounds a product differently. A wrong mask moves the
            # mean by ~0.1.
            torch.testing.assert_close(r.mean, reference, rtol=0, atol=1e-6)

    run_threads(6, body)
    assert same_state(before, state(net))
    assert not CLAIMS
    assert not any("forward" in vars(m) for m in net.modules())  # no route left behind


def test_mc_predict_does_not_call_eval_or_train_overrides() -> None:
    class Strict(nn.Sequential):
        calls = 0

        def train(self, mode: bool = True) -> Strict:
            Strict.calls += 1
            raise AssertionError("train()/eval() of the user's model must not run")

    net = Strict(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.3), nn.Linear(4, 3))
    nn.Module.train(net, True)  # left in training mode, without the override
    before = state(net)
    r = mc_predict(net, torch.randn(6, 4), samples=3, seed=0, progress=False)
    assert r.mean.shape == (6, 3) and Strict.calls == 0
    assert same_state(before, state(net))


def test_a_model_dropped_with_a_block_open_leaves_no_claims() -> None:
    net = bn_net()
    handle = mc_mode(net)
    assert CLAIMS
    del net, handle
    gc.collect()
    assert not CLAIMS


def test_failed_switch_releases_its_claims() -> None:
    class Exploding(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = nn.Dropout(0.2)
            self.fail = False

        def __setattr__(self, name: str, value: object) -> None:
            if name == "training" and getattr(self, "fail", False):
                raise RuntimeError("boom")
            super().__setattr__(name, value)

    inner = Exploding()
    net = nn.Sequential(nn.Dropout(0.1), inner).eval()
    before = state(net)
    inner.fail = True
    with pytest.raises(RuntimeError, match="boom"):
        MCMode(net, eval_others=True)
    inner.fail = False
    assert same_state(before, state(net))
    assert not CLAIMS


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_threads_on_real_minilm_reproduce_the_seeded_result(minilm_dir, impl: str) -> None:
    # All sites on: module dropout (seeded per row) and BERT's attention dropout, which
    # draws from torch's one global generator inside a forked, seeded state; concurrent
    # calls take turns there, so each still gets its own bits and nobody's state moves.
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        minilm_dir, num_labels=2, attn_implementation=impl
    ).eval()
    enc = tok(["a short text", "another one, a bit longer"], return_tensors="pt", padding=True)
    before = state(model)
    ref = mc_predict(model, enc, samples=3, seed=5, progress=False)
    assert ref.extras["global_rng_sites"]  # the attention dropout is in the test
    rng = torch.get_rng_state()

    def body(i: int) -> None:
        for _ in range(2):
            r = mc_predict(model, enc, samples=3, seed=5, progress=False)
            # Same masks: float32 through 6 layers of 384-term dot products, a few eps of
            # room in case another thread count rounds a product differently; one wrong
            # mask moves the mean by ~1e-3.
            torch.testing.assert_close(r.mean, ref.mean, rtol=0, atol=1e-5)

    run_threads(4, body)
    assert torch.equal(torch.get_rng_state(), rng)
    assert same_state(before, state(model))
    assert not CLAIMS


def test_guard_is_silent_under_concurrent_mc_and_warns_once() -> None:
    net = bn_net()
    handle = guard(net)
    x = torch.randn(4, 6)

    def mc(i: int) -> None:
        for _ in range(30):
            with torch.no_grad(), mc_mode(net):
                net(x)  # MC on purpose: no warning (warnings are errors here)

    run_threads(6, mc)
    assert not handle.warned
    net.train()  # the forgotten eval(), seen by several threads at once

    def forgot(i: int) -> None:
        with torch.no_grad():
            net(x)

    with pytest.warns(DropoutActiveWarning) as record:
        run_threads(6, forgot)
    assert handle.warned and len(record) == 1


def test_probing_while_other_threads_run_mc() -> None:
    # find_dropout(probe_inputs=) holds flags like mc_mode and attributes calls only to
    # its own thread's forward, so probes and MC blocks on one model mix safely (blocks
    # that want the same flags: an mc_predict holding Custom in eval would hide its
    # calls from a concurrent probe, the documented "latest block holds" rule).
    net = nn.Sequential(nn.Linear(8, 8), Custom(), nn.Dropout(0.1)).eval()
    before = state(net)
    x = torch.randn(4, 8)
    expected = [(s.name, s.control, s.p) for s in find_dropout(net, probe_inputs=x)]

    def body(i: int) -> None:
        for _ in range(10):
            if i % 2:
                got = [(s.name, s.control, s.p) for s in find_dropout(net, probe_inputs=x)]
                assert got == expected
            else:
                with torch.no_grad(), mc_mode(net, sites="element"):
                    net(x)

    run_threads(6, body)
    assert same_state(before, state(net))
    assert not CLAIMS
