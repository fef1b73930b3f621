"""The digits pipelines as they were before they shared dropkit.demo.digits (commit 102d627).

Test oracles only: each function is the old code of one caller (demo, ``bench digits``,
the sweep's ``digits`` task), kept to check that the shared pipeline gives the same
splits, weights and numbers, side by side in one process.
"""

from __future__ import annotations

from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import nn

from dropkit.nn import Dropout


def _xy() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits()
    return torch.tensor(data.data / 16.0, dtype=torch.float32), torch.tensor(data.target).long()


def demo_split(seed: int, splits: tuple[float, float, float] = (0.25, 0.25, 0.5)) -> list:
    """demo/training.py load_data: classes 0-4, 25/25/50, standardised; OOD 5-9."""
    x_np, y_np = load_digits(return_X_y=True)
    x = torch.as_tensor(x_np, dtype=torch.float32) / 16.0
    y = torch.as_tensor(y_np, dtype=torch.int64)
    inside = torch.isin(y, torch.tensor((0, 1, 2, 3, 4)))
    x_in, y_in = x[inside], y[inside]
    order = torch.randperm(len(y_in), generator=torch.Generator().manual_seed(seed))
    n_train, n_val = int(splits[0] * len(order)), int(splits[1] * len(order))
    tr, va, te = order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
    mean, std = x_in[tr].mean(0), x_in[tr].std(0).clamp_min(0.1)
    norm = lambda t: (t - mean) / std  # noqa: E731
    return [
        norm(x_in[tr]),
        y_in[tr],
        norm(x_in[va]),
        y_in[va],
        norm(x_in[te]),
        y_in[te],
        norm(x[~inside]),
    ]


def stratified_split(y: torch.Tensor, fractions: list[float], generator: torch.Generator) -> list:
    """bench/digits.py stratified_split."""
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    for c in torch.unique(y).tolist():
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        start = 0
        for i, f in enumerate(fractions):
            stop = idx.numel() if i == len(fractions) - 1 else start + round(f * idx.numel())
            parts[i].append(idx[start:stop])
            start = stop
    return [torch.cat(p) for p in parts]


def bench_ood_split(seed: int) -> list:
    """bench/digits.py run_ood: digits 0-4 stratified 60/20/20, OOD 5-9."""
    x, y = _xy()
    ind = (y < 5).nonzero().flatten()
    tr, va, te = stratified_split(y[ind], [0.6, 0.2, 0.2], torch.Generator().manual_seed(seed))
    xi, yi = x[ind], y[ind]
    return [xi[tr], yi[tr], xi[va], yi[va], xi[te], yi[te], x[y >= 5]]


def bench_al_split(seed: int) -> list:
    """bench/digits.py run_al: all digits, 500 stratified test images, the rest the pool."""
    x, y = _xy()
    test_frac = 500 / y.numel()
    pool, test = stratified_split(
        y, [1 - test_frac, test_frac], torch.Generator().manual_seed(seed)
    )
    return [x[pool], y[pool], x[test], y[test]]


def bench_train_mlp(
    x: torch.Tensor, y: torch.Tensor, n_out: int, seed: int, cfg: dict
) -> nn.Module:
    """bench/digits.py train_mlp: full-batch Adam with weight decay, torch's dropout."""
    torch.manual_seed(seed)
    h, p = cfg["hidden"], cfg["p"]
    model = nn.Sequential(
        nn.Linear(64, h),
        nn.ReLU(),
        nn.Dropout(p),
        nn.Linear(h, h),
        nn.ReLU(),
        nn.Dropout(p),
        nn.Linear(h, n_out),
    )
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    model.train()
    for _ in range(cfg["steps"]):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def sweep_split(seed: int) -> list:
    """sweep/tasks.py DigitsTask: all digits, one permutation, first 75% train."""
    x, y = _xy()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    cut = int(0.75 * len(y))
    return [x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]]


