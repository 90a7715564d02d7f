"""Text metrics of paper 000: ROUGE-L F1 and BERTScore F1 for captions / open QA, closed-QA accuracy.

ROUGE-L: torchmetrics' ROUGEScore ("rougeL" F-measure, per-pair then averaged). Its tokenizer
(lower case, non-alphanumerics to spaces, no stemming) and LCS F-measure match the `rouge-score`
package's RougeScorer(["rougeL"]); the tests check equality on a few pairs.

BERTScore: the `bert-score` package (the reference implementation) with a LOCAL encoder folder,
never a download. torchmetrics' BERTScore is not used: in torchmetrics 1.9 it pairs predictions
and references in length-sorted order, so per-pair scores are permuted (an identical pair does
not score 1; torchmetrics issue #2728). Per-pair F1 is computed in `update` (without idf weighting
it does not depend on the rest of the corpus) and only the sum and count are synced.
The encoder is read at bert-score's recommended layer for the model (its own table,
`bert_score.utils.model2layers`: roberta-large 17), identified from the folder's config.json or
name (`recommended_layer`); a model not in the table falls back to its last layer, with a
warning. `resolve_bertscore_encoder` takes the folder from a config value or $SCE_BERTSCORE_MODEL.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.aggregation import SumMetric
from torchmetrics.functional.text import rouge_score
from torchmetrics.text import ROUGEScore

from sce.metrics.classification import _quiet_compute
from sce.metrics.parsing import parse_letter, split_reasoning

# ---------------------------------------------------------------------------- ROUGE-L


def _texts(values: Sequence[str | None]) -> list[str]:
    return ["" if v is None else str(v) for v in values]


def rouge_l_f1(preds: Sequence[str | None], targets: Sequence[str]) -> list[float]:
    """ROUGE-L F1 of each (prediction, reference) pair; a None prediction scores 0."""
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions but {len(targets)} references")
    return [
        float(rouge_score(p, t, rouge_keys="rougeL")["rougeL_fmeasure"])
        for p, t in zip(_texts(preds), _texts(targets), strict=True)
    ]


# ---------------------------------------------------------------------------- BERTScore

BERTSCORE_MODEL_ENV = "SCE_BERTSCORE_MODEL"
_HUB_CACHE_FOLDER = re.compile(r"^models--(.+)$")  # huggingface_hub's models--<org>--<name>


def _check_encoder(encoder_path: str | Path) -> Path:
    path = Path(encoder_path).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"BERTScore encoder folder {path} has no config.json: BERTScore needs a local encoder "
            "(a folder saved with save_pretrained), it never downloads one"
        )
    return path


def _encoder_config(encoder_path: str | Path) -> dict[str, Any]:
    path = _check_encoder(encoder_path) / "config.json"
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"BERTScore encoder: {path} is not valid JSON: {error}") from error


def encoder_num_layers(encoder_path: str | Path) -> int:
    """num_hidden_layers of a local encoder (its last layer)."""
    config = _encoder_config(encoder_path)
    if "num_hidden_layers" not in config:
        raise ValueError(
            f"{encoder_path}/config.json has no num_hidden_layers; set the BERTScore layer "
            "(GenerationEvaluation bertscore_layer)"
        )
    return int(config["num_hidden_layers"])


def _model_names(path: Path) -> list[str]:
    """What the folder says it is, most explicit first: config.json's `_name_or_path` /
    `name_or_path` (transformers 4 saves the hub name there; 5 drops it), the folder's name,
    and the repo of a huggingface_hub cache snapshot (models--FacebookAI--roberta-large/...)."""
    config = _encoder_config(path)
    names = [str(config[key]) for key in ("_name_or_path", "name_or_path") if config.get(key)]
    names.append(path.resolve().name)
    for parent in path.resolve().parents:
        if match := _HUB_CACHE_FOLDER.match(parent.name):
            names.append(match.group(1).replace("--", "/"))
            break
    return names


def bertscore_table_name(encoder_path: str | Path) -> str | None:
    """The model of bert-score's layer table (`bert_score.utils.model2layers`) that a local
    encoder folder is, or None. A name matches a table entry exactly or by its last part
    ("FacebookAI/roberta-large" and a folder named "roberta-large" are "roberta-large")."""
    from bert_score.utils import model2layers

    by_base: dict[str, list[str]] = {}
    for key in model2layers:
        by_base.setdefault(key.rsplit("/", 1)[-1].lower(), []).append(key)
    for name in _model_names(Path(encoder_path).expanduser()):
        if name in model2layers:
            return name
        matches = by_base.get(name.rstrip("/").rsplit("/", 1)[-1].lower(), [])
        if len(matches) == 1:
            return matches[0]
    return None


def recommended_layer(encoder_path: str | Path) -> tuple[int, str | None]:
    """(layer, table name): bert-score's recommended layer for a named model (roberta-large:
    17), else the encoder's last layer with a note (table name None)."""
    from bert_score.utils import model2layers

    name = bertscore_table_name(encoder_path)
    if name is None:
        layer = encoder_num_layers(encoder_path)
        rank_zero_warn(
            f"BERTScore: encoder {encoder_path} is not in bert-score's layer table "
            "(bert_score.utils.model2layers; identified from config.json _name_or_path and the "
            f"folder name): using its last layer, {layer}. Set bertscore_layer to choose one."
        )
        return layer, None
    layer = model2layers[name]
    _check_layer(encoder_path, layer, f"bert-score's layer for {name}")
    return layer, name


