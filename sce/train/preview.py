"""`sce data preview`: what the model sees for one sample.

For one manifest record it prints the source frame times and frame indices of each window, the
synchronized telemetry, the exact chat text the collator tokenizes (each run of visual pad tokens
summarised as `<video 2x252x420: 135 tokens>`), the supervised answer and the token counts.

Everything comes from the training code path: the data module that `sce fit` builds from the
same arguments (config + `--data.x=...` overrides), its dataset's Sample and its training
Collator with the config's processor; nothing here re-implements a prompt, a window or a
tokenization. The preview only fixes what training draws at random: the task (`--task`,
default the first evaluation task the record can serve) and the IMU dropout (`--imu on|off`).

    sce data preview --config experiments/paper000_dora.yaml --data.manifest M --id ID \\
        [--split val] [--task mcq] [--imu off] [--json]
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from sce.data.schema import SPLITS, ClipRecord, ManifestError, load_manifest

IMU_CHOICES = ("on", "off")
NOT_AN_INPUT = "telemetry is not an input: data.window.channels"


class PreviewError(ValueError):
    """The requested sample cannot be previewed; the message names the sample and the file."""


# ------------------------------------------------------------------------------ selection
def find_record(manifest: str, sample_id: str, split: str | None = None) -> ClipRecord:
    """The record `sample_id` of the manifest (in `split` when given); a clear error listing
    the closest ids otherwise."""
    records = load_manifest(manifest, check_files=False)  # the dataset checks its split
    found = next((r for r in records if r.id == sample_id), None)
    if found is not None and (split is None or found.split == split):
        return found
    if found is not None:
        raise PreviewError(
            f"sample {sample_id!r} is in split {found.split!r} of {manifest}, not {split!r}"
        )
    ids = [r.id for r in records if split is None or r.split == split]
    close = difflib.get_close_matches(sample_id, ids, n=5, cutoff=0.5) or ids[:5]
    where = f"{manifest}" + (f" (split {split!r})" if split else "")
    raise PreviewError(
        f"sample {sample_id!r} not found in {where}; closest ids: {', '.join(close) or 'none'}"
    )


def choose_task(record: ClipRecord, task: str | None, eval_tasks: Sequence[str]) -> str:
    """`task`, or the first evaluation task the record can serve (the dataset asks a task only
    of records whose annotations can answer it)."""
    from sce.tasks import available_tasks

    available = available_tasks(record.label, record.annotations)
    if task is None:
        task = next((t for t in eval_tasks if t in available), None)
        if task is None:
            raise PreviewError(
                f"sample {record.id!r}: none of the evaluation tasks {list(eval_tasks)} is "
                f"available (available: {available}); pass --task"
            )
    elif task not in available:
        raise PreviewError(
            f"sample {record.id!r}: task {task!r} is not available for this record "
            f"(available: {available})"
        )
    return task


# ------------------------------------------------------------------------------ preview
def preview_sample(
    datamodule,
    sample_id: str,
    split: str | None = None,
    task: str | None = None,
    imu: str = "on",
) -> dict[str, Any]:
    """What the model is trained on for one record: one entry per window (several for
    multi-scale keyframe windows, `data.window.scales`)."""
    from sce.data.dataset import Item

    if imu not in IMU_CHOICES:
        raise PreviewError(f"--imu must be one of {IMU_CHOICES}, got {imu!r}")
    manifest = datamodule.manifest
    record = find_record(manifest, sample_id, split)
    dataset = datamodule.dataset(record.split)
    index = [r.id for r in dataset.records].index(record.id)
    task = choose_task(record, task, datamodule.hparams.eval_tasks)
    collator = datamodule.collator("train")
    scales = list(datamodule.window.scales or [None])
    windows = [window_preview(dataset, collator, Item(index, imu, task, scale)) for scale in scales]
    return {
        "id": record.id,
        "split": record.split,
        "manifest": str(manifest),
        "label": record.label,
        "source": record.source,
        "task": task,
        "imu": imu,
        # the model's inputs (data.window.channels) and the prompt's wording
        "inputs": datamodule.window.inputs,
        "channels": list(datamodule.window.channels),
        "prompt": datamodule.window.prompt,
        "video": str(record.path("video")),
        **source_video(record),
        "windows": windows,
    }


def window_preview(dataset, collator, item) -> dict[str, Any]:
    """Frame times and indices, telemetry, chat text, answer and token counts of one item."""
    record = dataset.records[item.record]
    clip = dataset.load(item)  # the window plan, frames and telemetry of the item
    sample = dataset.sample(item, clip=clip)  # built from that clip, as the dataset builds it
    batch = collator([sample])
    ids = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    labels = batch["labels"][0][batch["attention_mask"][0].bool()].tolist()
    blocks = visual_blocks(batch, collator.processor)
    chat = summarised_chat(ids, collator.processor, blocks)
    tokenizer = collator.tokenizer
    supervised = [i for i, label in zip(ids, labels, strict=True) if label != -100]
    visual = sum(b["tokens"] for b in blocks)
    return {
        "scale": item.scale,
        "fps": float(sample.fps),
        "frame_times": [float(t) for t in clip.frame_times],
        "frame_indices": source_frame_indices(record, clip.frame_times),
        "event_time": float(clip.event_time),
        "event_time_source": clip.event_time_source,
        "window_shift": float(clip.shifted),
        "window_padding": float(clip.padded),
        "window_shrunk": float(clip.shrunk),  # s cut off the window to fit the record's span
        "imu_on": sample.imu_on,
        "imu_reason": clip.imu_reason if dataset.spec.telemetry else NOT_AN_INPUT,
        "telemetry": telemetry_rows(clip.telemetry) if sample.imu_on else None,
        "chat": chat,
        "answer": tokenizer.decode(supervised, skip_special_tokens=False),
        "reference": sample.answer,
        "visual_blocks": blocks,
        "tokens": {
            "total": len(ids),
            "text": len(ids) - visual,
            "visual": visual,
            "supervised": len(supervised),
        },
    }


def source_video(record: ClipRecord) -> dict[str, Any]:
    """Frame rate and frame count of the record's source video (None for image sequences)."""
    from sce.data import video as video_lib

    if record.metadata.get("frames"):
        return {"source_fps": None, "source_frames": len(record.metadata["frames"])}
    info = video_lib.video_info(record.path("video"))
    return {"source_fps": float(info.fps), "source_frames": int(info.n_frames)}


