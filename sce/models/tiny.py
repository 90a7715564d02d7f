"""A tiny, offline Qwen2.5-VL kit: random weights, a project-trained tokenizer, the real processor.

No model hub is reachable on the machines this project is developed and tested on, so tests and
the demo use a model that the project builds itself. It goes through exactly the code path that
loads `Qwen/Qwen2.5-VL-7B-Instruct` from a folder: `save_pretrained` here, then
`AutoProcessor.from_pretrained` / `AutoModelForImageTextToText.from_pretrained`.

The tokenizer is a byte-level BPE (Qwen's pre-tokenizer: digits split one by one) trained on the
project's own prompt/answer vocabulary, with every Qwen special token the processor and chat
template use, plus `<think>`/`</think>` for reasoning traces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

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

_BASE_CORPUS = """
You are a helpful assistant. You are a driving safety analyst watching dashcam video.
Which event occurs in this clip? A. collision B. near-collision C. normal driving.
Answer with the letter. The answer is A. The answer is B. The answer is C.
collision near-collision near_collision normal driving normal crash impact hard braking.
Collision Probability: 0.872 0.5 0.0 1.0 0.25 0.125 0.75 0.333 0.666 0.95 0.05
Describe the safety-critical event in this clip. Frame at t= s acceleration heading change speed
m/s m/s² km/h rad deg ax ay az longitudinal lateral vertical yaw telemetry IMU GPS unavailable
The ego vehicle travels on a wet urban road at night and collides with a car ahead.
The ego vehicle brakes hard and narrowly avoids a truck that cuts in from the left.
The ego vehicle follows a bus at a steady distance on a dry highway in clear daylight.
weather clear rain fog snow light day night dusk dawn scene urban highway rural road dry wet
other agent car truck bus motorcycle bicycle pedestrian impact side front rear left right
deceleration spike peak decel at seconds before after event time window frames video
<think> The telemetry shows a sharp deceleration spike, so the vehicle hit something. </think>
Question options answer reason why what where when who how is the does was
0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 -0.4 -1.2 -4.8 -6.5 -9.7 -11.3 +0.2
"""


def vocabulary_corpus() -> list[str]:
    """Texts the tiny tokenizer is trained on: the base corpus plus the prompt templates."""
    lines = [line for line in _BASE_CORPUS.strip().splitlines() if line.strip()]
    try:  # the prompt module's own templates, so real prompts tokenize into few tokens
        from sce.data.prompts import template_corpus

        lines.extend(template_corpus())
    except ImportError:
        pass
    return lines


def train_tokenizer(vocab_size: int = 1024, corpus: list[str] | None = None):
    """Train a byte-level BPE on the project corpus and wrap it as a Qwen2Tokenizer."""
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
    backend.train_from_iterator((corpus or vocabulary_corpus()) * 4, trainer=trainer)
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
    import json

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


# Qwen2.5-VL-7B-Instruct's sizes (config.json of the public checkpoint) as TinySpec fields, for
# measurements at real size without the weights (benchmarks, parameter counts on the meta device).
QWEN25_VL_7B = dict(
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    vision_hidden_size=1280,
    vision_intermediate_size=3420,
    vision_depth=32,
    vision_heads=16,
    mrope_section=[16, 24, 24],
)
QWEN25_VL_7B_VOCAB = 152064
# Qwen2.5-VL-3B-Instruct's (same vision tower; tied input/output embeddings).
QWEN25_VL_3B = dict(
    hidden_size=2048,
    intermediate_size=11008,
    num_hidden_layers=36,
    num_attention_heads=16,
    num_key_value_heads=2,
    vision_hidden_size=1280,
    vision_intermediate_size=3420,
    vision_depth=32,
    vision_heads=16,
    mrope_section=[16, 24, 24],
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


def build_tiny_kit(out_dir: str | Path, seed: int = 0, spec: TinySpec | None = None) -> Path:
    """Build and save a tiny Qwen2.5-VL (model, tokenizer, processor) to `out_dir`.

    Deterministic for a seed: the same seed gives the same weights and tokenizer. Load it back
    with `AutoProcessor.from_pretrained(out_dir)` and
    `AutoModelForImageTextToText.from_pretrained(out_dir)`.
    """
    from transformers import Qwen2_5_VLForConditionalGeneration, set_seed

    spec = spec or TinySpec()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(spec.vocab_size)
    processor = build_processor(tokenizer, spec)
    config = build_config(tokenizer, spec)
    set_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
