"""A run's log folder read back: the one reader of what a training run leaves on disk.

Lightning and sce write one log folder per run (`runs/<x>/tensorboard/version_<k>/` with the
shipped configs, `<out>/<sweep>/<variant>[/seed<S>]/` in a sweep):

    config.yaml        the resolved config (LightningCLI's SaveConfigCallback, at fit)
    hparams.yaml       the init arguments, flat (the TensorBoard logger)
    metrics.json       the latest evaluation (GenerationEvaluation, sce.evaluate.callback)
    evaluations/       every evaluation: <split>_step<N>.json
    checkpoints/       last.ckpt and the best ones (ModelCheckpoint)

A sweep folder (`sce sweep`, sce.studies.sweep) holds `sweep.json` and one run folder per
variant, `<sweep>/<variant>/`, or per variant and seed, `<sweep>/<variant>/seed<S>/`;
`sweep_variants` lists them in the ablation's order.

`sce test --run` (sce.train.runs), `sce report` (sce.evaluate.paper_tables) and `sce sweep`
(sce.studies.sweep) read run folders through `RunFolder` and `log_dirs`. It lives here, not in
sce.train, because `sce report` is part of evaluation and may import nothing above it; and it
imports nothing heavy (torch only to find the best checkpoint), since `sce --help` builds the
report parser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONFIG_FILE = "config.yaml"
HPARAMS_FILE = "hparams.yaml"
METRICS_FILE = "metrics.json"
EVALUATIONS_DIR = "evaluations"
CHECKPOINTS_DIR = "checkpoints"
SWEEP_FILE = "sweep.json"
SEARCH_DEPTH = 2  # runs/<x>/tensorboard/version_<k>/ below the folder a user names


class RunFolderError(ValueError):
    """A run folder without what the command needs, or with a file that does not read; the
    message names the folder or file."""


@dataclass(frozen=True)
class RunFolder:
    """One log folder of a run and the files Lightning and GenerationEvaluation wrote there."""

    log_dir: Path

    @property
    def metrics_path(self) -> Path:
        return self.log_dir / METRICS_FILE

    @property
    def config_path(self) -> Path:
        return self.log_dir / CONFIG_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.log_dir / CHECKPOINTS_DIR

    def config(self) -> dict[str, Any]:
        """LightningCLI's nested config.yaml, else the logger's flat hparams.yaml; {} when the
        folder has neither (or the file holds no mapping)."""
        for name in (CONFIG_FILE, HPARAMS_FILE):
            path = self.log_dir / name
            if path.is_file():
                data = read_yaml(path)
                return data if isinstance(data, dict) else {}
        return {}

    def metrics(self) -> Any:
        """metrics.json (the latest evaluation: split, step, scalars, ...), None when absent."""
        return read_json(self.metrics_path) if self.metrics_path.is_file() else None

    def evaluations(self, split: str) -> list[tuple[int, Path]]:
        """(step, path) of every evaluations/<split>_step<N>.json, by step."""
        pattern = re.compile(rf"{re.escape(split)}_step(\d+)\.json")
        steps = []
        for path in (self.log_dir / EVALUATIONS_DIR).glob(f"{split}_step*.json"):
            match = pattern.fullmatch(path.name)
            if match:
                steps.append((int(match.group(1)), path))
        return sorted(steps)

    def checkpoint(self, which: str = "best") -> Path:
        """checkpoints/last.ckpt ("last"), or the best checkpoint ModelCheckpoint recorded in
        last.ckpt ("best"; the last one when the run monitored nothing). A run copied elsewhere
        is found by file name inside its own checkpoints/ folder; with no last.ckpt, the
        folder's only checkpoint."""
        folder = self.checkpoints_dir
        last = folder / "last.ckpt"
        if not last.is_file():
            present = sorted(p.name for p in folder.glob("*.ckpt")) if folder.is_dir() else []
            if len(present) == 1:
                return folder / present[0]
            raise RunFolderError(
                f"{folder}: no last.ckpt (found {present or 'no checkpoints'}); pass --ckpt_path"
            )
        if which == "last":
            return last
        best = _best_model_path(last)
        if not best:
            return last
        path = Path(best)
        return path if path.is_file() else folder / path.name


