"""Model families (sce.models.families): Qwen2.5-VL's numbers equal what transformers computes,
the registry finds it, and nothing outside the folder names its classes or markers."""

from __future__ import annotations

import ast
import dataclasses
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
from helpers.paths import REPO
from transformers import Qwen2VLVideoProcessor

from sce.data.collate import video_metadata
from sce.data.video_processing import model_frame_size, visual_tokens
from sce.models.distributed import find_blocks
from sce.models.families import (
    DEFAULT_FAMILY,
    FAMILIES,
    family_for,
    family_of_checkpoint,
    family_of_processor,
)
from sce.models.families.qwen2_5_vl import QWEN2_5_VL, TinySpec

SCE = REPO / "sce"
FAMILIES_DIR = SCE / "models" / "families"
# Class names, constants and modules of Qwen2.5-VL (and the Qwen2-VL processors it uses).
FAMILY_NAMES = re.compile(r"Qwen2_5_VL|Qwen2VL|QWEN2|qwen2_5_vl|qwen2_vl|tokens_per_second|mrope")


def _hub_video_processor() -> Qwen2VLVideoProcessor:
    """Qwen2.5-VL's video processor as its hub preprocessor config sets it."""
    s = QWEN2_5_VL.settings
    return Qwen2VLVideoProcessor(size={"shortest_edge": s.min_pixels, "longest_edge": s.max_pixels})


# ------------------------------------------------------------------ geometry
def test_settings_are_the_processors_own_numbers():
    vp, s = _hub_video_processor(), QWEN2_5_VL.settings
    assert (vp.patch_size, vp.merge_size, vp.temporal_patch_size) == (14, 2, 2)
    assert (s.patch_size, s.merge_size, s.temporal_patch_size) == (14, 2, 2)
    assert s.factor == 28
    assert s.max_video_tokens == vp.max_video_tokens


@pytest.mark.parametrize(("frames", "tokens"), [(2, 135), (18, 1215)])
def test_visual_tokens_equal_the_real_processors_grid(frames, tokens):
    """420x240 -> 420x252: 15 x 9 merged patches per frame pair."""
    video = np.zeros((frames, 240, 420, 3), dtype=np.uint8)
    out = _hub_video_processor()(
        videos=[video], video_metadata=[video_metadata(video, 3.0)], return_tensors="pt"
    )
    (t, h, w) = out["video_grid_thw"][0].tolist()
    merge = QWEN2_5_VL.settings.merge_size
    assert (h * 14, w * 14) == (252, 420)
    assert t * h * w // merge**2 == tokens
    assert visual_tokens(frames, 420, 240, QWEN2_5_VL.settings, QWEN2_5_VL) == tokens
    assert QWEN2_5_VL.smart_resize(240, 420, 28, 3136, 12845056) == (252, 420)
    processor = SimpleNamespace(video_processor=_hub_video_processor())
    assert model_frame_size(processor, 420, 240) == (420, 252)


# ------------------------------------------------------------------ markers
def test_markers_are_the_tiny_tokenizers_special_tokens(tiny_processor):
    tokenizer, markers = tiny_processor.tokenizer, QWEN2_5_VL.markers
    special = set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())
    for token in dataclasses.astuple(markers):
        assert token in special, token
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [
            tokenizer.convert_tokens_to_ids(token)
        ]
    assert tiny_processor.video_token == markers.video_pad
    assert tiny_processor.image_token == markers.image_pad
    assert tokenizer.eos_token == markers.turn_end


def test_rendered_markers_equal_the_chat_template(tiny_processor):
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]},
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A. collision"}]},
    ]
    rendered = tiny_processor.apply_chat_template(messages, tokenize=False)
    assert QWEN2_5_VL.markers.render(messages) == rendered
    prompt = tiny_processor.apply_chat_template(messages[:2], add_generation_prompt=True)
    assert prompt.endswith(QWEN2_5_VL.markers.assistant_header())


