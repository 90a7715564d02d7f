"""`sce label`: run the teacher over a manifest and write the labeled manifest M2.

Every (clip, task) item is one result line in a JSONL file keyed by (clip id, task, template
version), appended, flushed and fsync'ed as soon as it is known, so a killed run loses at most the
requests in flight and a re-run skips every key already finished (ok, filtered, or failed unless
`retry_failed`). A line cut short by a kill is ignored on reading. At the end the output manifest
is written: the input records with the results in their `annotations`:

    structured_caption  annotations["structured_caption"]  str (from metadata, no teacher)
    caption             annotations["caption"]  str;  annotations["qa"]  [{type, question, answer}]
    vqa                 annotations["vqa"]  [{dimension, question, options: [str], answer: "A"}]
    reasoning_vqa       annotations["reasoning_vqa"]  {question, options, answer, reasons}
    reasoning           annotations["reasoning"]  {think, answer: letter, label}
    instruction         annotations["driving_events"]  [event names], annotations["instruction"]  str
                        (paper 003: written from the clip's structured events, text only)
    (all)               annotations["provenance"][task] = {"template": "vqa/v1", "model": ...,
                                                           "label_revealed": false}

The teacher is not told the ground-truth label (paper 000 conditions its pseudo-labels on the
video, the telemetry and the experts' outputs only); `reveal_label=True` (`--reveal-label`) adds
the label's event sentence to the metadata caption of every teacher prompt. Every result line
and every provenance entry records `label_revealed`, and a result counts as finished only for a
run with the same setting (a line without the field, from before it was recorded, is asked
again), so hidden and revealed labels never mix in one manifest. `structured_caption` states the
label by design (paper 001's metadata captions), and so does `instruction` (paper 003 writes
its answers from the clip's structured events, the label's event among them): both are always
`label_revealed: true`.

Failed and filtered items are not copied into the manifest; they stay in the results file with
their reason, and the summary (also written as <out>.summary.json) counts them.

Result line: {"clip_id", "task", "version", "status": "ok"|"failed"|"filtered", "annotation",
"reason", "attempts", "model", "label_revealed", "elapsed_s", "time"} (+ "raw": the last
reply, for failures).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sce.data.clip import DEFAULT_WINDOW
from sce.data.schema import ClipRecord, add_allowed_roots_argument, load_manifest, write_manifest
from sce.labeling.prompts import (
    PromptOptions,
    TeacherClipInputs,
    build_teacher_prompt,
    load_clip_inputs,
)
from sce.labeling.teacher import (
    DEFAULT_MAX_REPLY_BYTES,
    TeacherBackend,
    TeacherError,
    TeacherFatalError,
)
from sce.labeling.templates import (
    LABEL_STATED,
    LOCAL_TASKS,
    get_template,
    parse_tasks,
    structured_caption,
    task_version,
)
from sce.labeling.validate import SCHEMAS, AnswerError, keep_rate, parse_answer
from sce.tasks import (
    CAPTION,
    CAPTION_FIELD,
    INSTRUCTION,
    QA_FIELD,
    REASONING,
    REASONING_FIELD,
    REASONING_VQA,
    REASONING_VQA_FIELD,
    STRUCTURED_CAPTION,
    STRUCTURED_CAPTION_FIELD,
    VQA,
    VQA_FIELD,
)

log = logging.getLogger("sce.labeling")

FINAL_STATUSES = ("ok", "filtered", "failed")
FILTERED_TASKS = (REASONING.name, VQA.name)
RAW_LIMIT = 20000  # characters of a failed reply kept for debugging
MAX_LISTED_FAILURES = 100  # failures named in the summary (all of them stay in the results)
# Teacher tasks whose prompt quotes the clip's teacher caption as its scene description.
SCENE_CAPTIONED = (REASONING.name, REASONING_VQA.name)
# The caption runs first: its text is the scene description of the reasoning prompts (paper 001).
TASK_ORDER = (
    STRUCTURED_CAPTION.name,
    CAPTION.name,
    VQA.name,
    REASONING_VQA.name,
    REASONING.name,
    INSTRUCTION.name,
)

Key = tuple[str, str, str]


def result_key(result: dict[str, Any]) -> Key:
    return (str(result["clip_id"]), str(result["task"]), str(result["version"]))


class ResultStore:
    """The append-only results JSONL; the last line of a key wins."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.latest: dict[Key, dict[str, Any]] = {}
        self.bad_lines = 0
        self._lock = threading.Lock()
        self._handle = None
        self._read()

    def _read(self) -> None:
        if not self.path.is_file():
            return
        with self.path.open("rb") as handle:
            for line in handle:
                try:
                    result = json.loads(line)
                    key = result_key(result)
                except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                    self.bad_lines += 1  # e.g. a line cut short by a killed run
                    continue
                if result.get("status") in FINAL_STATUSES:
                    self.latest[key] = result
        if self.bad_lines:
            log.warning("%s: ignored %d unreadable line(s)", self.path, self.bad_lines)

    def current(self, clip_id: str, task: str, version: str, revealed: bool) -> dict | None:
        """The latest result of an item if it was written with the same `label_revealed`."""
        result = self.latest.get((clip_id, task, version))
        return result if result is not None and result.get("label_revealed") is revealed else None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = (
            self.path.is_file() and self.path.stat().st_size > 0 and not self._ends_with_newline()
        )
        self._handle = self.path.open("a", encoding="utf-8")
        if needs_newline:  # finish a line cut short by a kill, so the next result starts clean
            self._handle.write("\n")

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def append(self, result: dict[str, Any]) -> None:
        """Write one result durably (write + flush + fsync) before it counts as done."""
        line = json.dumps(result, ensure_ascii=False) + "\n"
        with self._lock:
            self._handle.write(line)
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self.latest[result_key(result)] = result

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


