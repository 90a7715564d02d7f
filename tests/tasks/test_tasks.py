"""The task registry (issue 24): every task round-trips its gold answer and rewards it the most,
task names are written only in sce/tasks/ (and configs), and a task registered in-process is
previewed, trained and evaluated with no other module edited."""

from __future__ import annotations

import ast
import json
import math
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import pytest
from helpers import cpu_trainer
from helpers.import_graph import SCE

from sce import tasks
from sce.tasks.base import (
    FORMAT_SHARE,
    REWARD_MAX,
    REWARD_MIN,
    AnnotationError,
    ScoringOptions,
    Task,
    TaskScores,
    TaskSource,
    graded_reward,
)
from sce.tasks.mix import DEFAULT_TASK_MIX

BUILT_IN = (
    "mcq",
    "caption",
    "vqa",
    "reasoning",
    "probability",
    "instruction",
    "structured_caption",
    "open_qa",
    "closed_qa",
    "reasoning_vqa",
)

# A record that every built-in task can serve, per label scope.
ANNOTATIONS = {
    "caption": "The ego car brakes hard behind a white van and stops short of it.",
    "vqa": [
        {"question": "What is the weather?", "options": ["rain", "clear", "snow"], "answer": "B"},
        {"question": "Is there a truck?", "answer": "yes"},
    ],
    "reasoning": {"think": "The van stops; the ego car brakes and keeps a gap."},
    "probability": 0.8725,
    "instruction": "Keep a larger gap to the vehicle ahead.",
    "structured_caption": "Clear day on a two-lane urban road. The ego car nearly hits a van.",
    "qa": [
        {"type": "open", "question": "Why does the ego car brake?", "answer": "The van stops."},
        {"type": "closed", "question": "Is the road wet?", "answer": "no"},
    ],
    "reasoning_vqa": {
        "question": "Why does the van stop?",
        "options": ["to park", "for a pedestrian", "it breaks down", "a red light"],
        "answer": "B",
        "reasons": ["A pedestrian steps out.", "The van yields to them."],
    },
}
SOURCES = [
    TaskSource("near_collision", ANNOTATIONS),
    TaskSource("normal", ANNOTATIONS),
    TaskSource("event", ANNOTATIONS, "binary"),
]
# Answers no task can read: empty, or cut inside an unclosed think block.
GARBAGE = ("", "<think>the clip shows", None)


def _item(task: Task, source: TaskSource, seed: int = 0) -> dict[str, Any]:
    """An evaluated item of `task` whose prediction is still to be filled in."""
    gold = task.item(source, random.Random(seed))
    return {
        "task": task.name,
        "label": source.label,
        "label_scope": source.scope,
        "reference": gold.answer,
        "source": "synthetic",
        "imu_on": True,
    }


# ------------------------------------------------------------------------- the registry
def test_task_name_literal_and_defaults_come_from_the_registry():
    from typing import get_args

    # registry order: the sampler's task order, which the pinned losses depend on
    assert tasks.task_names() == BUILT_IN
    assert get_args(tasks.TaskName) == BUILT_IN
    assert dict(DEFAULT_TASK_MIX) == {tasks.MCQ.name: 1.0}
    assert tasks.DEFAULT_EVAL_TASKS == (tasks.MCQ.name,)
    assert [t.name for t in tasks.TASKS.values() if t.max_new_tokens] == [
        tasks.REASONING.name,
        tasks.REASONING_VQA.name,
    ]
    assert [t.name for t in tasks.TASKS.values() if t.thinks_first] == [
        tasks.REASONING.name,
        tasks.REASONING_VQA.name,
    ]
    assert [t.name for t in tasks.TASKS.values() if t.loss_term] == [tasks.PROBABILITY.name]
    assert [t.name for t in tasks.TASKS.values() if t.uses_bertscore] == [
        "caption",
        "instruction",
        "structured_caption",
        "open_qa",
    ]
    with pytest.raises(ValueError, match="unknown task 'story'"):
        tasks.get_task("story")
    with pytest.raises(ValueError, match="already registered"):
        tasks.register_task(tasks.MCQ)


@pytest.mark.parametrize("name", BUILT_IN)
@pytest.mark.parametrize("source", SOURCES, ids=lambda s: f"{s.scope}-{s.label}")
def test_parse_recovers_the_gold_value(name, source):
    task = tasks.get_task(name)
    gold = task.item(source, random.Random(0))
    expected = {
        "mcq": source.label,
        "reasoning": source.label,
        "caption": ANNOTATIONS["caption"],
        "probability": 0.873,  # the stated value: 3 decimals
        "instruction": (
            frozenset() if source.label == "normal" else frozenset({source.label}),
            ANNOTATIONS["instruction"],
        ),
        "structured_caption": ANNOTATIONS["structured_caption"],
        "open_qa": "The van stops.",
        "closed_qa": "no",
        "reasoning_vqa": "B",
    }
    value = task.parse(gold.answer, source.scope)
    if name == "vqa":  # the drawn pair's answer: a letter, or the normalized words
        assert value in ("B", "yes")
    else:
        assert value == expected[name]


