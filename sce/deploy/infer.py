"""`sce infer`: ask a model about one dashcam clip, with the prompts it was trained on.

    sce infer --model runs/x/export/merged --video clip.mp4 [--imu imu.csv] [--gps gps.csv]
              [--event-time 12.3] [--fps 3 --width 420 --height 240] [--json]
    sce infer --model BASE --adapter runs/x/export/adapter --video clip.mp4 ...
    sce infer ... --window-scale 3 --layout table     (paper 002: 3 keyframes as images)
    sce infer ... --label-scope binary                 (a model trained on binary Nexar records)
    sce infer --model M --manifest manifest.jsonl --split test --out answers.jsonl   (a batch)

The clip goes through the training code path: a ClipRecord built on the fly, `load_clip` (event
window, IMU/GPS synchronisation; event time from `--event-time`, else the IMU's peak |a_x|,
else the clip centre), `build_user_content` (frames interleaved with telemetry text) and the
Collator in "generate" mode. Three questions are asked in one greedy batch: the 3-way event
question, the collision probability and a description. Answers are parsed with
`sce.metrics.parsing`; an answer that does not parse is reported as invalid with the reason and
the raw text, never mapped to a class or a number. The event's option probabilities (softmax of
the A/B/C logits at the first answer token, as in evaluation) are reported too.

`--manifest M --split S --out F` answers every record of split S the same way (each record
with its own IMU, GPS, event time and label scope; `--no-imu` and the window flags apply to
all) and writes one JSON line per record with sce predict's predictions.jsonl fields
(`batch_row`), outside Lightning. A record that cannot be answered (an unreadable video or
telemetry file, an event time outside the clip) gets a row with `valid: false` and `error`
naming the file, and the batch goes on; the lines are written to a temporary file renamed onto
`--out` at the end, so a run that stops midway leaves the previous `--out` as it was.

`--label-scope binary` asks the event question a binary-scope record (Nexar: event / normal)
is trained on, the yes/no `BINARY_EVENT_QUESTION`, and reads its answer with
`parse_binary_event`; the option probabilities are then those of A (event) and B (normal).

Window settings (`--fps/--width/--height/--before/--after/--layout/...`, the fields of
`data.window`) must match the training data config, like the prompt itself. A model folder
written by `sce export` or `sce demo` records the window whole (`sce_training.json`, see
sce.train.record), and sce infer uses it by default, with its inputs and wording (a video-only
model, `data.window.channels: []`, is never shown telemetry; paper 002's model is asked in
paper 002's words); a flag that differs from the recorded value wins, with a warning on stderr. Without a record the window's defaults apply
(sce.data.clip.WindowSpec: paper 000's 3 fps, [-4 s, +2 s], 420x240).
`--window-scale S` asks about one multi-scale keyframe window of S s ending at the event (paper
002's data.window.scales; default: the recorded window's first scale): its 3 keyframes go in as 3 images,
as in training.

The probability question is asked only of a model whose record says it was trained on it;
otherwise the collision probability reported is the event options' probability of collision
(of "event" for `--label-scope binary`), marked as such. `--no-imu` (video only) reads no
telemetry at all: the event time is then `--event-time` or the clip centre, never the IMU peak.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sce.common.files import atomic_file
from sce.data.clip import ClipError
from sce.data.schema import LABEL_SCOPES, ManifestError
from sce.tasks import CAPTION, MCQ, PROBABILITY
from sce.tasks.events import DEFAULT_WORDING
from sce.tasks.probability import PROBABILITY_DECIMALS
from sce.train.record import read_training_record

NON_LORA_FILE = "non_lora_trainable.safetensors"  # written by sce.deploy.export next to the adapter
# (result field, training task whose question is asked)
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("event", MCQ.name),
    ("probability", PROBABILITY.name),
    ("description", CAPTION.name),
)
# sce infer's window flags -> the data.window field each sets (a flag takes the recorded or
# default window's value when not given); --window-scale asks one of the window's scales.
WINDOW_FLAGS: dict[str, str] = {
    "--fps": "fps",
    "--before": "before",
    "--after": "after",
    "--width": "width",
    "--height": "height",
    "--layout": "layout",
    "--window": "mode",
    "--max-frames": "max_frames",
    "--max-pixels": "max_pixels",
    "--window-scale": "scales",
}
PROBABILITY_FROM_OPTIONS = "event option probabilities"


class InferError(ValueError):
    """Bad input to `sce infer`; the message names the flag or file."""


@dataclass
class EventAnswer:
    label: str | None  # of LABELS (BINARY_LABELS for --label-scope binary); None: invalid
    valid: bool
    reason: str
    answer: str  # raw generated text
    option_probs: dict[str, float] = field(default_factory=dict)  # {"collision": p, ...}
    # the softmax over the letters A, B, C at the first answer token in label order, as sce
    # predict's predictions.jsonl `option_probs` (not renormalised for the binary question)
    letter_probs: list[float] = field(default_factory=list)


@dataclass
class ProbabilityAnswer:
    value: float | None  # in [0, 1], None when the answer is invalid
    valid: bool
    answer: str  # "" when the question was not asked
    # "answer": the probability question's answer; PROBABILITY_FROM_OPTIONS: P(collision) (binary
    # scope: P(event)) from the event question's option probabilities, for a model not trained
    # on the probability question
    source: str = "answer"


@dataclass
class InferenceResult:
    video: str
    event_time: float
    event_time_source: str  # "manifest" (--event-time), "imu" or "center"
    imu_used: bool
    imu_reason: str  # why telemetry is missing ("" when used)
    event: EventAnswer
    collision_probability: ProbabilityAnswer
    description: str
    # the window the clip was asked with (data.window's fields, the frame size the model saw)
    # and `window_scale`, the keyframe window asked (None: the event or whole-clip window)
    window: dict[str, Any] = field(default_factory=dict)
    event_wording: str = DEFAULT_WORDING  # the event question's wording (its letters' meaning)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> str:
        telemetry = "on" if self.imu_used else f"off ({self.imu_reason or 'not given'})"
        lines = [
            f"video: {self.video}",
            f"event time: {self.event_time:.2f} s ({self.event_time_source}); telemetry: {telemetry}",
        ]
        event = self.event
        if event.valid:
            lines.append(f"event: {event.label}  (answer: {event.answer!r})")
        else:
            lines.append(f"event: INVALID ANSWER ({event.reason}): {event.answer!r}")
        if event.option_probs:
            probs = ", ".join(f"{k} {v:.2f}" for k, v in event.option_probs.items())
            lines.append(f"event option probabilities: {probs}")
        prob = self.collision_probability
        if prob.valid:  # the answer's precision (paper 002: "0.872")
            origin = "" if prob.source == "answer" else f" (from the {prob.source})"
            lines.append(f"collision probability: {prob.value:.{PROBABILITY_DECIMALS}f}{origin}")
        else:
            lines.append(f"collision probability: INVALID ANSWER: {prob.answer!r}")
        lines.append(f"description: {self.description}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------- model


def resolve_device(device: str = "auto"):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def inference_dtype(dtype: str, device) -> Any:
    """--dtype as a torch dtype; "auto" is bfloat16 on a CUDA `device`, else float32."""
    from sce.models.precision import DTYPES, resolve_dtype

    try:
        return resolve_dtype(dtype, device)
    except ValueError:
        raise InferError(f"--dtype must be auto or one of {list(DTYPES)}, got {dtype!r}") from None


def load_inference_model(
    model: str, adapter: str | None = None, dtype: str = "auto", device: str = "auto"
):
    """(model in eval mode on `device`, processor) from a model folder and optional adapter.

    `model` is a merged or base model folder (or hub id, or `tiny:SEED`); it must hold the
    processor too. `adapter` is a PEFT adapter folder (sce export's OUT/adapter); trainable
    non-adapter weights saved next to it are loaded as well.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from sce.train.assets import resolve_model_path

    path = resolve_model_path(model)
    target = resolve_device(device)
    try:
        net = AutoModelForImageTextToText.from_pretrained(
            path, dtype=inference_dtype(dtype, target), attn_implementation="sdpa"
        )
        processor = AutoProcessor.from_pretrained(path)
    except OSError as err:
        raise InferError(f"--model: cannot load a model and processor from {path}: {err}") from err
    if adapter:
        net = attach_adapter(net, adapter)
    return net.to(target).eval(), processor


def attach_adapter(model, adapter: str | Path):
    """PeftModel over `model` from an adapter folder (+ its non-adapter trainable weights)."""
    from peft import PeftModel

    folder = Path(adapter)
    if not (folder / "adapter_config.json").is_file():
        raise InferError(
            f"--adapter: {folder} is not a PEFT adapter folder (no adapter_config.json)"
        )
    peft_model = PeftModel.from_pretrained(model, str(folder))
    extra = folder / NON_LORA_FILE
    if extra.is_file():
        from safetensors.torch import load_file

        result = peft_model.get_base_model().load_state_dict(load_file(str(extra)), strict=False)
        if result.unexpected_keys:
            raise InferError(
                f"--adapter: {extra} has weights the model lacks: {result.unexpected_keys[:3]}"
            )
    return peft_model


# ---------------------------------------------------------------------------- prompts


def build_record(
    video: str | Path,
    imu: str | Path | None = None,
    gps: str | Path | None = None,
    event_time: float | None = None,
    label_scope: str = "three_class",
):
    """A ClipRecord for one clip outside any manifest (the label is unknown; `label_scope`
    picks the event question, as a manifest record's does in training)."""
    from sce.data.schema import ClipRecord

    if label_scope not in LABEL_SCOPES:
        raise InferError(f"--label-scope must be one of {LABEL_SCOPES}, got {label_scope!r}")

    checked = {}
    for flag, value in (("--video", video), ("--imu", imu), ("--gps", gps)):
        if value is None:
            continue
        path = Path(value).expanduser().resolve()
        if not path.is_file():
            raise InferError(f"{flag}: file not found: {path}")
        checked[flag] = str(path)
    return ClipRecord(
        id=Path(video).stem,
        video=checked["--video"],
        label="unknown",
        source="infer",
        split="test",
        imu=checked.get("--imu"),
        gps=checked.get("--gps"),
        event_time=event_time,
        label_scope=label_scope,
    )


def prompt_samples(
    clip,
    record,
    window=None,
    use_imu: bool = True,
    questions: tuple[tuple[str, str], ...] = QUESTIONS,
    event_wording: str = DEFAULT_WORDING,
):
    """One generation Sample per (result field, task) of `questions`, built exactly like the
    evaluation items (the one sample builder, `sce.data.dataset.build_sample`; the event
    question of `record.label_scope`), with `window`'s layout, channels and prompt wording
    (a WindowSpec; default: its defaults)."""
    import random

    from sce.data.clip import DEFAULT_WINDOW
    from sce.data.dataset import build_sample
    from sce.tasks import TaskItem, TaskSource, get_task

    window = DEFAULT_WINDOW if window is None else window
    source = TaskSource(
        record.label,
        record.annotations,
        record.label_scope,
        prompt=window.prompt,
        wording=event_wording,
    )
    return [
        build_sample(
            record,
            clip,
            TaskItem(task, get_task(task).question(source, random.Random(0)), ""),
            window,
            telemetry=use_imu,
            sample_id=f"{record.id}:{name}",
        )
        for name, task in questions
    ]


# ---------------------------------------------------------------------------- generation


def generate_answers(model, processor, samples, max_new_tokens: int = 64):
    """Greedy answers (one per sample) and the A/B/C probabilities at each first answer token."""
    import torch

    from sce.data.collate import Collator
    from sce.models.losses import model_inputs
    from sce.models.module import option_token_ids

    tokenizer = processor.tokenizer
    batch = Collator(processor, max_length=1 << 20, mode="generate")(samples)
    device = next(model.parameters()).device
    inputs = {
        k: v.to(device) if isinstance(v, torch.Tensor) else v
        for k, v in model_inputs(batch, model.config).items()
    }
    with torch.no_grad():
        out = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            return_dict_in_generate=True,
            output_logits=True,
            pad_token_id=tokenizer.pad_token_id,
        )
    prompt_len = inputs["input_ids"].shape[1]
    texts = tokenizer.batch_decode(out.sequences[:, prompt_len:], skip_special_tokens=True)
    first = out.logits[0].float()[:, option_token_ids(tokenizer)]
    return [t.strip() for t in texts], torch.softmax(first, dim=-1).cpu().tolist()