@dataclass
class LabelingSummary:
    """Counts over the items of a run (clips x tasks), including those finished by earlier runs."""

    items: int = 0
    done: int = 0
    failed: int = 0
    filtered: int = 0
    pending: int = 0  # not finished (the run was stopped)
    skipped: int = 0  # already finished before this run started
    labeled_now: int = 0
    per_task: dict[str, dict[str, int]] = field(default_factory=dict)
    keep_rate: dict[str, float | None] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    results_path: str = ""
    manifest_path: str = ""
    label_revealed: bool = False  # the teacher was told the ground-truth label

    def format(self) -> str:
        told = "revealed to" if self.label_revealed else "hidden from"
        lines = [
            f"labeling: {self.items} items: {self.done} done, {self.failed} failed, "
            f"{self.filtered} filtered, {self.pending} pending "
            f"({self.skipped} finished earlier, {self.labeled_now} in this run); "
            f"label {told} the teacher"
        ]
        for task, counts in self.per_task.items():
            rate = self.keep_rate.get(task)
            kept = f", keep rate {rate:.1%}" if rate is not None else ""
            lines.append(
                f"  {task}: {counts['ok']} done, {counts['failed']} failed, "
                f"{counts['filtered']} filtered{kept}"
            )
        for failure in self.failures[:5]:
            lines.append(f"  failed {failure['clip_id']}/{failure['task']}: {failure['reason']}")
        lines.append(f"  results: {self.results_path}")
        if self.manifest_path:
            lines.append(f"  manifest: {self.manifest_path}")
        return "\n".join(lines)


@dataclass
class _Run:
    """State shared by the workers of one run."""

    backend: TeacherBackend | None
    store: ResultStore
    loader: Callable[..., TeacherClipInputs]
    loader_kwargs: dict[str, Any]
    options: PromptOptions
    answer_retries: int
    progress: Any
    versions: dict[str, str] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0, "filtered": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)