def _check_layer(encoder_path: str | Path, layer: int, what: str) -> None:
    depth = _encoder_config(encoder_path).get("num_hidden_layers")
    if layer < 0 or (depth is not None and layer > int(depth)):
        raise ValueError(
            f"BERTScore encoder {encoder_path}: {what} is {layer}, but the encoder has "
            f"{depth} layers (valid: 0..{depth})"
        )


@dataclass(frozen=True)
class BERTScoreEncoder:
    """A resolved BERTScore setting: the local encoder folder and the layer it is read at."""

    path: str
    num_layers: int
    table_name: str | None = None  # bert-score's name of the model, when it is in the table

    def describe(self) -> str:
        source = f"bert-score's layer for {self.table_name}" if self.table_name else "set"
        return f"BERTScore encoder {self.path}, layer {self.num_layers} ({source})"


def resolve_bertscore_encoder(
    model: str | Path | None = None,
    layer: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> BERTScoreEncoder | None:
    """The BERTScore encoder to use, or None (BERTScore skipped).

    model: a local encoder folder; when None, the folder named by $SCE_BERTSCORE_MODEL (unset
    or empty: no encoder). layer: the hidden layer to match; None: bert-score's recommended
    layer for the model (`recommended_layer`)."""
    environ = os.environ if environ is None else environ
    folder = model if model is not None else (environ.get(BERTSCORE_MODEL_ENV) or None)
    if folder is None:
        return None
    path = _check_encoder(folder)
    if layer is not None:
        _check_layer(path, int(layer), "bertscore_layer")
        return BERTScoreEncoder(str(path), int(layer), bertscore_table_name(path))
    chosen, name = recommended_layer(path)
    return BERTScoreEncoder(str(path), chosen, name)


@lru_cache(maxsize=4)
def _scorer(path: str, num_layers: int, device: str, batch_size: int, baseline: str | None) -> Any:
    # One scorer (encoder weights) per setting, shared by every group's metric object.
    from bert_score import BERTScorer

    return BERTScorer(
        model_type=path,
        num_layers=num_layers,
        batch_size=batch_size,
        device=device,
        lang="en" if baseline else None,
        rescale_with_baseline=baseline is not None,
        baseline_path=baseline,
    )


def bertscore_f1(
    preds: Sequence[str | None],
    targets: Sequence[str],
    encoder_path: str | Path | None,
    num_layers: int | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    baseline_path: str | Path | None = None,
) -> list[float] | None:
    """BERTScore F1 per pair with a local encoder; None when no encoder is configured.

    num_layers: the hidden layer whose embeddings are matched; default: bert-score's recommended
    layer for the model (roberta-large: 17; `recommended_layer`), the last layer for a model not
    in its table. baseline_path: a local bert-score baseline file to rescale with (optional).
    """
    if encoder_path is None:
        return None
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions but {len(targets)} references")
    if not preds:
        return []
    path = _check_encoder(encoder_path)
    layers = num_layers if num_layers is not None else recommended_layer(path)[0]
    baseline = None if baseline_path is None else str(Path(baseline_path).expanduser())
    scorer = _scorer(str(path), layers, str(torch.device(device)), batch_size, baseline)
    _, _, f1 = scorer.score(_texts(preds), _texts(targets), verbose=False, batch_size=batch_size)
    return [float(x) for x in f1]


class BERTScoreF1(Metric):
    """Mean BERTScore F1 with a local encoder, synced across ranks (sum and count).

    The encoder runs in `update` on `device` (default: the metric's own device, so each rank
    uses its GPU once the metric is moved there).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(
        self,
        encoder_path: str | Path,
        num_layers: int | None = None,
        batch_size: int = 32,
        device: str | torch.device | None = None,
        baseline_path: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.encoder_path = str(_check_encoder(encoder_path))
        self.num_layers = (
            num_layers if num_layers is not None else recommended_layer(encoder_path)[0]
        )
        self.batch_size = batch_size
        self.encoder_device = device
        self.baseline_path = baseline_path
        self.add_state(
            "f1_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Sequence[str | None], targets: Sequence[str]) -> None:  # type: ignore[override]
        device = self.encoder_device if self.encoder_device is not None else self.device
        scores = bertscore_f1(
            preds,
            targets,
            self.encoder_path,
            self.num_layers,
            device,
            self.batch_size,
            self.baseline_path,
        )
        self.f1_sum += sum(scores or [])
        self.count += len(scores or [])

    def compute(self) -> Tensor:  # type: ignore[override]
        return self.f1_sum / self.count if self.count > 0 else torch.tensor(math.nan)


# ---------------------------------------------------------------------------- caption metrics


class CaptionMetrics(nn.Module):
    """ROUGE-L F1 (always) and BERTScore F1 (when `encoder_path` is set) of generated text.

    compute() -> {"n", "rougeL", "bertscore_f1" (only with an encoder)}.
    """

    def __init__(
        self,
        encoder_path: str | Path | None = None,
        num_layers: int | None = None,
        batch_size: int = 32,
        device: str | torch.device | None = None,
        baseline_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.rouge = ROUGEScore(rouge_keys="rougeL")
        self.count = SumMetric()
        self.bertscore = (
            None
            if encoder_path is None
            else BERTScoreF1(encoder_path, num_layers, batch_size, device, baseline_path)
        )

    def update(self, preds: Sequence[str | None], targets: Sequence[str]) -> None:
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} predictions but {len(targets)} references")
        if not preds:
            return
        self.rouge.update(_texts(preds), _texts(targets))
        self.count.update(torch.tensor(float(len(preds))))
        if self.bertscore is not None:
            self.bertscore.update(preds, targets)

    def reset(self) -> None:
        self.rouge.reset()
        self.count.reset()
        if self.bertscore is not None:
            self.bertscore.reset()

    def compute(self) -> dict[str, float]:
        n = int(_quiet_compute(self.count))
        rouge = float(_quiet_compute(self.rouge)["rougeL_fmeasure"])
        out = {"n": n, "rougeL": rouge if n else math.nan}
        if self.bertscore is not None:
            out["bertscore_f1"] = float(_quiet_compute(self.bertscore))
        return out


# ---------------------------------------------------------------------------- closed QA

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def normalize_answer(text: str | None) -> str:
    """Lower case, think block dropped, punctuation and articles removed, spaces collapsed."""
    if not isinstance(text, str):
        return ""
    _, answer, valid = split_reasoning(text)
    if not valid:
        return ""
    answer = re.sub(r"[^\w\s]", " ", answer.lower())
    return " ".join(_ARTICLES.sub(" ", answer).split())


def closed_qa_correct(pred: str | None, target: str, options: str | Sequence[str] = "ABCD") -> bool:
    """Whether a closed-QA answer is right.

    A single-letter target is compared with the letter the answer picks (`parse_letter`).
    Otherwise the normalized answer must equal the normalized target or start with it as whole
    words ("Yes, there is a truck" is right for "yes").
    """
    if len(target.strip()) == 1 and target.strip().upper() in [o.upper() for o in options]:
        return parse_letter(pred, options) == target.strip().upper()
    want = normalize_answer(target)
    got = normalize_answer(pred)
    if not want:
        raise ValueError(f"closed-QA target {target!r} is empty after normalization")
    return got == want or got.startswith(want + " ")


def closed_qa_accuracy(
    preds: Sequence[str | None], targets: Sequence[str], options: str | Sequence[str] = "ABCD"
) -> float:
    """Fraction of right closed-QA answers (NaN for no questions)."""
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions but {len(targets)} targets")
    if not preds:
        return math.nan
    return sum(closed_qa_correct(p, t, options) for p, t in zip(preds, targets, strict=True)) / len(
        preds
    )


class ClosedQAAccuracy(Metric):
    """Closed-QA accuracy synced across ranks; compute() -> {"n", "acc"}."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, options: str | Sequence[str] = "ABCD", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.options = options
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Sequence[str | None], targets: Sequence[str]) -> None:  # type: ignore[override]
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} predictions but {len(targets)} targets")
        self.correct += sum(
            closed_qa_correct(p, t, self.options) for p, t in zip(preds, targets, strict=True)
        )
        self.total += len(preds)

    def compute(self) -> dict[str, float]:  # type: ignore[override]
        n = int(self.total)
        return {"n": n, "acc": int(self.correct) / n if n else math.nan}
