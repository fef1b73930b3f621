"""The sampling loop behind ``mc_predict``: strategy choice, chunking, adaptive stops.

Per batch: the plan's deterministic prefix runs once; then sample indices are
consumed in steps of ``K`` (``K = 1`` in a loop, ``K`` replicated copies in one
call when batched). The first steps of the first batch measure what the choice
needs: one untimed sample records the activation bytes of one sample (forward
hooks), two timed single samples and two timed batched chunks give seconds per
sample (the minimum of each pair). Batching is kept when it is clearly faster
(per-sample time under ``BATCH_MARGIN`` times the loop's, since it costs ``K``
times the memory), and the decision is remembered for later calls on the same
model and batch size. Once decided, the batch starts again on the chosen path
and the measured steps are discarded: loop and batched calls apply the same
masks but their matrix products may round differently, and a call must give
the same bits whether it measured or reused an earlier decision. Models with
per-call sites (LayerDrop, weight dropout) or sites that draw from torch's
global generator run in a loop under ``"auto"`` (see
:mod:`~dropkit.uncertainty.masks`). With ``tol``, after ``min_samples`` and
every step after that, inputs whose standard error is below ``tol`` leave the
batch (their rows are dropped from the replicated state; every row's masks
depend on its key only).

References:
    Gal and Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dropkit._validation import _fail
from dropkit.uncertainty._io import (
    WHERE,
    check_logits,
    check_probs,
    first_output,
    rows_of,
    split_heteroscedastic,
)
from dropkit.uncertainty._limits import check_kept_bytes
from dropkit.uncertainty.accumulate import MCAccumulator
from dropkit.uncertainty.masks import MaskControl
from dropkit.uncertainty.result import MCResult
from dropkit.uncertainty.split import make_plan, replicate, take_rows


@dataclass
class Settings:
    """Validated options of one ``mc_predict`` call."""

    output: str
    strategy: str
    max_samples: int
    min_samples: int
    tol: float | None
    tau: float | None
    heteroscedastic: bool
    memory_bytes: float
    chunk_samples: int | None
    consistent: bool
    keep_samples: bool


def _tensor_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict) or hasattr(obj, "values") and callable(obj.values):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


#: Loop-vs-batch decisions measured earlier, by (model id, split, rows, device, budget).
#: A stale entry can only cost speed: every strategy draws the same samples.
_DECISIONS: dict[tuple[Any, ...], tuple[str, float | None, dict[str, float]]] = {}
#: Batched sampling is chosen when its time per sample is below this times the loop's.
BATCH_MARGIN = 0.8
#: Samples merged into the running reductions at once.
_GROUP = 16


def _flush(
    acc: MCAccumulator,
    pending: list[tuple[torch.Tensor, torch.Tensor | None]],
    rows: torch.Tensor | None,
) -> None:
    if not pending:
        return
    values = torch.cat([v for v, _ in pending], 0)
    noises = [nv for _, nv in pending]
    noise = None if noises[0] is None else torch.cat(noises, 0)  # type: ignore[arg-type]
    acc.update(values, rows=rows, noise_var=noise)
    pending.clear()


class Engine:
    """Runs the MC samples of each batch for one ``mc_predict`` call."""

    def __init__(
        self,
        model: nn.Module,
        sites: list[Any],
        cfg: Settings,
        *,
        seed: int,
        features: Callable[..., Any] | None,
        head: Callable[..., Any] | None,
        reuse_prefix: bool,
        blocks: bool = False,
    ) -> None:
        self.cfg = cfg
        self.seed = seed
        #: Rows of the whole call when known (memory check of kept samples).
        self.total_rows: int | None = None
        self.sites = sites
        self.control = MaskControl(sites, seed=seed, consistent=cfg.consistent, model=model)
        if cfg.consistent and self.control.uncontrolled:
            raise _fail(
                ValueError,
                WHERE,
                "every active site to take seeded masks with consistent_masks",
                self.control.uncontrolled,
                "Restrict sites= to dropout modules (e.g. sites='head'); fused attention "
                "dropout draws from the global generator.",
            )
        per_call = self.control.per_call
        if cfg.strategy == "batched" and per_call:
            raise _fail(
                ValueError,
                WHERE,
                "row-wise dropout sites for strategy='batched'",
                per_call,
                "These sites draw one mask per call; pass strategy='loop' or 'auto'.",
            )
        self.plan = make_plan(
            model, sites, features=features, head=head, reuse_prefix=reuse_prefix, blocks=blocks
        )
        params = list(model.parameters())
        self.device = params[0].device if params else torch.device("cpu")
        self.mode: str | None = {"loop": "loop", "batched": None, "auto": None}[cfg.strategy]
        self.reason = "requested" if cfg.strategy != "auto" else "measured"
        if per_call:
            self.mode, self.reason = "loop", f"per-call sites {per_call}"
        elif cfg.strategy == "auto" and self.control.global_sites:
            # one forked global generator per call: sampled per replica only in a loop
            self.mode = "loop"
            self.reason = f"global-generator sites {self.control.global_sites}"
        self.control.warn_unseeded()
        self.row_bytes: float | None = None
        self.timing: dict[str, float] = {}
        self.calls = 0
        self.prefix_calls = 0
        self.max_chunk = 1
        self._phase = "probe" if self.mode is None else "run"
        self._loop_times: list[float] = []
        self._batch_times: list[float] = []
        self._model_id = id(model)
        self._restart = False

    # -- one call of the stochastic part -------------------------------------------------

    def _hooks(self) -> tuple[list[Any], list[int]]:
        total = [0]
        handles = []

        def hook(_m: nn.Module, _i: Any, out: Any) -> None:
            total[0] += _tensor_bytes(out)

        for root in self.plan.modules:
            for mod in root.modules():
                handles.append(mod.register_forward_hook(hook))
        return handles, total

    def _call(
        self,
        state: Any,
        m: int,
        first: int,
        k: int,
        keys: torch.Tensor,
        measure: bool = False,
    ) -> Any:
        rep = replicate(state, m, k)
        handles, total = self._hooks() if measure else ([], [0])
        try:
            with self.control.sampling(range(first, first + k), self.device, keys=keys):
                raw = self.plan.run(rep)
        finally:
            for h in handles:
                h.remove()
        self.calls += 1
        if measure:
            self.row_bytes = (total[0] + 2 * _tensor_bytes(rep)) / max(m * k, 1)
        return self._interpret(raw, k, m)

    def _interpret(self, raw: Any, k: int, m: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        noise = None
        if self.cfg.heteroscedastic:
            y, log_var = split_heteroscedastic(raw)
            noise = log_var.exp()
        else:
            y = first_output(raw)
        if y.dim() < 1 or y.shape[0] != k * m:
            raise _fail(
                ValueError,
                WHERE,
                f"the model to return one row per input ({k * m} rows)",
                tuple(y.shape),
                "Return predictions laid out (N, ...).",
            )
        if y.dtype in (torch.float16, torch.bfloat16):
            y = y.float()
        y = y.reshape(k, m, *y.shape[1:])  # (K, M, ...)
        if self.cfg.output == "logits":
            check_logits(y)
            y = torch.softmax(y, -1)
        elif self.cfg.output == "probs":
            check_probs(y)
        elif not y.is_floating_point():
            raise _fail(
                ValueError,
                WHERE,
                "a floating-point regression output",
                str(y.dtype),
                "Return float predictions, or pass output='logits' for classes.",
            )
        if noise is not None:
            noise = noise.float().reshape(y.shape)
        return y, noise

    # -- step sizes and the measured strategy rule ---------------------------------------

    def _budget_chunk(self, m: int) -> int:
        if self.cfg.chunk_samples is not None:
            return self.cfg.chunk_samples
        if not self.row_bytes:
            return 1
        return max(1, int(self.cfg.memory_bytes // (self.row_bytes * m)))

    def _next(self, m: int, left: int, cap: int) -> tuple[int, str]:
        if self._phase == "probe" and self.cfg.strategy == "auto":
            cached = _DECISIONS.get(self._key(m))
            if cached is not None:  # measured by an earlier call on this model and batch size
                self.mode, self.row_bytes, timing = cached
                self.timing = dict(timing)
                self.reason, self._phase = "measured by an earlier call", "run"
        if self._phase in ("probe", "time_loop"):
            return 1, self._phase
        if self._phase == "time_batch":
            # two short timed chunks (their min), so measuring costs little if batching loses
            k = min(self._budget_chunk(m), max(2, left // 4), left, cap)
            if k >= 2:
                return k, "time_batch"
            if self._batch_times:
                self._decide(m)
                return self._next(m, left, cap)
            self.mode, self._phase, self.reason = "loop", "run", "memory budget allows 1 sample"
            return 1, "run"
        if self.mode == "loop":
            return 1, "run"
        return max(1, min(self._budget_chunk(m), left, cap)), "run"

    def _key(self, m: int) -> tuple[Any, ...]:
        cfg = self.cfg
        return (
            self._model_id,
            self.plan.kind,
            m,
            str(self.device),
            cfg.chunk_samples,
            cfg.memory_bytes,
            cfg.output,
        )

    def _decide(self, m: int) -> None:
        per = min(self._batch_times)
        self.timing["batched_s_per_sample"] = per
        # batching costs K times the memory: take it only when clearly faster
        self.mode = "batched" if per < BATCH_MARGIN * self.timing["loop_s_per_sample"] else "loop"
        self._phase = "run"
        # The timed steps mixed loop and batched calls, whose matrix products may round
        # differently: start the batch again on the chosen path, so a call gives the
        # same bits whether it measured or reused an earlier decision.
        self._restart = True
        if len(_DECISIONS) > 64:
            _DECISIONS.clear()
        _DECISIONS[self._key(m)] = (self.mode, self.row_bytes, dict(self.timing))

    def _after(self, phase: str, k: int, m: int, seconds: float) -> None:
        if phase == "probe":
            self._phase = "time_loop" if self.cfg.strategy == "auto" else "run"
            if self.cfg.strategy == "batched":
                self.mode = "batched"
        elif phase == "time_loop":
            self._loop_times.append(seconds)
            self.timing["loop_s_per_sample"] = min(self._loop_times)
            if len(self._loop_times) >= 2:
                self._phase = "time_batch"
        elif phase == "time_batch":
            self._batch_times.append(seconds / k)
            self.timing["batched_chunk"] = max(k, int(self.timing.get("batched_chunk", 0)))
            if len(self._batch_times) >= 2:
                self._decide(m)

    # -- one batch ------------------------------------------------------------------------

    def predict_batch(
        self,
        batch: Any,
        targets: torch.Tensor | None,
        offset: int,
        keys: torch.Tensor | None = None,
    ) -> tuple[MCResult, int]:
        """Run all samples for one batch; returns its result and its row count.

        ``keys`` are the row keys of the batch (default: ``offset + position``).
        """
        cfg = self.cfg
        n = rows_of(batch)
        if keys is None:
            keys = torch.arange(offset, offset + n, dtype=torch.int64)
        tgt = None
        if targets is not None:
            if offset + n > targets.shape[0]:
                raise _fail(
                    ValueError,
                    WHERE,
                    f"at least {offset + n} targets (one per input)",
                    tuple(targets.shape),
                    "Pass one target per input, in input order.",
                )
            tgt = targets[offset : offset + n]
        full = self.plan.prefix(batch)
        self.prefix_calls += 1
        acc, state, active, row_keys, m, s = self._fresh(n, tgt, full, keys)
        adaptive = cfg.tol is not None
        step_cap = max(1, cfg.min_samples // 2) if adaptive else cfg.max_samples
        pending: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        while s < cfg.max_samples and m > 0:
            cap = cfg.min_samples - s if adaptive and s < cfg.min_samples else step_cap
            k, phase = self._next(m, cfg.max_samples - s, cap)
            start = time.perf_counter()
            values, noise = self._call(state, m, s, k, row_keys, measure=phase == "probe")
            if cfg.keep_samples and s == 0:  # refuse before the kept samples outgrow memory
                row, rows = values[0, 0], self.total_rows or offset + n
                row_bytes = row.numel() * row.element_size()
                check_kept_bytes(cfg.max_samples, rows, row_bytes, exact=True)
            self._after(phase, k, m, time.perf_counter() - start)
            self.max_chunk = max(self.max_chunk, k)
            if self._restart:
                self._restart = False
                pending.clear()
                acc, state, active, row_keys, m, s = self._fresh(n, tgt, full, keys)
                continue
            pending.append((values, noise))
            s += k
            check = adaptive and cfg.min_samples <= s < cfg.max_samples
            # merge single samples in groups: one reduction per group, memory still bounded
            if check or s >= cfg.max_samples or sum(v.shape[0] for v, _ in pending) >= _GROUP:
                _flush(acc, pending, active)
            if check and cfg.tol is not None:
                go_on = acc.standard_error(active) >= cfg.tol
                if not bool(go_on.all()):
                    keep = go_on.nonzero().squeeze(1)
                    active = (torch.arange(n) if active is None else active)[keep]
                    row_keys = keys[active]
                    state = take_rows(state, m, keep)
                    m = int(keep.numel())
        _flush(acc, pending, active)
        return acc.result(), n

    def _fresh(
        self, n: int, tgt: torch.Tensor | None, full: Any, keys: torch.Tensor
    ) -> tuple[MCAccumulator, Any, torch.Tensor | None, torch.Tensor, int, int]:
        """Start a batch: accumulator, state, active rows, their keys, rows, samples done."""
        cfg = self.cfg
        acc = MCAccumulator(
            n,
            task="classification" if cfg.output != "regression" else "regression",
            tau=cfg.tau,
            target=tgt,
            heteroscedastic=cfg.heteroscedastic,
            keep_samples=cfg.keep_samples,
        )
        return acc, full, None, keys, n, 0

    def extras(self) -> dict[str, object]:
        """What happened, for ``MCResult.extras``."""
        reason = self.reason if self.mode is not None else "too few samples to measure"
        ctl = self.control
        return {
            "strategy": self.mode or "loop",
            "strategy_reason": reason,
            "chunk": self.max_chunk,
            "timing": dict(self.timing),
            "activation_bytes_per_row": self.row_bytes,
            "prefix": self.plan.kind,
            "prefix_detail": self.plan.detail,
            "prefix_calls": self.prefix_calls,
            "forward_calls": self.calls,
            "seed": self.seed,
            "consistent_masks": self.cfg.consistent,
            "sites": [getattr(s, "path", "?") for s in self.sites],
            "seeded_sites": self.control.controlled + self.control.global_sites,
            "row_keyed_sites": [p for p in ctl.row_keyed if p not in ctl.unkeyed],
            "per_call_sites": self.control.per_call,
            "global_rng_sites": self.control.global_sites,
            "unseeded_sites": list(self.control.unseeded),
        }
