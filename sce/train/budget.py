"""Token budget of a config: frames, visual tokens, telemetry text and sequence length per clip.

Qwen2.5-VL turns a video of T frames into T/2 temporal patches (temporal patch 2; an odd count
is padded with the last frame), resizes every frame with `smart_resize` (each side rounded to the
*nearest* multiple of patch * merge = 28, Python's round-half-to-even, then scaled into
[min_pixels, max_pixels]), cuts 14x14 patches and merges 2x2 of them into one token:

    tokens per video = ceil(T / 2) * (H' / 28) * (W' / 28)

420x240 becomes 420x252: 15 * 9 = 135 tokens per frame pair, 1,215 for 18 frames (6 s at 3 fps).

Processor settings come from the model's processor folder (a local folder, `tiny:SEED`, or a hub
id already in the local Hugging Face cache); otherwise the Qwen2.5-VL hub defaults (its
`preprocessor_config.json`, which the video processor also reads: min_pixels 56*56, max_pixels
12845056). The text side (system prompt, time stamps, telemetry lines, question, answer, chat
markup) is counted with the model's tokenizer and chat template on a representative 3-way event
question built by `sce.data.prompts` and `sce.tasks`, or estimated when no tokenizer is at hand.

The window is the config's `data.window` (sce.data.clip.WindowSpec), read whole.

With `data.window.scales` (paper 002) every record gives one item per scale: the 3 keyframes
(start, middle, end) of a window of `scale` s ending at the event, each a separate image (the
processor's image path: one temporal patch per image, (H' / 28) * (W' / 28) tokens, 144 at
448x252). The report is then per item (the longest text over the scales) and says how many
items a record gives.

With `data.window.mode: whole` (paper 003) a clip's frame count follows its length: all of a short
clip at `fps`, `max_frames` spread over a longer one. The report shows a 16 s and a 100 s clip
and counts the total for the long one (the most frames). `data.window.max_pixels` caps every frame with
smart_resize's rounding before the processor sees it (420x476 at 16,384 pixels: 112x112).

    sce budget --config experiments/paper000_dora.yaml [--data.window.fps=15] [--max-tokens 8192]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from sce.data.clip import WindowSpec
from sce.data.video_processing import (
    DEFAULT_SETTINGS,
    ProcessorSettings,
    capped_frame_size,
    image_tokens,
    processor_settings,
    smart_resize,
    video_max_pixels,
    visual_tokens,
)
from sce.models.families import DEFAULT_FAMILY

WHOLE_CLIP_EXAMPLES = (16.0, 100.0)  # s: clip lengths the whole-clip report shows
GRID_FPS = (1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0)
GRID_SIZES = ((224, 128), (320, 180), (420, 240), (640, 360), (854, 480), (1280, 720))


def frames_per_clip(fps: float, before: float, after: float) -> int:
    """Frames of the event window, as the dataset samples it (rounded, then up to even)."""
    return WindowSpec(fps=fps, before=before, after=after).num_frames


def whole_clip_item(duration: float, fps: float, max_frames: int) -> tuple[np.ndarray, float]:
    """(frame times, fps) of a whole-clip window over a clip of `duration` s, from the loader's
    own `sce.data.windows.whole_clip_window` (16 s at 2 fps: 32 frames; 100 s: 128 at 1.28 fps)."""
    from sce.data.windows import whole_clip_window

    _, times, rate = whole_clip_window(0.0, duration, fps, int(max_frames))
    return times, rate


def whole_clip_durations(fps: float, max_frames: int) -> tuple[float, ...]:
    """Clip lengths the report shows: WHOLE_CLIP_EXAMPLES, the last one long enough to get
    max_frames (the total that must fit is counted for it)."""
    *short, long = WHOLE_CLIP_EXAMPLES
    return (*short, max(long, max_frames / fps))


def keyframes(window: WindowSpec | None = None) -> tuple[float, ...]:
    """Keyframe fractions of a multi-scale window (default: data.window's default)."""
    return tuple((window or WindowSpec()).keyframes)


def _keyframe_item(
    scale: float, fractions: Sequence[float], start: float = 10.0
) -> tuple[np.ndarray, float]:
    """(frame times, fps) of a `scale` s keyframe window starting at `start` s, from the loader's
    own `sce.data.windows.keyframe_window`."""
    from sce.data.windows import keyframe_window

    _, times, fps = keyframe_window(start + scale, start + scale + 1.0, scale, tuple(fractions))
    return times, fps


def keyframe_frames(fractions: Sequence[float]) -> int:
    """Frames of one multi-scale item: its keyframes (one image each)."""
    return len(_keyframe_item(1.0, fractions)[0])


def keyframe_times(scale: float, fractions: Sequence[float], start: float = 10.0) -> np.ndarray:
    """Keyframe times of a `scale` s keyframe window starting at `start` s, as
    `sce.data.clip` samples them."""
    return _keyframe_item(scale, fractions, start)[0]


def keyframe_fps(scale: float, fractions: Sequence[float]) -> float:
    """Rate of a keyframe window: one frame per (smallest) keyframe interval."""
    return _keyframe_item(scale, fractions)[1]


def video_lengths(num_frames: int, layout: str) -> list[int]:
    """Frames per video block: pairs for `interleaved`, one block for `table`."""
    if layout == "interleaved":
        return [2] * (num_frames // 2)
    if layout == "table":
        return [num_frames]
    raise ValueError(f"unknown prompt layout {layout!r}; expected interleaved or table")


def clip_visual_tokens(
    num_frames: int,
    width: int,
    height: int,
    layout: str,
    settings: ProcessorSettings,
    keyframes: bool = False,
) -> int:
    """Visual tokens of a whole clip in a prompt layout (each video block resized alone), or
    of `num_frames` keyframe images (`keyframes`, with the image processor's settings)."""
    if keyframes:
        return num_frames * image_tokens(width, height, settings)
    return sum(visual_tokens(n, width, height, settings) for n in video_lengths(num_frames, layout))


# ------------------------------------------------------------------------------ processor
@functools.lru_cache(maxsize=8)
def load_processor(model_path: str):
    """The processor of a local folder, `tiny:SEED` or a cached hub id; None when unavailable."""
    from sce.train.assets import resolve_model_path

    path = resolve_model_path(model_path)
    try:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(path, local_files_only=not Path(path).is_dir())
    except Exception:  # not local and not cached: fall back to the defaults, said in the report
        if Path(path).is_dir():
            raise
        return None


# ------------------------------------------------------------------------------ text tokens
def representative_telemetry(frame_times: np.ndarray):
    """Telemetry with wide, signed values (two-digit accelerations, heading and speed)."""
    from sce.data.imu import FrameTelemetry

    n = len(frame_times)
    return FrameTelemetry(
        frame_times=np.asarray(frame_times, dtype=float),
        accel=np.tile([-12.3, 4.5, 9.8], (n, 1)),
        yaw_delta=np.full(n, math.radians(-12.3)),
        speed=np.full(n, 23.4),
    )


def representative_sample(
    num_frames: int,
    fps: float,
    window: WindowSpec,
    imu: bool = True,
    start: float = 10.0,
    times: np.ndarray | None = None,
    keyframes: bool = False,
):
    """The 3-way event question item (sce.data.dataset.build_sample, as the dataset builds it)
    of a window of `num_frames` frames, with `window`'s layout, channels and prompt wording.

    Frame times start at `start` s, one per 1 / fps (two-digit time stamps, as in a 16 s clip),
    unless `times` gives them (keyframe windows, one image per frame with `keyframes`); the
    visuals are 1x1 placeholders (only their frame counts matter for the text). `imu` False
    drops the telemetry (a video-only prompt); a window without the telemetry channel never
    shows it.
    """
    from sce.data.clip import ClipInputs
    from sce.data.dataset import build_sample
    from sce.data.schema import ClipRecord
    from sce.tasks import MCQ, TaskItem, TaskSource

    if times is None:
        times = start + np.arange(num_frames) / fps
    elif len(times) != num_frames:
        raise ValueError(f"times has {len(times)} entries for {num_frames} frames")
    clip = ClipInputs(
        frames=np.zeros((num_frames, 1, 1, 3), dtype=np.uint8),
        frame_times=times,
        telemetry=representative_telemetry(times),
        event_time=float(times[-1]),
        event_time_source="manifest",
        imu_reason="",
        shifted=0.0,
        padded=0.0,
        fps=fps,
        keyframes=keyframes,
    )
    record = ClipRecord("budget", "", "near_collision", "budget", "train")
    source = TaskSource(record.label, prompt=window.prompt)
    task = TaskItem(MCQ.name, MCQ.question(source, random.Random(0)), representative_answer())
    return build_sample(record, clip, task, window, telemetry=imu)


def representative_content(
    num_frames: int,
    fps: float,
    window: WindowSpec,
    imu: bool = True,
    start: float = 10.0,
    times: np.ndarray | None = None,
    keyframes: bool = False,
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """User content and visuals of `representative_sample` (same arguments)."""
    sample = representative_sample(num_frames, fps, window, imu, start, times, keyframes)
    return sample.user_content, sample.visuals


def representative_answer() -> str:
    from sce.tasks.events import mcq_answer

    return mcq_answer("near_collision")


_SPECIAL = re.compile(r"<\|[a-z_]+\|>")
_PIECES = re.compile(r"\d|[^\W\d_]+|[^\w\s]|_|\n")


def estimate_tokens(text: str) -> int:
    """Rough token count without a tokenizer (Qwen2 BPE: one token per digit, per common word
    or per symbol; special tokens count one; long words one token per 8 letters)."""
    count = len(_SPECIAL.findall(text))
    for piece in _PIECES.findall(_SPECIAL.sub(" ", text)):
        count += math.ceil(len(piece) / 8) if piece.isalpha() else 1
    return count


def text_tokens(
    num_frames: int,
    fps: float,
    window: WindowSpec,
    processor=None,
    imu: bool = True,
    times: np.ndarray | None = None,
    keyframes: bool = False,
) -> int:
    """Non-visual tokens of a training sequence (event question + answer, chat markup, vision
    start/end markers, telemetry when `imu` and the window's channels include it): with the
    processor's tokenizer, else estimated. `times` replaces the evenly spaced frame times
    (keyframe windows; images with `keyframes`)."""
    sample = representative_sample(num_frames, fps, window, imu, times=times, keyframes=keyframes)
    messages = sample.messages()
    if processor is None:
        text = DEFAULT_FAMILY.markers.render(messages)
        return estimate_tokens(text) - len(sample.visuals)
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    return len(ids) - len(sample.visuals)  # each video/image pad is replaced by the visual tokens


# ------------------------------------------------------------------------------ config
def resolved(config: Mapping[str, Any] | str | Path, overrides: Sequence[str] = ()) -> dict:
    """`config` (a YAML path or a mapping with its sections) as `sce fit` resolves it: the
    one config path (sce.train.config), with SceDataModule's defaults, links and types."""
    from sce.train.config import resolve_config

    return resolve_config(config, overrides)


def config_window(config: Mapping[str, Any]) -> WindowSpec:
    """The config's `data.window`, whole (a resolved config holds every field)."""
    return WindowSpec.from_settings(config["data"].get("window") or {})


def item_frames_and_text(window: WindowSpec, processor) -> tuple[int, int, int]:
    """(frames, text tokens with telemetry, without) of one item; with scales the keyframe
    item (one image per keyframe) of the scale with the longest text; with mode "whole" the
    longest example clip (max_frames); else the [-before, +after] window."""
    scales, fps = window.scales, window.fps
    if window.mode == "whole":
        duration = whole_clip_durations(fps, window.max_frames)[-1]
        times, rate = whole_clip_item(duration, fps, window.max_frames)
        texts = [
            text_tokens(len(times), rate, window, processor, imu, times) for imu in (True, False)
        ]
        return len(times), texts[0], texts[1]
    if not scales:
        frames = window.num_frames
        texts = [text_tokens(frames, fps, window, processor, imu) for imu in (True, False)]
        return frames, texts[0], texts[1]
    kf = window.keyframes
    frames = keyframe_frames(kf)
    texts = [
        [
            text_tokens(
                frames, keyframe_fps(x, kf), window, processor, imu, keyframe_times(x, kf), True
            )
            for x in scales
        ]
        for imu in (True, False)
    ]
    return frames, max(texts[0]), max(texts[1])


def model_path_of(config: Mapping[str, Any]) -> str | None:
    data, model = config.get("data") or {}, config.get("model") or {}
    return data.get("processor_path") or model.get("model_path")


def resolve_processor(model_path: str | None, kind: str = "video") -> tuple[Any, ProcessorSettings]:
    """(processor or None, its video or `kind="image"` processor's settings)."""
    if not model_path:
        return None, DEFAULT_SETTINGS
    processor = load_processor(model_path)
    if processor is None:
        return None, DEFAULT_SETTINGS
    return processor, processor_settings(processor, f"{kind} processor of {model_path}", kind)


def visual_kind(window: WindowSpec) -> str:
    """'image' for keyframe items (data.window.scales, paper 002), else 'video'."""
    return "image" if window.scales else "video"


# ------------------------------------------------------------------------------ report
def budget_report(config: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """Frames, visual and text tokens per clip and the total against data.max_length.

    `config` is a YAML path or a mapping with `data` and `model` sections (resolved here, so
    settings it leaves out take SceDataModule's defaults, as in `sce fit`).
    """
    config = resolved(config)
    window = config_window(config)
    model_path = model_path_of(config)
    processor, settings = resolve_processor(model_path, visual_kind(window))
    max_length = int(config["data"]["max_length"])
    return _report(window, max_length, settings, processor, model_path)


def _report(
    window: WindowSpec, max_length: int, s: ProcessorSettings, processor, model_path
) -> dict:
    layout, scales = window.layout, list(window.scales or [])
    width, height = capped_frame_size(window.width, window.height, window.max_pixels, s)
    frames, text_on, text_off = item_frames_and_text(window, processor)
    # Keyframe items are images only (no video block); windows are videos only.
    lengths = [] if scales else video_lengths(frames, layout)
    max_pixels = s.max_pixels if scales else video_max_pixels(lengths[0], s)
    resized_h, resized_w = smart_resize(height, width, s.factor, s.min_pixels, max_pixels)
    visual = clip_visual_tokens(frames, width, height, layout, s, keyframes=bool(scales))
    total, total_off = visual + text_on, visual + text_off
    # Keys of the scale mode only appear with scales (the plain report stays as it was).
    multiscale = {
        "items_per_record": len(scales),
        "keyframe_fps": [keyframe_fps(x, window.keyframes) for x in scales],
        "images_per_clip": frames,
        "visual_tokens_per_image": visual // max(frames, 1),
    }
    return {
        "model_path": model_path,
        "processor": asdict(s),
        "window": window.settings(),
        "inputs": window.inputs,  # the model's inputs: 'video + telemetry' or 'video only'
        "max_length": max_length,
        **(multiscale if scales else {}),
        **(
            {"whole_clip": _whole_clip_examples(window, width, height, s)}
            if window.mode == "whole"
            else {}
        ),
        "frames_per_clip": frames,
        "videos_per_clip": len(lengths),
        "resized_width": resized_w,
        "resized_height": resized_h,
        "visual_tokens_per_video": visual // len(lengths) if lengths else 0,
        "visual_tokens_per_clip": visual,
        "text_tokens": text_on,
        "text_tokens_video_only": text_off,
        "telemetry_tokens": text_on - text_off,
        "text_tokens_method": "tokenizer" if processor is not None else "estimate",
        "total_tokens": total,  # with telemetry: the longer prompt, what must fit
        "total_tokens_video_only": total_off,
        "fits": total <= max_length,
        "fits_video_only": total_off <= max_length,
        "headroom": max_length - total,
    }


def _whole_clip_examples(window: WindowSpec, width: int, height: int, s) -> list[dict]:
    """Frames, rate and visual tokens of whole-clip windows over clips of several lengths."""
    fps, max_frames = float(window.fps), int(window.max_frames)
    out = []
    for duration in whole_clip_durations(fps, max_frames):
        times, rate = whole_clip_item(duration, fps, max_frames)
        visual = clip_visual_tokens(len(times), width, height, window.layout, s)
        out.append(
            {"duration_s": duration, "frames": len(times), "fps": rate, "visual_tokens": visual}
        )
    return out


def budget_grid(
    config: Mapping[str, Any],
    max_tokens: int,
    fps_values: Sequence[float] = GRID_FPS,
    sizes: Sequence[tuple[int, int]] = GRID_SIZES,
) -> list[dict[str, Any]]:
    """Total tokens per clip (with telemetry) for each (fps, width x height), with `fits`
    against max_tokens. The window (before/after), layout and processor come from the config
    (a YAML path or mapping, resolved as in `budget_report`).
    """
    config = resolved(config)
    window = config_window(config)
    processor, s = resolve_processor(model_path_of(config), visual_kind(window))
    keyframe_images = visual_kind(window) == "image"
    rows = []
    for fps in fps_values:
        # Keyframe items (scales) have the same frames at every fps.
        at_fps = dataclasses.replace(window, fps=fps)
        frames, text, _ = item_frames_and_text(at_fps, processor)
        for width, height in sizes:
            frame_w, frame_h = capped_frame_size(width, height, window.max_pixels, s)
            visual = clip_visual_tokens(frames, frame_w, frame_h, window.layout, s, keyframe_images)
            rows.append(
                {
                    "fps": fps,
                    "width": width,
                    "height": height,
                    "frames": frames,
                    "visual_tokens": visual,
                    "total_tokens": visual + text,
                    "fits": visual + text <= max_tokens,
                }
            )
    return rows


def format_report(report: Mapping[str, Any]) -> str:
    """The report as the lines `sce budget` prints."""
    r, p, w = report, report["processor"], report["window"]
    fits = "fits" if r["fits"] else "DOES NOT FIT"
    unit = "item" if w["scales"] else "clip"
    per_block = (
        f"{r['visual_tokens_per_image']:,} visual tokens per image"
        if w["scales"]
        else f"{r['visual_tokens_per_video']:,} visual tokens per video block"
    )
    return "\n".join(
        [
            f"processor: {p['source']} (patch {p['patch_size']}, merge {p['merge_size']}, "
            f"temporal patch {p['temporal_patch_size']}, pixels {p['min_pixels']:,}.."
            f"{p['max_pixels']:,})",
            _window_line(r, w),
            f"frame: {w['width']}x{w['height']} -> {r['resized_width']}x{r['resized_height']} "
            f"after resize{_cap_text(w)}: {per_block}",
            f"visual tokens per {unit}: {r['visual_tokens_per_clip']:,}",
            f"inputs: {r['inputs']} (data.window.channels: {w['channels']}; prompt {w['prompt']})",
            *_token_lines(r, fits),
        ]
    )


def _token_lines(r: Mapping[str, Any], fits: str) -> list[str]:
    """The text and total token lines: with and without telemetry when it is an input."""
    text = (
        f"text tokens ({r['text_tokens_method']}; the case reported: one event-question "
        "item, question + answer; caption / reasoning / instruction answers add their own "
        "length): "
    )
    if "telemetry" not in r["window"]["channels"]:
        return [
            f"{text}{r['text_tokens']:,} (no telemetry: not an input)",
            f"total: {r['total_tokens']:,} of max_length {r['max_length']:,} "
            f"({fits}, {r['headroom']:+,} to spare)",
        ]
    return [
        f"{text}{r['text_tokens']:,} with telemetry ({r['telemetry_tokens']:+,} for telemetry), "
        f"{r['text_tokens_video_only']:,} video only",
        f"total: {r['total_tokens']:,} of max_length {r['max_length']:,} with telemetry "
        f"({fits}, {r['headroom']:+,} to spare); {r['total_tokens_video_only']:,} video only"
        f"{'' if r['fits_video_only'] else ' (DOES NOT FIT)'}",
    ]


def _cap_text(w: Mapping[str, Any]) -> str:
    return "" if w["max_pixels"] is None else f" (max_pixels {w['max_pixels']:,} per frame)"


def _window_line(r: Mapping[str, Any], w: Mapping[str, Any]) -> str:
    """The window line of a report `r` whose window settings are `w`."""
    blocks = f"{r['videos_per_clip']} video block(s), layout {w['layout']}"
    if w["mode"] == "whole":
        examples = "; ".join(
            f"{x['duration_s']:g} s -> {x['frames']} frames at {x['fps']:.3g} fps, "
            f"{x['visual_tokens']:,} visual tokens"
            for x in r["whole_clip"]
        )
        return (
            f"window: whole clip at {w['fps']:g} fps, at most {w['max_frames']} frames (spread "
            f"over clips longer than {w['max_frames'] / w['fps']:g} s; {blocks}): {examples}. "
            f"Totals below are for the {r['whole_clip'][-1]['duration_s']:g} s clip"
        )
    if not w["scales"]:
        return (
            f"window: {w['before']:g} s before + {w['after']:g} s after at {w['fps']:g} fps -> "
            f"{r['frames_per_clip']} frames ({blocks})"
        )
    scales = ", ".join(f"{x:g}" for x in w["scales"])
    kf = ", ".join(f"{x:g}" for x in w["keyframes"])
    return (
        f"window: per scale of [{scales}] s ending at the event, keyframes [{kf}] -> "
        f"{r['frames_per_clip']} frames per item ({r['images_per_clip']} images, layout "
        f"{w['layout']}); {r['items_per_record']} items per record (tokens below are per item, "
        "longest text over the scales)"
    )


def format_grid(rows: Sequence[Mapping[str, Any]], max_tokens: int) -> str:
    """A table of total tokens: one row per fps, one column per size; '*' marks what fits."""
    sizes = list(dict.fromkeys((r["width"], r["height"]) for r in rows))
    fps_values = list(dict.fromkeys(r["fps"] for r in rows))
    cells = {(r["fps"], r["width"], r["height"]): r for r in rows}
    head = ["fps \\ size"] + [f"{w}x{h}" for w, h in sizes]
    lines = [f"token budget {max_tokens:,}: total tokens per clip (* fits)"]
    table = [head]
    for fps in fps_values:
        row = [f"{fps:g}"]
        for w, h in sizes:
            cell = cells[(fps, w, h)]
            row.append(f"{cell['total_tokens']:,}{'*' if cell['fits'] else ' '}")
        table.append(row)
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        lines.append("  ".join(c.rjust(widths[i]) for i, c in enumerate(row)))
    return "\n".join(lines)


# ------------------------------------------------------------------------------ CLI
def add_budget_arguments(parser: argparse.ArgumentParser) -> None:
    from sce.train.config import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="token budget of the (fps, resolution) table (default: data.max_length)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def budget_command(args: argparse.Namespace) -> int:
    config = resolved(args.config, args.config_overrides)
    report = budget_report(config)
    max_tokens = args.max_tokens or report["max_length"]
    grid = budget_grid(config, max_tokens)
    # exit status 1 when the config's own item does not fit its own max_length (with
    # telemetry when it is an input: the longer prompt), so a script or CI step stops there
    status = 0 if report["fits"] else 1
    if args.json:
        print(json.dumps({"report": report, "grid": grid, "max_tokens": max_tokens}, indent=2))
        return status
    print(f"config: {args.config}")
    print(format_report(report))
    print()
    print(format_grid(grid, max_tokens))
    if status:
        print(
            f"\nsce budget: {args.config} does not fit its own data.max_length "
            f"({report['total_tokens']:,} > {report['max_length']:,} tokens"
            f"{' with telemetry' if 'telemetry' in report['window']['channels'] else ''}): "
            "raise data.max_length or lower data.window.fps / the frame size"
        )
    return status