def summarize(
    texts: list[str],
    option_probs: list[list[float]] | None = None,
    label_scope: str = "three_class",
    event_wording: str = DEFAULT_WORDING,
) -> dict[str, Any]:
    """Parse the answers into result fields: (event, probability, description) texts, or
    (event, description) when the probability question was not asked (the collision
    probability is then read from the event's option probabilities). The event answer is read
    with the parser of its question's scope."""
    from sce.common.labels import BINARY_LABELS, LABELS
    from sce.tasks.events import label_order_probs, read_event

    asked_probability = len(texts) == len(QUESTIONS)
    event_text, *middle, description = texts
    binary = label_scope == "binary"
    parsed = read_event(event_text, label_scope, event_wording)
    # softmax over the A/B/C letters, put in label order (the wording's letters -> classes)
    ordered = label_order_probs(option_probs[0], label_scope, event_wording) if option_probs else []
    probs = {}
    if ordered:  # the binary question's options are A, B
        options = list(BINARY_LABELS if binary else LABELS)
        letters = ordered[: len(options)]
        if binary:  # renormalised over A, B: the softmax of their two logits
            letters = [p / (sum(letters) or 1.0) for p in letters]
        probs = dict(zip(options, letters, strict=True))
    if asked_probability:
        value = PROBABILITY.parse(middle[0])
        probability = ProbabilityAnswer(value, value is not None, middle[0])
    else:
        value = probs.get("event" if binary else "collision")
        probability = ProbabilityAnswer(value, value is not None, "", PROBABILITY_FROM_OPTIONS)
    return {
        "event": EventAnswer(
            parsed.label,
            parsed.valid,
            parsed.reason,
            event_text,
            probs,
            ordered,
        ),
        "collision_probability": probability,
        "description": description,
    }