def label_revealed(task: str, options: PromptOptions) -> bool:
    """Whether an item's answer was written knowing the label: the metadata caption and the
    tasks given the clip's structured events always (`LABEL_STATED`), another teacher task when
    the run reveals it."""
    return True if task in LABEL_STATED else options.reveal_label


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _result(
    record: ClipRecord, task: str, version: str, status: str, **extra: Any
) -> dict[str, Any]:
    result = {"clip_id": record.id, "task": task, "version": version, "status": status}
    result.update({"annotation": None, "reason": None, "attempts": 0, "label_revealed": None})
    result.update(extra)
    result["time"] = _now()
    return result


def _run_teacher_task(
    run: _Run, record: ClipRecord, inputs: TeacherClipInputs, task: str, version: str
) -> dict[str, Any]:
    """Ask the teacher (again after a malformed answer) and validate; raises only when fatal."""
    start = time.monotonic()

    def finish(status: str, attempts: int, **extra: Any) -> dict[str, Any]:
        elapsed = round(time.monotonic() - start, 3)
        return _result(record, task, version, status, attempts=attempts, elapsed_s=elapsed,
                       model=getattr(run.backend, "name", None),
                       label_revealed=label_revealed(task, run.options), **extra)  # fmt: skip

    scene_caption = _scene_caption(run, record) if task in SCENE_CAPTIONED else None
    prompt = build_teacher_prompt(
        record, inputs, get_template(task, version), run.options, scene_caption
    )
    reason, raw = "", ""
    attempts = run.answer_retries + 1
    for attempt in range(1, attempts + 1):
        if run.stop.is_set():
            raise _Stopped()
        try:
            raw = run.backend.complete(prompt, SCHEMAS[task])
        except TeacherFatalError:
            run.stop.set()  # at once, not when the main thread notices: no new request starts
            raise
        except TeacherError as err:  # the backend already retried transient failures
            return finish("failed", attempt, reason=f"teacher: {err}")
        try:
            parsed = parse_answer(task, raw, record.label)
        except AnswerError as err:
            reason = str(err)
            log.info("clip %s task %s: malformed answer %d: %s", record.id, task, attempt, reason)
            continue
        status = "filtered" if parsed.filtered else "ok"
        return finish(status, attempt, annotation=parsed.value, reason=parsed.filter_reason)
    reason = f"malformed answer after {attempts} attempts: {reason}"
    return finish("failed", attempts, reason=reason, raw=raw[:RAW_LIMIT])


class _Stopped(Exception):
    """The run is stopping (fatal error elsewhere): drop the item without a result."""


def _scene_caption(run: _Run, record: ClipRecord) -> str | None:
    """The teacher caption of this clip (this run's version, else the input manifest's), never
    one written knowing the label when this run hides it."""
    revealed = label_revealed(CAPTION.name, run.options)
    version = run.versions.get(CAPTION.name) or get_template(CAPTION.name).version
    result = run.store.current(record.id, CAPTION.name, version, revealed)
    if result and result["status"] == "ok":
        return result["annotation"][CAPTION_FIELD]
    provenance = (record.annotations.get("provenance") or {}).get(CAPTION.name) or {}
    if provenance.get("label_revealed") and not revealed:
        return None
    caption = record.annotations.get(CAPTION_FIELD)
    return caption if isinstance(caption, str) and caption.strip() else None


def _run_item(run: _Run, record: ClipRecord, inputs: TeacherClipInputs | None, error: str | None,
              task: str, version: str) -> dict[str, Any]:  # fmt: skip
    if error is not None:
        return _result(record, task, version, "failed", reason=error,
                       label_revealed=label_revealed(task, run.options))  # fmt: skip
    if task in LOCAL_TASKS:
        text = structured_caption(
            record.metadata, record.label, inputs.event_time, inputs.telemetry
        )
        return _result(record, task, version, "ok", annotation={"text": text}, model="metadata",
                       label_revealed=label_revealed(task, run.options))  # fmt: skip
    try:
        return _run_teacher_task(run, record, inputs, task, version)
    except (TeacherFatalError, _Stopped):
        raise
    except Exception as err:  # a bad clip must not stop the run: record why it failed
        log.warning("clip %s task %s failed: %s: %s", record.id, task, type(err).__name__, err)
        return _result(record, task, version, "failed", reason=f"{type(err).__name__}: {err}",
                       label_revealed=label_revealed(task, run.options))  # fmt: skip


