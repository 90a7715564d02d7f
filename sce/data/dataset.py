"""The map-style dataset: manifest record -> event window -> telemetry -> task prompt (Sample).

Training items are one per (record, task) for every task with weight > 0 that the record can
serve (its mcq item, its caption item, ...), so the sampler can re-sample per (task, class): paper
001 up-samples the MCQ items, not the clips. A task with one item per annotated pair (open_qa,
closed_qa, reasoning_vqa: `Task.parts`) gives one item per pair, in training and at evaluation,
so an evaluation scores every closed question of a clip, not one random draw. Each drops the telemetry with probability
`imu_dropout` (paper 000: 0.5). Evaluation items never drop telemetry: "with IMU" and "video only" are separate
evaluation settings (`imu_settings=("on", "off")`), each item tagged with its setting.

Evaluation items exist for every task in `eval_tasks` that a record can answer; the reasoning
question (paper 001's reasoning mode) is asked of every record, also without a reasoning trace
(`sce.tasks.evaluation_tasks`); such items are scored by generation only and left out of
the validation loss (`loss_view`).

Every random choice of a sample (IMU dropout, which VQA pair) comes from one seeded
`random.Random`, never from a process's global RNG. A training item fetched through the
training sampler (`ClassResampler`) draws from the seed its `SampleIndex` carries, a pure
function of (data.seed, epoch, position in the epoch): the same prompt whichever DataLoader
worker builds it, with any number of workers, and after a mid-epoch resume. (A training item
fetched by a plain int, outside the sampler, draws its seed from torch's RNG.) Evaluation
items draw from a seed derived from (eval_seed, record id, task, IMU setting, scale): the
same question every epoch and run, and the global RNG is never touched.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from sce.common.choices import check_choice, check_choices, choices_of
from sce.data.channels import clip_channels
from sce.data.clip import ClipError, ClipInputs, ClipSpec, WindowSpec, load_clip
from sce.data.prompts import SYSTEM_PROMPT, build_messages, build_user_content, system_prompt
from sce.data.schema import ClipRecord, ManifestError, OnBadSample
from sce.data.subset import evaluation_subset, stable_seed
from sce.tasks import (
    DEFAULT_EVAL_TASKS,
    DEFAULT_TASK_MIX,
    TaskItem,
    TaskName,
    available_tasks,
    check_task_names,
    evaluation_tasks,
    item_parts,
    make_task,
    training_tasks,
)
from sce.tasks.events import DEFAULT_WORDING, EventWordingName, get_wording

ImuSetting = Literal["on", "off"]  # data.eval_imu: evaluated with telemetry / video only
IMU_SETTINGS: tuple[str, ...] = choices_of(ImuSetting)

VISUAL_TYPES = {"video": 4, "image": 3}  # placeholder type -> dims of its array


@dataclass
class Sample:
    """One prompt/answer pair as the dataset yields it.

    `visuals[k]` is the array of the k-th visual placeholder of `user_content`: [T, H, W, 3]
    uint8 (T even) for a video, [H, W, 3] uint8 for an image; `videos` / `images` split them.
    """

    id: str
    user_content: list[dict[str, Any]]
    visuals: list[np.ndarray]
    fps: float
    answer: str
    task: str
    label: str
    source: str = "unknown"
    imu_on: bool = True
    probability_target: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    system: str | None = SYSTEM_PROMPT  # the system turn (None: the chat template's default)

    def __post_init__(self) -> None:
        kinds = self.visual_kinds
        if len(kinds) != len(self.visuals):
            raise ValueError(
                f"sample {self.id!r}: user_content has {len(kinds)} visual placeholders "
                f"but {len(self.visuals)} visual arrays are given"
            )
        for k, (kind, array) in enumerate(zip(kinds, self.visuals, strict=True)):
            if np.ndim(array) != VISUAL_TYPES[kind]:
                raise ValueError(
                    f"sample {self.id!r}: visual {k} has shape {np.shape(array)} but its "
                    f"placeholder is {kind!r} (a {VISUAL_TYPES[kind]}-D array)"
                )

    @property
    def visual_kinds(self) -> list[str]:
        """'video' or 'image' for each visual placeholder of user_content, in order."""
        return [c["type"] for c in self.user_content if c.get("type") in VISUAL_TYPES]

    @property
    def videos(self) -> list[np.ndarray]:
        """The video arrays, in placeholder order."""
        return self._of_kind("video")

    @property
    def images(self) -> list[np.ndarray]:
        """The image arrays, in placeholder order."""
        return self._of_kind("image")

    def _of_kind(self, kind: str) -> list[np.ndarray]:
        return [v for k, v in zip(self.visual_kinds, self.visuals, strict=True) if k == kind]

    def messages(self, with_answer: bool = True) -> list[dict[str, Any]]:
        """The chat messages of the sample (system, user and, `with_answer`, the answer)."""
        return build_messages(self.user_content, self.answer if with_answer else None, self.system)


def build_sample(
    record: ClipRecord,
    clip: ClipInputs,
    task: TaskItem,
    window: WindowSpec,
    telemetry: bool = True,
    sample_id: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Sample:
    """The Sample of `record`'s loaded `clip` asked `task`: the one sample builder of the
    training dataset, `sce infer`, `sce data preview` and `sce budget`, so each sees the prompt
    the model is trained on. `window` gives the layout, the model's inputs beside the frames
    (`channels`: a channel it leaves out is never shown) and the wording (`prompt`).
    `telemetry` False drops the clip's telemetry (IMU dropout, a video-only setting); `meta`
    defaults to the record's label scope."""
    content, visuals = build_user_content(
        clip.frames,
        clip.frame_times,
        clip_channels(clip, window.channels, dropped=() if telemetry else ("telemetry",)),
        task.question,
        window.layout,
        keyframes=clip.keyframes,  # paper 002's keyframes go in as images
        prompt=window.prompt,
    )
    return Sample(
        id=record.id if sample_id is None else sample_id,
        user_content=content,
        visuals=visuals,
        fps=clip.fps,
        answer=task.answer,
        task=task.task,
        label=record.label,
        source=record.source,
        imu_on=telemetry and window.telemetry and clip.telemetry is not None,
        probability_target=task.probability_target,
        meta={"label_scope": record.label_scope} if meta is None else dict(meta),
        system=system_prompt(window.channels, window.prompt),
    )


