"""Old module paths of the site machinery warn and still resolve (one release)."""

from __future__ import annotations

import importlib

import pytest

from dropkit import sites


@pytest.mark.parametrize("name", ["mc_mode", "MCMode", "guard", "GuardHandle", "held"])
def test_dropkit_modes_names_the_new_path(name: str) -> None:
    modes = importlib.import_module("dropkit.modes")
    with pytest.warns(
        DeprecationWarning,
        match=rf"^dropkit\.modes\.{name} is deprecated: import {name} from "
        r"dropkit\.sites\.modes\.$",
    ):
        assert getattr(modes, name) is getattr(sites.modes, name)
    with pytest.raises(AttributeError, match="module 'dropkit.modes' has no attribute 'nope'"):
        modes.nope  # noqa: B018


@pytest.mark.parametrize(
    ("module", "name", "home"),
    [
        ("dropkit.integrations.timm", "timm_module_rate", "dropkit.sites.discover"),
        ("dropkit.integrations.timm", "is_head_path", "dropkit.sites.heads"),
        ("dropkit.integrations.timm", "HEAD_NAMES", "dropkit.sites.heads"),
        ("dropkit.integrations.hf", "config_plans", "dropkit.sites.hf_config"),
        ("dropkit.integrations.hf", "pretrained_roots", "dropkit.sites.hf_config"),
        ("dropkit.integrations.hf", "head_paths", "dropkit.sites.heads"),
    ],
)
def test_integration_names_moved_to_the_core(module: str, name: str, home: str) -> None:
    old = importlib.import_module(module)
    with pytest.warns(
        DeprecationWarning, match=rf"^{module}\.{name} is deprecated: import {name} from {home}\.$"
    ):
        assert getattr(old, name) is getattr(importlib.import_module(home), name)
