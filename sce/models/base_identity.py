"""Which base model a checkpoint was trained on: a hash of its config and a sample of its weights.

An adapter-only checkpoint (sce.models.checkpointing) reloads its frozen base from `model_path`.
Another model put at that path later (another seed, revision or size of the same architecture)
loads without a word and the adapters are merged onto the wrong weights: issue 26.2 measured an
export with rc 0 whose merged weights were off by up to 0.135. So SceModule records
`base_identity(model_path)` in every checkpoint (BASE_IDENTITY_KEY) and compares it with the base
it runs on when a checkpoint is loaded (resume, validate, test, predict); `sce export` compares
before it loads the base, so a base that moved away gets a message, not a transformers traceback.

What is hashed: config.json without the keys that change when the same weights are saved again
(VOLATILE_CONFIG_KEYS), and, for every weight file, its name, size and SAMPLE_WINDOWS windows of
SAMPLE_BYTES spread evenly over it (the first holds a safetensors header: names, dtypes, shapes).
That reads ~64 KiB per file, milliseconds for a 7B model's shards, never the whole weights; two
trainings of one architecture differ in every window. Plain strings and ints, so checkpoints still
load with weights_only=True. A hub id is looked up in the local Hugging Face cache (it was loaded
from there); a base found nowhere has no identity, and nothing is compared.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sce.models.checkpointing import CheckpointMismatchError

BASE_IDENTITY_KEY = "sce_base_identity"  # checkpoint key
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
VOLATILE_CONFIG_KEYS = ("transformers_version", "_name_or_path")
SAMPLE_WINDOWS = 16
SAMPLE_BYTES = 4096
COMPARED = {"config_sha256": "config.json", "weights_sample_sha256": "weights"}


class BaseModelMismatchError(CheckpointMismatchError):
    """A checkpoint's base model is not the one found at the model path now."""


def base_folder(model_path: str | Path) -> Path | None:
    """The local folder of a base: `model_path` itself, or a hub id's snapshot in the local
    Hugging Face cache; None when there is neither."""
    path = Path(str(model_path)).expanduser()
    if (path / "config.json").is_file():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(model_path), "config.json")
    except Exception:  # not a valid hub id either
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def base_identity(model_path: str | Path) -> dict[str, Any] | None:
    """{config_sha256, weights_sample_sha256, weight_files, weight_bytes} of the base at
    `model_path` (see the module docstring), or None when no local folder holds it."""
    folder = base_folder(model_path)
    if folder is None:
        return None
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for key in VOLATILE_CONFIG_KEYS:
        config.pop(key, None)
    weights = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    digest = hashlib.sha256()
    for path in weights:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as handle:
            for offset in _sample_offsets(size):
                handle.seek(offset)
                digest.update(handle.read(SAMPLE_BYTES))
    canonical = json.dumps(config, sort_keys=True).encode()
    return {
        "config_sha256": hashlib.sha256(canonical).hexdigest(),
        "weights_sample_sha256": digest.hexdigest(),
        "weight_files": len(weights),
        "weight_bytes": sum(p.stat().st_size for p in weights),
    }


def _sample_offsets(size: int) -> list[int]:
    """Start offsets of SAMPLE_WINDOWS windows spread evenly over a file of `size` bytes (the
    whole file when it is smaller than that)."""
    if size <= SAMPLE_WINDOWS * SAMPLE_BYTES:
        return list(range(0, size, SAMPLE_BYTES))
    last = size - SAMPLE_BYTES
    return [last * i // (SAMPLE_WINDOWS - 1) for i in range(SAMPLE_WINDOWS)]


def check_base_identity(
    recorded: dict[str, Any] | None,
    found: dict[str, Any] | None,
    model_path: str | Path,
    option: str,
    where: str = "checkpoint",
    expect_folder: bool = False,
) -> None:
    """Raise BaseModelMismatchError unless the base `found` at `model_path` is the one
    `recorded` in the checkpoint at `where`; `option` is the setting that names the base
    (`--model-path`, `model.model_path`). A checkpoint without a record checks nothing but,
    with `expect_folder`, that a base is there at all."""
    fix = f"pass {option} with the base model the checkpoint was trained on"
    if found is None and (recorded or expect_folder):
        raise BaseModelMismatchError(
            f"{where}: its base model is not at {option} {model_path} (no model folder there, "
            f"moved or deleted?); {fix}"
        )
    if not recorded:
        return
    differ = [name for key, name in COMPARED.items() if recorded.get(key) != found.get(key)]
    if differ:
        raise BaseModelMismatchError(
            f"{where}: the base model at {option} {model_path} is not the one it was trained "
            f"on ({' and '.join(differ)} differ: {found.get('weight_files')} weight files of "
            f"{found.get('weight_bytes')} bytes there, {recorded.get('weight_files')} of "
            f"{recorded.get('weight_bytes')} in training); {fix}"
        )


__all__ = [
    "BASE_IDENTITY_KEY",
    "BaseModelMismatchError",
    "base_folder",
    "base_identity",
    "check_base_identity",
]