def seed_folder(seed: int) -> str:
    """A seeded sweep run's folder inside its variant's: 'seed0'."""
    return f"seed{seed}"


@dataclass(frozen=True)
class SweepVariant:
    """One variant of a sweep folder: its name, status in sweep.json and run folders (the
    variant's own, or one per seed)."""

    name: str
    status: str
    runs: tuple[Path, ...]


def sweep_variants(folder: Path) -> list[SweepVariant] | None:
    """The variants `sweep.json` lists, in the ablation's order, with their run folders found
    by the sweep's layout inside `folder` (not by the recorded paths, which are relative to
    where the sweep ran); None when `folder` holds no sweep.json."""
    path = folder / SWEEP_FILE
    if not path.is_file():
        return None
    data = read_json(path)
    entries = data.get("variants") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise RunFolderError(f"{path}: field 'variants' missing or not a list")
    variants = []
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise RunFolderError(f"{path}: field variants[{i}].name missing or not a string")
        seeds = [r.get("seed") for r in entry.get("runs") or [] if isinstance(r, dict)]
        if any(not isinstance(seed, int) for seed in seeds):
            raise RunFolderError(f"{path}: variant {name!r}: field runs[].seed is not an integer")
        runs = [folder / name / seed_folder(seed) for seed in seeds] or [folder / name]
        variants.append(SweepVariant(name, str(entry.get("status", "?")), tuple(runs)))
    return variants


def flat_config(config: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys -> values (lists kept whole): `model.rank` -> 32."""
    out: dict[str, Any] = {}
    for key, value in (config or {}).items():
        if isinstance(value, Mapping) and value:
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def log_dirs(root: Path, marker: str) -> list[Path]:
    """The folders holding `marker` (a file name): `root` itself first, then those one and two
    levels down, each level in name order."""
    found = [root] if (root / marker).is_file() else []
    for depth in range(1, SEARCH_DEPTH + 1):
        pattern = "/".join(["*"] * depth) + "/" + marker
        found += sorted(p.parent for p in root.glob(pattern))
    return found


def read_text(path: Path) -> str:
    """A run-folder file as UTF-8 text (what Lightning and sce write, whatever the locale);
    a file that cannot be opened or is not UTF-8 raises RunFolderError naming it and the byte."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise RunFolderError(f"{path}: cannot read: {err.strerror or err}") from err
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RunFolderError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})"
        ) from err


def read_json(path: Path) -> Any:
    """A JSON file of a run folder; RunFolderError naming the file when it does not read."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RunFolderError(f"{path}: cannot read JSON: {err}") from err


class _ConfigLoader(yaml.SafeLoader):
    """Reads Lightning's hparams.yaml, which tags tuples `!!python/tuple`; other Python
    objects load as None (readers need plain values only)."""


_ConfigLoader.add_constructor(
    "tag:yaml.org,2002:python/tuple", lambda loader, node: loader.construct_sequence(node)
)
_ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def read_yaml(path: Path) -> Any:
    """A YAML file of a run folder (config.yaml, hparams.yaml); RunFolderError naming the file
    when it does not read."""
    text = read_text(path)
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506
    except yaml.YAMLError as err:
        raise RunFolderError(f"{path}: cannot read YAML: {err}") from err


def _best_model_path(last: Path) -> str | None:
    import torch

    # mmap: only the callback states are read, not the weights
    state = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    for key, value in (state.get("callbacks") or {}).items():
        if str(key).startswith("ModelCheckpoint") and value.get("best_model_path"):
            return str(value["best_model_path"])
    return None