def sweep_train(
    seed: int, epochs: int, samples: int, hidden: int, params: dict[str, Any], rate: Any
) -> list[torch.Tensor]:
    """sweep/tasks.py DigitsTask.__call__: the validation MC probabilities after every epoch."""
    x, y, vx, _ = sweep_split(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    drops = [nn.Dropout(0.0) for _ in range(3)]
    model = nn.Sequential(
        drops[0],
        nn.Linear(64, hidden),
        nn.ReLU(),
        drops[1],
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        drops[2],
        nn.Linear(hidden, 10),
    )
    opt = torch.optim.Adam(
        model.parameters(), lr=1e-3, weight_decay=params.get("weight_decay", 0.0)
    )

    def predict() -> torch.Tensor:
        model.train()
        with torch.no_grad():
            return torch.stack([torch.softmax(model(vx), -1) for _ in range(samples)]).mean(0)

    out = [predict()]
    for epoch in range(epochs):
        for i, drop in enumerate(drops):
            drop.p = rate(params, "element", i / (len(drops) - 1), epoch / epochs)
        model.train()
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(order), 64):
            rows = order[start : start + 64]
            loss = nn.functional.cross_entropy(model(x[rows]), y[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
        out.append(predict())
    return out


def demo_make_mlp(hidden: int, p: float, *, seed: int, concrete_n: int | None = None) -> nn.Module:
    """demo/training.py make_mlp."""
    torch.manual_seed(seed)
    h, c = hidden, 5
    if concrete_n is not None:
        from dropkit.nn import ConcreteDropout

        def layer(n_in: int, n_out: int, p0: float) -> nn.Module:
            return ConcreteDropout(
                nn.Linear(n_in, n_out),
                p=p0,
                weight_regularizer=1e-4 / concrete_n,
                dropout_regularizer=2.0 / concrete_n,
            )

        return nn.Sequential(
            layer(64, h, 0.1), nn.ReLU(), layer(h, h, 0.2), nn.ReLU(), layer(h, c, 0.2)
        )
    return nn.Sequential(
        nn.Linear(64, h),
        nn.ReLU(),
        Dropout(p),
        nn.Linear(h, h),
        nn.ReLU(),
        Dropout(p),
        nn.Linear(h, c),
    )


def demo_train(
    model: nn.Module, data: Any, cfg: Any, *, seed: int, scheduler: Any = None, fixed_p: float = 0.0
) -> dict[str, Any]:
    """demo/training.py train (learning curves and the monitor's last verdict)."""
    from dropkit.nn import ConcreteDropout
    from dropkit.training import OverfitMonitor

    concrete = [m for m in model.modules() if isinstance(m, ConcreteDropout)]

    def eval_loss(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        was = model.training
        model.eval()
        with torch.no_grad():
            logits = model(x)
        model.train(was)
        return nn.functional.cross_entropy(logits, y).item(), (
            (logits.argmax(-1) == y).double().mean().item()
        )

    torch.manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    monitor = OverfitMonitor(patience=5)
    curves: dict[str, Any] = {k: [] for k in ("epochs", "train_loss", "val_loss", "val_acc", "p")}
    step, verdict = 0, None
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        for idx in torch.randperm(len(data.y_train), generator=order_gen).split(cfg.batch_size):
            if scheduler is not None:
                scheduler.step(step)
            loss = nn.functional.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            terms = [m.regularization() for m in concrete]
            loss = loss + (sum(terms) if terms else 0.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        train_loss, _ = eval_loss(data.x_train, data.y_train)
        val_loss, val_acc = eval_loss(data.x_val, data.y_val)
        if concrete:
            p_now = sum(float(m.p) for m in concrete) / len(concrete)
        else:
            p_now = scheduler.current_p if scheduler is not None else fixed_p
        verdict = monitor.update(train_loss, val_loss, p=p_now)
        for key, value in zip(curves, (epoch, train_loss, val_loss, val_acc, p_now)):
            curves[key].append(round(value, 6) if isinstance(value, float) else value)
    model.eval()
    curves["time_s"] = 0.0
    curves["verdict"] = None
    if verdict is not None and verdict.advice:
        first = verdict.advice[0]
        curves["verdict"] = {
            "regime": verdict.regime,
            "action": first.name,
            "p": float(curves["p"][-1]) if curves["p"] else 0.0,
            "message": first.message,
        }
    return curves
