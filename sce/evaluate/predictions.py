"""`PredictionFileWriter`: writes `sce predict`'s answers to `<log dir>/predictions.jsonl`.

One JSON line per item: the sample's meta (id, label, task, source, imu_on, ...), the generated
answer, its parsed class and valid flag (read in the record's label scope) and the option
probabilities (softmax over the A/B/C letters of the first answer token).

`labelled_metrics` scores such rows against their records' labels: `sce predict` and `sce infer
--manifest` print its compact table (the one `sce fit` / `sce test` print) under the split's name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import BasePredictionWriter

from sce.tasks.scoring import parse_item

PREDICTIONS_FILE = "predictions.jsonl"
# where a window's event time came from (sce.data.clip.resolve_event_time)
EVENT_TIME_SOURCES = ("manifest", "imu", "center")


def prediction_record(item: dict[str, Any]) -> dict[str, Any]:
    """One prediction as a JSON-ready dict: the item plus `parsed` (class or None), `valid`,
    `event_time_s` (the window's event time, s from the video start; None when unknown) and
    `event_time_source` (EVENT_TIME_SOURCES: "manifest" annotation, "imu" peak |a_x|, "center"
    of the clip; "none" when the item does not say)."""
    parsed = parse_item(item) if item.get("prediction") is not None else None
    fields = {k: v for k, v in item.items() if k != "event_time"}
    return {
        **fields,
        "parsed": parsed.label if parsed else None,
        "valid": bool(parsed and parsed.valid),
        **event_time_fields(item.get("event_time"), item.get("event_time_source")),
    }


def event_time_fields(event_time: float | None, source: str | None) -> dict[str, Any]:
    """`event_time_s` and `event_time_source` of a prediction row (sce predict, sce infer).

    The source is where sce.data.clip.resolve_event_time placed the window: the manifest's
    annotation, else the IMU peak, else the clip centre. A video-only row (imu_on false) of
    a record with IMU keeps "imu": paper 000 places the window from the IMU peak when it cuts
    the clip and its video-only ablation (Table V) removes the telemetry from the prompt only,
    so the row says honestly that its window came from the IMU. (`sce infer --no-imu` on a raw
    clip reads no IMU at all: its rows say "manifest" or "center".)
    """
    if event_time is None or source is None:
        return {"event_time_s": None, "event_time_source": "none"}
    if source not in EVENT_TIME_SOURCES:
        raise ValueError(f"event_time_source must be one of {EVENT_TIME_SOURCES}, got {source!r}")
    return {"event_time_s": float(event_time), "event_time_source": source}


def labelled_metrics(rows: list[dict[str, Any]], split: str | None) -> str | None:
    """ "split S: metrics of N answered items" and the compact metrics table
    (sce.evaluate.figures.compact_table, per IMU setting) of the rows whose record has a label
    (sce.evaluate.summary.summarize scores them as an evaluation would); None when none has."""
    from sce.common.labels import ALL_LABELS
    from sce.evaluate.figures import compact_table
    from sce.evaluate.summary import summarize

    labelled = [
        row for row in rows if row.get("label") in ALL_LABELS and row.get("prediction") is not None
    ]
    if not labelled:
        return None
    scalars = summarize(labelled).scalars
    name = "?" if split is None else repr(split)
    head = f"split {name}: metrics of {len(labelled)} answered items with labels"
    return f"{head}\n{compact_table({'': scalars})}"


class PredictionFileWriter(BasePredictionWriter):
    """Writes every predicted item to `<dirpath or trainer.log_dir>/predictions.jsonl`."""

    def __init__(self, dirpath: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.dirpath = dirpath
        self.path: Path | None = None

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        folder = Path(self.dirpath or trainer.log_dir or trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / PREDICTIONS_FILE
        # one dataloader: a list of per-batch lists; several: a list of those
        batches = (
            predictions[0] if predictions and isinstance(predictions[0][0], list) else predictions
        )
        records = [prediction_record(item) for batch in batches for item in batch]
        with self.path.open("w") as f:
            f.writelines(json.dumps(r, default=str) + "\n" for r in records)
        split = getattr(getattr(trainer, "datamodule", None), "predict_split", None)
        of_split = "" if split is None else f" of split {split!r}"
        print(f"predictions: {len(records)} items{of_split} written to {self.path}")
        table = labelled_metrics(records, split)
        if table:
            print(table)
