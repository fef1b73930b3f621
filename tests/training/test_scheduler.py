"""DropoutScheduler: applies schedules through set_dropout, resumes exactly, fails cleanly."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import dropkit
from dropkit import schedules as S
from dropkit.training import DropoutScheduler, linear_depth, scheduled, steps


def mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(4, 8),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(8, 8),
        nn.Dropout(0.5),
        nn.Linear(8, 2),
    )


def rates(model: nn.Module) -> list[float]:
    return [site.p for site in dropkit.find_dropout(model)]


def test_step_applies_schedule_to_every_site() -> None:
    net = mlp()
    sched = DropoutScheduler(net, S.cosine(0.4, 0.0, steps=10))
    for step in range(12):
        p = sched.step(step)
        assert p == S.cosine(0.4, 0.0, steps=10)(step)
        assert rates(net) == [p, p]
        assert sched.current_p == p and sched.last_step == step


def test_plain_callable_and_constant() -> None:
    net = mlp()
    DropoutScheduler(net, lambda step: 0.01 * step).step(7)
    assert rates(net) == [0.07, 0.07]
    DropoutScheduler(net, 0.25).step(0)
    assert rates(net) == [0.25, 0.25]


def test_sites_select_sites() -> None:
    net = mlp()
    DropoutScheduler(net, S.constant(0.1), sites="4").step(0)
    assert rates(net) == [0.5, 0.1]
    DropoutScheduler(net, S.constant(0.2), sites="element").step(0)
    assert rates(net) == [0.2, 0.2]


def test_depth_profile_multiplies_scheduled_rate() -> None:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=50,
        hidden_size=8,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    bert = BertModel(config)
    sched = DropoutScheduler(bert, S.cosine(0.3, 0.0, 10), depth_profile=linear_depth(1.0))
    # The config cannot hold per-depth rates: said once, not at every step.
    with pytest.warns(UserWarning, match="config field .* differ per site"):
        sched.step(1)
    sched.step(0)  # no warning (pytest turns warnings into errors)
    for site in dropkit.find_dropout(bert):
        assert site.p == pytest.approx(0.3 * site.depth_fraction), site.path
    # Deepest encoder block gets the full rate, the first one none.
    deepest = [s for s in dropkit.find_dropout(bert) if s.layer == 2]
    assert deepest and all(s.p == pytest.approx(0.3) for s in deepest)


def test_hf_config_follows_the_schedule() -> None:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=50,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    bert = BertModel(config)
    sched = DropoutScheduler(bert, S.linear(0.2, 0.0, steps=4))
    sched.step(2)
    assert bert.config.hidden_dropout_prob == pytest.approx(0.1)
    assert bert.config.attention_probs_dropout_prob == pytest.approx(0.1)
    assert {s.kind for s in dropkit.find_dropout(bert)} >= {"attention", "element"}
    assert all(s.p == pytest.approx(0.1) for s in dropkit.find_dropout(bert))


def test_state_dict_resume_continues_exactly() -> None:
    schedule = S.sequence([S.warmup(0.3, 5), S.cosine(0.3, 0.05, 20)], boundaries=[5])
    net = mlp()
    first = DropoutScheduler(net, schedule)
    for step in range(9):
        first.step(step)
    state = first.state_dict()
    assert state == {"step": 8, "p": schedule(8), "schedule": repr(schedule)}

    fresh = mlp()  # a rebuilt model, rates back at 0.5
    resumed = DropoutScheduler(fresh, schedule)
    resumed.load_state_dict(state)
    assert rates(fresh) == [schedule(8)] * 2
    uninterrupted = DropoutScheduler(mlp(), schedule)
    for step in range(9, 30):
        assert resumed.step(step) == uninterrupted.step(step)
        assert rates(fresh) == [schedule(step)] * 2


def test_load_state_dict_warns_on_other_schedule_and_rejects_garbage() -> None:
    sched = DropoutScheduler(mlp(), S.constant(0.1))
    with pytest.warns(UserWarning, match=r"saved with schedule constant\(0.2\)"):
        sched.load_state_dict({"step": 3, "p": 0.2, "schedule": "constant(0.2)"})
    assert sched.last_step == 3 and sched.current_p == 0.1
    with pytest.raises(ValueError, match=r"load_state_dict: expected a dict with a 'step' entry"):
        sched.load_state_dict({"p": 0.1})


def test_bad_rate_or_step_leaves_model_untouched() -> None:
    net = mlp()
    sched = DropoutScheduler(net, lambda step: 0.1 if step < 3 else 1.5)
    sched.step(0)
    before = [m.training for m in net.modules()]
    with pytest.raises(ValueError, match=r"at step 3: expected p in \[0, 1\), but got 1.5"):
        sched.step(3)
    with pytest.raises(ValueError, match=r"DropoutScheduler.step: expected step >= 0, but got -2"):
        sched.step(-2)
    assert rates(net) == [0.1, 0.1] and sched.last_step == 0
    assert [m.training for m in net.modules()] == before


def test_bad_depth_profile_leaves_model_untouched() -> None:
    from transformers import BertConfig, BertModel

    bert = BertModel(
        BertConfig(
            vocab_size=50,
            hidden_size=8,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=16,
            max_position_embeddings=16,
        )
    )
    before = rates(bert)
    sched = DropoutScheduler(bert, 0.5, depth_profile=lambda d: 2.0 * d)
    with pytest.raises(ValueError, match=r"at depth 1: expected p in \[0, 1\], but got 2.0"):
        sched.step(0)
    assert rates(bert) == before


def test_constructor_type_errors() -> None:
    with pytest.raises(TypeError, match="DropoutScheduler: expected model to be a torch.nn.Module"):
        DropoutScheduler(torch.zeros(3), 0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="as_schedule: expected a callable"):
        DropoutScheduler(mlp(), "cosine")  # type: ignore[arg-type]


def test_rates_written_only_on_change_unless_forced() -> None:
    net = mlp()
    sched = DropoutScheduler(net, S.constant(0.2))
    sched.step(0)
    net[2].p = 0.4  # changed behind the scheduler's back
    sched.step(1)
    assert net[2].p == 0.4
    sched.step(2, force=True)
    assert net[2].p == 0.2


def test_plain_loop_helpers() -> None:
    net = mlp()
    sched = DropoutScheduler(net, S.early(0.3, until=2))
    seen = [(step, net[2].p) for step in steps(sched, range(4))]
    assert seen == [(0, 0.3), (1, 0.3), (2, 0.0), (3, 0.0)]
    pairs = [(step, batch, net[4].p) for step, batch in scheduled(sched, ["a", "b"], start=1)]
    assert pairs == [(1, "a", 0.3), (2, "b", 0.0)]
    with pytest.raises(ValueError, match="scheduled: expected step >= 0, but got -1"):
        list(scheduled(sched, ["a"], start=-1))


def _blocks() -> nn.Module:
    blocks = nn.ModuleList(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)) for _ in range(3))
    return nn.ModuleDict({"blocks": blocks, "head": nn.Dropout(0.5)})


@pytest.mark.parametrize(
    ("sites", "expected"),
    [
        ("head", [0.5, 0.5, 0.5, 0.1]),
        ("element", [0.1, 0.1, 0.1, 0.1]),
        ("last:1", [0.5, 0.5, 0.1, 0.1]),
        ("blocks:0-1", [0.1, 0.1, 0.5, 0.1]),
        ("blocks.0.*", [0.1, 0.5, 0.5, 0.5]),
        (re.compile(r"^blocks\.2"), [0.5, 0.5, 0.1, 0.5]),
        (lambda site: site.depth == 1, [0.5, 0.1, 0.5, 0.5]),
        (["head", "blocks.0.*"], [0.1, 0.5, 0.5, 0.1]),
    ],
)
def test_every_selector_form(sites: object, expected: list[float]) -> None:
    net = _blocks()
    DropoutScheduler(net, S.constant(0.1), sites=sites).step(0)  # type: ignore[arg-type]
    assert rates(net) == expected


def test_a_site_object_selects_that_site() -> None:
    net = _blocks()
    site = dropkit.find_dropout(net)[1]
    DropoutScheduler(net, S.constant(0.1), sites=site).step(0)
    assert rates(net) == [0.5, 0.1, 0.5, 0.5]


def test_deprecated_kinds_and_where_warn_and_select_the_same() -> None:
    with pytest.warns(DeprecationWarning, match=r"DropoutScheduler: where= is deprecated; use si"):
        where = DropoutScheduler(mlp(), S.constant(0.1), where="4")
    with pytest.warns(DeprecationWarning, match=r"DropoutScheduler: kinds= is deprecated; use si"):
        kinds = DropoutScheduler(mlp(), S.constant(0.1), kinds="element")
    with pytest.warns(DeprecationWarning, match=r"kinds= and where= are deprecated; use sites="):
        both = DropoutScheduler(mlp(), S.constant(0.1), kinds="element", where="4")
    pairs = [(where, "4"), (kinds, "element"), (both, "4")]
    for old, sites in pairs:
        new = DropoutScheduler(mlp(), S.constant(0.1), sites=sites)
        old.step(0)
        new.step(0)
        assert rates(old.model) == rates(new.model)
    assert rates(both.model) == [0.5, 0.1]


def test_sites_with_an_alias_is_a_type_error() -> None:
    with pytest.raises(
        TypeError,
        match=r"DropoutScheduler: expected sites= alone, but got sites='4' together with "
        r"kinds='element'\. kinds= and where= are deprecated aliases of sites=",
    ):
        DropoutScheduler(mlp(), 0.1, sites="4", kinds="element")


def test_bad_sites_fail_at_construction() -> None:
    with pytest.raises(TypeError, match="DropoutScheduler: expected sites to be None, 'head'"):
        DropoutScheduler(mlp(), 0.1, sites=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"DropoutScheduler: expected sites='last:k' or 'bl"):
        DropoutScheduler(mlp(), 0.1, sites="last:")