# ------------------------------------------------------------------ registry
def test_registry_finds_qwen2_5_vl(tiny_kit, tiny_model, tiny_processor):
    assert DEFAULT_FAMILY is QWEN2_5_VL
    assert FAMILIES["qwen2_5_vl"] is QWEN2_5_VL
    assert family_for(tiny_model.config) is QWEN2_5_VL
    assert family_for(tiny_kit) is QWEN2_5_VL
    assert family_for(str(tiny_kit)) is QWEN2_5_VL
    assert family_for("Qwen/Qwen2.5-VL-3B") is QWEN2_5_VL
    assert family_of_checkpoint("Qwen/Qwen2.5-VL-7B") == (
        QWEN2_5_VL,
        "Qwen/Qwen2.5-VL-7B-Instruct",
    )
    assert family_of_processor(tiny_processor) is QWEN2_5_VL
    assert family_of_processor(object()) is None
    with pytest.raises(ValueError, match="no model family for model_type 'llava'"):
        family_for({"model_type": "llava"})


def test_block_classes_are_the_transformers_classes(tiny_model):
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
        Qwen2_5_VLDecoderLayer,
        Qwen2_5_VLVisionBlock,
    )

    assert QWEN2_5_VL.block_classes() == {Qwen2_5_VLDecoderLayer, Qwen2_5_VLVisionBlock}
    assert set(tiny_model._no_split_modules) == set(QWEN2_5_VL.block_class_names)
    spec = TinySpec()
    blocks = find_blocks(tiny_model, QWEN2_5_VL.block_class_names)
    assert len(blocks) == spec.num_hidden_layers + spec.vision_depth


def test_temporal_probe_and_interval(tiny_model):
    """Paper 000: 18 frames at 3 fps = 9 pairs, interval tokens_per_second 2 x 2/3 s = 4/3."""
    owner = tiny_model.model
    positions = QWEN2_5_VL.temporal_positions(owner, 18, 3.0)
    assert [p - positions[0] for p in positions] == [0, 1, 2, 4, 5, 6, 8, 9, 10]
    assert math.isclose(QWEN2_5_VL.temporal_interval(tiny_model.config, 3.0), 4 / 3)


def test_known_checkpoints_build_the_real_widths():
    """What `sce plan` builds on meta: Qwen2.5-VL-7B's config.json values."""
    arch = QWEN2_5_VL.architecture(QWEN2_5_VL.checkpoints["Qwen/Qwen2.5-VL-7B-Instruct"])
    config = QWEN2_5_VL.config_from_dict(arch)
    assert config.text_config.hidden_size == 3584
    assert config.text_config.num_hidden_layers == 28
    assert config.text_config.vocab_size == 152064
    assert config.vision_config.fullatt_block_indexes == [7, 15, 23, 31]
    assert config.vision_config.tokens_per_second == 2
    assert config.tie_word_embeddings is False


# ------------------------------------------------------------------ the seam holds
def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes (prose may mention a family)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                found.add(id(body[0].value))
    return found


def family_mentions(source: str, markers: set[str]) -> list[str]:
    """Code (not prose) in `source` that names a family class, constant, module or marker."""
    tree = ast.parse(source)
    prose = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.alias):
            names = [node.name, node.asname or ""]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names = [node.name]
        elif isinstance(node, ast.arg | ast.keyword):
            names = [node.arg or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in prose:
                continue
            hits += [f"{node.lineno}: {m!r}" for m in markers if m in node.value]
            names = [node.value]
        hits += [f"{node.lineno}: {n}" for n in names if FAMILY_NAMES.search(n)]
    return hits


def _all_markers() -> set[str]:
    return {m for f in FAMILIES.values() for m in dataclasses.astuple(f.markers)}


def test_the_scan_finds_family_code_and_skips_prose():
    code = (
        '"""Qwen2_5_VLModel in a docstring is fine, so is <|video_pad|>."""\n'
        "from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl\n"
        "from transformers import Qwen2_5_VLConfig\n"
        'pad = "<|video_pad|>"\n'
        "x = QWEN25_VL_7B\n"
        "# Qwen2VLVideoProcessor in a comment\n"
    )
    hits = family_mentions(code, _all_markers())
    assert [h.split(":")[0] for h in hits] == ["2", "2", "3", "4", "5"]


def test_nothing_outside_the_families_folder_names_a_family():
    markers = _all_markers()
    found = {
        str(path.relative_to(SCE.parent)): hits
        for path in sorted(SCE.rglob("*.py"))
        if FAMILIES_DIR not in path.parents and (hits := family_mentions(path.read_text(), markers))
    }
    assert found == {}