@pytest.mark.parametrize("name", BUILT_IN)
@pytest.mark.parametrize("source", SOURCES, ids=lambda s: f"{s.scope}-{s.label}")
def test_gold_answer_scores_the_maximum_and_garbage_the_minimum(name, source):
    task = tasks.get_task(name)
    item = _item(task, source)
    assert task.reward(item["reference"], item) == pytest.approx(REWARD_MAX)
    for text in GARBAGE:
        assert task.reward(text, item) == REWARD_MIN


def test_a_readable_wrong_answer_earns_the_format_share_only():
    mcq, source = tasks.MCQ, SOURCES[0]
    assert mcq.reward("C. normal driving", _item(mcq, source)) == pytest.approx(FORMAT_SHARE)
    prob = tasks.PROBABILITY
    item = _item(prob, source)  # 0.873
    assert prob.reward("Collision Probability: 0.000", item) == pytest.approx(
        graded_reward(True, 1 - 0.873**2)
    )


def test_vqa_asks_and_answers_the_same_drawn_pair_with_one_draw():
    """question and answer see the rng in the same state; the rng moves as after one choice."""
    rng, reference = random.Random(3), random.Random(3)
    item = tasks.VQA.item(SOURCES[0], rng)
    pair = reference.choice(ANNOTATIONS["vqa"])
    assert item.question.startswith(pair["question"]) and item.answer == pair["answer"]
    assert rng.getstate() == reference.getstate()


def test_each_task_checks_its_own_annotation():
    with pytest.raises(AnnotationError, match="annotations.vqa"):
        tasks.VQA.check({"vqa": "not a list"})
    with pytest.raises(AnnotationError, match="within \\[0, 1\\]"):
        tasks.PROBABILITY.check({"probability": 87})
    tasks.CAPTION.check({"vqa": "not mine"})  # other fields are not its business


# ------------------------------------------------------------------------- the name scan
# String constants equal to a task name outside sce/tasks/ that do not name a task.
NOT_TASK_NAMES = {
    # an OpenAI-compatible reply's field (message.reasoning), not the reasoning task
    ("sce/labeling/teacher.py", "reasoning"),
    # sce infer's result field (`probability`), beside the task whose question it asks
    ("sce/deploy/infer.py", "probability"),
    # the metadata-caption function's name in the package's __all__
    ("sce/labeling/__init__.py", "structured_caption"),
}


def _docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None) if isinstance(node, kinds) else None
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            found.add(id(body[0].value))
    return found


def task_name_literals(root: Path = SCE) -> set[tuple[str, str]]:
    """(path, name) of every string constant (docstrings aside) equal to a task name in a module
    outside sce/tasks/."""
    names = set(tasks.task_names())
    found = set()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent)
        if relative.parts[1] == "tasks":
            continue
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in docs:
                found.add((relative.as_posix(), node.value))
    return found


def test_task_names_are_written_only_in_sce_tasks():
    assert task_name_literals() - NOT_TASK_NAMES == set()
    assert NOT_TASK_NAMES <= task_name_literals()  # no stale exception


def test_the_scan_finds_a_task_name_but_not_a_docstring(tmp_path):
    package = tmp_path / "sce" / "x"
    package.mkdir(parents=True)
    (package / "m.py").write_text('"""mcq in a docstring."""\nWEIGHTS = {"mcq": 1.0}\n')
    assert task_name_literals(tmp_path / "sce") == {("sce/x/m.py", "mcq")}


# ------------------------------------------------------------------------- a new task
SPEED_FIELD = "speed"
SPEED_QUESTION = "What is the ego speed?"
_KMH = re.compile(r"(\d+(?:\.\d+)?)\s*km/h")