def infer_clip(
    model,
    processor,
    video: str | Path,
    imu: str | Path | None = None,
    gps: str | Path | None = None,
    event_time: float | None = None,
    window=None,
    use_imu: bool = True,
    max_new_tokens: int = 64,
    label_scope: str = "three_class",
    ask_probability: bool = True,
    imu_axes: str = "none",
    decoder: str = "decord",
    event_wording: str = DEFAULT_WORDING,
) -> InferenceResult:
    """Load the clip's event window and telemetry, ask the questions, parse the answers.

    `use_imu=False` (video only) reads no telemetry: the event time is `event_time` or the clip
    centre, never the IMU peak. `ask_probability=False` (a model not trained on the probability
    question) reports P(collision) from the event question's option probabilities instead.

    `window` is a sce.data.clip.WindowSpec (default: its defaults; with `scales`, the first
    scale's keyframe window, its keyframes sent as images) or a ClipSpec. `label_scope` "binary"
    asks the yes/no event question of binary-scope (Nexar) training records. `imu_axes` is the
    IMU's mounting, as in `sce data prepare` ("none": the CSV is in the vehicle frame already;
    "estimate"; or a mapping such as "x,-y,-z", see sce.data.alignment).
    Raises InferError for missing files and ClipError for an unreadable video or an event time
    outside the clip.
    """
    if not use_imu:  # video only: the telemetry is not read, not even for the event time
        imu = gps = None
    record = build_record(video, imu, gps, event_time, label_scope)
    if imu_axes != "none" and record.imu is not None:
        from sce.data.alignment import AlignmentError, record_alignment
        from sce.data.imu import load_gps, load_imu

        try:
            speed = None if record.gps is None else load_gps(record.gps)
            record.metadata.update(record_alignment(load_imu(record.imu), speed, imu_axes))
        except (AlignmentError, ValueError) as err:
            raise InferError(f"--imu-axes {imu_axes!r}: {err}") from err
    return infer_record(
        model, processor, record, window, use_imu, max_new_tokens, ask_probability, decoder,
        event_wording,
    )  # fmt: skip


