"""Seeded per-sample dropout masks, the same whatever the strategy and the batch.

``mc_predict`` draws sample ``s`` from its own ``torch.Generator`` seeded from
``(seed, s)`` and re-seeded at every forward call, so a call's draws never
depend on the batches before it. While it runs, every active dropout site it
can control gets a temporary ``forward`` that splits its input into the ``K``
sample blocks of the current call (samples are stacked on dim 0,
sample-major), draws one site seed per block from that sample's generator and
gives row ``r`` of the block the row-keyed mask of
:mod:`~dropkit.uncertainty.keyed` (its key: ``row_ids=``, by default its
position in the inputs). A row's masks are then a function of ``(seed,
sample, row key, position within the row)`` only: the same whether the sample
runs alone (loop), inside a batch of replicated inputs, after a cached
deterministic prefix, or with other rows around it.

Four kinds of sites:

* **row-keyed**: torch's dropout classes, dropkit's ``Dropout`` and timm's
  ``DropPath`` (emulated here), other dropkit modules with a ``generator`` (run once per row with a
  generator seeded by the row seed), and Hugging Face attention routed through
  dropkit's kernel (``fast_dropout(model, attention=True)``);
* **per call** (LayerDrop, weight and embedding dropout): the module's
  ``generator`` is the sample's for the whole call, also for LayerDrop used by
  iteration; one draw covers the call, so these sites force the loop;
* **global generator** (fused ``scaled_dot_product_attention`` dropout, eager
  attention, rate attributes such as timm's ``drop_rate``, ``F.dropout`` in a
  custom forward):
  each call runs inside a forked global generator state seeded from ``(seed,
  first sample, samples in the call)``, so a seeded call reproduces them and
  leaves the caller's global state as it was; their masks depend on the batch,
  and they force the loop under ``strategy="auto"``;
* **unseeded**: a site module holding its own ``torch.Generator`` under another
  attribute name, which nothing here can reach (named in ``extras`` with a
  warning).

With ``consistent=True`` every row of a sample shares one mask (every key is
0; generator modules draw a ``(1, ...)`` mask broadcast over the rows), so
sample ``s`` applies one mask to every input of every batch: the joint samples
that BatchBALD (Kirsch et al., 2019) needs. Only row-keyed sites qualify.

References:
    Gal and Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
    Kirsch, van Amersfoort and Gal, "BatchBALD", NeurIPS 2019.
    Steele, "Fast splittable pseudorandom number generators" (SplitMix64), 2014.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from dropkit.kernels import bernoulli_dropout
from dropkit.nn.dropout import Dropout as _DropkitDropout
from dropkit.uncertainty._forwards import (
    generator_forward,
    is_timm_drop_path,
    path_forward,
    row_seeds_of,
    torch_forward,
)
from dropkit.uncertainty.keyed import keyed_dropout

_M64 = (1 << 64) - 1
# torch's own dropout classes, emulated here: kind of mask and whether it is alpha.
_TORCH = {
    nn.Dropout: ("element", False),
    nn.Dropout1d: ("channel", False),
    nn.Dropout2d: ("channel", False),
    nn.Dropout3d: ("channel", False),
    nn.AlphaDropout: ("element", True),
    nn.FeatureAlphaDropout: ("channel", True),
}
# Kinds whose output is x * A + B given the mask (probe-able for consistent masks).
_AFFINE = {"element", "spatial", "alpha", "gaussian", "locked", "path", "block", "concrete"}
# Kinds whose randomness is drawn once per call, not per row: replicating the
# input in one batch would make all samples of the call share it.
PER_CALL_KINDS = frozenset({"weight", "embedding", "layer"})


def sample_seed(seed: int, sample: int) -> int:
    """Seed of MC sample ``sample`` under base ``seed`` (SplitMix64 mixing).

    Args:
        seed: Base seed of the call.
        sample: Sample index ``s >= 0``.

    Returns:
        A 63-bit seed, statistically independent across ``s``.

    Example:
        >>> sample_seed(0, 0) != sample_seed(0, 1)
        True
    """
    z = (seed * 0x9E3779B97F4A7C15 + (sample + 1) * 0xD1B54A32D192ED03) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return (z ^ (z >> 31)) & ((1 << 63) - 1)


def sample_generator(seed: int, sample: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator for sample ``sample`` (see :func:`sample_seed`)."""
    return torch.Generator(device=device).manual_seed(sample_seed(seed, sample))


#: The attention implementation under which ``fast_dropout(model, attention=True)``
#: routes Hugging Face attention dropout through dropkit's kernel (registered by
#: :mod:`dropkit.integrations.hf_attention`; the name is core data).
ROUTED_ATTENTION = "dropkit_sdpa"
_ACTIVE = threading.local()


def global_seed(seed: int, first: int, k: int) -> int:
    """Seed of torch's global generator while samples ``first .. first + k - 1`` run.

    Example:
        >>> global_seed(0, 3, 1) != sample_seed(0, 3)
        True
    """
    return sample_seed(sample_seed(seed, first), k)


