"""Swap ``torch.nn.Dropout`` modules for dropkit's fast kernel, in place.

:func:`fast_dropout` replaces every exact ``torch.nn.Dropout`` in a model with
:class:`dropkit.nn.Dropout`, which runs the counter-based kernel of
:mod:`dropkit.kernels` (several times faster on CPU, no mask kept for
backward). Attributes that other code reads keep working: Hugging Face BERT
passes ``self.dropout.p`` to fused attention, and the swapped module has the
same ``p``. With ``attention=True``, Hugging Face models on ``sdpa`` attention
also run their attention-probability dropout through the kernel (see
:mod:`dropkit.integrations.hf_attention`).

References:
    Srivastava et al., "Dropout: a simple way to prevent neural networks from
    overfitting", JMLR 2014.
"""

from __future__ import annotations

from torch import nn

from dropkit._validation import _fail, check_module


def fast_dropout(model: nn.Module, *, attention: bool = False) -> int:
    """Replace every ``torch.nn.Dropout`` inside ``model`` with ``dropkit.nn.Dropout``.

    Only modules whose type is exactly ``torch.nn.Dropout`` are swapped
    (subclasses may change behaviour, and ``Dropout1d/2d/3d`` drop whole
    channels). Each replacement keeps ``p``, ``inplace`` and the ``training``
    flag; a module registered under several names is replaced by one shared
    new module. Neither has parameters or buffers, so ``state_dict`` keys and
    values are unchanged and checkpoints load either way.

    Args:
        model: The model to modify in place.
        attention: Also switch the Hugging Face models inside ``model`` that
            use ``attn_implementation="sdpa"`` to ``"dropkit_sdpa"``: the same
            attention, except that while training with a non-zero attention
            rate the probabilities are dropped by dropkit's kernel instead of
            inside ``scaled_dot_product_attention`` (evaluation stays the
            ``sdpa`` result bit for bit). Needs the ``hf`` extra.
            ``model.set_attn_implementation("sdpa")`` undoes it.

    Returns:
        How many distinct ``nn.Dropout`` modules were replaced.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module`` or ``attention`` is
            not a bool.
        ValueError: If ``model`` itself is an ``nn.Dropout`` (it cannot be
            replaced in place), or ``attention=True`` finds no Hugging Face
            model on ``sdpa`` attention (nothing is changed then).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2), nn.ReLU())
        >>> fast_dropout(net)
        1
        >>> type(net[1]).__module__, net[1].p
        ('dropkit.nn.dropout', 0.2)
    """
    from dropkit.nn import Dropout

    check_module("fast_dropout", model)
    if type(model) is nn.Dropout:
        raise _fail(
            ValueError,
            "fast_dropout",
            "a model that contains nn.Dropout modules",
            model,
            "Use dropkit.nn.Dropout(p) directly, or wrap the layer in a container.",
        )
    if not isinstance(attention, bool):
        raise _fail(
            TypeError, "fast_dropout", "attention to be a bool", attention, "Pass True or False."
        )
    roots: list[nn.Module] = []
    if attention:  # checked before anything changes
        from dropkit.integrations.hf_attention import sdpa_roots

        roots = sdpa_roots(model, "fast_dropout")
    replaced: dict[int, nn.Module] = {}
    for parent in list(model.modules()):
        # _modules, not named_children(): the latter hides a second name of a
        # shared module, which must be swapped too
        for name, child in list(parent._modules.items()):
            if type(child) is not nn.Dropout:
                continue
            new = replaced.get(id(child))
            if new is None:
                new = Dropout(p=child.p, inplace=child.inplace)
                new.train(child.training)
                replaced[id(child)] = new
            setattr(parent, name, new)
    if roots:
        from dropkit.integrations.hf_attention import route_attention

        route_attention(roots)
    return len(replaced)
