"""`PredictionFileWriter`: writes `sce predict`'s answers to `<log dir>/predictions.jsonl`.

One JSON line per item: the sample's meta (id, label, task, source, imu_on, ...), the generated
answer, its parsed class and valid flag (read in the record's label scope) and the option
probabilities (softmax over the A/B/C letters of the first answer token).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import BasePredictionWriter

from sce.metrics.evaluate import parse_item

PREDICTIONS_FILE = "predictions.jsonl"


def prediction_record(item: dict[str, Any]) -> dict[str, Any]:
    """One prediction as a JSON-ready dict: the item plus `parsed` (class or None) and `valid`."""
    parsed = parse_item(item) if item.get("prediction") is not None else None
    return {
        **item,
        "parsed": parsed.label if parsed else None,
        "valid": bool(parsed and parsed.valid),
    }


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
        print(f"predictions: {len(records)} items written to {self.path}")