def routed_dropout(module: nn.Module, probs: torch.Tensor, p: float) -> torch.Tensor:
    """Attention-probability dropout of a routed Hugging Face attention ``module``.

    Row-keyed when an MC call controls ``module`` in this thread, else
    :func:`dropkit.kernels.bernoulli_dropout` (the global generator).

    Shape:
        - Input: ``(N, heads, L, S)``.
        - Output: same shape as input.
    """
    ctl: MaskControl | None = getattr(_ACTIVE, "control", None)
    path = None if ctl is None or ctl.current is None else ctl.attention.get(id(module))
    if ctl is None or path is None:
        return bernoulli_dropout(probs, p)
    return keyed_dropout(probs, row_seeds_of(probs, ctl, path), p)


def _routed_modules(model: nn.Module | None) -> set[int]:
    ids: set[int] = set()
    for root in model.modules() if model is not None else ():
        impl = getattr(getattr(root, "config", None), "_attn_implementation", None)
        if impl == ROUTED_ATTENTION:
            ids.update(id(m) for m in root.modules())
    return ids


def _private_generators(module: nn.Module | None) -> list[str]:
    attrs = vars(module).items() if module is not None else ()
    return sorted(k for k, v in attrs if isinstance(v, torch.Generator) and k != "generator")


class MaskControl:
    """Context manager that routes active dropout sites through per-sample generators.

    Args:
        sites: The active sites (``DropoutSite``) of the MC call.
        seed: Base seed; sample ``s`` uses :func:`sample_seed` ``(seed, s)``.
        consistent: Share each sample's mask across all inputs and batches.
        model: The model, to find Hugging Face attention routed through
            dropkit's kernel (``None``: attention sites use the global generator).

    Attributes:
        controlled: Paths of the sites whose draws come from the per-sample
            generators (row-keyed and per-call sites).
        row_keyed: Paths of the row-keyed sites.
        per_call_sites: Paths of controlled sites that draw once per call.
        uncontrolled: ``(path, kind)`` of active sites that draw from torch's
            global generator (reproduced through :meth:`sampling`) or from a
            private generator (``unseeded``).
        unseeded: Paths of sites holding their own ``torch.Generator``.
        attention: Routed attention module ids -> site path.
        unkeyed: Row-keyed sites whose input was not laid out one row per input
            at some call (they fell back to positions in dim 0).
    """

    def __init__(
        self,
        sites: Iterable[Any],
        *,
        seed: int,
        consistent: bool = False,
        model: nn.Module | None = None,
    ) -> None:
        self.seed = seed
        self.consistent = consistent
        self.current: list[torch.Generator] | None = None
        self.keys: torch.Tensor | None = None
        self._gens: dict[tuple[int, str], torch.Generator] = {}
        self._row_gens: dict[str, torch.Generator] = {}
        self._patches: list[tuple[nn.Module, Callable]] = []
        self._per_call: list[nn.Module] = []
        self._held: list[tuple[nn.Module, Any]] = []
        self.controlled: list[str] = []
        self.row_keyed: list[str] = []
        self.per_call_sites: list[str] = []
        self.uncontrolled: list[tuple[str, str]] = []
        self.unseeded: list[str] = []
        self.attention: dict[int, str] = {}
        self.unkeyed: set[str] = set()
        routed = _routed_modules(model)
        seen: set[int] = set()
        for site in sites:
            self._classify(site, routed, seen)
        self._saved: list[tuple[nn.Module, Any]] = []
        self._outer: Any = None

    def _classify(self, site: Any, routed: set[int], seen: set[int]) -> None:
        module = getattr(site, "module", None)
        kind = str(getattr(site, "kind", "element"))
        path = str(getattr(site, "path", "?"))
        control = getattr(site, "control", "module")
        gates = tuple(getattr(site, "gates", ()))
        if kind == "attention" and control == "module" and gates and id(gates[0]) in routed:
            self.attention[id(gates[0])] = path
            self.controlled.append(path)
            self.row_keyed.append(path)
            return
        if module is None or control != "module" or kind == "attention":
            self._global(module, path, kind)
            return
        if id(module) in seen:
            return
        seen.add(id(module))
        if type(module) in _TORCH or type(module) is _DropkitDropout:
            mode, alpha = _TORCH.get(type(module), ("element", False))
            self._patches.append((module, torch_forward(module, mode, alpha, self, path)))
        elif is_timm_drop_path(module):
            self._patches.append((module, path_forward(module, self, path)))
        elif hasattr(module, "generator") and kind in PER_CALL_KINDS:
            self._per_call.append(module)
            self.per_call_sites.append(path)
            self.controlled.append(path)
            return
        elif hasattr(module, "generator") and (not self.consistent or kind in _AFFINE):
            self._patches.append((module, generator_forward(module, self, path)))
        else:
            self._global(module, path, kind)
            return
        self.controlled.append(path)
        self.row_keyed.append(path)

    def _global(self, module: nn.Module | None, path: str, kind: str) -> None:
        self.uncontrolled.append((path, kind))
        if _private_generators(module):
            self.unseeded.append(path)

    @property
    def global_sites(self) -> list[str]:
        """Sites drawing from torch's global generator (forked and seeded per call)."""
        return [p for p, _ in self.uncontrolled if p not in self.unseeded]

    @property
    def per_call(self) -> list[str]:
        """Sites whose randomness is drawn once per call (no batched sampling)."""
        return self.per_call_sites + [p for p, kind in self.uncontrolled if kind in PER_CALL_KINDS]

    def __enter__(self) -> MaskControl:
        # Per-thread routes (dropkit._patch): threads sampling one model at once each keep
        # their own masks, and no route is left behind whatever order they exit in.
        from dropkit._patch import push_forward

        for module, fn in self._patches:
            push_forward(module, fn)
            self._saved.append((module, fn))
        self._outer = getattr(_ACTIVE, "control", None)
        _ACTIVE.control = self
        return self

    def __exit__(self, *exc: object) -> None:
        from dropkit._patch import pop_forward

        self.release()
        for module, _ in reversed(self._saved):
            pop_forward(module)
        self._saved.clear()
        _ACTIVE.control = self._outer

    def _generator(self, sample: int, dev: str) -> torch.Generator:
        gen = self._gens.get((sample, dev))
        if gen is None:
            gen = self._gens[(sample, dev)] = torch.Generator(device=dev)
        # re-seeded at every call: a call's draws never depend on earlier batches
        return gen.manual_seed(sample_seed(self.seed, sample))

    def row_generator(self, device: torch.device | str) -> torch.Generator:
        """A scratch generator on ``device``, re-seeded per row by the generator sites."""
        dev = str(torch.device(device))
        gen = self._row_gens.get(dev)
        if gen is None:
            gen = self._row_gens[dev] = torch.Generator(device=dev)
        return gen

    def keys_for(self, rows: int, path: str) -> torch.Tensor:
        """Row keys of a sample block of ``rows`` rows at site ``path`` (int64, CPU)."""
        if self.consistent:
            return torch.zeros(rows, dtype=torch.int64)
        if self.keys is not None and self.keys.numel() == rows:
            return self.keys
        if self.keys is not None:
            self.unkeyed.add(path)
        return torch.arange(rows, dtype=torch.int64)

    def use(
        self,
        samples: Iterable[int],
        device: torch.device | str = "cpu",
        keys: torch.Tensor | None = None,
    ) -> None:
        """Select the generators of the samples stacked in the next forward call.

        Args:
            samples: Sample indices, in the order their blocks are stacked.
            device: Device of the generators (that of the dropout inputs).
            keys: Row keys of the rows of one block (``None``: positions).

        Raises:
            RuntimeError: If per-call sites are active and more than one sample
                is stacked.
        """
        samples = list(samples)
        dev = str(torch.device(device))
        self.release()
        self.current = [self._generator(s, dev) for s in samples]
        self.keys = None if keys is None else keys.to("cpu", torch.int64)
        if self._per_call and len(samples) != 1:
            self.current = None
            raise RuntimeError(
                f"mc_predict: expected one sample per call for the per-call sites "
                f"{self.per_call_sites}, but got {len(samples)}. Pass strategy='loop'."
            )
        for module in self._per_call:
            self._held.append((module, module.generator))
            setattr(module, "generator", self._generator(samples[0], "cpu"))  # noqa: B010

    def release(self) -> None:
        """Stop routing (calls outside MC sampling use the modules' own forward)."""
        for module, old in reversed(self._held):
            setattr(module, "generator", old)  # noqa: B010
        self._held.clear()
        self.current = None
        self.keys = None

    @contextmanager
    def sampling(
        self,
        samples: Iterable[int],
        device: torch.device | str = "cpu",
        keys: torch.Tensor | None = None,
    ) -> Iterator[None]:
        """:meth:`use` for one forward call, with the global generator forked if needed.

        With global-generator sites the call runs inside a forked generator state
        (CPU, and the CUDA device of ``device``) seeded by :func:`global_seed`, so
        their draws are reproduced and the caller's global state is untouched.
        """
        samples = list(samples)
        self.use(samples, device, keys)
        try:
            if not self.global_sites:
                yield
                return
            dev = torch.device(device)
            cuda = []
            if dev.type == "cuda":
                cuda = [dev.index if dev.index is not None else torch.cuda.current_device()]
            # torch's global generator is one per process: concurrent calls (threads) take
            # turns, so each fork restores the state it saw and its draws are its own
            with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=cuda):
                s = global_seed(self.seed, samples[0], len(samples))
                torch.default_generator.manual_seed(s)
                for index in cuda:
                    torch.cuda.default_generators[index].manual_seed(s)
                yield
        finally:
            self.release()

    def warn_unseeded(self) -> None:
        """Warn about sites that ``seed=`` cannot reproduce."""
        if self.unseeded:
            warnings.warn(
                f"mc_predict: sites {self.unseeded} hold their own torch.Generator, which "
                "seed= cannot reach; their samples are not reproducible. Give the module a "
                "'generator' attribute or draw from torch's global generator.",
                stacklevel=3,
            )


_MISSING = object()
_GLOBAL_RNG_LOCK = threading.RLock()
