"""TensorBoard as a dashboard: where each evaluation scalar goes, and the charts opened first.

TensorBoard's SCALARS tab makes one section per tag prefix (the text before the first "/"). An
evaluation logs ~150 scalars (every metric per IMU setting, per class, per source and again for
the log-likelihood scorer); under one `val_gen/` prefix they made one section nobody opened.
`scalar_tag` gives each its section, the metrics.json key (`Summary.scalars`) after it:

    <split>_gen/<key>            headline: acc, macro_f1, invalid_rate, binary/*, alarm/*,
                                 calibration/*, caption/*, reasoning/acc, ...
    <split>_gen_imu/<key>        per IMU setting: imu_on/acc, imu_off/invalid_rate, ...
    <split>_gen_class/<key>      per class: f1/collision, imu_off/recall/normal, support/normal
    <split>_gen_ll/<key>         log-likelihood scorer: ll/acc, ll/imu_on/macro_f1, ...
    <split>_gen_ll_class/<key>   log-likelihood per class: ll/f1/collision, ...
    <split>_gen_source/<key>     per source (two or more sources): source_nexar/binary/acc, ...

so `metric_key(tag)` is the tag without its first part. The checkpoint monitors the shipped
configs use (`val_gen/acc`, `val_gen/calibration/brier`) are headline tags.

`DASHBOARD` is a custom-scalars layout (TensorBoard's CUSTOM SCALARS tab): the losses, accuracy
with IMU vs video only, per-class F1, invalid rate, learning rate (LearningRateMonitor's
`lr-*`), gradient norm and throughput, each chart one card with its lines overlaid; validation
and test points share a chart. GenerationEvaluation writes it into the run's events at the start
of fit / validate / test (`write_dashboard`). Chart tags are regular expressions, anchored.
"""

from __future__ import annotations

from typing import Any

from sce.common.labels import ALL_LABELS, LABELS

GEN_SUFFIX = "_gen"
SECTIONS = ("imu", "class", "ll", "ll_class", "source")
IMU_PREFIXES = ("imu_on", "imu_off")
SOURCE_PREFIX = "source_"

_SPLITS = "(val|test)"  # a chart shows the validation and the test points


def scalar_section(key: str) -> str:
    """The section of an evaluation scalar's metrics.json key ("" for the headline section;
    else one of SECTIONS): per source, then log-likelihood, then per class, then per IMU."""
    parts = key.split("/")
    per_class = parts[-1] in ALL_LABELS
    if parts[0].startswith(SOURCE_PREFIX):
        return "source"
    if parts[0] == "ll":
        return "ll_class" if per_class else "ll"
    if per_class:
        return "class"
    return "imu" if parts[0] in IMU_PREFIXES else ""


def scalar_tag(split: str, key: str) -> str:
    """The logged name of an evaluation scalar: `<split>_gen[_<section>]/<key>`."""
    section = scalar_section(key)
    return f"{split}{GEN_SUFFIX}{'_' + section if section else ''}/{key}"


def metric_key(tag: str) -> str:
    """The metrics.json key of a `scalar_tag` name (the tag without its section)."""
    head, sep, key = tag.partition("/")
    if not sep or GEN_SUFFIX not in head:
        raise ValueError(f"{tag!r} is not an evaluation scalar tag (<split>_gen.../<key>)")
    return key


def _gen(key: str) -> str:
    """An anchored regex of one evaluation key's tag, validation and test."""
    tag = scalar_tag("SPLIT", key).replace("SPLIT", _SPLITS, 1)
    return f"^{tag}$"


DASHBOARD: dict[str, dict[str, list[Any]]] = {
    "training": {
        "loss (train step, train epoch, validation)": [
            "Multiline",
            ["^train/loss_(step|epoch)$", "^train/micro_batch_loss_step$", "^val/loss$"],
        ],
        "learning rate": ["Multiline", ["^lr-"]],
        "gradient norm (before clipping)": ["Multiline", ["^train/grad_norm$"]],
        "clips per second": ["Multiline", ["^train/clips_per_sec$"]],
    },
    "generated answers": {
        "accuracy: with IMU vs video only": [
            "Multiline",
            [_gen("acc"), _gen("imu_on/acc"), _gen("imu_off/acc")],
        ],
        "F1 per class": ["Multiline", [_gen(f"f1/{label}") for label in LABELS]],
        "invalid answer rate": [
            "Multiline",
            [_gen("invalid_rate"), _gen("imu_on/invalid_rate"), _gen("imu_off/invalid_rate")],
        ],
        "macro F1 and binary (alarm) F1": ["Multiline", [_gen("macro_f1"), _gen("binary/f1")]],
        "answer vs log-likelihood accuracy": ["Multiline", [_gen("acc"), _gen("ll/acc")]],
    },
}


def write_dashboard(writer: Any) -> None:
    """Write `DASHBOARD` (the CUSTOM SCALARS tab's layout) with a SummaryWriter."""
    writer.add_custom_scalars(DASHBOARD)
    writer.flush()


__all__ = ["DASHBOARD", "metric_key", "scalar_section", "scalar_tag", "write_dashboard"]