@dataclass(frozen=True)
class Item:
    record: int  # index into records
    imu: str  # "train" (dropout decides), "on" or "off"
    task: str
    scale: float | None = None  # multi-scale keyframe window (paper 002), seconds
    part: int | None = None  # the pair asked, for a task with one item per pair (sce.tasks)


class SceDataset(Dataset):
    """Samples for training (`train=True`) or evaluation.

    Args:
        records: manifest records (already filtered to one split).
        spec: the window (fps, frame size, layout, multi-scale keyframe windows, ...) and the
            decoder: a ClipSpec, or a WindowSpec read with the default decoder. With
            `spec.scales` (paper 002, e.g. [6.0, 3.0, 1.5]) every record gives one item per
            scale, each with the scale's keyframes as images.
        train: training items (task drawn by weight, IMU dropout) or evaluation items.
        task_weights: training task mix, e.g. {"mcq": 1.0, "caption": 0.5}: each record gives
            one item per task with weight > 0 that it can serve; the weight is that item's
            multiplicity per epoch, applied by the sampler (`ClassResampler(task_weights=...)`).
        imu_dropout: probability of removing telemetry from a training prompt.
        imu_settings: evaluation settings, a subset of ("on", "off").
        eval_tasks: tasks asked at evaluation (each record x setting x task is one item).
        on_bad_sample: "error" raises naming the sample; "skip" yields None (counted by the
            collator and logged as data/skipped).
        cache: optional FrameCache for decoded windows.
        eval_seed: seed of the evaluation items' choices (e.g. which VQA pair is asked).
        event_wording: the wording of the 3-way event question (sce.tasks.events.WORDINGS:
            "sce", or "paper001" for paper 001's question as written).
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        spec: WindowSpec,
        train: bool,
        task_weights: Mapping[TaskName, float] | None = None,
        imu_dropout: float = 0.5,
        imu_settings: Sequence[ImuSetting] = ("on",),
        eval_tasks: Sequence[TaskName] = DEFAULT_EVAL_TASKS,
        on_bad_sample: OnBadSample = "error",
        cache=None,
        eval_seed: int = 0,
        event_wording: EventWordingName = DEFAULT_WORDING,
    ):
        get_wording(event_wording)  # a clear error for an unknown name
        if not 0.0 <= imu_dropout <= 1.0:
            raise ValueError(f"imu_dropout must be in [0, 1], got {imu_dropout}")
        check_choice("data.on_bad_sample", on_bad_sample, OnBadSample)
        check_choices("data.eval_imu", imu_settings, ImuSetting)
        check_task_names("data.eval_tasks", eval_tasks)
        self.records = list(records)
        self.spec = spec if isinstance(spec, ClipSpec) else ClipSpec.of(spec)
        self.train = train
        self.task_weights = dict(task_weights or DEFAULT_TASK_MIX)
        self.imu_dropout = imu_dropout
        self.on_bad_sample = on_bad_sample
        self.cache = cache
        self.eval_seed = eval_seed
        self.event_wording = event_wording
        self._subsets: dict[tuple[int | None, int | None], list[int]] = {}
        self.problems: Counter[str] = Counter()
        scales = list(self.spec.scales or [None])
        if train:
            self.items = [
                Item(i, "train", task, scale, part)
                for i, record in enumerate(self.records)
                for scale in scales
                for task in training_tasks(
                    self.task_weights, record.label, record.annotations, record.label_scope
                )
                for part in _parts(task, record)
            ]
        else:
            # A task is asked only of records that can answer it (reasoning: every record,
            # `evaluation_tasks`); a task with one item per pair asks every pair (closed_qa).
            self.items = [
                Item(i, setting, task, scale, part)
                for i, record in enumerate(self.records)
                for scale in scales
                for setting in imu_settings
                for task in eval_tasks
                if task in evaluation_tasks(record.label, record.annotations, record.label_scope)
                for part in _parts(task, record)
            ]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> list[str]:
        """Per-item class labels, each in its record's label scope (for the class re-sampler)."""
        return [self.records[item.record].label for item in self.items]

    @property
    def tasks(self) -> list[str]:
        """Per-item tasks (for the per-(task, class) re-sampler)."""
        return [item.task for item in self.items]

    def loss_indices(self) -> list[int]:
        """Items whose answer is a training target (validation / test loss): all but the
        evaluation-only ones, e.g. a reasoning item of a record without a reasoning trace,
        whose reference holds no trace to score a loss on."""
        return [k for k, item in enumerate(self.items) if self._has_target(item)]

    def _has_target(self, item: Item) -> bool:
        record = self.records[item.record]
        return item.task in available_tasks(record.label, record.annotations, record.label_scope)

    def loss_view(self) -> Dataset:
        """The dataset of the loss items (`loss_indices`): itself when that is every item."""
        indices = self.loss_indices()
        return self if len(indices) == len(self.items) else Subset(self, indices)

    def by_task(self, indices: Sequence[int]) -> list[int]:
        """`indices` grouped by task (in eval_tasks order, stable within a task), so each
        generation batch holds one task and one generation budget (a reasoning item's think
        trace runs far longer than an answer)."""
        order = {task: k for k, task in enumerate(dict.fromkeys(self.tasks))}
        return sorted(indices, key=lambda i: order[self.items[i].task])

    def evaluation_subset(
        self, max_items: int | None = None, per_class: int | None = None
    ) -> list[int]:
        """Item indices of the fixed evaluation subset (sce.data.subset), from eval_seed: drawn
        once over the whole split, before any sharding across ranks."""
        key = (max_items, per_class)
        if key not in self._subsets:
            self._subsets[key] = evaluation_subset(
                [r.id for r in self.records],
                [(r.label, r.source) for r in self.records],
                [item.record for item in self.items],
                self.eval_seed,
                max_items,
                per_class,
            )
        return self._subsets[key]

    def __getitem__(self, index: int) -> Sample | None:
        """The sample of item `index` (an int, or the sampler's `SampleIndex`, whose
        `draw_seed` seeds a training item's random choices); None for a skipped bad sample."""
        item = self.items[index]
        record = self.records[item.record]
        if record.problem:  # malformed annotations, kept by load_manifest(on_bad_sample="skip")
            if self.on_bad_sample == "skip":
                return None
            raise ManifestError(record.problem)
        try:
            return self._build(item, record, self._rng(index, item, record))
        except ClipError:
            if self.on_bad_sample == "skip":
                return None
            raise

    def _rng(self, index: int, item: Item, record: ClipRecord) -> random.Random:
        """Training: seeded by the sampler's per-sample seed (`SampleIndex.draw_seed`), or a
        fresh draw from torch's RNG for a plain index. Evaluation: fixed by the item itself."""
        if item.imu == "train":
            seed = getattr(index, "draw_seed", None)
            return random.Random(_draw_seed() if seed is None else seed)
        # The part joins the seed only where there is one: single-item tasks keep their draws.
        part = () if item.part is None else (item.part,)
        return random.Random(
            stable_seed(self.eval_seed, record.id, item.task, item.imu, item.scale, *part)
        )

    def sample(self, item: Item, seed: int = 0, clip: ClipInputs | None = None) -> Sample:
        """The Sample of an explicit item, built as __getitem__ builds one; an item with a task
        and an IMU setting ("on"/"off") draws nothing but a vqa question (`sce data preview`).
        `clip`: the item's clip when already loaded (`load`)."""
        record = self.records[item.record]
        return self._build(item, record, random.Random(seed), clip)

    def window_spec(self, scale: float | None) -> ClipSpec:
        """The window of an item: the dataset's, or a multi-scale keyframe window of `scale` s."""
        return self.spec if scale is None else dataclasses.replace(self.spec, scale=scale)

    def load(self, item: Item) -> ClipInputs:
        """The clip of an item: its window plan, frames and telemetry (with the frame cache)."""
        return load_clip(self.records[item.record], self.window_spec(item.scale), self.cache)

    def _build(
        self, item: Item, record: ClipRecord, rng: random.Random, clip: ClipInputs | None = None
    ) -> Sample:
        clip = self.load(item) if clip is None else clip
        drop = item.imu == "off" or (item.imu == "train" and rng.random() < self.imu_dropout)
        task = make_task(
            item.task,
            record.label,
            record.annotations,
            rng,
            record.label_scope,
            part=item.part,
            prompt=self.spec.prompt,
            wording=self.event_wording,
        )
        inputs_telemetry = self.spec.telemetry  # else its absence is no problem to count
        return build_sample(
            record,
            clip,
            task,
            self.spec,
            telemetry=not drop,
            meta={
                "imu_setting": item.imu,
                "label_scope": record.label_scope,  # binary records: binary metrics only
                "event_wording": self.event_wording,  # how its option letters are read
                "imu_reason": clip.imu_reason if inputs_telemetry else "",
                "gps_reason": clip.gps_reason if inputs_telemetry else "",
                "scale": item.scale,
                "event_time": clip.event_time,
                "event_time_source": clip.event_time_source,
                "window_shifted": clip.shifted,  # s the window moved to stay inside the clip
                "window_padded": clip.padded,  # s of repeated edge frames
                "window_shrunk": clip.shrunk,  # s cut off the window to fit the record's span
            },
        )


def _parts(task: str, record: ClipRecord) -> list[int | None]:
    """The record's items of `task`: one, or one per annotated pair (`sce.tasks.item_parts`)."""
    return item_parts(task, record.label, record.annotations, record.label_scope)


def _draw_seed() -> int:
    """Seed of a training item fetched by a plain index (not through `ClassResampler`), from
    torch's RNG: reproducible under torch.manual_seed, but it depends on the process drawing
    it (a DataLoader worker's generator), so only sampler-keyed draws survive a resume exactly."""
    return int(torch.randint(0, 2**31 - 1, ()).item())