def clip_spec(window, processor, decoder: str = "decord"):
    """The ClipSpec a clip is asked with: `window` (a WindowSpec; default: its defaults) read
    with `decoder`, at its first keyframe scale when it has `scales`, at the frame size the
    model saw in training (`at_model_size`). A ClipSpec is taken as it is, at model size."""
    from sce.data.clip import ClipSpec, WindowSpec
    from sce.data.video_processing import at_model_size

    window = WindowSpec() if window is None else window
    if not isinstance(window, ClipSpec):
        scale = window.scales[0] if window.scales else None
        window = ClipSpec.of(window, decoder, scale)
    return at_model_size(window, processor)  # the pixels training saw


def infer_record(
    model,
    processor,
    record,
    window=None,
    use_imu: bool = True,
    max_new_tokens: int = 64,
    ask_probability: bool = True,
    decoder: str = "decord",
    event_wording: str = DEFAULT_WORDING,
) -> InferenceResult:
    """Ask the questions about one ClipRecord (built by `build_record`, or a manifest's): its
    event window and telemetry as in training, the event question of its label scope in the
    model's `event_wording` (sce_training.json; its letters read back the same way).

    `use_imu=False` reads none of the record's telemetry (the event time is then the record's
    annotation or the clip centre); see `infer_clip` for the other arguments.
    """
    from sce.data.clip import load_clip

    spec = clip_spec(window, processor, decoder)
    if not use_imu:
        record = dataclasses.replace(record, imu=None, gps=None)
    clip = load_clip(record, spec)
    questions = tuple(q for q in QUESTIONS if ask_probability or q[1] != PROBABILITY.name)
    samples = prompt_samples(clip, record, spec, use_imu, questions, event_wording)
    texts, option_probs = generate_answers(model, processor, samples, max_new_tokens)
    telemetry_used = samples[0].imu_on
    reason = clip.imu_reason if use_imu else "--no-imu"
    if not spec.telemetry:
        reason = "telemetry is not an input of this model (data.window.channels)"
    return InferenceResult(
        video=str(record.path("video")),
        event_time=float(clip.event_time),
        event_time_source=clip.event_time_source,
        imu_used=telemetry_used,
        imu_reason="" if telemetry_used else reason,
        **summarize(texts, option_probs, record.label_scope, event_wording),
        window={**spec.window.settings(), "window_scale": spec.scale},
        event_wording=event_wording,
    )