class SpeedTask(Task):
    """The ego speed in km/h, from `annotations.speed` (0 for a stopped car is an answer)."""

    name = "speed"
    fields = (SPEED_FIELD,)

    def check(self, annotations: Mapping[str, Any]) -> None:
        value = annotations.get(SPEED_FIELD)
        if value is not None and not (isinstance(value, (int, float)) and value >= 0):
            raise AnnotationError("annotations.speed", f"expected km/h >= 0, got {value!r}")

    def serves(self, source: TaskSource) -> bool:
        return source.annotations.get(SPEED_FIELD) is not None

    def question(self, source: TaskSource, rng: random.Random) -> str:
        return SPEED_QUESTION

    def answer(self, source: TaskSource, rng: random.Random) -> str:
        return f"Ego speed: {source.annotations[SPEED_FIELD]:.0f} km/h"

    def parse(self, text: str | None, scope: str = "three_class") -> float | None:
        found = _KMH.search(text or "")
        return float(found.group(1)) if found else None

    def metrics(self, items: list[dict], options: ScoringOptions) -> TaskScores:
        said = [self.parse(i["prediction"]) for i in items]
        gold = [self.parse(i["reference"]) for i in items]
        errors = [abs(s - g) for s, g in zip(said, gold, strict=True) if s is not None]
        mae = sum(errors) / len(errors) if errors else math.nan
        invalid = sum(s is None for s in said) / len(items)
        return TaskScores(
            {"speed/n": float(len(items)), "speed/mae": mae, "speed/invalid": invalid}
        )

    def reward(self, text: str | None, item: Mapping[str, Any]) -> float:
        said, gold = self.parse(text), self.parse(item["reference"])
        if said is None or gold is None:
            return REWARD_MIN
        return graded_reward(True, 1.0 - min(1.0, abs(said - gold) / max(gold, 1.0)))


@pytest.fixture
def speed_task():
    """The speed task, registered for one test and removed after it."""
    task = tasks.register_task(SpeedTask())
    try:
        yield task
    finally:
        tasks.unregister_task(task.name)
    assert task.name not in tasks.TASKS


@pytest.fixture
def speed_manifest(synthetic_manifest, tmp_path) -> Path:
    """The synthetic manifest with `annotations.speed` (its initial speed, km/h) on every record."""
    lines = []
    for line in synthetic_manifest.read_text().splitlines():
        record = json.loads(line)
        record["annotations"][SPEED_FIELD] = round(record["metadata"]["initial_speed_kmh"])
        for name in ("video", "imu", "gps"):  # absolute paths: the copy lives elsewhere
            if record.get(name):
                record[name] = str(synthetic_manifest.parent / record[name])
        lines.append(json.dumps(record))
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_new_task_round_trips_and_rewards(speed_task):
    source = TaskSource("normal", {SPEED_FIELD: 42})
    item = {"reference": speed_task.item(source, random.Random(0)).answer, "label": "normal"}
    assert speed_task.parse(item["reference"]) == 42.0
    assert speed_task.reward(item["reference"], item) == REWARD_MAX
    assert speed_task.reward("fast", item) == REWARD_MIN
    assert tasks.available_tasks("normal", {SPEED_FIELD: 0}) == ["mcq", "probability", "speed"]
    from sce.data.schema import ManifestError, check_annotations

    with pytest.raises(ManifestError, match="record: field 'annotations.speed'"):
        check_annotations("record", {SPEED_FIELD: "fast"})


def test_a_task_registered_in_process_previews_trains_and_evaluates(
    speed_task, speed_manifest, tiny_kit, tmp_path
):
    """Issue 24's acceptance: a new task, one register_task call, no other module edited."""
    from sce.data.clip import WindowSpec
    from sce.data.datamodule import SceDataModule
    from sce.evaluate.callback import GenerationEvaluation
    from sce.models.module import SceModule
    from sce.train.preview import format_preview, preview_sample

    L.seed_everything(0)
    data = SceDataModule(
        str(speed_manifest),
        str(tiny_kit),
        window=WindowSpec(width=112, height=56),
        batch_size=3,
        eval_batch_size=6,
        max_length=2048,
        task_weights={"speed": 1.0},
        eval_tasks=("speed",),
    )
    # preview (`sce data preview`): the new question and its answer, in the chat the model sees
    record = next(json.loads(line) for line in speed_manifest.read_text().splitlines())
    report = preview_sample(data, record["id"], task="speed")
    window = report["windows"][0]
    answer = f"Ego speed: {record['annotations'][SPEED_FIELD]:.0f} km/h"
    assert report["task"] == "speed" and window["reference"] == answer
    assert SPEED_QUESTION in window["chat"] and SPEED_QUESTION in format_preview(report)
    # train one step, then evaluate the validation split
    module = SceModule(str(tiny_kit), finetuning="lora", rank=4, alpha=8, lr=1e-3, max_new_tokens=8)
    evaluation = GenerationEvaluation(every_n_epochs=1, max_samples=6)
    trainer = cpu_trainer(
        tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=1, callbacks=[evaluation]
    )
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 1
    assert set(data.dataset("train").tasks) == {"speed"}
    summary = evaluation.last["val"]
    assert {s["task"] for s in summary.samples} == {"speed"}
    assert summary.scalars["speed/n"] == summary.scalars["items"] > 0
    assert 0.0 <= summary.scalars["speed/invalid"] <= 1.0
    assert {s["reference"] for s in summary.samples} <= {
        f"Ego speed: {r:.0f} km/h" for r in range(0, 200)
    }
