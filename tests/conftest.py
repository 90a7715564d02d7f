"""Shared, session-scoped test assets: the tiny Qwen2.5-VL kit and a small synthetic dataset.

Both are built once per test session (a few seconds each) into pytest's temporary folders, so
every test file that needs a real processor, model or decodable clip shares them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_SEED = 0
SYNTHETIC = {"clips": 9, "seed": 0, "duration": 7.0, "width": 128, "height": 72}


@pytest.fixture(scope="session")
def tiny_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the tiny Qwen2.5-VL kit (seed 0): model, tokenizer, processor."""
    from sce.models.tiny import build_tiny_kit

    return build_tiny_kit(tmp_path_factory.mktemp("tiny"), seed=TINY_SEED)


@pytest.fixture(scope="session")
def tiny_processor(tiny_kit: Path):
    """The tiny kit's processor, loaded back through AutoProcessor."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_kit)


@pytest.fixture(scope="session")
def tiny_model(tiny_kit: Path):
    """The tiny kit's model, loaded back through AutoModelForImageTextToText (eval mode)."""
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_kit).eval()


@pytest.fixture(scope="session")
def synthetic_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """manifest.jsonl of 9 synthetic clips (3 per class, 7 s, 128x72, 30 fps, IMU + GPS)."""
    from sce.prepare.synthetic import generate_synthetic_dataset

    return generate_synthetic_dataset(
        tmp_path_factory.mktemp("synthetic"), progress=False, **SYNTHETIC
    )