def batch_row(record, result: InferenceResult) -> dict[str, Any]:
    """One `sce infer --manifest` line: predictions.jsonl's fields (sce.evaluate.predictions)
    for the record's event question, plus its split, video, collision probability (and where
    it came from) and description."""
    from sce.evaluate.predictions import prediction_record

    item = {
        "id": record.id,
        "label": record.label,
        "task": MCQ.name,
        "source": record.source,
        "split": record.split,
        "imu_on": result.imu_used,
        "label_scope": record.label_scope,
        "event_wording": result.event_wording,  # how the answer's letter is read
        "imu_reason": result.imu_reason,
        "prediction": result.event.answer,
        "option_probs": result.event.letter_probs,
        "event_time": result.event_time,
        "event_time_source": result.event_time_source,
    }
    prob = result.collision_probability
    return {
        **prediction_record(item),
        "video": result.video,
        "collision_probability": prob.value,
        "collision_probability_source": prob.source,
        "description": result.description,
    }


def failed_row(record, err: Exception) -> dict[str, Any]:
    """The `sce infer --manifest` line of a record that could not be answered: its identity,
    no prediction (`valid` false) and `error` naming the exception and its message (which
    names the file)."""
    from sce.evaluate.predictions import prediction_record

    item = {
        "id": record.id,
        "label": record.label,
        "task": MCQ.name,
        "source": record.source,
        "split": record.split,
        "label_scope": record.label_scope,
        "prediction": None,
    }
    return {
        **prediction_record(item),
        "video": str(record.path("video")),
        "error": f"{type(err).__name__}: {err}",
    }


