"""A checkpoint knows the base it was trained on, and refuses another (issue 26 point 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sce.models.base_identity import (
    SAMPLE_BYTES,
    SAMPLE_WINDOWS,
    BaseModelMismatchError,
    _sample_offsets,
    base_identity,
    check_base_identity,
)
from sce.models.checkpointing import CheckpointMismatchError


@pytest.fixture(scope="module")
def other_kit(tmp_path_factory) -> Path:
    """The tiny kit again with seed 1: same architecture and config, other weights."""
    from sce.models.tiny import build_tiny_kit

    return build_tiny_kit(tmp_path_factory.mktemp("tiny_seed1"), seed=1)


def test_identity_follows_the_content_not_the_path(tiny_kit: Path, other_kit: Path, tmp_path):
    original = base_identity(tiny_kit)
    size = (tiny_kit / "model.safetensors").stat().st_size
    assert original["weight_files"] == 1 and original["weight_bytes"] == size
    copy = tmp_path / "copy"
    shutil.copytree(tiny_kit, copy)
    assert base_identity(copy) == original  # another folder, the same base

    other = base_identity(other_kit)  # same config, other weights
    assert other["config_sha256"] == original["config_sha256"]
    assert other["weights_sample_sha256"] != original["weights_sample_sha256"]

    config = json.loads((copy / "config.json").read_text())
    config["transformers_version"] = "0.0.1"  # re-saved by another release: the same base
    (copy / "config.json").write_text(json.dumps(config))
    assert base_identity(copy) == original
    config["text_config"]["rope_parameters"]["mrope_section"] = [2, 6, 8]  # another geometry
    (copy / "config.json").write_text(json.dumps(config))
    changed = base_identity(copy)
    assert changed["config_sha256"] != original["config_sha256"]
    assert changed["weights_sample_sha256"] == original["weights_sample_sha256"]
    assert base_identity(tmp_path / "nowhere") is None


def test_weights_are_sampled_not_read_whole() -> None:
    size = 10**9  # a 1 GB shard: 16 windows of 4 KiB, the first at 0 and the last at the end
    offsets = _sample_offsets(size)
    assert len(offsets) == SAMPLE_WINDOWS and offsets[0] == 0
    assert offsets[-1] == size - SAMPLE_BYTES
    assert _sample_offsets(3 * SAMPLE_BYTES + 1) == [
        0,
        SAMPLE_BYTES,
        2 * SAMPLE_BYTES,
        3 * SAMPLE_BYTES,
    ]


def test_check_names_the_option_and_what_differs(tiny_kit: Path, other_kit: Path) -> None:
    recorded = base_identity(tiny_kit)
    check_base_identity(recorded, base_identity(tiny_kit), tiny_kit, "--model-path")
    check_base_identity(None, None, "org/model", "--model-path")  # nothing recorded, no folder
    with pytest.raises(BaseModelMismatchError) as err:
        check_base_identity(recorded, base_identity(other_kit), other_kit, "--model-path", "c.ckpt")
    assert str(err.value).startswith(
        f"c.ckpt: the base model at --model-path {other_kit} is not the one it was trained on "
        "(weights differ"
    )
    with pytest.raises(BaseModelMismatchError, match="no model folder there"):
        check_base_identity(None, None, "/gone", "--model-path", expect_folder=True)
    assert issubclass(BaseModelMismatchError, CheckpointMismatchError)  # sce fit reports it


def test_module_refuses_a_checkpoint_of_another_base(tiny_kit: Path, other_kit: Path) -> None:
    """Resume / validate / test: SceModule.on_load_checkpoint compares the checkpoint's
    recorded base with the base it loaded from model.model_path."""
    from sce.models.base_identity import BASE_IDENTITY_KEY
    from sce.models.checkpointing import adapter_only
    from sce.models.module import SceModule

    module = SceModule(str(tiny_kit), finetuning="lora", rank=2, alpha=4)
    module.configure_model()
    saved = {"state_dict": adapter_only(module, module.state_dict())}
    module.on_save_checkpoint(saved)
    assert saved[BASE_IDENTITY_KEY] == base_identity(tiny_kit)
    module.on_load_checkpoint(dict(saved))  # its own base: accepted
    saved[BASE_IDENTITY_KEY] = base_identity(other_kit)
    with pytest.raises(BaseModelMismatchError, match=r"model.model_path .* is not the one"):
        module.on_load_checkpoint(saved)
