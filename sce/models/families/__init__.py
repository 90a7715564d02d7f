"""Model families: what sce knows about one VLM architecture, one module per family.

A family is a `Family` subclass overriding only what differs from the family it derives from,
registered here under its `config.model_type`. Outside this folder nothing names a family's
classes, markers or numbers: code asks the registry (`family_for` a config, a model folder or a
model_type; `family_of_processor`; `DEFAULT_FAMILY` when there is nothing to ask).

This folder ranks below `sce.data` in the package order (tests/test_layout.py): the pipeline
sizes frames and masks answers by its geometry and markers, so it imports nothing from sce but
itself. Adding a family: one new module, a `register(...)` line below (see the README).

- base        the Family protocol: processor settings, chat markers, real checkpoint sizes
- patchify    the bit-identical fast `_preprocess` of Qwen-VL-style video processors
- qwen2_5_vl  Qwen2.5-VL (3B / 7B): geometry, markers, rope probe, blocks, sizes, tiny kit
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sce.models.families.base import ChatMarkers, Checkpoint, Family, ProcessorSettings
from sce.models.families.qwen2_5_vl import QWEN2_5_VL

FAMILIES: dict[str, Family] = {}  # model_type -> family


def register(family: Family) -> Family:
    """Add `family` to FAMILIES under each of its model_types."""
    for model_type in family.model_types:
        FAMILIES[model_type] = family
    return family


DEFAULT_FAMILY = register(QWEN2_5_VL)


def family_named(model_type: str) -> Family:
    """The family registered for `model_type` (config.json's "model_type")."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise ValueError(
            f"no model family for model_type {model_type!r} (sce knows {sorted(FAMILIES)}); "
            "add one in sce/models/families/"
        ) from None


def family_for(source: Any) -> Family:
    """The family of a model config (its `model_type`), a config.json-like mapping, a model
    folder (its config.json), a model_type string, or a released checkpoint's hub id."""
    if isinstance(source, Family):
        return source
    if isinstance(source, Mapping):
        return family_named(str(source.get("model_type")))
    if isinstance(source, str | Path):
        config = Path(source) / "config.json"
        if config.is_file():
            return family_named(json.loads(config.read_text()).get("model_type"))
        hub_id = family_of_checkpoint(str(source))
        return hub_id[0] if hub_id else family_named(str(source))
    return family_named(str(getattr(source, "model_type", None)))


def family_of_checkpoint(name: str) -> tuple[Family, str] | None:
    """(family, hub id) of a released checkpoint known by its hub id ("-Instruct" optional)."""
    for family in dict.fromkeys(FAMILIES.values()):
        for hub_id in family.checkpoints:
            if hub_id.startswith(name):
                return family, hub_id
    return None


def family_of_processor(processor: Any) -> Family | None:
    """The family whose video processor `processor` carries, None for any other processor."""
    return next((f for f in FAMILIES.values() if f.owns_processor(processor)), None)


__all__ = [
    "DEFAULT_FAMILY",
    "FAMILIES",
    "ChatMarkers",
    "Checkpoint",
    "Family",
    "ProcessorSettings",
    "family_for",
    "family_named",
    "family_of_checkpoint",
    "family_of_processor",
    "register",
]
