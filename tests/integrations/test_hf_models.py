"""find_dropout, set_dropout and mc_mode on Hugging Face models (MiniLM, tiny configs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from dropkit.sites import find_dropout, mc_mode, set_dropout
from tests._rate_meter import RateMeter, within

transformers = pytest.importorskip("transformers")

RATES = {"element": 0.2, "attention": 0.35, "path": 0.3}


def tiny(name: str) -> tuple[Any, type, Callable[[], dict[str, torch.Tensor]]]:
    T = transformers
    text = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)

    def ids() -> dict[str, torch.Tensor]:
        return {"input_ids": torch.randint(3, 64, (4, 12))}

    def seq2seq() -> dict[str, torch.Tensor]:
        return {**ids(), "decoder_input_ids": torch.randint(3, 64, (4, 10))}

    def image() -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.randn(16, 3, 32, 32)}

    table: dict[str, tuple[Any, type, Callable[[], dict[str, torch.Tensor]]]] = {
        "bert": (
            T.BertConfig(vocab_size=64, max_position_embeddings=32, **text),
            T.BertForSequenceClassification,
            ids,
        ),
        "roberta": (
            T.RobertaConfig(vocab_size=64, max_position_embeddings=40, **text),
            T.RobertaForSequenceClassification,
            ids,
        ),
        "distilbert": (
            T.DistilBertConfig(
                vocab_size=64,
                dim=32,
                n_layers=2,
                n_heads=2,
                hidden_dim=64,
                max_position_embeddings=32,
            ),
            T.DistilBertForSequenceClassification,
            ids,
        ),
        "gpt2": (
            T.GPT2Config(
                vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=32, pad_token_id=0
            ),
            T.GPT2ForSequenceClassification,
            ids,
        ),
        "llama": (
            T.LlamaConfig(vocab_size=64, num_key_value_heads=2, max_position_embeddings=32, **text),
            T.LlamaForCausalLM,
            ids,
        ),
        "mistral": (
            T.MistralConfig(
                vocab_size=64, num_key_value_heads=2, max_position_embeddings=32, **text
            ),
            T.MistralForCausalLM,
            ids,
        ),
        "t5": (
            T.T5Config(
                vocab_size=64,
                d_model=32,
                d_kv=16,
                d_ff=64,
                num_layers=2,
                num_heads=2,
                decoder_start_token_id=0,
            ),
            T.T5ForConditionalGeneration,
            seq2seq,
        ),
        "bart": (
            T.BartConfig(
                vocab_size=64,
                d_model=32,
                encoder_layers=2,
                decoder_layers=2,
                encoder_attention_heads=2,
                decoder_attention_heads=2,
                encoder_ffn_dim=64,
                decoder_ffn_dim=64,
                max_position_embeddings=32,
            ),
            T.BartForSequenceClassification,
            lambda: {
                "input_ids": torch.randint(3, 64, (4, 12)).index_fill_(1, torch.tensor([11]), 2)
            },
        ),
        "vit": (
            T.ViTConfig(image_size=32, patch_size=8, **text),
            T.ViTForImageClassification,
            image,
        ),
        "convnext": (
            T.ConvNextConfig(
                hidden_sizes=[8, 16], depths=[2, 2], num_stages=2, drop_path_rate=0.2, image_size=32
            ),
            T.ConvNextForImageClassification,
            image,
        ),
    }
    return table[name]


def build(
    name: str, attn: str = "eager"
) -> tuple[nn.Module, Callable[[], dict[str, torch.Tensor]]]:
    config, cls, inputs = tiny(name)
    config._attn_implementation = attn
    return cls(config).eval(), inputs


ARCHS = [
    "bert",
    "roberta",
    "distilbert",
    "gpt2",
    "llama",
    "mistral",
    "t5",
    "bart",
    "vit",
    "convnext",
]
HAS_ATTENTION = [a for a in ARCHS if a != "convnext"]


def path_rates(
    model: nn.Module, inputs: dict[str, torch.Tensor], forwards: int
) -> dict[str, list[int]]:
    """Per DropPath module: [samples, dropped samples] (naive: a dropped sample's output is 0)."""
    counts: dict[str, list[int]] = {}
    hooks = []
    for path, module in model.named_modules():
        if "DropPath" in type(module).__name__:
            counts[path] = [0, 0]

            def hook(mod: nn.Module, args: Any, out: torch.Tensor, path: str = path) -> None:
                live = args[0].flatten(1).ne(0).any(1)
                dead = out.flatten(1).eq(0).all(1)
                counts[path][0] += int(live.sum())
                counts[path][1] += int((live & dead).sum())

            hooks.append(module.register_forward_hook(hook))
    with torch.no_grad():
        for _ in range(forwards):
            model(**inputs)
    for h in hooks:
        h.remove()
    return counts


@pytest.mark.parametrize("name", ARCHS)
def test_set_dropout_rates_really_apply_and_survive_reload(name: str, seed: int, tmp_path) -> None:
    model, make_inputs = build(name)
    # T5 builds attention and hidden dropout from one field (dropout_rate): one rate
    changes = set_dropout(model, {"element": 0.2, "attention": 0.2} if name == "t5" else RATES)
    live = {s.name: s.p for s in find_dropout(model)}
    assert changes and any(c.control == "config" for c in changes)
    expected = {p for s, p in live.items() if p > 0}
    inputs = make_inputs()
    # static discovery explains every dropout call the probe forward observes
    probed = find_dropout(model, probe_inputs=inputs, config=False)
    assert [s for s in probed if s.control == "functional"] == []
    assert {s.name: s.p for s in probed} == live
    with mc_mode(model) as handle:
        assert {s.kind for s in handle.enabled} == (
            {"path"}
            if name == "convnext"
            else {"attention"}
            if name in ("llama", "mistral")
            else {"element", "attention"}
        )
        if name == "convnext":
            counts = path_rates(model, inputs, forwards=6)
            by_path = {s.path: s.p for s in find_dropout(model) if s.kind == "path"}
            assert set(counts) == set(by_path)
            for path, (n, dropped) in counts.items():
                assert within(dropped, n, by_path[path]), (path, n, dropped, by_path[path])
        else:
            meter = RateMeter()
            with torch.no_grad(), meter:
                for _ in range(3):
                    model(**inputs)
            assert set(meter.counts) == {round(p, 6) for p in expected}
            for p, (n, dropped) in meter.counts.items():
                assert n > 1000 and within(dropped, n, p), (p, n, dropped)
    # The config now builds the same rates: save and reload.
    model.save_pretrained(tmp_path)
    again = type(model).from_pretrained(tmp_path)
    reloaded = {s.name: s.p for s in find_dropout(again)}
    assert reloaded.keys() == live.keys()
    for key, p in live.items():
        assert reloaded[key] == pytest.approx(p, rel=1e-6, abs=1e-9), key


@pytest.mark.parametrize("name", HAS_ATTENTION)
def test_mc_mode_switches_fused_attention_dropout(name: str, seed: int) -> None:
    model, make_inputs = build(name, attn="sdpa")
    set_dropout(model, 0.0)
    if name == "t5":  # dropout_rate builds both kinds: the config cannot hold 0 and 0.25
        with pytest.warns(UserWarning, match="config field 'dropout_rate'"):
            set_dropout(model, 0.25, sites="attention")
    else:
        set_dropout(model, 0.25, sites="attention")
    inputs = make_inputs()
    meter = RateMeter()
    with torch.no_grad(), meter:
        ref = model(**inputs)[0]
    assert meter.sdpa_p and set(meter.sdpa_p) == {0.0}
    meter = RateMeter()
    with torch.no_grad(), mc_mode(model, sites="attention") as handle, meter:
        a, b = model(**inputs)[0], model(**inputs)[0]
    assert {s.kind for s in handle.enabled} == {"attention"}
    assert set(meter.sdpa_p) == {0.25}
    assert not torch.equal(a, b)  # hidden dropout is 0: only attention dropout is random
    with torch.no_grad():
        assert torch.equal(model(**inputs)[0], ref)
    assert not any(m.training for m in model.modules())


def test_config_alone_changes_nothing_but_set_dropout_changes_both() -> None:
    """Known failure 1: editing the config after loading does not reach the modules."""
    model, _ = build("gpt2")
    model.config.resid_pdrop = 0.4
    assert {s.p for s in find_dropout(model) if s.path.endswith("resid_dropout")} == {0.1}
    set_dropout(model, 0.3, sites="element")
    assert {s.p for s in find_dropout(model) if s.kind == "element"} == {0.3}
    assert model.config.resid_pdrop == 0.3 and model.config.embd_pdrop == 0.3
    assert model.config.attn_pdrop == 0.1
    # resid_pdrop also builds the MLP dropouts: changing only attn.resid_dropout cannot be
    # saved in the config, and set_dropout says so instead of failing silently
    with pytest.warns(UserWarning, match=r"'resid_pdrop' .* differ per site \(\[0.2, 0.3\]\)"):
        set_dropout(model, 0.2, sites="*attn.resid_dropout")
    assert model.config.resid_pdrop == 0.3  # the deepest site (h.1.mlp.dropout) decides


def test_depth_function_warns_when_config_cannot_hold_it(tmp_path) -> None:
    model, _ = build("bert")
    with pytest.warns(UserWarning, match="expected config field 'hidden_dropout_prob' to hold"):
        set_dropout(model, lambda site, depth: 0.1 + 0.2 * depth, sites="element")
    rates = [s.p for s in find_dropout(model) if s.kind == "element"]
    assert rates[0] == pytest.approx(0.1) and rates[-1] == pytest.approx(0.3)


def test_classifier_head_sites_and_fallback_field() -> None:
    model, _ = build("bert")
    assert model.config.classifier_dropout is None
    changes = set_dropout(model, 0.05, sites="dropout")
    assert [(c.attr, c.control, c.new) for c in changes] == [
        ("p", "module", 0.05),
        ("classifier_dropout", "config", 0.05),
    ]
    assert model.config.hidden_dropout_prob == 0.1
    with mc_mode(model, sites="head") as handle:
        assert [s.name for s in handle.enabled] == ["dropout"]
    roberta, _ = build("roberta")
    with mc_mode(roberta, sites="head") as handle:
        assert [s.name for s in handle.enabled] == ["classifier.dropout"]
    # "head" selects the same sites for set_dropout, with the config field that builds them
    changes = set_dropout(roberta, 0.07, sites="head")
    assert [(c.path, c.attr, c.new) for c in changes] == [
        ("classifier.dropout", "p", 0.07),
        ("", "classifier_dropout", 0.07),
    ]
    assert roberta.config.hidden_dropout_prob == 0.1
    distil, _ = build("distilbert")
    with mc_mode(distil, sites="head") as handle:
        assert [s.name for s in handle.enabled] == ["dropout"]


def test_bart_gate_keeps_layerdrop_off() -> None:
    config, cls, make_inputs = tiny("bart")
    config.encoder_layerdrop = 0.5
    model = cls(config).eval()
    enc = model.model.encoder
    with mc_mode(model, sites="element"):
        assert enc.training and enc.layerdrop == 0.0
    assert enc.layerdrop == 0.5 and not enc.training


def snapshot(model: nn.Module) -> tuple:
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    return (
        tensors,
        [m.training for m in model.modules()],
        [(s.name, s.p) for s in find_dropout(model)],
    )


def assert_same(a: tuple, b: tuple) -> None:
    assert a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
    assert a[1:] == b[1:]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_minilm_attention_dropout_really_on(minilm_dir, attn: str, seed: int) -> None:
    model = transformers.AutoModel.from_pretrained(minilm_dir, attn_implementation=attn).eval()
    sites = find_dropout(model)
    kinds = {s.kind for s in sites}
    assert kinds == {"element", "attention"}
    assert sum(s.kind == "attention" for s in sites) == model.config.num_hidden_layers
    assert all(s.p == pytest.approx(0.1) and not s.active for s in sites)
    inputs = {
        "input_ids": torch.randint(1000, 5000, (2, 10)),
        "attention_mask": torch.ones(2, 10, dtype=torch.long),
    }
    with torch.no_grad():
        ref = model(**inputs).last_hidden_state
        before = snapshot(model)
        with mc_mode(model) as handle:
            assert len(handle.enabled) == len(sites)
            assert all(s.active for s in find_dropout(model))
            assert not torch.equal(
                model(**inputs).last_hidden_state, model(**inputs).last_hidden_state
            )
        assert torch.equal(model(**inputs).last_hidden_state, ref)
        assert_same(before, snapshot(model))
        # hidden dropout off: what remains random is attention dropout alone
        set_dropout(model, 0.0, sites="element")
        assert model.config.hidden_dropout_prob == 0.0
        with mc_mode(model) as handle:
            assert {s.kind for s in handle.enabled} == {"attention"}
            a, b = model(**inputs).last_hidden_state, model(**inputs).last_hidden_state
        assert not torch.equal(a, b)
        assert torch.equal(model(**inputs).last_hidden_state, ref)


def test_minilm_classifier_head_only(minilm_dir, seed: int) -> None:
    with torch.no_grad():
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            minilm_dir, num_labels=3
        )
    model.eval()
    inputs = {"input_ids": torch.randint(1000, 5000, (2, 10))}
    with torch.no_grad():
        ref = model(**inputs).logits
        with mc_mode(model, sites="head") as handle:
            assert [s.name for s in handle.enabled] == ["dropout"]
            assert not model.bert.encoder.layer[0].attention.self.training
            assert not torch.equal(model(**inputs).logits, model(**inputs).logits)
        assert torch.equal(model(**inputs).logits, ref)


