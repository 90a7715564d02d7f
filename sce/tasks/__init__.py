"""Tasks: what the model is asked about a clip, one module per task, in one registry.

A task is one object (`sce.tasks.base.Task`): its name, the annotation fields it reads and
their check, its question and gold answer, how a generated answer is read, its metrics over
evaluated items, its generation budget, whether it adds a loss term, and its reward for the RL
stage. Everything else (dataset, evaluation, `sce infer`, configs) looks tasks up in `TASKS`.
A new task is one new file here that calls `register_task` (it is imported with the package),
or one `register_task` call in-process (tests, notebooks).

- base         the Task base class, TaskSource / TaskItem / TaskScores, the registry, reward scale
- events       the event question (3-way or yes/no), its answers, reading one in its scope
- scoring      event, log-likelihood, alarm and per-IMU-setting metrics shared by tasks
- mcq          the event question with lettered options
- caption      describe the event (annotations.caption)
- vqa          one question of annotations.vqa, drawn per item
- reasoning    the event question after a think trace (annotations.reasoning)
- probability  the collision probability (paper 002), with its MSE term
- instruction  event, then a safe-driving instruction (paper 003)
- structured_caption  the metadata-derived caption (annotations.structured_caption, paper 001)
- qa           the teacher's open and closed QA pairs (annotations.qa), shared by the next two
- open_qa      an open question of annotations.qa, every pair an item; ROUGE-L, BERTScore
- closed_qa    a closed static-scene question of annotations.qa, every pair an item; accuracy
- reasoning_vqa  a multiple-choice question after a think trace (annotations.reasoning_vqa)
- mix          a record's tasks, training and evaluation items, the default mix, name checks
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Literal

# isort: off
# Registration order: the sampler's task order (sce.data.sampling) and a record's task order.
from sce.tasks.mcq import MCQ
from sce.tasks.caption import CAPTION
from sce.tasks.vqa import VQA
from sce.tasks.reasoning import REASONING
from sce.tasks.probability import PROBABILITY
from sce.tasks.instruction import INSTRUCTION
from sce.tasks.structured_caption import STRUCTURED_CAPTION
from sce.tasks.open_qa import OPEN_QA
from sce.tasks.closed_qa import CLOSED_QA
from sce.tasks.reasoning_vqa import REASONING_VQA

# isort: on
from sce.tasks import (
    caption,
    instruction,
    probability,
    qa,
    reasoning,
    reasoning_vqa,
    structured_caption,
    vqa,
)
from sce.tasks.base import (
    DEFAULT_PROMPT,
    PROMPTS,
    TASKS,
    PromptName,
    Task,
    TaskItem,
    TaskScores,
    TaskSource,
    get_task,
    register_task,
    task_names,
    unregister_task,
)
from sce.tasks.mix import (
    DEFAULT_EVAL_TASKS,
    DEFAULT_TASK_MIX,
    available_tasks,
    check_task_names,
    check_task_weights,
    evaluation_tasks,
    item_parts,
    make_task,
    training_tasks,
)

# The annotation fields the tasks read (what labeling and the sources write).
CAPTION_FIELD = caption.FIELD
VQA_FIELD = vqa.FIELD
REASONING_FIELD = reasoning.FIELD
PROBABILITY_FIELD = probability.FIELD
INSTRUCTION_FIELD = instruction.FIELD
STRUCTURED_CAPTION_FIELD = structured_caption.FIELD
QA_FIELD = qa.FIELD  # the teacher's open and closed QA pairs (open_qa, closed_qa)
REASONING_VQA_FIELD = reasoning_vqa.FIELD


_NOT_TASKS = ("base", "events", "scoring", "mix", "qa")  # scoring loads torchmetrics: only on use


def _import_task_files() -> None:
    """Import every other module of this folder: a task file registers itself on import."""
    for module in pkgutil.iter_modules(__path__):
        if module.name not in _NOT_TASKS:
            importlib.import_module(f"{__name__}.{module.name}")


_import_task_files()
# The task names configs accept (data.task_weights keys, data.eval_tasks), as the `sce fit`
# parser reads them from the signatures: the tasks of sce/tasks/. A task registered later
# in-process passes the runtime checks (`check_task_names`), which read the registry.
TaskName = Literal[task_names()]  # type: ignore[valid-type]

__all__ = [
    "CAPTION",
    "CAPTION_FIELD",
    "CLOSED_QA",
    "DEFAULT_EVAL_TASKS",
    "DEFAULT_PROMPT",
    "DEFAULT_TASK_MIX",
    "INSTRUCTION",
    "INSTRUCTION_FIELD",
    "MCQ",
    "OPEN_QA",
    "PROBABILITY",
    "PROBABILITY_FIELD",
    "PROMPTS",
    "PromptName",
    "QA_FIELD",
    "REASONING",
    "REASONING_FIELD",
    "REASONING_VQA",
    "REASONING_VQA_FIELD",
    "STRUCTURED_CAPTION",
    "STRUCTURED_CAPTION_FIELD",
    "TASKS",
    "VQA",
    "VQA_FIELD",
    "Task",
    "TaskItem",
    "TaskName",
    "TaskScores",
    "TaskSource",
    "available_tasks",
    "check_task_names",
    "check_task_weights",
    "evaluation_tasks",
    "get_task",
    "item_parts",
    "make_task",
    "register_task",
    "task_names",
    "training_tasks",
    "unregister_task",
]
