"""DropoutCallback in a real transformers Trainer (MiniLM-L6) and a real Lightning Trainer."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dropkit
from dropkit import schedules as S
from dropkit.nn.head import ClassifierHead
from dropkit.training import OverfitMonitor

SENTENCES = [
    ("the film was wonderful and moving", 1),
    ("a dull, lifeless two hours", 0),
    ("brilliant acting and a sharp script", 1),
    ("i want my money back", 0),
    ("a joy from start to finish", 1),
    ("tedious and far too long", 0),
    ("the best thing i saw this year", 1),
    ("clumsy plot, wooden dialogue", 0),
    ("warm, funny and clever", 1),
    ("a complete waste of time", 0),
    ("beautifully shot and well paced", 1),
    ("boring from the first minute", 0),
]


# --------------------------------------------------------------------------- transformers


class MiniLMClassifier(nn.Module):
    """MiniLM-L6 backbone + ClassifierHead, returning loss/logits like a HF model."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        from transformers import AutoModel

        self.backbone = AutoModel.from_pretrained(path)
        self.head = ClassifierHead(self.backbone.config.hidden_size, 2, hidden=32, p=0.1)
        self.seen: list[tuple[float, float]] = []

    def forward(self, input_ids, attention_mask, labels=None, token_type_ids=None):
        if self.training:
            attention = self.backbone.encoder.layer[0].attention.self.dropout.p
            self.seen.append((self.head.dropout1.p, attention))
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        logits = self.head(out, attention_mask)
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return {"loss": loss, "logits": logits}


def _trainer(model, minilm_dir, tmp_path, callback, **overrides):
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments

    tok = AutoTokenizer.from_pretrained(minilm_dir)
    data = [{**tok(text), "labels": label} for text, label in SENTENCES]
    settings = dict(
        output_dir=str(tmp_path),
        max_steps=6,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=12,
        learning_rate=5e-5,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        seed=0,
    )
    settings.update(overrides)
    return Trainer(
        model=model,
        args=TrainingArguments(**settings),
        train_dataset=data,
        eval_dataset=data,
        data_collator=DataCollatorWithPadding(tok),
        callbacks=[callback],
    )


def test_hf_trainer_applies_and_logs_schedule(minilm_dir, tmp_path, seed) -> None:
    from dropkit.integrations.hf import DropoutCallback

    schedule = S.linear(0.3, 0.0, steps=5)
    monitor = OverfitMonitor(patience=2)
    callback = DropoutCallback(schedule, monitor=monitor)
    model = MiniLMClassifier(minilm_dir)
    trainer = _trainer(model, minilm_dir, tmp_path, callback)
    trainer.train()

    # The live rates seen by each training forward are schedule(step), head and
    # backbone attention alike.
    expected = [schedule(step) for step in range(6)]
    assert [head for head, _ in model.seen] == expected
    assert [attention for _, attention in model.seen] == expected
    # Every dropout site in the model, and MiniLM's config, carry the last rate.
    assert {s.p for s in dropkit.find_dropout(model)} == {schedule(5)}
    assert model.backbone.config.attention_probs_dropout_prob == schedule(5)
    # The rate of the step just taken is in the Trainer's log history.
    train_logs = [e for e in trainer.state.log_history if "loss" in e]
    assert [e["step"] for e in train_logs] == [1, 2, 3, 4, 5, 6]
    assert [e["dropout_p"] for e in train_logs] == expected
    # The monitor got one verdict per evaluation.
    assert len(callback.verdicts) == 3 and len(monitor.history) == 3
    assert all(v.regime in {"healthy", "overfitting", "underfitting"} for v in callback.verdicts)


