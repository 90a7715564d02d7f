"""What a record is asked: the tasks it serves, its training and evaluation items, the default
task mix, and the checks of task names and weights (data.task_weights, data.eval_tasks).

Every function reads the registry when called, so a task registered in-process counts as
much as one shipped in sce/tasks/.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from sce.tasks.base import DEFAULT_PROMPT, TASKS, TaskItem, TaskSource, get_task, task_names
from sce.tasks.mcq import MCQ

# The training mix without data.task_weights, and the evaluation tasks without data.eval_tasks:
# the event question alone. Read-only: copy it (`dict(DEFAULT_TASK_MIX)`) to change it.
DEFAULT_TASK_MIX: Mapping[str, float] = MappingProxyType({MCQ.name: 1.0})
DEFAULT_EVAL_TASKS: tuple[str, ...] = (MCQ.name,)


def available_tasks(
    label: str, annotations: Mapping[str, Any], scope: str = "three_class"
) -> list[str]:
    """Tasks a record can serve: those every record serves (mcq, probability), then those its
    annotations serve, each group in registry order.

    `scope` (the record's label_scope) does not change which tasks exist, only their questions
    (see `make_task`)."""
    source = TaskSource(label, annotations, scope)
    first = [t.name for t in TASKS.values() if t.every_record and t.serves(source)]
    rest = [t.name for t in TASKS.values() if not t.every_record and t.serves(source)]
    return first + rest


def evaluation_tasks(
    label: str, annotations: Mapping[str, Any], scope: str = "three_class"
) -> list[str]:
    """Tasks a record can be asked at evaluation: those it can serve (`available_tasks`), then
    those asked of it without serving them (reasoning: paper 001's reasoning-mode accuracy,
    Table 9, asks every test clip the event question with the reasoning instruction and scores
    the answer after `</think>`, which needs only the label)."""
    tasks = available_tasks(label, annotations, scope)
    source = TaskSource(label, annotations, scope)
    extra = [
        t.name for t in TASKS.values() if t.name not in tasks and t.asked_at_evaluation(source)
    ]
    return tasks + extra


def make_task(
    task: str,
    label: str,
    annotations: Mapping[str, Any],
    rng: random.Random,
    scope: str = "three_class",
    part: int | None = None,
    prompt: str = DEFAULT_PROMPT,
    wording: str = "sce",
) -> TaskItem:
    """Question and target answer for one task of one record.

    `scope` is the record's label_scope: a binary-scope record (event / no event) is asked the
    yes/no event question in mcq and reasoning, the only class question its label answers.
    `part`: which pair of a task with one item per annotated pair (`item_parts`); `prompt`
    is the recipe's prompt (data.window.prompt, e.g. paper 002's), `wording` its wording of the
    3-way event question (`data.event_wording`).
    """
    source = TaskSource(label, annotations, scope, prompt=prompt, wording=wording)
    return get_task(task).item(source, rng, part)


def item_parts(
    task: str, label: str, annotations: Mapping[str, Any], scope: str = "three_class"
) -> list[int | None]:
    """The items a record gives of `task`: [None] (one item) for most tasks, one index per
    annotated pair for a task that asks every pair (`Task.parts`: open_qa, closed_qa,
    reasoning_vqa), in training and at evaluation."""
    count = get_task(task).parts(TaskSource(label, annotations, scope))
    return [None] if count is None else list(range(count))


def check_task_names(option: str, names: Iterable[str]) -> None:
    """Raise ValueError naming `option` for names that are not registered tasks."""
    unknown = [name for name in names if name not in TASKS]
    if unknown:
        raise ValueError(f"{option}: unknown value(s) {unknown}; choose from {list(task_names())}")


def check_task_weights(weights: Mapping[str, float]) -> None:
    """Raise ValueError for an unknown task name or a negative / non-finite weight."""
    unknown = set(weights) - set(TASKS)
    if unknown:
        raise ValueError(
            f"data.task_weights: unknown task(s) {sorted(unknown)}; expected {task_names()}"
        )
    for task, weight in weights.items():
        if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(
                f"data.task_weights[{task!r}] must be a finite number >= 0, got {weight!r}"
            )


def training_tasks(
    weights: Mapping[str, float],
    label: str,
    annotations: Mapping[str, Any],
    scope: str = "three_class",
) -> list[str]:
    """The tasks a record gives training items for: those with weight > 0 that it can serve.

    Every such task is one item of the record (the sampler repeats it by the task weight and
    the (task, class) factor), so each record trains its mcq item whatever else it carries
    (paper 001 Table 1 counts MCQ, captions, VQA and reasoning as separate samples). A record
    that serves none of the weighted tasks falls back to mcq (weight
    1 unless given).
    """
    check_task_weights(weights)
    usable = [t for t in available_tasks(label, annotations, scope) if weights.get(t, 0) > 0]
    return usable or [MCQ.name]


def trained_tasks(weights: Mapping[str, float] | None) -> list[str]:
    """The tasks of a training mix with weight > 0 (None or empty: the default mix)."""
    mix = weights or DEFAULT_TASK_MIX
    return [task for task, weight in mix.items() if weight and weight > 0]


def adds_loss_term(term: str, tasks: Iterable[str]) -> bool:
    """Whether any of `tasks` adds the loss term `term` (e.g. "mse": the probability task)."""
    return any(task in TASKS and TASKS[task].loss_term == term for task in tasks)