def _label_clip(run: _Run, record: ClipRecord, items: Sequence[tuple[str, str]]) -> None:
    """All pending tasks of one clip, inputs decoded once; each result is stored when known."""
    if run.stop.is_set():
        return
    needs_frames = (
        any(t not in LOCAL_TASKS for t, _ in items) and run.options.include_frames is not False
    )
    inputs, error = None, None
    try:
        inputs = run.loader(record, **run.loader_kwargs, with_frames=needs_frames)
    except Exception as err:
        error = f"inputs: {type(err).__name__}: {err}"
        log.warning("clip %s: cannot load inputs: %s", record.id, error)
    for task, version in sorted(items, key=lambda item: TASK_ORDER.index(item[0])):
        try:
            result = _run_item(run, record, inputs, error, task, version)
        except _Stopped:
            return
        run.store.append(result)
        with run.lock:
            run.counts[result["status"]] += 1
            run.progress.set_postfix(
                failed=run.counts["failed"], filtered=run.counts["filtered"], refresh=False
            )
            run.progress.update(1)


def _plan(
    records: Sequence[ClipRecord], tasks: Sequence[str], versions: dict[str, str],
    store: ResultStore, retry_failed: bool, options: PromptOptions,
) -> tuple[list[tuple[ClipRecord, list[tuple[str, str]]]], int]:  # fmt: skip
    """Pending (task, version) items per clip, and how many items are already finished (with
    this run's label setting)."""
    plan, finished = [], 0
    for record in records:
        pending = []
        for task in tasks:
            revealed = label_revealed(task, options)
            previous = store.current(record.id, task, versions[task], revealed)
            if previous and (previous["status"] != "failed" or not retry_failed):
                finished += 1
            else:
                pending.append((task, versions[task]))
        if pending:
            plan.append((record, pending))
    return plan, finished


def _summary(records: Sequence[ClipRecord], tasks: Sequence[str], versions: dict[str, str],
             store: ResultStore, options: PromptOptions) -> LabelingSummary:  # fmt: skip
    summary = LabelingSummary(label_revealed=options.reveal_label)
    for task in tasks:
        counts = {"ok": 0, "failed": 0, "filtered": 0}
        revealed = label_revealed(task, options)
        for record in records:
            result = store.current(record.id, task, versions[task], revealed)
            summary.items += 1
            if result is None:
                summary.pending += 1
                continue
            counts[result["status"]] += 1
            if result["status"] == "failed" and len(summary.failures) < MAX_LISTED_FAILURES:
                summary.failures.append(
                    {"clip_id": record.id, "task": task, "reason": result["reason"]}
                )
        summary.per_task[task] = counts
        summary.done += counts["ok"]
        summary.failed += counts["failed"]
        summary.filtered += counts["filtered"]
        if task in FILTERED_TASKS:
            summary.keep_rate[task] = keep_rate(counts["ok"], counts["filtered"])
    return summary


def apply_result(record: ClipRecord, result: dict[str, Any]) -> None:
    """Copy one ok result into the record's annotations (see the module docstring)."""
    task, value = result["task"], result["annotation"]
    notes = record.annotations
    if task == STRUCTURED_CAPTION.name:
        notes[STRUCTURED_CAPTION_FIELD] = value["text"]
    elif task == CAPTION.name:
        notes[CAPTION_FIELD] = value[CAPTION_FIELD]
        notes[QA_FIELD] = value["questions"]  # the open_qa and closed_qa tasks' pairs
    elif task == VQA.name:
        notes[VQA_FIELD] = value["items"]
    elif task == REASONING.name:
        notes[REASONING_FIELD] = value
    elif task == REASONING_VQA.name:
        notes[REASONING_VQA_FIELD] = value
    elif task == INSTRUCTION.name:
        notes.update(value)  # driving_events and instruction
    else:
        raise KeyError(f"no annotation mapping for task {task!r}")
    provenance = notes.setdefault("provenance", {})
    provenance[task] = {
        "template": f"{task}/{result['version']}",
        "model": result.get("model"),
        "label_revealed": result.get("label_revealed"),
    }


