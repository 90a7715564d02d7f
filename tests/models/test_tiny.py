"""The tiny offline Qwen2.5-VL kit: Auto-class round trip, special tokens, forward, generate."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sce.data.channels import TelemetryChannel
from sce.data.collate import DATA_PROBLEM_COUNTS, Collator
from sce.data.dataset import Sample
from sce.data.prompts import build_user_content
from sce.models.families.qwen2_5_vl import SPECIAL_TOKENS, THINK_TOKENS
from sce.models.tiny import build_tiny_kit

QWEN_TOKENS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|video_pad|>",
    "<|image_pad|>",
)
# Collator bookkeeping and loss targets; everything else (labels included) goes to the model.
NON_MODEL_KEYS = (
    "meta",
    *DATA_PROBLEM_COUNTS,
    "prob_positions",
    "prob_scales",
    "prob_targets",
)


def _video_sample(seed: int = 0, fps: float = 3.0) -> Sample:
    """18 random 56x112 frames at 3 fps, interleaved layout without telemetry."""
    frames = np.random.default_rng(seed).integers(0, 256, (18, 56, 112, 3), dtype=np.uint8)
    times = 0.5 + (np.arange(18) + 0.5) / fps
    content, videos = build_user_content(
        frames, times, [TelemetryChannel(None)], "Which event occurs?"
    )
    return Sample(f"clip{seed}", content, videos, fps, "A. collision", "mcq", "collision")


def _model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in NON_MODEL_KEYS}


def test_kit_folder_loads_through_auto_classes(tiny_kit: Path, tiny_processor, tiny_model) -> None:
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (tiny_kit / name).is_file(), name
    assert isinstance(tiny_processor, Qwen2_5_VLProcessor)
    assert isinstance(tiny_model, Qwen2_5_VLForConditionalGeneration)
    assert tiny_model.dtype == torch.float32
    assert tiny_model.config.vision_config.temporal_patch_size == 2
    assert tiny_processor.video_processor.temporal_patch_size == 2
    assert "<|vision_start|><|video_pad|><|vision_end|>" in tiny_processor.chat_template


@pytest.mark.parametrize("token", QWEN_TOKENS + THINK_TOKENS + ("<|endoftext|>",))
def test_special_token_is_one_token(tiny_processor, token: str) -> None:
    tok = tiny_processor.tokenizer
    ids = tok(f"x{token}y", add_special_tokens=False)["input_ids"]
    token_id = tok.convert_tokens_to_ids(token)
    assert token_id is not None and token_id != tok.unk_token_id
    assert ids.count(token_id) == 1
    assert tok(token, add_special_tokens=False)["input_ids"] == [token_id]
    assert tok.decode([token_id]) == token


def test_special_token_ids_are_distinct(tiny_processor) -> None:
    tok = tiny_processor.tokenizer
    ids = [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS + THINK_TOKENS]
    assert len(set(ids)) == len(SPECIAL_TOKENS) + len(THINK_TOKENS)
    assert max(ids) == len(tok) - 1  # the added tokens close the vocabulary


def test_config_token_ids_match_tokenizer(tiny_processor, tiny_model) -> None:
    tok = tiny_processor.tokenizer
    cfg = tiny_model.config
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert cfg.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    assert cfg.text_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert cfg.text_config.pad_token_id == tok.convert_tokens_to_ids("<|endoftext|>")
    assert cfg.text_config.vocab_size == len(tok)
    assert tiny_model.generation_config.eos_token_id == cfg.text_config.eos_token_id
    assert tiny_model.generation_config.pad_token_id == cfg.text_config.pad_token_id
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tiny_processor.video_token_id == cfg.video_token_id


def test_digits_tokenize_one_by_one(tiny_processor) -> None:
    tok = tiny_processor.tokenizer
    assert tok.tokenize("Collision Probability: 0.872")[-5:] == ["0", ".", "8", "7", "2"]
    tokens = tok.tokenize("speed 12345 m/s")
    assert [t for t in tokens if t.isdigit()] == ["1", "2", "3", "4", "5"]
    assert all(len(t.lstrip("Ġ")) <= 1 for t in tokens if any(c.isdigit() for c in t))


def test_forward_with_video(tiny_processor, tiny_model) -> None:
    batch = Collator(tiny_processor)([_video_sample(0)])
    # 9 pair videos of 56x112: each 1 x 4 x 8 patches -> 8 merged tokens, 72 in all
    assert batch["video_grid_thw"].tolist() == [[1, 4, 8]] * 9
    assert int((batch["input_ids"] == tiny_model.config.video_token_id).sum()) == 72
    with torch.no_grad():
        out = tiny_model(**_model_inputs(batch))
    vocab = len(tiny_processor.tokenizer)
    assert out.logits.shape == (1, batch["input_ids"].shape[1], vocab)
    # Random init (std 0.02) gives near-uniform predictions: CE close to ln(vocab).
    assert torch.isfinite(out.loss)
    assert abs(float(out.loss) - math.log(vocab)) < 0.2


def test_generate_with_video(tiny_processor, tiny_model) -> None:
    batch = Collator(tiny_processor, mode="generate")([_video_sample(1)])
    prompt = batch["input_ids"]
    with torch.no_grad():
        out = tiny_model.generate(
            **_model_inputs(batch), max_new_tokens=3, min_new_tokens=3, do_sample=False
        )
    assert out.shape == (1, prompt.shape[1] + 3)
    assert torch.equal(out[:, : prompt.shape[1]], prompt)
    assert int(out[:, prompt.shape[1] :].max()) < len(tiny_processor.tokenizer)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_build_is_deterministic_for_a_seed(tiny_kit: Path, tmp_path: Path) -> None:
    same = build_tiny_kit(tmp_path / "same", seed=0)
    other = build_tiny_kit(tmp_path / "other", seed=1)
    ref, again, diff = _weights(tiny_kit), _weights(same), _weights(other)
    assert ref.keys() == again.keys() == diff.keys()
    assert all(torch.equal(ref[k], again[k]) for k in ref)
    matrices = [k for k in ref if ref[k].ndim >= 2]  # norms are ones and biases zeros for any seed
    assert any("embed_tokens" in k for k in matrices)
    assert all(not torch.equal(ref[k], diff[k]) for k in matrices)
    assert (tiny_kit / "tokenizer.json").read_text() == (same / "tokenizer.json").read_text()
    assert (tiny_kit / "tokenizer.json").read_text() == (other / "tokenizer.json").read_text()