def source_frame_indices(record: ClipRecord, times: np.ndarray) -> list[int]:
    """Index in the source video of each frame time, by the decoder's own time -> index
    mapping; for an image sequence the image's position (the last repeated to an even count)."""
    from sce.data import video as video_lib

    if record.metadata.get("frames"):
        last = len(record.metadata["frames"]) - 1
        return [min(k, last) for k in range(len(times))]
    info = video_lib.video_info(record.path("video"))
    return [int(i) for i in video_lib.frame_indices(np.asarray(times), info.fps, info.n_frames)]


def telemetry_rows(telemetry) -> list[dict[str, float | None]] | None:
    """One row per frame of the synchronized telemetry (None when the clip has none)."""
    if telemetry is None:
        return None
    rows = []
    for k, t in enumerate(telemetry.frame_times):
        speed = None if telemetry.speed is None else telemetry.speed[k]
        rows.append(
            {
                "t": _finite(t),
                "ax": _finite(telemetry.accel[k, 0]),
                "ay": _finite(telemetry.accel[k, 1]),
                "az": _finite(telemetry.accel[k, 2]),
                "heading_change_deg": _finite(math.degrees(float(telemetry.yaw_delta[k]))),
                "speed": None if speed is None else _finite(speed),
            }
        )
    return rows


def _finite(value) -> float | None:
    """A float for JSON; None for NaN/inf (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


# ------------------------------------------------------------------------------ chat text
def visual_blocks(batch: dict[str, Any], processor) -> list[dict[str, Any]]:
    """The videos then the images of a one-sample batch, from the processor's grids (in
    `patch_size` px patches, `merge_size`^2 patches per token): kind, frames, height, width and
    tokens."""
    blocks = []
    for kind, key, sub in (
        ("video", "video_grid_thw", "video_processor"),
        ("image", "image_grid_thw", "image_processor"),
    ):
        grid = batch.get(key)
        if grid is None:
            continue
        settings = getattr(processor, sub)
        patch, merge = int(settings.patch_size), int(settings.merge_size)
        temporal = int(getattr(settings, "temporal_patch_size", 1) or 1)
        for t, h, w in grid.tolist():
            blocks.append(
                {
                    "kind": kind,
                    "frames": t * temporal if kind == "video" else t,
                    "height": h * patch,
                    "width": w * patch,
                    "tokens": t * h * w // merge**2,
                }
            )
    return blocks


def block_label(block: dict[str, Any]) -> str:
    """`<video 2x252x420: 135 tokens>` or `<image 252x420: 135 tokens>`."""
    size = f"{block['height']}x{block['width']}"
    if block["kind"] == "video":
        size = f"{block['frames']}x{size}"
    return f"<{block['kind']} {size}: {block['tokens']} tokens>"


def summarised_chat(ids: list[int], processor, blocks: list[dict[str, Any]]) -> str:
    """The tokenizer's decoding of `ids`, each run of video/image pad tokens replaced by its
    block's summary (runs are matched to the blocks in order, per kind)."""
    from sce.models.families import DEFAULT_FAMILY, family_of_processor

    tokenizer = processor.tokenizer
    markers = (family_of_processor(processor) or DEFAULT_FAMILY).markers
    pad_kind = {
        tokenizer.convert_tokens_to_ids(
            getattr(processor, "video_token", markers.video_pad)
        ): "video",
        tokenizer.convert_tokens_to_ids(
            getattr(processor, "image_token", markers.image_pad)
        ): "image",
    }
    queues = {kind: [b for b in blocks if b["kind"] == kind] for kind in ("video", "image")}
    parts, start = [], 0
    for begin, end, kind in _pad_runs(ids, pad_kind):
        if not queues[kind]:
            raise PreviewError(f"more {kind} placeholders in the sequence than {kind} grids")
        block = queues[kind].pop(0)
        if end - begin != block["tokens"]:
            raise PreviewError(
                f"a {kind} placeholder has {end - begin} pad tokens, its grid {block['tokens']}"
            )
        parts.append(tokenizer.decode(ids[start:begin], skip_special_tokens=False))
        parts.append(block_label(block))
        start = end
    parts.append(tokenizer.decode(ids[start:], skip_special_tokens=False))
    return "".join(parts)


