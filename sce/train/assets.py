"""Built-in assets a config can name instead of a path, so a fresh checkout runs without data.

    model.model_path: tiny:SEED           the offline tiny Qwen2.5-VL kit (built on first use)
    data.manifest:    synthetic:N:SEED    N synthetic clips (8 s, 224x128; generated on first use)

Built assets live in `$SCE_CACHE` (default: the user cache folder, `$XDG_CACHE_HOME/sce` or
`~/.cache/sce`, so a command run from another working directory finds the same kit and records
an absolute path) and are built into a temporary folder that is renamed into place, so
concurrent ranks or runs never see a half-written asset.

Specs are resolved here, in the config layer (`resolved_specs` around LightningCLI's
instantiation), so SceDataModule and SceModule only ever see real paths and import nothing of
the tools that build the assets.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path


def cache_root() -> Path:
    """`$SCE_CACHE`, else the user cache folder's `sce/` (absolute, whatever the cwd)."""
    if os.environ.get("SCE_CACHE"):
        return Path(os.environ["SCE_CACHE"]).expanduser()
    user_cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(user_cache).expanduser().absolute() / "sce"


def _build_once(target: Path, build: Callable[[Path], object]) -> Path:
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race: keep its copy
            if not target.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _parse_ints(spec: str, name: str, count: int) -> list[int]:
    parts = spec.split(":")[1:]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"{name}: expected integers in {spec!r}") from None
    if len(values) != count:
        raise ValueError(f"{name}: expected {count} number(s) after the colon in {spec!r}")
    return values


def resolve_model_path(spec: str) -> str:
    """A model folder or hub id as given, or the tiny kit for `tiny:SEED`, cached as
    `tiny-SEED-<vocabulary digest>`: a kit built before the prompt templates (its tokenizer's
    corpus) changed is never reused for the new ones."""
    if not spec.startswith("tiny:"):
        return spec
    (seed,) = _parse_ints(spec, "model.model_path", 1)
    from sce.models.tiny import build_tiny_kit, vocabulary_digest

    folder = cache_root() / f"tiny-{seed}-{vocabulary_digest()}"
    return str(_build_once(folder, lambda d: build_tiny_kit(d, seed=seed)))


def resolve_manifest(spec: str) -> str:
    """A manifest path as given, or a synthetic dataset for `synthetic:N:SEED`."""
    if not spec.startswith("synthetic:"):
        return spec
    clips, seed = _parse_ints(spec, "data.manifest", 2)
    from sce.prepare.synthetic import generate_synthetic_dataset

    def build(folder: Path) -> None:
        generate_synthetic_dataset(
            folder, clips=clips, seed=seed, duration=8.0, width=224, height=128
        )

    return str(_build_once(cache_root() / f"synthetic-{clips}-{seed}", build) / "manifest.jsonl")


# config section, key -> resolver of a spec at that key
SPEC_KEYS: dict[tuple[str, str], Callable[[str], str]] = {
    ("model", "model_path"): resolve_model_path,
    ("data", "processor_path"): resolve_model_path,
    ("data", "manifest"): resolve_manifest,
}


@contextmanager
def resolved_specs(config: MutableMapping) -> Iterator[MutableMapping]:
    """`config` (a parsed config: model.*, data.*) with its asset specs replaced by paths for
    the duration of the block, then restored, so a saved config.yaml keeps `tiny:0`."""
    originals: dict[tuple[str, str], object] = {}
    for (section, key), resolve in SPEC_KEYS.items():
        values = config.get(section)
        if values is not None and isinstance(values.get(key), str):
            originals[section, key] = values[key]
            values[key] = resolve(values[key])
    try:
        yield config
    finally:
        for (section, key), value in originals.items():
            config[section][key] = value