def test_hf_trainer_resume_continues_schedule(minilm_dir, tmp_path, seed) -> None:
    from dropkit.integrations.hf import DropoutCallback

    schedule = S.cosine(0.4, 0.0, steps=6)
    first = MiniLMClassifier(minilm_dir)
    # Freeze the backbone so the checkpoint's optimizer state stays small.
    first.backbone.requires_grad_(False)
    trainer = _trainer(
        first,
        minilm_dir,
        tmp_path,
        DropoutCallback(schedule, monitor=OverfitMonitor()),
        save_strategy="steps",
        save_steps=3,
        max_steps=3,
    )
    trainer.train()
    assert [p for p, _ in first.seen] == [schedule(s) for s in range(3)]

    second = MiniLMClassifier(minilm_dir)
    second.backbone.requires_grad_(False)
    monitor = OverfitMonitor()
    callback = DropoutCallback(schedule, monitor=monitor)
    resumed = _trainer(second, minilm_dir, tmp_path, callback, save_strategy="no", max_steps=6)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    assert [p for p, _ in second.seen] == [schedule(s) for s in (3, 4, 5)]
    steps_logged = {e["step"]: e["dropout_p"] for e in resumed.state.log_history if "loss" in e}
    assert steps_logged == {s: schedule(s - 1) for s in range(1, 7)}
    # Monitor rebuilt from the restored history (the checkpoint's evaluations: step 2,
    # plus the end-of-training one some transformers versions add) and the evals at 4 and 6.
    state = json.loads((tmp_path / "checkpoint-3" / "trainer_state.json").read_text())
    restored = sum("eval_loss" in entry for entry in state["log_history"])
    assert restored >= 1
    assert len(monitor.history) == restored + 2 and len(callback.verdicts) == 2


def _batches(minilm_dir):
    from transformers import AutoTokenizer, DataCollatorWithPadding

    tok = AutoTokenizer.from_pretrained(minilm_dir)
    collate = DataCollatorWithPadding(tok)
    rows = [{**tok(text), "labels": label} for text, label in SENTENCES]
    return tok, [collate(rows[i : i + 4]) for i in range(0, len(rows), 4)]


def test_hf_callback_event_sequence(minilm_dir, tmp_path, seed) -> None:
    """The Trainer's event order driven through transformers' own CallbackHandler.

    Runs without `accelerate`: the events, TrainerState, TrainerControl and
    checkpointed state are transformers' real objects; only the loop is ours,
    in the order Trainer calls the events (step_begin, step, step_end, log,
    evaluate), and the arguments object is a stand-in.
    """
    from transformers import TrainerControl, TrainerState
    from transformers.trainer_callback import CallbackHandler

    from dropkit.integrations.hf import DropoutCallback

    schedule = S.cosine(0.4, 0.0, steps=6)
    # TrainingArguments itself needs accelerate; the callback reads only weight_decay.
    args = SimpleNamespace(weight_decay=0.0)
    tok, batches = _batches(minilm_dir)

    def run(model, callback, state, stop_at):
        opt = torch.optim.AdamW(model.head.parameters(), lr=1e-3)
        handler = CallbackHandler([callback], model, tok, opt, None)
        control = handler.on_train_begin(args, state, TrainerControl())
        while state.global_step < stop_at:
            control = handler.on_step_begin(args, state, control)
            model.train()
            loss = model(**batches[state.global_step % 3])["loss"]
            loss.backward()
            opt.step()
            opt.zero_grad()
            state.global_step += 1
            control = handler.on_step_end(args, state, control)
            logs = {"loss": float(loss.detach())}
            state.log_history.append({**logs, "step": state.global_step})
            handler.on_log(args, state, control, logs)
            assert logs["dropout_p"] == schedule(state.global_step - 1)
            if state.global_step % 2 == 0:
                model.eval()
                with torch.no_grad():
                    metrics = {"eval_loss": float(model(**batches[0])["loss"])}
                state.log_history.append({**metrics, "step": state.global_step})
                handler.on_log(args, state, control, metrics)
                handler.on_evaluate(args, state, control, metrics)
        return state

    first = MiniLMClassifier(minilm_dir)
    first.backbone.requires_grad_(False)
    state = run(first, DropoutCallback(schedule, monitor=OverfitMonitor()), TrainerState(), 3)
    assert [p for p, _ in first.seen] == [schedule(s) for s in range(3)]
    assert [a for _, a in first.seen] == [schedule(s) for s in range(3)]
    state.save_to_json(str(tmp_path / "trainer_state.json"))

    # Resume from the saved TrainerState with a fresh model, callback and monitor.
    restored = TrainerState.load_from_json(str(tmp_path / "trainer_state.json"))
    second = MiniLMClassifier(minilm_dir)
    second.backbone.requires_grad_(False)
    monitor = OverfitMonitor()
    callback = DropoutCallback(schedule, monitor=monitor)
    state = run(second, callback, restored, 6)
    assert [p for p, _ in second.seen] == [schedule(s) for s in (3, 4, 5)]
    logged = {e["step"]: e["dropout_p"] for e in state.log_history if "loss" in e}
    assert logged == {s: schedule(s - 1) for s in range(1, 7)}
    assert len(monitor.history) == 3 and len(callback.verdicts) == 2