def _pad_runs(ids: list[int], pad_kind: dict[int, str]) -> list[tuple[int, int, str]]:
    """(begin, end, kind) of each maximal run of one pad token."""
    runs, k = [], 0
    while k < len(ids):
        kind = pad_kind.get(ids[k])
        if kind is None:
            k += 1
            continue
        begin = k
        while k < len(ids) and ids[k] == ids[begin]:
            k += 1
        runs.append((begin, k, kind))
    return runs


# ------------------------------------------------------------------------------ output
def format_preview(report: dict[str, Any]) -> str:
    """The preview as the lines `sce data preview` prints."""
    r = report
    source = (
        f"{r['source_fps']:g} fps, {r['source_frames']} frames"
        if r["source_fps"]
        else f"{r['source_frames']} images"
    )
    lines = [
        f"sample {r['id']} (split {r['split']}, label {r['label']}, source {r['source']}) "
        f"of {r['manifest']}",
        f"task {r['task']}, imu {r['imu']}; video {r['video']} ({source})",
        f"inputs: {r['inputs']} (data.window.channels: {r['channels']}; prompt {r['prompt']})",
    ]
    for n, window in enumerate(r["windows"], start=1):
        lines.append("")
        lines.extend(_window_lines(window, n, len(r["windows"])))
    return "\n".join(lines)


def _window_lines(w: dict[str, Any], n: int, count: int) -> list[str]:
    scale = "" if w["scale"] is None else f" (scale {w['scale']:g} s)"
    imu = "telemetry in the prompt" if w["imu_on"] else "video only"
    reason = f" ({w['imu_reason']})" if w["imu_reason"] else ""
    tokens = w["tokens"]
    return [
        f"=== window {n} of {count}{scale}: {len(w['frame_times'])} frames at {w['fps']:g} fps; "
        f"event at {w['event_time']:.3f} s ({w['event_time_source']}), shifted "
        f"{w['window_shift']:+.3f} s, padded {w['window_padding']:.3f} s, shrunk "
        f"{w['window_shrunk']:.3f} s ({round(w['window_shrunk'] * w['fps'])} frames); {imu}{reason}",
        *_frame_table(w),
        "--- chat (as tokenized) ---",
        w["chat"],
        "--- supervised answer ---",
        w["answer"],
        f"--- tokens: {tokens['total']:,} total = {tokens['visual']:,} visual + "
        f"{tokens['text']:,} text; {tokens['supervised']:,} supervised",
    ]


def _frame_table(w: dict[str, Any]) -> list[str]:
    rows = w["telemetry"] or [None] * len(w["frame_times"])
    lines = [
        "  t (s)    frame" + ("   ax     ay     az   heading  speed" if w["telemetry"] else "")
    ]
    for t, index, row in zip(w["frame_times"], w["frame_indices"], rows, strict=True):
        line = f"  {t:7.3f}  {index:5d}"
        if row is not None:
            line += "".join(
                _cell(row[key], width)
                for key, width in (("ax", 7), ("ay", 7), ("az", 7), ("heading_change_deg", 9))
            )
            line += _cell(row["speed"], 7)
        lines.append(line)
    return lines


def _cell(value: float | None, width: int) -> str:
    return "-".rjust(width) if value is None else f"{value:{width}.2f}"


# ------------------------------------------------------------------------------ CLI
def add_preview_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "One sample as the model sees it. Arguments other than these go to the `sce fit` "
        "parser, e.g. --data.manifest M --data.window.fps=5 --model.model_path=tiny:0."
    )
    parser.add_argument("--config", required=True, help="experiment YAML (as for sce fit)")
    parser.add_argument("--id", required=True, dest="sample_id", metavar="ID", help="record id")
    parser.add_argument("--split", choices=SPLITS, default=None, help="default: any split")
    parser.add_argument("--task", default=None, help="default: the first evaluation task")
    parser.add_argument(
        "--imu", choices=IMU_CHOICES, default="on", help="on: telemetry in the prompt (default)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    # Every other argument goes to the `sce fit` parser, e.g. --data.manifest M --data.window.fps=5.
    parser.set_defaults(config_overrides=[])


def preview_command(args: argparse.Namespace) -> int:
    from sce.data.clip import ClipError
    from sce.data.collate import SequenceTooLongError
    from sce.train.config import datamodule_from_cli

    datamodule = datamodule_from_cli(["--config", args.config, *args.config_overrides])
    try:
        report = preview_sample(datamodule, args.sample_id, args.split, args.task, args.imu)
    except (PreviewError, ManifestError, ClipError, SequenceTooLongError) as err:
        print(f"sce data preview: {err}")
        return 2
    print(json.dumps(report, indent=2) if args.json else format_preview(report))
    return 0
