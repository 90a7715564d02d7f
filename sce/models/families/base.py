"""The Family protocol: what sce needs to know about one VLM architecture.

A family is a `Family` subclass that overrides only what differs from the family it derives from
(LLaMA-Factory's `Qwen3VLPlugin(Qwen2VLPlugin)`): its processor geometry and rounding
(`settings`, `smart_resize`), its chat markers and visual placeholders (`markers`), the
temporal-position probe behind the rope guard, the decoder / vision block classes that FSDP
wraps and checkpoints, the tiny offline kit, and the released checkpoints' sizes that `sce plan`
builds on the meta device. Everything here is family-independent; numbers belong to a member.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from torch import nn


@dataclass(frozen=True)
class ProcessorSettings:
    """The video (or image) processor numbers that decide the visual token count."""

    patch_size: int
    merge_size: int
    temporal_patch_size: int
    min_pixels: int
    max_pixels: int
    cap_pixels_per_frame: bool = False
    max_video_tokens: int = 128000
    source: str = ""

    @property
    def factor(self) -> int:
        """Each resized side is a multiple of this: one merged token's width in pixels."""
        return self.patch_size * self.merge_size


@dataclass(frozen=True)
class ChatMarkers:
    """The chat template's turn markers and the visual blocks' tokens."""

    turn_start: str
    turn_end: str
    vision_start: str
    vision_end: str
    video_pad: str
    image_pad: str

    @property
    def placeholders(self) -> tuple[str, str]:
        """(video, image) pad tokens: the rows the processor expands into visual tokens."""
        return self.video_pad, self.image_pad

    def assistant_header(self) -> str:
        """The text that opens the assistant's turn (what the generation prompt appends)."""
        return f"{self.turn_start}assistant\n"

    def render(self, messages: Iterable[Mapping[str, Any]]) -> str:
        """The chat template's text for `messages` (content lists of text / video / image
        parts), without the default system turn: what `sce budget` estimates tokens from when
        no tokenizer is at hand."""
        pads = {"video": self.video_pad, "image": self.image_pad}
        parts = []
        for message in messages:
            body = "".join(
                f"{self.vision_start}{pads[c['type']]}{self.vision_end}"
                if c["type"] in pads
                else c["text"]
                for c in message["content"]
            )
            parts.append(f"{self.turn_start}{message['role']}\n{body}{self.turn_end}\n")
        return "".join(parts)


@dataclass(frozen=True)
class Checkpoint:
    """A released checkpoint's sizes (config.json values that shape memory), in the family's
    tiny-spec field names, with its vocabulary and whether input/output embeddings are tied."""

    sizes: Mapping[str, Any]
    vocab_size: int
    tie_word_embeddings: bool


class Family:
    """One VLM architecture. Subclasses set the class attributes and the methods that raise."""

    name: ClassVar[str]  # what messages call it
    model_types: ClassVar[tuple[str, ...]]  # config.model_type values it reads
    settings: ClassVar[ProcessorSettings]  # the processor's defaults (its hub preprocessor config)
    markers: ClassVar[ChatMarkers]
    block_class_names: ClassVar[tuple[str, ...]]  # decoder layer, vision block
    checkpoints: ClassVar[Mapping[str, Checkpoint]]  # hub id -> sizes
    # the video processor class whose patch layout the fast path reproduces, and the fast one
    video_processor_class: ClassVar[type | None] = None
    fast_video_processor_class: ClassVar[type | None] = None

    @property
    def key(self) -> str:
        """The registry key: the first model_type."""
        return self.model_types[0]

    # -------------------------------------------------------------- processor geometry
    def smart_resize(
        self, height: int, width: int, factor: int, min_pixels: int, max_pixels: int
    ) -> tuple[int, int]:
        """(height, width) the processor resizes a frame to."""
        raise NotImplementedError

    def owns_processor(self, processor) -> bool:
        """Whether `processor`'s video processor is this family's (its geometry applies)."""
        cls = self.video_processor_class
        return cls is not None and isinstance(getattr(processor, "video_processor", None), cls)

    def with_fast_video_processor(self, processor):
        """A shallow copy of `processor` whose video processor is the bit-identical fast path
        (`fast_video_processor_class`); the caller's processor is left untouched (it may be
        saved by `sce export`). Any other video processor (or a subclass that changes
        preprocessing) is returned unchanged."""
        video_processor = getattr(processor, "video_processor", None)
        fast = self.fast_video_processor_class
        if fast is None or type(video_processor) is not self.video_processor_class:
            return processor
        video_processor = copy.copy(video_processor)
        video_processor.__class__ = fast
        processor = copy.copy(processor)
        processor.video_processor = video_processor
        return processor

    # -------------------------------------------------------------- temporal positions
    def temporal_positions(self, rope_owner: nn.Module, frames: int, fps: float) -> list[int]:
        """Temporal position of each temporal patch of a `frames`-frame video at `fps`, from
        `rope_owner.get_rope_index` (the module that defines it) on a probe sequence."""
        raise NotImplementedError

    def temporal_interval(self, config, fps: float) -> float:
        """Temporal positions between consecutive temporal patches at `fps` (below 1: patches
        share an index)."""
        raise NotImplementedError

    def collapse_advice(self) -> str:
        """Why a release may give every frame one temporal position, and what to do."""
        return "Install a transformers release whose rope index spaces the frames."

    # -------------------------------------------------------------- blocks
    def modeling_module(self) -> ModuleType:
        """transformers' modeling module of the family (where its block classes live)."""
        raise NotImplementedError

    def block_classes(self, names: Iterable[str | type] | None = None) -> set[type]:
        """Classes for block names (FSDP1's auto-wrap policy): a class, a dotted path
        ("pkg.module.Class"), or a name exported by transformers or the family's modeling module
        (default: `block_class_names`)."""
        import transformers

        found: set[type] = set()
        for name in self.block_class_names if names is None else names:
            if isinstance(name, type):
                found.add(name)
                continue
            module_name, _, attr = name.rpartition(".")
            if module_name:
                cls = getattr(importlib.import_module(module_name), attr, None)
            else:  # not every block class is exported at the top level
                cls = getattr(transformers, name, None) or getattr(
                    self.modeling_module(), name, None
                )
            if not isinstance(cls, type):
                raise ValueError(f"block class {name!r} not found; give its dotted path")
            found.add(cls)
        return found

    # -------------------------------------------------------------- configs and models
    def config_from_dict(self, data: Mapping[str, Any]):
        """The family's transformers config from a config.json-like dict."""
        raise NotImplementedError

    def model_from_config(self, config) -> nn.Module:
        """The family's conditional-generation model (random weights) for `config`."""
        raise NotImplementedError

    def architecture(self, checkpoint: Checkpoint) -> dict[str, Any]:
        """A config.json-like dict (text_config, vision_config, tie_word_embeddings) of a
        released checkpoint, for building it on the meta device."""
        raise NotImplementedError

    # -------------------------------------------------------------- tiny kit
    def build_tiny_kit(self, out_dir: Path, seed: int, spec: Any | None, corpus: list[str]) -> Path:
        """Build and save a tiny model of the family (random weights, a tokenizer trained on
        `corpus`, the real processor) to `out_dir`; deterministic for a seed."""
        raise NotImplementedError


__all__ = ["ChatMarkers", "Checkpoint", "Family", "ProcessorSettings"]
