"""structured_caption: paper 001's metadata-derived "Detailed Caption Data" (Table 1, ~20k rule-based
captions "encoding key details like motion, impact side, blame, and weather"); the answer is
`annotations.structured_caption`, which `sce label` writes from the record's metadata
(`sce.labeling.templates.structured_caption`) and `sce synth` from its scenario.

A caption task of its own, beside the teacher's free-form `caption` (Table 1's "Gemini Caption
Data"), so a mix weighs the two separately. Scored like captions, by ROUGE-L F1 and (with a local
encoder) BERTScore F1 under `structured_caption/`.
"""

from __future__ import annotations

from sce.tasks.base import register_task
from sce.tasks.caption import CaptionTask

FIELD = "structured_caption"  # the annotation the answer is
STRUCTURED_CAPTION_QUESTION = (
    "Describe this driving clip in detail: the road, weather and light, the road users and how "
    "they move, and the event if there is one (its type, the impact side and who is responsible)."
)


class StructuredCaptionTask(CaptionTask):
    name = FIELD
    fields = (FIELD,)
    prompt = STRUCTURED_CAPTION_QUESTION


STRUCTURED_CAPTION = register_task(StructuredCaptionTask())
