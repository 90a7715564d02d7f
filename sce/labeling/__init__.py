"""Teacher labeling: metadata captions, teacher prompts, backends, validation, the `sce label` run.

- templates  the teacher's task templates and metadata-grounded structured captions
- prompts    a clip's teacher prompt: frames, telemetry and the template's question
- teacher    teacher backends (OpenAI-compatible server, local transformers), errors, retries
- validate   the teacher's answers checked against each task's schema
- pipeline   the resumable `sce label` run over a manifest

from sce.labeling import OpenAIChatBackend, run_labeling
backend = OpenAIChatBackend("http://127.0.0.1:8000/v1", "Qwen2.5-VL-72B-Instruct")
summary = run_labeling("manifest.jsonl", "caption,vqa,reasoning", backend, "labeled.jsonl")
"""

from __future__ import annotations

from sce.labeling.pipeline import (
    LabelingSummary,
    ResultStore,
    add_label_arguments,
    label_command,
    run_labeling,
)
from sce.labeling.prompts import (
    PromptOptions,
    TeacherClipInputs,
    TeacherPrompt,
    build_teacher_prompt,
    load_clip_inputs,
)
from sce.labeling.teacher import (
    OpenAIChatBackend,
    TeacherError,
    TeacherFatalError,
    TransformersBackend,
)
from sce.labeling.templates import TASKS, TEMPLATES, get_template, structured_caption
from sce.labeling.validate import AnswerError, parse_answer

__all__ = [
    "TASKS",
    "TEMPLATES",
    "AnswerError",
    "TeacherClipInputs",
    "LabelingSummary",
    "OpenAIChatBackend",
    "PromptOptions",
    "ResultStore",
    "TeacherError",
    "TeacherFatalError",
    "TeacherPrompt",
    "TransformersBackend",
    "add_label_arguments",
    "build_teacher_prompt",
    "get_template",
    "label_command",
    "load_clip_inputs",
    "parse_answer",
    "run_labeling",
    "structured_caption",
]
