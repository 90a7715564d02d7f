"""What a task is (the `Task` base class) and the registry of tasks (`TASKS`).

A task turns a record (its label, label scope and annotations: `TaskSource`) into a question and
its gold answer, reads a generated answer back (`parse`), scores evaluated items (`metrics`) and
rewards one answer (`reward`, for the RL stage). Every task is one object registered here by
name; the dataset, the evaluation, `sce infer` and the RL stage look tasks up by name and never
branch on one.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args

# The reward scale of every task: an unparseable answer scores REWARD_MIN, the gold answer
# REWARD_MAX. A readable answer earns FORMAT_SHARE for its form and the rest for being right.
REWARD_MIN = 0.0
REWARD_MAX = 1.0
FORMAT_SHARE = 0.2
# The loss terms a task can add next to cross-entropy (`Task.loss_term`): "mse", the squared
# error of a probability read from the answer's digits (SceModule's mse_weight).
MSE_TERM = "mse"
# Whose wording a prompt uses (data.window.prompt): "sce", sce's own questions (and, in
# sce.data.prompts, its system prompt); "paper002", paper 002's prompt as written (the
# probability task's "Task:" and "Note:" lines). A task without a wording of a prompt asks its
# "sce" question.
PromptName = Literal["sce", "paper002"]
PROMPTS: tuple[str, ...] = get_args(PromptName)
DEFAULT_PROMPT = PROMPTS[0]


@dataclass(frozen=True)
class TaskSource:
    """What a task reads of a record: its label, label scope and annotations, the prompt the
    recipe asks it in (`data.window.prompt`, e.g. paper 002's) and the wording of its event
    question (`data.event_wording`, sce.tasks.events)."""

    label: str
    annotations: Mapping[str, Any] = field(default_factory=dict)
    scope: str = "three_class"
    prompt: str = DEFAULT_PROMPT
    wording: str = "sce"


@dataclass
class TaskItem:
    """One question of one record and its gold answer."""

    task: str
    question: str
    answer: str
    probability_target: float | None = None  # a task's loss-term target (the probability MSE)


@dataclass(frozen=True)
class ScoringOptions:
    """Settings of an evaluation that some tasks' metrics read: the local BERTScore encoder
    and its layer (None: no BERTScore; layer None: bert-score's recommended layer)."""

    bertscore_model: str | None = None
    bertscore_layer: int | None = None


@dataclass
class TaskScores:
    """A task's metrics over its evaluated items: flat scalars and figures, and the values
    `sce.evaluate` draws and logs (the event confusion matrix, the binary alarm's scores)."""

    scalars: dict[str, float]
    figures: dict[str, Any] = field(default_factory=dict)
    confusion: Any = None  # [3, 4] tensor: true class x (predicted class + invalid)
    alarm: tuple[list[int], list[float]] | None = None  # (targets, scores) of the binary alarm


class AnnotationError(ValueError):
    """A malformed annotation field: `field` names it ("annotations.vqa"), `detail` says what is
    wrong. sce.data.schema re-raises it as a ManifestError naming the record."""

    def __init__(self, field_name: str, detail: str) -> None:
        super().__init__(f"field '{field_name}': {detail}")
        self.field = field_name
        self.detail = detail


class Task:
    """One task. A subclass sets `name` and overrides `question`, `answer`, `parse`, `metrics`
    and `reward` (and `check` for the annotation fields it reads); `register_task` adds it.

    Class attributes:
        name: the task's name (data.task_weights keys, data.eval_tasks, the items' "task").
        fields: the annotation fields it reads; `serves` needs them non-empty.
        every_record: every record can be asked it (no annotation needed); such tasks come
            first among a record's tasks.
        max_new_tokens: the least generation budget its answers need (None: the answer budget).
        loss_term: the extra loss term its items add ("mse": the probability target), or None.
        uses_bertscore: its metrics include BERTScore (the evaluation warns when it is skipped).
        thinks_first: its answer follows a think trace (reasoning, reasoning_vqa): the
            evaluation's reasoning budget (`reasoning_max_new_tokens`) applies to it.
    """

    name: str = ""
    fields: tuple[str, ...] = ()
    every_record: bool = False
    max_new_tokens: int | None = None
    loss_term: str | None = None
    uses_bertscore: bool = False
    thinks_first: bool = False

    # -------------------------------------------------------------- records -> items
    def check(self, annotations: Mapping[str, Any]) -> None:
        """Raise AnnotationError when an annotation field this task reads is malformed (a null
        field counts as absent)."""

    def serves(self, source: TaskSource) -> bool:
        """Whether the record has what a training item (and a loss target) of this task needs."""
        return self.every_record or all(source.annotations.get(f) for f in self.fields)

    def asked_at_evaluation(self, source: TaskSource) -> bool:
        """Whether the record is asked this task at evaluation (default: when it serves it)."""
        return self.serves(source)

    def question(self, source: TaskSource, rng: random.Random) -> str:
        """The question asked about the record (random choices, if any, drawn from `rng`)."""
        raise NotImplementedError

    def answer(self, source: TaskSource, rng: random.Random) -> str:
        """The gold answer to `question(source, rng)` for `rng` in the same state."""
        raise NotImplementedError

    def target(self, source: TaskSource) -> float | None:
        """The target of the task's loss term (`loss_term`), None without one."""
        return None

    def parts(self, source: TaskSource) -> int | None:
        """How many items a record gives of this task, one per annotated pair, in training and
        at evaluation (`PairTask`); None: one item, whose random choices (vqa: which pair) are
        drawn per sample."""
        return None

    def item(self, source: TaskSource, rng: random.Random, part: int | None = None) -> TaskItem:
        """Question and gold answer of one item. Both see `rng` in the same state, so a task that
        draws (vqa: which QA pair) asks and answers the same thing, and `rng` advances as after
        one draw. `part` (a `PairTask`'s pair index) is ignored by single-item tasks."""
        state = rng.getstate()
        question = self.question(source, rng)
        rng.setstate(state)
        return TaskItem(self.name, question, self.answer(source, rng), self.target(source))

    # -------------------------------------------------------------- answers -> numbers
    def parse(self, text: str | None, scope: str = "three_class") -> Any:
        """The value a generated answer states (read in the record's label `scope` where that
        matters); None when it cannot be read."""
        raise NotImplementedError

    def metrics(self, items: list[dict], options: ScoringOptions) -> TaskScores:
        """Scores of evaluated items (dicts with task, label, label_scope, source, imu_on,
        reference, prediction, option_probs; see `SceModule.generate_batch`)."""
        raise NotImplementedError

    def reward(self, text: str | None, item: Mapping[str, Any]) -> float:
        """Reward of one generated answer to `item` (its reference, label and label_scope), in
        [REWARD_MIN, REWARD_MAX]: the gold answer scores REWARD_MAX, an unparseable one
        REWARD_MIN."""
        raise NotImplementedError


class PairTask(Task):
    """A task over a record's list of annotated pairs (question and answer), every pair its own
    item in training and at evaluation: `parts` is the number of pairs and item `part` asks pair
    `part`, so an evaluation scores every pair of a clip, never one random draw. Subclasses set
    `pairs`, `pair_question` and `pair_answer`; `question`/`answer` without a part draw one pair
    (a plain `Task.item` call, as the RL stage and `sce data preview` make)."""

    def pairs(self, source: TaskSource) -> list[Mapping[str, Any]]:
        """The record's pairs this task asks, in annotation order (empty: none)."""
        raise NotImplementedError

    def pair_question(self, pair: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def pair_answer(self, pair: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def serves(self, source: TaskSource) -> bool:
        return bool(self.pairs(source))

    def parts(self, source: TaskSource) -> int | None:
        return len(self.pairs(source))

    def question(self, source: TaskSource, rng: random.Random) -> str:
        return self.pair_question(rng.choice(self.pairs(source)))

    def answer(self, source: TaskSource, rng: random.Random) -> str:
        return self.pair_answer(rng.choice(self.pairs(source)))

    def item(self, source: TaskSource, rng: random.Random, part: int | None = None) -> TaskItem:
        if part is None:
            return super().item(source, rng)
        pairs = self.pairs(source)
        if not 0 <= part < len(pairs):
            raise IndexError(f"task {self.name!r}: pair {part} of a record with {len(pairs)}")
        pair = pairs[part]
        return TaskItem(self.name, self.pair_question(pair), self.pair_answer(pair))


def graded_reward(readable: bool, correctness: float) -> float:
    """FORMAT_SHARE for a readable answer plus the rest scaled by `correctness` in [0, 1];
    REWARD_MIN for an unreadable one whatever its correctness."""
    if not readable:
        return REWARD_MIN
    share = FORMAT_SHARE + (1.0 - FORMAT_SHARE) * min(max(correctness, 0.0), 1.0)
    return REWARD_MIN + (REWARD_MAX - REWARD_MIN) * share


def scope_of(item: Mapping[str, Any]) -> str:
    """The label scope of an evaluated item (older items without one: binary for "event")."""
    return item.get("label_scope") or ("binary" if item["label"] == "event" else "three_class")


# ------------------------------------------------------------------------------- annotations
def shown(value: Any) -> str:
    """A short description of a JSON value for an error: its kind and a clipped repr."""
    kind = {str: "a string", dict: "an object", list: "a list"}.get(
        type(value), type(value).__name__
    )
    text = repr(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


def check_text(field_name: str, value: Any, detail: str = "") -> None:
    """A string (an annotation the answer text quotes): anything else would be str()-ed."""
    if not isinstance(value, str):
        raise AnnotationError(field_name, f"{detail}expected a string, got {shown(value)}")


# ------------------------------------------------------------------------------- registry
TASKS: dict[str, Task] = {}  # name -> task, in registration order (the sampler's task order)
T = TypeVar("T", bound=Task)


def register_task(task: T) -> T:
    """Add `task` to the registry under its name (a name is registered once); returns it."""
    if not task.name:
        raise ValueError(f"{type(task).__name__}: a task needs a name")
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    TASKS[task.name] = task
    return task


def unregister_task(name: str) -> Task:
    """Remove a task registered in-process (tests, notebooks); returns it."""
    return TASKS.pop(get_task(name).name)


def get_task(name: str) -> Task:
    """The registered task `name`; ValueError naming the registered ones otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {task_names()}")
    return TASKS[name]


def task_names() -> tuple[str, ...]:
    """Every registered task's name, in registration order."""
    return tuple(TASKS)
