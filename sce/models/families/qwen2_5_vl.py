"""Qwen2.5-VL (3B / 7B): the first family, and the default.

Geometry (transformers' Qwen2-VL video processor, shared by Qwen2.5-VL): 14 px patches, 2x2
merged into one token, 2 frames per temporal patch; `smart_resize` rounds each side to the
nearest multiple of 28 within [min_pixels, max_pixels] (420x240 -> 420x252: 135 tokens per frame
pair, 1,215 for 18 frames). Markers: ChatML turns (<|im_start|> / <|im_end|>), a video or image
block is <|vision_start|><|video_pad|><|vision_end|> with the pad expanded into its tokens.

Temporal positions: each temporal patch (frame pair) sits at `floor(k * tokens_per_second *
second_per_grid_ts)`, `second_per_grid_ts = temporal_patch_size / fps`; several transformers 5.x
releases used `int(second_per_grid_ts)`, collapsing every frame above 2 fps onto one position
(`sce.models.rope_guard` refuses them). The released checkpoints use `tokens_per_second = 2`;
`Qwen2_5_VLConfig`'s class default is 4, so the tiny config sets it.

The tiny kit: no model hub is reachable where this project is developed and tested, so tests and
the demo use a model the project builds itself, through exactly the code path that loads
`Qwen/Qwen2.5-VL-7B-Instruct` from a folder (`save_pretrained` here, then
`AutoProcessor.from_pretrained` / `AutoModelForImageTextToText.from_pretrained`). Its tokenizer
is a byte-level BPE (Qwen's pre-tokenizer: digits split one by one) trained on the corpus it is
given, with every Qwen special token the processor and chat template use, plus `<think>` /
`</think>` for reasoning traces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from torch import nn
from transformers import Qwen2VLVideoProcessor

from sce.models.families.base import ChatMarkers, Checkpoint, Family, ProcessorSettings
from sce.models.families.patchify import FastPatchify

# Qwen2's pre-tokenization regex (words, single digits, punctuation runs, whitespace).
QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2.5-VL special tokens, in Qwen's own order (ids follow the trained vocabulary).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
THINK_TOKENS: tuple[str, ...] = ("<think>", "</think>")

# Same structure as the Qwen2-VL / Qwen2.5-VL chat template: system default, image/video
# placeholders inside content lists, generation prompt.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class FastQwen2VLVideoProcessor(FastPatchify, Qwen2VLVideoProcessor):
    """Qwen2VLVideoProcessor with a single-copy patchify; outputs are identical."""

    upstream = Qwen2VLVideoProcessor


def train_tokenizer(vocab_size: int, corpus: list[str]):
    """Train a byte-level BPE on `corpus` and wrap it as a Qwen2Tokenizer."""
    from transformers import Qwen2Tokenizer

    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus * 4, trainer=trainer)
    vocab, merges = _vocab_and_merges(backend)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    tokenizer.add_tokens(["<|endoftext|>"], special_tokens=True)
    tokenizer.add_tokens(list(THINK_TOKENS), special_tokens=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _vocab_and_merges(backend: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Read the learned vocabulary and merges from the serialized BPE model."""
    model = json.loads(backend.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


@dataclass
class TinySpec:
    """Sizes of the tiny Qwen2.5-VL. Defaults train on a 2-core CPU in minutes."""

    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vision_hidden_size: int = 64
    vision_intermediate_size: int = 128
    vision_depth: int = 2
    vision_heads: int = 2
    vocab_size: int = 1024
    # mrope sections (temporal, height, width) sum to head_dim / 2.
    mrope_section: list[int] = field(default_factory=lambda: [4, 6, 6])
    # Processor pixel bounds: small frames keep visual tokens few (28x28 pixels per token).
    min_pixels: int = 28 * 28 * 2
    max_pixels: int = 28 * 28 * 64


# The vision tower and mrope sections both public Qwen2.5-VL checkpoints share (config.json).
_QWEN25_VL_VISION = dict(
    vision_hidden_size=1280,
    vision_intermediate_size=3420,
    vision_depth=32,
    vision_heads=16,
    mrope_section=[16, 24, 24],
)
# Qwen2.5-VL-7B-Instruct's sizes (config.json of the public checkpoint) as TinySpec fields, for
# measurements at real size without the weights (`sce plan`, benchmarks, meta-device counts).
QWEN25_VL_7B = dict(
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    **_QWEN25_VL_VISION,
)
QWEN25_VL_7B_VOCAB = 152064
# Qwen2.5-VL-3B-Instruct's (same vision tower; tied input/output embeddings).
QWEN25_VL_3B = dict(
    hidden_size=2048,
    intermediate_size=11008,
    num_hidden_layers=36,
    num_attention_heads=16,
    num_key_value_heads=2,
    **_QWEN25_VL_VISION,
)
QWEN25_VL_3B_VOCAB = 151936


def build_config(tokenizer, spec: TinySpec):
    """A Qwen2_5_VLConfig with tiny sizes and token ids taken from the tokenizer."""
    from transformers import Qwen2_5_VLConfig

    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    head_dim = spec.hidden_size // spec.num_attention_heads
    if sum(spec.mrope_section) * 2 != head_dim:
        raise ValueError(
            f"mrope_section {spec.mrope_section} must sum to head_dim/2={head_dim // 2}"
        )
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": spec.hidden_size,
            "intermediate_size": spec.intermediate_size,
            "num_hidden_layers": spec.num_hidden_layers,
            "num_attention_heads": spec.num_attention_heads,
            "num_key_value_heads": spec.num_key_value_heads,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": spec.mrope_section,
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": spec.vision_depth,
            "hidden_size": spec.vision_hidden_size,
            "intermediate_size": spec.vision_intermediate_size,
            "num_heads": spec.vision_heads,
            "out_hidden_size": spec.hidden_size,
            "fullatt_block_indexes": [spec.vision_depth - 1],
            "window_size": 112,
            "patch_size": 14,
            "temporal_patch_size": 2,
            "spatial_merge_size": 2,
            "tokens_per_second": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_processor(tokenizer, spec: TinySpec):
    """The real Qwen2_5_VLProcessor (image + video processors, chat template)."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    size = {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=size),
        chat_template=CHAT_TEMPLATE,
    )


class Qwen2_5_VL(Family):
    """Qwen2.5-VL: its geometry, markers, rope probe, blocks, real sizes and tiny kit."""

    name = "Qwen2.5-VL"
    model_types = ("qwen2_5_vl",)
    # the hub preprocessor_config.json (the video processor reads it too)
    settings = ProcessorSettings(
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=56 * 56,
        max_pixels=12845056,
        max_video_tokens=128000,
        source="Qwen2.5-VL defaults",
    )
    markers = ChatMarkers(
        turn_start="<|im_start|>",
        turn_end="<|im_end|>",
        vision_start="<|vision_start|>",
        vision_end="<|vision_end|>",
        video_pad="<|video_pad|>",
        image_pad="<|image_pad|>",
    )
    # transformers 5.x; also the model's `_no_split_modules`
    block_class_names = ("Qwen2_5_VLDecoderLayer", "Qwen2_5_VLVisionBlock")
    checkpoints = {
        "Qwen/Qwen2.5-VL-7B-Instruct": Checkpoint(QWEN25_VL_7B, QWEN25_VL_7B_VOCAB, False),
        "Qwen/Qwen2.5-VL-3B-Instruct": Checkpoint(QWEN25_VL_3B, QWEN25_VL_3B_VOCAB, True),
    }
    video_processor_class = Qwen2VLVideoProcessor
    fast_video_processor_class = FastQwen2VLVideoProcessor

    def smart_resize(
        self, height: int, width: int, factor: int, min_pixels: int, max_pixels: int
    ) -> tuple[int, int]:
        """transformers' own Qwen2-VL smart_resize."""
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import smart_resize

        return smart_resize(height, width, factor, min_pixels, max_pixels)

    def temporal_positions(self, rope_owner: nn.Module, frames: int, fps: float) -> list[int]:
        """The probe video has one merged token per temporal patch (grid T x merge x merge),
        between two text tokens, exactly as the processor lays out a video block."""
        config = rope_owner.config
        vision = getattr(config, "vision_config", config)
        patch = int(getattr(vision, "temporal_patch_size", self.settings.temporal_patch_size))
        merge = int(getattr(vision, "spatial_merge_size", self.settings.merge_size))
        pairs = max(1, frames // patch)
        text_id = 0 if config.video_token_id != 0 else 1
        input_ids = torch.tensor([[text_id] + [config.video_token_id] * pairs + [text_id]])
        types = torch.zeros_like(input_ids, dtype=torch.int32)
        types[0, 1 : 1 + pairs] = 2  # video placeholders
        with torch.no_grad():
            position_ids, _ = rope_owner.get_rope_index(
                input_ids,
                mm_token_type_ids=types,
                video_grid_thw=torch.tensor([[pairs, merge, merge]]),
                second_per_grid_ts=torch.tensor([patch / fps]),
                attention_mask=torch.ones_like(input_ids),
            )
        return [int(t) for t in position_ids[0, 0, 1 : 1 + pairs]]

    def temporal_interval(self, config, fps: float) -> float:
        """tokens_per_second x temporal_patch_size / fps (4/3 at 3 fps, 2/15 at 30 fps)."""
        vision = getattr(config, "vision_config", None)
        tokens_per_second = float(getattr(vision, "tokens_per_second", 2))
        patch = float(getattr(vision, "temporal_patch_size", self.settings.temporal_patch_size))
        return tokens_per_second * patch / fps

    def collapse_advice(self) -> str:
        return (
            "this release computes the temporal interval with int(second_per_grid_ts), which is "
            "0 above 2 fps, so the model cannot see the order of frames. Install a transformers "
            "release whose get_rope_index multiplies by the float second_per_grid_ts (5.23 does; "
            "see setup.cfg), or sample at 2 fps or less."
        )

    def modeling_module(self) -> ModuleType:
        import importlib

        return importlib.import_module("transformers.models.qwen2_5_vl.modeling_qwen2_5_vl")

    def config_from_dict(self, data: dict[str, Any]):
        from transformers import Qwen2_5_VLConfig

        return Qwen2_5_VLConfig(**{k: v for k, v in data.items() if k != "architectures"})

    def model_from_config(self, config) -> nn.Module:
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration(config)

    def architecture(self, checkpoint: Checkpoint) -> dict[str, Any]:
        spec = checkpoint.sizes
        text = {
            "vocab_size": checkpoint.vocab_size,
            "hidden_size": spec["hidden_size"],
            "intermediate_size": spec["intermediate_size"],
            "num_hidden_layers": spec["num_hidden_layers"],
            "num_attention_heads": spec["num_attention_heads"],
            "num_key_value_heads": spec["num_key_value_heads"],
            "max_position_embeddings": 128000,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": list(spec["mrope_section"]),
            },
        }
        depth = spec["vision_depth"]
        vision = {
            "depth": depth,
            "hidden_size": spec["vision_hidden_size"],
            "intermediate_size": spec["vision_intermediate_size"],
            "num_heads": spec["vision_heads"],
            "out_hidden_size": spec["hidden_size"],
            "fullatt_block_indexes": list(range(depth // 4 - 1, depth, depth // 4)),  # 7,15,23,31
            "window_size": 112,
            "patch_size": self.settings.patch_size,
            "spatial_merge_size": self.settings.merge_size,
            "temporal_patch_size": self.settings.temporal_patch_size,
            "tokens_per_second": 2,
        }
        return {
            "text_config": text,
            "vision_config": vision,
            "tie_word_embeddings": checkpoint.tie_word_embeddings,
        }

    def build_tiny_kit(
        self, out_dir: Path, seed: int, spec: TinySpec | None, corpus: list[str]
    ) -> Path:
        """The tiny Qwen2.5-VL (model, tokenizer, processor) saved to `out_dir`: the same seed
        gives the same weights and tokenizer."""
        from transformers import set_seed

        spec = spec or TinySpec()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tokenizer = train_tokenizer(spec.vocab_size, corpus)
        processor = build_processor(tokenizer, spec)
        config = build_config(tokenizer, spec)
        set_seed(seed)
        model = self.model_from_config(config).to(torch.float32)
        model.generation_config.eos_token_id = config.text_config.eos_token_id
        model.generation_config.pad_token_id = config.text_config.pad_token_id
        model.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
        return out_dir


QWEN2_5_VL = Qwen2_5_VL()

__all__ = [
    "CHAT_TEMPLATE",
    "QWEN25_VL_3B",
    "QWEN25_VL_3B_VOCAB",
    "QWEN25_VL_7B",
    "QWEN25_VL_7B_VOCAB",
    "QWEN2_5_VL",
    "SPECIAL_TOKENS",
    "THINK_TOKENS",
    "FastQwen2VLVideoProcessor",
    "Qwen2_5_VL",
    "TinySpec",
    "build_config",
    "build_processor",
    "train_tokenizer",
]