def test_hf_callback_bad_input() -> None:
    from dropkit.integrations.hf import DropoutCallback

    with pytest.raises(
        TypeError, match="DropoutCallback: expected monitor to be an OverfitMonitor"
    ):
        DropoutCallback(0.1, monitor="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="as_schedule: expected a callable"):
        DropoutCallback("cosine")  # type: ignore[arg-type]
    callback = DropoutCallback(lambda step: 2.0)
    with pytest.raises(ValueError, match=r"at step 0: expected p in \[0, 1\), but got 2.0"):
        callback.on_train_begin(None, _State(), None, model=nn.Sequential(nn.Dropout(0.1)))
    with pytest.raises(
        RuntimeError, match="DropoutCallback: expected the Trainer to pass its model"
    ):
        callback.on_train_begin(None, _State(), None)


class _State:
    global_step = 0
    log_history: list = []


# --------------------------------------------------------------------------- lightning

# Lightning's own warnings about this tiny CPU setup (and a torch pytree
# deprecation inside Lightning), silenced for these tests only.
LIGHTNING_NOISE = [
    "ignore:.*does not have many workers",
    "ignore:The number of training batches.*is smaller than the logging interval",
    r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning",
]


def _lightning_module():
    import lightning.pytorch as pl

    class Net(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
            self.seen: list[tuple[int, float]] = []

        def training_step(self, batch, batch_idx):
            self.seen.append((self.global_step, self.net[2].p))
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", F.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Net()


def _loaders():
    from torch.utils.data import DataLoader, TensorDataset

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(48, 6, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    train = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8)
    val = DataLoader(TensorDataset(x[32:], y[32:]), batch_size=16)
    return train, val


def _pl_trainer(tmp_path, callback, max_epochs, **kw):
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(str(tmp_path), name="logs", version=kw.pop("version", 0)),
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        callbacks=[callback],
        **kw,
    )


@pytest.mark.filterwarnings(*LIGHTNING_NOISE)
def test_lightning_trainer_applies_logs_and_resumes(tmp_path, seed) -> None:
    from dropkit.integrations.lightning import DropoutCallback

    schedule = S.sequence([S.warmup(0.4, 4), S.cosine(0.4, 0.0, 8)], boundaries=[4])
    monitor = OverfitMonitor(patience=2)
    callback = DropoutCallback(schedule, monitor=monitor)
    module = _lightning_module()
    trainer = _pl_trainer(tmp_path, callback, max_epochs=2)
    train, val = _loaders()
    trainer.fit(module, train, val)
    assert [step for step, _ in module.seen] == list(range(8))
    assert [p for _, p in module.seen] == [schedule(s) for s in range(8)]
    # Logged through pl_module.log into the CSV logger, once per step.
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("dropout_p")]
    assert [(int(r["step"]), float(r["dropout_p"])) for r in rows] == [
        (s, pytest.approx(schedule(s))) for s in range(8)
    ]
    assert len(callback.verdicts) == 2 and len(monitor.history) == 2
    ckpt = tmp_path / "two_epochs.ckpt"
    trainer.save_checkpoint(ckpt)

    # Resume in a fresh module / callback / monitor: the schedule continues at
    # step 8 and the monitor's history comes back from the checkpoint.
    fresh_monitor = OverfitMonitor(patience=2)
    fresh_callback = DropoutCallback(schedule, monitor=fresh_monitor)
    fresh = _lightning_module()
    resumed = _pl_trainer(tmp_path, fresh_callback, max_epochs=3, version=1)
    resumed.fit(fresh, train, val, ckpt_path=str(ckpt))
    assert [step for step, _ in fresh.seen] == [8, 9, 10, 11]
    assert [p for _, p in fresh.seen] == [schedule(s) for s in range(8, 12)]
    assert fresh_monitor.history[:2] == monitor.history and len(fresh_monitor.history) == 3