def _relocate(record: ClipRecord, out_dir: Path) -> ClipRecord:
    """A copy whose file paths are relative to the output manifest's folder."""
    copy = ClipRecord(**{**record.__dict__, "annotations": deepcopy(record.annotations)})
    for name in ("video", "imu", "gps"):
        path = record.path(name)
        if path is not None:
            setattr(copy, name, os.path.relpath(path.resolve(), out_dir.resolve()))
    copy.root = str(out_dir)
    return copy


def write_labeled_manifest(
    records: Sequence[ClipRecord], tasks: Sequence[str], versions: dict[str, str],
    store: ResultStore, out: Path, options: PromptOptions | None = None,
) -> Path:  # fmt: skip
    """M2: the records with their ok results (written with `options`' label setting) in
    `annotations`, paths relative to `out`."""
    options = options or PromptOptions()
    labeled = []
    for record in records:
        copy = _relocate(record, out.parent)
        for task in tasks:
            revealed = label_revealed(task, options)
            result = store.current(record.id, task, versions[task], revealed)
            if result is not None and result["status"] == "ok":
                apply_result(copy, result)
        labeled.append(copy)
    return write_manifest(labeled, out)


def default_results_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".labels.jsonl")


def run_labeling(
    manifest: str | Path | Sequence[ClipRecord],
    tasks: str | Sequence[str],
    backend: TeacherBackend | None,
    out: str | Path,
    *,
    results: str | Path | None = None,
    template_versions: dict[str, str] | None = None,
    fps: float = DEFAULT_WINDOW.fps,
    size: tuple[int, int] = (DEFAULT_WINDOW.width, DEFAULT_WINDOW.height),
    before: float = DEFAULT_WINDOW.before,
    after: float = DEFAULT_WINDOW.after,
    options: PromptOptions | None = None,
    answer_retries: int = 2,
    retry_failed: bool = False,
    concurrency: int | None = None,
    splits: Iterable[str] | None = None,
    limit: int | None = None,
    check_files: bool = True,
    inputs_loader: Callable[..., TeacherClipInputs] | None = None,
    progress: bool = True,
    allowed_roots: Sequence[str] | None = None,
) -> LabelingSummary:
    """Label every clip of `manifest` with `tasks` and write the labeled manifest to `out`.

    Args:
        manifest: a manifest path or its records.
        tasks: names or "caption,vqa,reasoning" (see templates.TASKS).
        backend: the teacher (None is allowed when every task is local).
        out: the output manifest M2.
        results: the results JSONL (default: <out stem>.labels.jsonl next to `out`).
        template_versions: task -> template version (default: each task's newest).
        fps, size, before, after: the event window and frame sampling (default: data.window's,
            sce.data.clip.DEFAULT_WINDOW).
        options: teacher prompt switches (default: frames per template, boxes drawn, the label
            hidden from the teacher).
        answer_retries: how many times a malformed answer is asked again before it fails.
        retry_failed: ask again for items that failed in an earlier run.
        concurrency: clips labeled in parallel (default: the backend's concurrency).
        splits, limit: label only these splits / the first `limit` clips.
        check_files: check that the manifest's files exist when loading it.
        inputs_loader: decodes a record (default: prompts.load_clip_inputs).
        progress: show a tqdm progress bar.
        allowed_roots: as data.allowed_roots: every file read must lie inside one of them.
    Returns:
        The summary; it is also written next to `out` as <out stem>.summary.json.
    Raises:
        TeacherFatalError: the teacher refuses every request (key, model); results so far are kept.
    """
    from tqdm.auto import tqdm

    tasks = parse_tasks(tasks)
    versions = {task: task_version(task, template_versions) for task in tasks}
    if backend is None and any(t not in LOCAL_TASKS for t in tasks):
        raise ValueError(
            f"tasks {[t for t in tasks if t not in LOCAL_TASKS]} need a teacher backend"
        )
    if isinstance(manifest, (str, Path)):
        records = load_manifest(manifest, check_files, splits, allowed_roots=allowed_roots)
    else:
        keep = set(splits) if splits is not None else None
        records = [r for r in manifest if keep is None or r.split in keep]
    records = records[:limit] if limit is not None else records
    out = Path(out)
    options = options or PromptOptions()
    store = ResultStore(results or default_results_path(out))
    plan, finished = _plan(records, tasks, versions, store, retry_failed, options)
    n_pending = sum(len(items) for _, items in plan)
    log.info(
        "labeling %d clips x %d tasks: %d to do, %d already finished",
        len(records),
        len(tasks),
        n_pending,
        finished,
    )
    workers = max(1, concurrency or getattr(backend, "concurrency", 1))
    bar = tqdm(
        total=n_pending, desc="labeling", unit="item", disable=not progress, dynamic_ncols=True
    )
    run = _Run(
        backend=backend,
        store=store,
        loader=inputs_loader or load_clip_inputs,
        loader_kwargs={"fps": fps, "size": size, "before": before, "after": after},
        options=options,
        answer_retries=answer_retries,
        progress=bar,
        versions=versions,
    )
    store.open()
    try:
        _execute(run, plan, workers)
    finally:
        bar.close()
        store.close()
    summary = _summary(records, tasks, versions, store, options)
    summary.skipped = finished
    summary.labeled_now = sum(run.counts.values())
    summary.results_path = str(store.path)
    summary.manifest_path = str(
        write_labeled_manifest(records, tasks, versions, store, out, options)
    )
    summary_path = out.with_name(out.stem + ".summary.json")
    summary_path.write_text(json.dumps(asdict(summary), indent=2) + "\n")
    log.info("%s", summary.format())
    return summary


