"""What a trained model folder records about the data it was trained on: `sce_training.json`.

A model answers well only on inputs shaped like its training inputs: the same frame rate, window,
frame size and prompt layout. `sce export` and the demo write this file into every model folder
they produce (merged and adapter), from the run's data settings (`data.*`, saved by Lightning in
the checkpoint as `datamodule_hyper_parameters`); `sce infer` reads it and uses those settings
unless a flag overrides them, and asks only the questions the model was trained on.

    {"window": {"fps": 3.0, "before": 4.0, "after": 2.0, "width": 112, "height": 56, ...},
     "tasks": ["caption", "mcq"]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sce.tasks.mix import trained_tasks

TRAINING_RECORD_FILE = "sce_training.json"
# data.* settings that shape a prompt: sce infer's window flags mirror them (same names, `_`
# for the flag's `-`), so a model is asked with the inputs it was trained on.
WINDOW_SETTINGS = (
    "fps",
    "before",
    "after",
    "width",
    "height",
    "layout",
    "window",
    "max_frames",
    "max_pixels",
    "window_scales",
    "telemetry_anchor",
)


def training_record(data_hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The record of a run's data settings (a SceDataModule's hparams): its window settings and
    the tasks it trained (task weight > 0). A setting the hparams lack (a run older than the
    setting) is left out, and sce infer falls back to its own default for it."""
    window = {key: data_hparams[key] for key in WINDOW_SETTINGS if key in data_hparams}
    tasks = sorted(trained_tasks(data_hparams.get("task_weights")))
    return {"window": _plain(window), "tasks": tasks}


def write_training_record(folder: str | Path, record: Mapping[str, Any]) -> Path:
    """Write `record` as FOLDER/sce_training.json; returns the path."""
    path = Path(folder) / TRAINING_RECORD_FILE
    path.write_text(json.dumps(_plain(record), indent=2) + "\n")
    return path


def read_training_record(folder: str | Path | None) -> dict[str, Any] | None:
    """FOLDER/sce_training.json, or None when the folder has none (e.g. a hub base model).

    Raises ValueError naming the file when it exists but is not a record."""
    if folder is None:
        return None
    path = Path(folder) / TRAINING_RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from err
    if not isinstance(record, dict) or not isinstance(record.get("window"), dict):
        raise ValueError(f"{path}: field 'window' is missing: not an sce training record")
    if not isinstance(record.get("tasks"), list):
        raise ValueError(f"{path}: field 'tasks' is missing or not a list")
    unknown = set(record["window"]) - set(WINDOW_SETTINGS)
    if unknown:
        raise ValueError(f"{path}: unknown window setting(s) {sorted(unknown)}")
    return record


def _plain(value: Any) -> Any:
    """JSON-ready: tuples as lists, nested mappings as dicts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