def test_convnext_built_without_drop_path_reports_config_site() -> None:
    config, cls, _ = tiny("convnext")
    config.drop_path_rate = 0.0
    model = cls(config).eval()
    sites = find_dropout(model)
    assert [(s.path, s.kind, s.p, s.control, s.attr, s.active) for s in sites] == [
        ("", "path", 0.0, "config", "drop_path_rate", False)
    ]
    with pytest.warns(UserWarning, match=r"config fields drop_path_rate=0.0, but the model"):
        assert set_dropout(model, 0.2) == []
    assert model.config.drop_path_rate == 0.0
    with pytest.raises(RuntimeError, match="set_dropout"):
        mc_mode(model)


def test_sub_configs_are_updated(tmp_path) -> None:
    T = transformers
    config = T.CLIPConfig(
        text_config=dict(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
        ),
        vision_config=dict(
            image_size=16,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
        ),
        projection_dim=16,
    )
    model = T.CLIPModel(config).eval()
    changes = set_dropout(model, 0.2, sites="attention")
    fields = sorted(c.attr for c in changes if c.control == "config")
    assert fields == ["text_config.attention_dropout", "vision_config.attention_dropout"]
    assert model.config.text_config.attention_dropout == 0.2
    model.save_pretrained(tmp_path)
    again = T.CLIPModel.from_pretrained(tmp_path)
    assert {s.name: s.p for s in find_dropout(again)} == {s.name: s.p for s in find_dropout(model)}


def test_sites_not_built_by_the_config_warn(tmp_path) -> None:
    model, _ = build("bert")
    model.bert.pooler.add_module("extra", nn.Dropout(0.1))  # not in any config field
    with pytest.warns(UserWarning, match=r"but 1 are not \(bert.pooler.extra\)"):
        changes = set_dropout(model, 0.3)
    assert model.bert.pooler.extra.p == 0.3 and model.config.hidden_dropout_prob == 0.3
    assert any(c.attr == "attention_probs_dropout_prob" for c in changes)


def test_bad_input_leaves_hf_model_unchanged() -> None:
    model, _ = build("gpt2")
    before = snapshot(model)
    config = model.config.to_dict()
    with pytest.raises(ValueError, match=r"set_dropout: expected p\['attention'\] in \[0, 1\]"):
        set_dropout(model, {"element": 0.3, "attention": 1.5})
    with pytest.raises(ValueError, match="Known kinds: element, spatial"):
        set_dropout(model, 0.3, kinds=["element", "dropconnect"])
    with pytest.warns(UserWarning, match="select none"):
        set_dropout(model, 0.3, sites="decoder.*")
    assert_same(before, snapshot(model))
    assert model.config.to_dict() == config
