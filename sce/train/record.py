"""What a trained model folder records about the data it was trained on: `sce_training.json`.

A model answers well only on inputs shaped like its training inputs: the same frame rate, window,
frame size and prompt layout. `sce export` and the demo write this file into every model folder
they produce (merged and adapter), from the run's data settings (`data.*`, saved by Lightning in
the checkpoint as `datamodule_hyper_parameters`); `sce infer` reads it and uses its window
unless a flag overrides a setting, and asks only the questions the model was trained on.

The window is recorded whole, as `data.window` (sce.data.clip.WindowSpec) holds it:

    {"window": {"fps": 3.0, "before": 4.0, "after": 2.0, "width": 112, "height": 56,
                "layout": "interleaved", "mode": "event", ...},
     "tasks": ["caption", "mcq"], "event_wording": "sce"}

Records (and checkpoints) written before the window was one value hold its settings under
their old flat `data.*` names (`window` for the mode, `window_scales` for the scales, no
`keyframes`); they are read back as the same window.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sce.data.clip import WindowSpec
from sce.tasks.events import DEFAULT_WORDING, WORDINGS
from sce.tasks.mix import trained_tasks

TRAINING_RECORD_FILE = "sce_training.json"
# The flat data.* names of the window settings before `data.window` held them all, and the
# WindowSpec field each one became (the others kept their names).
LEGACY_WINDOW_NAMES = {"window": "mode", "window_scales": "scales"}
LEGACY_WINDOW_SETTINGS = (
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


@dataclass(frozen=True)
class TrainingRecord:
    """The window a model was trained with, the tasks it trained (task weight > 0) and the
    wording of its event question (`data.event_wording`: its option letters mean its classes)."""

    window: WindowSpec
    tasks: tuple[str, ...]
    event_wording: str = DEFAULT_WORDING

    def to_json(self) -> dict[str, Any]:
        return {
            "window": self.window.settings(),
            "tasks": list(self.tasks),
            "event_wording": self.event_wording,
        }


def window_from_settings(settings: Mapping[str, Any]) -> WindowSpec:
    """The window of recorded settings, in the current form or the old flat one."""
    if isinstance(settings, WindowSpec):
        return settings
    return WindowSpec.from_settings(
        {LEGACY_WINDOW_NAMES.get(name, name): value for name, value in settings.items()}
    )


def training_record(data_hparams: Mapping[str, Any]) -> TrainingRecord:
    """The record of a run's data settings (a SceDataModule's hparams): its window and the
    tasks it trained. The hparams of a run older than `data.window` hold the window's
    settings flat; a setting they lack (older than the setting) takes its default, the value
    such a run trained with."""
    window = data_hparams.get("window")
    if not isinstance(window, Mapping | WindowSpec):  # flat: "window" was the mode, a string
        window = {k: data_hparams[k] for k in LEGACY_WINDOW_SETTINGS if k in data_hparams}
    tasks = sorted(trained_tasks(data_hparams.get("task_weights")))
    wording = data_hparams.get("event_wording") or DEFAULT_WORDING  # older runs: sce's
    return TrainingRecord(window_from_settings(window), tuple(tasks), wording)


def write_training_record(folder: str | Path, record: TrainingRecord | Mapping[str, Any]) -> Path:
    """Write `record` as FOLDER/sce_training.json; returns the path."""
    data = record.to_json() if isinstance(record, TrainingRecord) else _plain(record)
    path = Path(folder) / TRAINING_RECORD_FILE
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def read_training_record(folder: str | Path | None) -> TrainingRecord | None:
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
    try:
        window = window_from_settings(record["window"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: field 'window': {err}") from err
    wording = record.get("event_wording", DEFAULT_WORDING)  # older records: sce's wording
    if wording not in WORDINGS:
        raise ValueError(f"{path}: field 'event_wording': unknown {wording!r}; {tuple(WORDINGS)}")
    return TrainingRecord(window, tuple(record["tasks"]), wording)


def _plain(value: Any) -> Any:
    """JSON-ready: tuples as lists, nested mappings as dicts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
