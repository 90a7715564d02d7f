"""Built-in asset specs (`tiny:SEED`, `synthetic:N:SEED`): build once into $SCE_CACHE, reuse."""

from __future__ import annotations

from pathlib import Path

import pytest

import sce.models.tiny as tiny_mod
import sce.prepare.synthetic as synthetic_mod
from sce.train.assets import _build_once, cache_root, resolve_manifest, resolve_model_path


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("SCE_CACHE", str(root))
    return root


@pytest.fixture
def tiny_builds(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, int]]:
    """Record every call of the (real) tiny-kit builder: (folder, seed)."""
    calls: list[tuple[Path, int]] = []
    real_build = tiny_mod.build_tiny_kit

    def counting_build(out_dir, seed: int = 0, spec=None) -> Path:
        calls.append((Path(out_dir), seed))
        return real_build(out_dir, seed=seed, spec=spec)

    monkeypatch.setattr(tiny_mod, "build_tiny_kit", counting_build)
    return calls


def test_cache_root_default_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SCE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "sce"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.chdir(tmp_path)  # the default does not depend on the working directory
    assert cache_root() == Path.home() / ".cache" / "sce" and cache_root().is_absolute()
    monkeypatch.setenv("SCE_CACHE", str(tmp_path))
    assert cache_root() == tmp_path


def test_tiny_spec_builds_once(cache: Path, tiny_builds: list) -> None:
    from transformers import AutoConfig

    from sce.models.tiny import vocabulary_digest

    first = resolve_model_path("tiny:3")
    assert first == str(cache / f"tiny-3-{vocabulary_digest()}")
    assert len(tiny_builds) == 1 and tiny_builds[0][1] == 3
    assert tiny_builds[0][0].parent == cache and tiny_builds[0][0].name.startswith(
        f"tiny-3-{vocabulary_digest()}."
    )
    assert AutoConfig.from_pretrained(first).model_type == "qwen2_5_vl"
    assert resolve_model_path("tiny:3") == first
    assert len(tiny_builds) == 1  # second call reuses the folder
    # no temporary folder left
    assert sorted(p.name for p in cache.iterdir()) == [f"tiny-3-{vocabulary_digest()}"]
    resolve_model_path("tiny:4")
    assert [seed for _, seed in tiny_builds] == [3, 4]


def test_tiny_spec_real_build(cache: Path, tiny_kit: Path) -> None:
    from sce.models.tiny import vocabulary_digest

    path = Path(resolve_model_path("tiny:0"))
    assert path == cache / f"tiny-0-{vocabulary_digest()}"
    # the real builder is deterministic: the cached kit equals the session kit of seed 0
    assert (path / "model.safetensors").read_bytes() == (
        tiny_kit / "model.safetensors"
    ).read_bytes()
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_path("tiny:0") == str(path)
    assert (path / "model.safetensors").stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
    "spec", ["Qwen/Qwen2.5-VL-7B-Instruct", "/models/qwen", "runs/tiny:0", "data/manifest.jsonl"]
)
def test_plain_paths_pass_through(cache: Path, spec: str) -> None:
    assert resolve_model_path(spec) == spec
    assert resolve_manifest(spec) == spec
    assert not cache.exists()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tiny:", "model.model_path: expected integers in 'tiny:'"),
        ("tiny:abc", "model.model_path: expected integers"),
        ("tiny:1:2", "model.model_path: expected 1 number"),
    ],
)
def test_bad_tiny_spec(cache: Path, spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_model_path(spec)
    assert not cache.exists()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("synthetic:4", "data.manifest: expected 2 number"),
        ("synthetic:4:x", "data.manifest: expected integers in 'synthetic:4:x'"),
        ("synthetic:1:2:3", "data.manifest: expected 2 number"),
    ],
)
def test_bad_synthetic_spec(cache: Path, spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_manifest(spec)


def test_synthetic_spec_builds_once(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []

    def fake_generate(folder, **kwargs) -> Path:
        calls.append(kwargs)
        (Path(folder) / "manifest.jsonl").write_text("")
        return Path(folder) / "manifest.jsonl"

    monkeypatch.setattr(synthetic_mod, "generate_synthetic_dataset", fake_generate)
    path = resolve_manifest("synthetic:12:7")
    assert path == str(cache / "synthetic-12-7" / "manifest.jsonl")
    assert Path(path).is_file()
    assert calls == [{"clips": 12, "seed": 7, "duration": 8.0, "width": 224, "height": 128}]
    assert resolve_manifest("synthetic:12:7") == path
    assert len(calls) == 1


def test_build_failure_leaves_nothing(tmp_path: Path) -> None:
    def broken(folder: Path) -> None:
        (folder / "half.bin").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _build_once(tmp_path / "asset", broken)
    assert list(tmp_path.iterdir()) == []


def test_concurrent_build_keeps_the_winner(tmp_path: Path) -> None:
    target = tmp_path / "asset"

    def racing(folder: Path) -> None:
        (folder / "mine.txt").write_text("loser")
        target.mkdir()  # another process finishes first
        (target / "theirs.txt").write_text("winner")

    assert _build_once(target, racing) == target
    assert sorted(p.name for p in target.iterdir()) == ["theirs.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["asset"]


def test_a_changed_vocabulary_gets_a_new_tiny_kit(
    cache: Path, tiny_builds: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kit cached before the prompt templates changed is not reused (its tokenizer was
    trained on the old corpus): the folder name carries the corpus digest."""
    from sce.models import tiny

    before = resolve_model_path("tiny:3")
    corpus = tiny.vocabulary_corpus()
    monkeypatch.setattr(tiny, "vocabulary_corpus", lambda: [*corpus, "ax ay az m/s²"])
    after = resolve_model_path("tiny:3")
    assert after != before and len(tiny_builds) == 2
    assert Path(after).name == f"tiny-3-{tiny.vocabulary_digest()}"