# What one bad record raises (an unreadable video or telemetry file, a window outside the
# clip): its row records the error and the batch goes on. Anything else is a bug or a broken
# model and stops the run.
RECORD_ERRORS: tuple[type[Exception], ...] = (ClipError, InferError, ManifestError)


@dataclass
class BatchResult:
    """What `infer_manifest` wrote: the file, the rows, and the ids of the failed records."""

    path: Path
    rows: int
    failed: list[str]


def infer_manifest(
    model,
    processor,
    records,
    out: str | Path,
    window=None,
    use_imu: bool = True,
    max_new_tokens: int = 64,
    ask_probability: bool = True,
    progress: bool = True,
    decoder: str = "decord",
    event_wording: str = DEFAULT_WORDING,
) -> BatchResult:
    """`infer_record` on every record, one JSON line each (`batch_row`), with a progress bar.

    A record that cannot be answered (RECORD_ERRORS) gets a `failed_row` holding its error and
    the run goes on. The lines go to a temporary file beside `out`, renamed onto it when every
    record is done: a run that stops midway leaves a previous `out` as it was."""
    from tqdm import tqdm

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    with atomic_file(path, "w", encoding="utf-8") as handle:
        for record in tqdm(records, desc="sce infer", unit="clip", disable=not progress):
            try:
                result = infer_record(
                    model,
                    processor,
                    record,
                    window,
                    use_imu,
                    max_new_tokens,
                    ask_probability,
                    decoder,
                    event_wording,
                )
                row = batch_row(record, result)
            except RECORD_ERRORS as err:
                failed.append(record.id)
                row = failed_row(record, err)
            handle.write(json.dumps(row) + "\n")
    return BatchResult(path, len(records), failed)


# ---------------------------------------------------------------------------- CLI


def _recorded_help() -> str:
    from sce.data.clip import WindowSpec

    d = WindowSpec()
    return (
        "frames per second (window flags default to the model's sce_training.json, else "
        f"data.window's defaults: {d.fps:g} fps, [-{d.before:g} s, +{d.after:g} s], "
        f"{d.width}x{d.height}, {d.layout})"
    )