@pytest.mark.filterwarnings(*LIGHTNING_NOISE)
def test_lightning_monitor_needs_logged_losses(tmp_path) -> None:
    import lightning.pytorch as pl

    from dropkit.integrations.lightning import DropoutCallback

    class Silent(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Sequential(nn.Linear(6, 3), nn.Dropout(0.1))

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self.fc(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            pass

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    train, val = _loaders()
    trainer = _pl_trainer(tmp_path, DropoutCallback(0.1, monitor=OverfitMonitor()), max_epochs=1)
    with pytest.raises(
        RuntimeError, match="DropoutCallback: expected 'val_loss' in trainer.callback_metrics"
    ):
        trainer.fit(Silent(), train, val)


def test_hf_callback_over_training_ends_at_the_end_rate(seed) -> None:
    """The schedule length comes from TrainerState.max_steps; the last step trains at `end`."""
    from transformers import TrainerControl, TrainerState
    from transformers.trainer_callback import CallbackHandler

    from dropkit.integrations.hf import DropoutCallback

    # what a user computing steps=max_steps by hand gets: the last step is not at `end`
    assert S.cosine(0.3, 0.1, steps=6)(5) == pytest.approx(0.1 + 0.1 * (1 - 3**0.5 / 2))
    args = SimpleNamespace(weight_decay=0.0)

    def run(state: Any, stop_at: int) -> tuple[list[float], list[float]]:
        model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
        callback = DropoutCallback.over_training(S.cosine, 0.3, 0.1)
        handler = CallbackHandler([callback], model, None, None, None)
        control = handler.on_train_begin(args, state, TrainerControl())
        seen, logged = [], []
        while state.global_step < stop_at:
            control = handler.on_step_begin(args, state, control)
            seen.append(model[1].p)
            state.global_step += 1
            logs = {"loss": 1.0}
            state.log_history.append({**logs, "step": state.global_step})
            handler.on_log(args, state, control, logs)
            logged.append(logs["dropout_p"])
        return seen, logged

    reference = S.cosine(0.3, 0.1, steps=5)  # max_steps - 1
    seen, logged = run(TrainerState(max_steps=6), 6)
    assert seen == [reference(k) for k in range(6)] == logged
    assert seen[0] == 0.3 and seen[-1] == 0.1  # cos(pi) = -1 exactly: the end value exactly
    # resuming at step 3 continues the same curve
    seen, _ = run(TrainerState(max_steps=6, global_step=3), 6)
    assert seen == [reference(k) for k in (3, 4, 5)]
    with pytest.raises(RuntimeError, match=r"expected TrainerState\.max_steps >= 1"):
        run(TrainerState(max_steps=0), 1)
    with pytest.raises(TypeError, match=r"expected no steps= \(it comes from the Trainer"):
        DropoutCallback.over_training(S.cosine, 0.3, 0.1, steps=10)


def _two_dropouts() -> nn.Module:
    return nn.ModuleDict({"body": nn.Dropout(0.5), "head": nn.Dropout(0.5)})


def test_hf_callback_sites_and_deprecated_kinds_where() -> None:
    from transformers import TrainerControl, TrainerState
    from transformers.trainer_callback import CallbackHandler

    from dropkit.integrations.hf import DropoutCallback

    args = SimpleNamespace(weight_decay=0.0)

    def applied(callback: Any) -> list[float]:
        model = _two_dropouts()
        handler = CallbackHandler([callback], model, None, None, None)
        handler.on_train_begin(args, TrainerState(max_steps=4), TrainerControl())
        return [model["body"].p, model["head"].p]

    assert applied(DropoutCallback(0.1, sites="head")) == [0.5, 0.1]
    assert applied(DropoutCallback.over_training(S.linear, 0.1, 0.0, sites="head")) == [0.5, 0.1]
    with pytest.warns(DeprecationWarning, match=r"DropoutCallback: where= is deprecated; use si"):
        old = DropoutCallback(0.1, where="head")
    assert applied(old) == [0.5, 0.1]
    with pytest.warns(DeprecationWarning, match=r"DropoutCallback: kinds= is deprecated; use si"):
        old = DropoutCallback(0.1, None, "element")  # kinds stays the third positional
    assert applied(old) == [0.1, 0.1]
    with pytest.raises(TypeError, match=r"DropoutCallback: expected sites= alone, but got sit"):
        DropoutCallback(0.1, sites="head", kinds="element")


@pytest.mark.filterwarnings(*LIGHTNING_NOISE)
def test_lightning_callback_sites_and_deprecated_kinds_where() -> None:
    from dropkit.integrations.lightning import DropoutCallback

    def applied(callback: Any) -> list[float]:
        model = _two_dropouts()
        callback.on_train_start(SimpleNamespace(global_step=0), model)
        return [model["body"].p, model["head"].p]

    assert applied(DropoutCallback(0.1, sites="head")) == [0.5, 0.1]
    with pytest.warns(DeprecationWarning, match=r"DropoutCallback: where= is deprecated; use si"):
        old = DropoutCallback(0.1, where="head")
    assert applied(old) == [0.5, 0.1]
    with pytest.raises(TypeError, match=r"DropoutCallback: expected sites= alone, but got sit"):
        DropoutCallback(0.1, sites="head", where="body")