def _execute(
    run: _Run, plan: Sequence[tuple[ClipRecord, list[tuple[str, str]]]], workers: int
) -> None:
    """Label the plan on `workers` threads; a fatal teacher error stops the run and is raised."""
    if workers == 1:
        for record, items in plan:
            _label_clip(run, record, items)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sce-label")
    try:
        futures = [pool.submit(_label_clip, run, record, items) for record, items in plan]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in done if f.exception() is not None), None)
        if failed is not None:
            raise failed.exception()
    except BaseException:
        run.stop.set()  # running clips end after their current request; queued ones never start
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------
# CLI: the lead registers these as `sce label`.


def add_label_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `sce label` options to a parser (argparse-compatible)."""
    add = parser.add_argument
    add("--manifest", required=True, help="input manifest (JSONL)")
    add("--out", required=True, help="output manifest M2 with the annotations")
    add_allowed_roots_argument(parser)
    add(
        "--tasks",
        default="caption,vqa,reasoning",
        help="comma list of: structured_caption, caption, vqa, reasoning_vqa, reasoning, instruction",
    )
    add("--backend", choices=("openai", "transformers"), default="openai", help="teacher backend")
    add(
        "--base-url", default=None, help="OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1"
    )
    add("--model", default=None, help="served model name (openai) or model folder (transformers)")
    add(
        "--api-key-env", default="SCE_TEACHER_API_KEY", help="environment variable with the API key"
    )
    add(
        "--timeout",
        type=float,
        default=120.0,
        help="deadline in seconds of one HTTP request, the whole reply included (each retry "
        "has its own)",
    )
    add(
        "--max-reply-mb",
        type=float,
        default=DEFAULT_MAX_REPLY_BYTES / 2**20,
        help="largest teacher reply in MiB; a larger one fails the item (not retried)",
    )
    add("--max-retries", type=int, default=4, help="retries of a failed HTTP request")
    add("--backoff", type=float, default=1.0, help="first retry delay (s), doubled each retry")
    add("--concurrency", type=int, default=4, help="requests in flight")
    add("--answer-retries", type=int, default=2, help="re-asks after a malformed answer")
    add("--retry-failed", action="store_true", help="ask again for items that failed earlier")
    add("--results", default=None, help="results JSONL (default: <out stem>.labels.jsonl)")
    add("--template-versions", default="", help="task=version pairs, e.g. vqa=v1,reasoning=v1")
    w = DEFAULT_WINDOW
    add("--fps", type=float, default=w.fps, help="frames per second in the event window")
    add("--size", default=f"{w.width}x{w.height}", help="frame size WxH sent to the teacher")
    add("--before", type=float, default=w.before, help="seconds before the event")
    add("--after", type=float, default=w.after, help="seconds after the event")
    add("--text-only", action="store_true", help="send no frames (text-only teacher, paper 001)")
    add("--no-boxes", action="store_true", help="do not draw detections on the frames")
    add(
        "--reveal-label",
        action="store_true",
        help="tell the teacher the ground-truth event type (default: hidden; recorded in each "
        "label's provenance as label_revealed)",
    )
    add("--max-tokens", type=int, default=2048, help="generation length")
    add("--temperature", type=float, default=0.2, help="sampling temperature")
    add("--json-mode", action="store_true", help="send the JSON schema as response_format")
    add("--device", default=None, help="device of the transformers backend")
    add("--splits", default=None, help="comma list of splits to label (default: all)")
    add("--limit", type=int, default=None, help="label only the first N clips")
    add("--no-progress", action="store_true", help="no progress bar")
    return parser


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size: expected WxH such as 420x240, got {text!r}") from None
    return width, height


def _parse_versions(text: str) -> dict[str, str]:
    pairs = [p.strip() for p in (text or "").split(",") if p.strip()]
    if any("=" not in p for p in pairs):
        raise ValueError(f"--template-versions: expected task=version pairs, got {text!r}")
    return dict(p.split("=", 1) for p in pairs)


def build_backend(args: argparse.Namespace) -> TeacherBackend:
    """The teacher named by the CLI arguments."""
    if not args.model:
        raise ValueError("--model is required (served model name, or the model folder)")
    if args.backend == "transformers":
        from sce.labeling.teacher import TransformersBackend

        return TransformersBackend(args.model, device=args.device, max_new_tokens=args.max_tokens,
                                   temperature=args.temperature)  # fmt: skip
    from sce.labeling.teacher import OpenAIChatBackend

    if not args.base_url:
        raise ValueError("--base-url is required with --backend openai")
    return OpenAIChatBackend(
        args.base_url, args.model, api_key_env=args.api_key_env, timeout=args.timeout,
        max_reply_bytes=max(1, int(args.max_reply_mb * 2**20)),
        max_retries=args.max_retries, backoff=args.backoff, concurrency=args.concurrency,
        max_tokens=args.max_tokens, temperature=args.temperature, json_mode=args.json_mode,
    )  # fmt: skip


def label_command(args: argparse.Namespace) -> int:
    """Run `sce label`; returns 0 when every item is done or filtered, 1 when some failed,
    2 when the run could not proceed (bad arguments, fatal teacher error)."""
    try:
        tasks = parse_tasks(args.tasks)
        needs_teacher = any(t not in LOCAL_TASKS for t in tasks)
        backend = build_backend(args) if needs_teacher else None
        summary = run_labeling(
            args.manifest, tasks, backend, args.out,
            results=args.results,
            template_versions=_parse_versions(args.template_versions),
            fps=args.fps, size=_parse_size(args.size), before=args.before, after=args.after,
            options=PromptOptions(include_frames=False if args.text_only else None,
                                  draw_boxes=not args.no_boxes, reveal_label=args.reveal_label),
            answer_retries=args.answer_retries, retry_failed=args.retry_failed,
            concurrency=args.concurrency,
            splits=args.splits.split(",") if args.splits else None,
            limit=args.limit, progress=not args.no_progress, allowed_roots=args.allowed_roots,
        )  # fmt: skip
    except (TeacherFatalError, ValueError, KeyError, OSError) as err:
        print(f"sce label: error: {err}")
        return 2
    print(summary.format())
    return 1 if summary.failed else 0