def add_infer_arguments(parser: argparse.ArgumentParser) -> None:
    from sce.data.schema import add_allowed_roots_argument

    parser.add_argument("--model", required=True, help="merged or base model folder (or tiny:SEED)")
    parser.add_argument(
        "--adapter", default=None, help="PEFT adapter folder (sce export OUT/adapter)"
    )
    parser.add_argument("--video", default=None, help="mp4 clip (or --manifest for a batch)")
    parser.add_argument(
        "--manifest",
        default=None,
        help="manifest.jsonl: answer every record of --split (each with its own IMU, GPS, event "
        "time and label scope), one JSON line per record in --out",
    )
    parser.add_argument("--split", default="test", help="with --manifest: the split to answer")
    parser.add_argument("--out", default=None, help="with --manifest: the JSON-lines file to write")
    add_allowed_roots_argument(parser)  # with --manifest
    parser.add_argument("--imu", default=None, help="IMU CSV: t, ax, ay, az, gx, gy, gz")
    parser.add_argument("--gps", default=None, help="GPS CSV: t, speed")
    parser.add_argument("--event-time", type=float, default=None, help="seconds from clip start")
    parser.add_argument("--no-imu", action="store_true", help="video only, even with --imu")
    parser.add_argument(
        "--imu-axes",
        default="none",
        help="IMU mounting: none (CSV already x forward, y left, z up), estimate (from gravity, "
        "GPS speed and gyro), or a mapping such as x,-y,-z (see sce data prepare)",
    )
    parser.add_argument("--fps", type=float, default=None, help=_recorded_help())
    parser.add_argument("--before", type=float, default=None, help="seconds before the event")
    parser.add_argument("--after", type=float, default=None, help="seconds after the event")
    parser.add_argument(
        "--window",
        default=None,
        choices=["event", "whole"],
        help="event: [-before, +after]; whole: the whole clip at --fps, at most --max-frames",
    )
    parser.add_argument("--max-frames", type=int, default=None, help="with --window whole")
    parser.add_argument(
        "--max-pixels", type=int, default=None, help="per-frame pixel cap (data.window.max_pixels)"
    )
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--decoder", default="decord", choices=["decord", "pyav"])
    parser.add_argument("--layout", default=None, choices=["interleaved", "table"])
    parser.add_argument(
        "--window-scale",
        type=float,
        default=None,
        metavar="SECONDS",
        help="one keyframe window of SECONDS ending at the event, its keyframes sent as images "
        "(paper 002's data.window.scales; replaces --before/--after)",
    )
    parser.add_argument(
        "--label-scope",
        default="three_class",
        choices=list(LABEL_SCOPES),
        help="the event question the model was trained on: three_class (A/B/C) or binary "
        "(yes/no event, e.g. a model trained on Nexar's binary records)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def resolve_window(flags: dict[str, Any], recorded=None) -> tuple[Any, list[str]]:
    """The window to ask with, and warnings: the model's recorded window (a WindowSpec; None:
    the window's defaults) with each flag given replacing its field, with a warning when it
    differs from the recorded value. `flags` maps WINDOW_FLAGS' options to values (None: not
    given); `--window-scale S` asks the keyframe window of S s (recorded: the first scale)."""
    from sce.data.clip import WindowSpec

    base = recorded or WindowSpec()
    changes, warnings = {}, []
    for option, name in WINDOW_FLAGS.items():
        flag = flags.get(option)
        if flag is None:
            continue
        value = getattr(base, name)
        if name == "scales":  # one keyframe window of the flag's seconds
            flag, value = (flag,), (value[:1] if value else None)
        changes[name] = flag
        if recorded is not None and value != flag:
            shown = flag[0] if name == "scales" else flag
            was = value[0] if name == "scales" and value else value
            warnings.append(
                f"{option} {shown} overrides the model's training value {was} "
                "(sce_training.json): answers may be off"
            )
    return dataclasses.replace(base, **changes), warnings


def _window_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {option: getattr(args, option[2:].replace("-", "_"), None) for option in WINDOW_FLAGS}


def infer_command(args: argparse.Namespace) -> int:
    import sys

    try:
        record = read_training_record(args.adapter or _local_folder(args.model))
    except ValueError as err:
        print(f"sce infer: {err}")
        return 2
    scale = args.window_scale
    if scale is not None and not scale > 0:
        print(f"sce infer: --window-scale must be positive seconds, got {scale}")
        return 2
    try:
        window, warnings = resolve_window(_window_flags(args), record and record.window)
    except ValueError as err:  # the window options (messages name the data.window keys)
        print(f"sce infer: {err}")
        return 2
    for warning in warnings:
        print(f"sce infer: warning: {warning}", file=sys.stderr)
    if record is None:
        print(
            "sce infer: the model folder has no sce_training.json (written by sce export / sce "
            "demo): window flags or data.window's defaults apply",
            file=sys.stderr,
        )
    try:
        records = manifest_records(args)
        if records is None:
            build_record(args.video, args.imu, args.gps)  # fail on missing files before loading
        model, processor = load_inference_model(args.model, args.adapter, args.dtype, args.device)
        ask_probability = record is not None and PROBABILITY.name in record.tasks
        wording = record.event_wording if record is not None else DEFAULT_WORDING
        if records is not None:
            batch = infer_manifest(
                model,
                processor,
                records,
                args.out,
                window,
                use_imu=not args.no_imu,
                max_new_tokens=args.max_new_tokens,
                ask_probability=ask_probability,
                decoder=args.decoder,
                event_wording=wording,
            )
            print(
                f"sce infer: {batch.rows} records of split {args.split!r} written to {batch.path}"
            )
            if batch.failed:
                print(
                    f"sce infer: {len(batch.failed)} of {batch.rows} records could not be "
                    f"answered (their rows hold the error): {batch.failed}",
                    file=sys.stderr,
                )
            print_labelled_metrics(batch.path, args.split)
            return 0
        result = infer_clip(
            model,
            processor,
            args.video,
            args.imu,
            args.gps,
            args.event_time,
            window,
            use_imu=not args.no_imu,
            max_new_tokens=args.max_new_tokens,
            label_scope=args.label_scope,
            ask_probability=ask_probability,
            imu_axes=args.imu_axes,
            decoder=args.decoder,
            event_wording=wording,
        )
    except (InferError, ClipError, ManifestError) as err:
        print(f"sce infer: {err}")
        return 2
    print(json.dumps(result.to_json(), indent=2) if args.json else result.to_text())
    return 0


def print_labelled_metrics(path: Path, split: str) -> None:
    """The compact metrics table of the written rows, scored against their labels."""
    from sce.evaluate.predictions import labelled_metrics

    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    table = labelled_metrics(rows, split)
    if table:
        print(table)


def manifest_records(args: argparse.Namespace):
    """The records of `--split` in `--manifest` (None without --manifest: one clip, --video).
    Each record brings its own files, event time and label scope, so the one-clip flags that
    set those are refused with --manifest."""
    from sce.data.schema import load_manifest

    if args.manifest is None:
        if args.video is None:
            raise InferError("--video (one clip) or --manifest (a batch) is required")
        return None
    clip_flags = {"--video": args.video, "--imu": args.imu, "--gps": args.gps}
    clip_flags["--event-time"] = args.event_time
    given = [flag for flag, value in clip_flags.items() if value is not None]
    if given:
        raise InferError(f"--manifest answers the manifest's records: drop {', '.join(given)}")
    if not args.out:
        raise InferError("--manifest needs --out FILE (the JSON-lines file to write)")
    records = load_manifest(args.manifest, splits=[args.split], allowed_roots=args.allowed_roots)
    if not records:
        splits = sorted({r.split for r in load_manifest(args.manifest, check_files=False)})
        raise InferError(
            f"--split {args.split!r}: no record of {args.manifest} is in it (splits: {splits})"
        )
    return records


def _local_folder(model: str) -> Path | None:
    """The model's folder when it is a local one (a hub id or tiny:SEED has no record)."""
    path = Path(model).expanduser()
    return path if path.is_dir() else None


__all__ = [
    "EventAnswer",
    "InferError",
    "InferenceResult",
    "ProbabilityAnswer",
    "add_infer_arguments",
    "BatchResult",
    "attach_adapter",
    "batch_row",
    "build_record",
    "clip_spec",
    "failed_row",
    "generate_answers",
    "infer_clip",
    "infer_command",
    "infer_manifest",
    "infer_record",
    "load_inference_model",
    "manifest_records",
    "prompt_samples",
    "resolve_window",
    "summarize",
]
