"""The tiny offline kit: random weights, a project-trained tokenizer, the real processor.

No model hub is reachable on the machines this project is developed and tested on, so tests and
the demo use a model that the project builds itself (`tiny:SEED`, `sce tiny-model`). The family
builds it (`Family.build_tiny_kit`: Qwen2.5-VL's by default); this module gives it the project's
own vocabulary (the domain words and the prompt templates of `sce.data.prompts`), so real
prompts tokenize into few tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sce.models.families import DEFAULT_FAMILY, Family

_BASE_CORPUS = """
You are a helpful assistant. You are a driving safety analyst watching dashcam video.
Which event occurs in this clip? A. collision B. near-collision C. normal driving.
Answer with the letter. The answer is A. The answer is B. The answer is C.
collision near-collision near_collision normal driving normal crash impact hard braking.
Collision Probability: 0.872 0.5 0.0 1.0 0.25 0.125 0.75 0.333 0.666 0.95 0.05
Describe the safety-critical event in this clip. Frame at t= s acceleration heading change speed
m/s m/s² km/h rad deg ax ay az longitudinal lateral vertical yaw telemetry IMU GPS unavailable
The ego vehicle travels on a wet urban road at night and collides with a car ahead.
The ego vehicle brakes hard and narrowly avoids a truck that cuts in from the left.
The ego vehicle follows a bus at a steady distance on a dry highway in clear daylight.
weather clear rain fog snow light day night dusk dawn scene urban highway rural road dry wet
other agent car truck bus motorcycle bicycle pedestrian impact side front rear left right
deceleration spike peak decel at seconds before after event time window frames video
<think> The telemetry shows a sharp deceleration spike, so the vehicle hit something. </think>
Question options answer reason why what where when who how is the does was
0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 -0.4 -1.2 -4.8 -6.5 -9.7 -11.3 +0.2
"""


def vocabulary_corpus() -> list[str]:
    """Texts the tiny tokenizer is trained on: the base corpus plus the prompt templates."""
    lines = [line for line in _BASE_CORPUS.strip().splitlines() if line.strip()]
    try:  # the prompt module's own templates, so real prompts tokenize into few tokens
        from sce.data.prompts import template_corpus

        lines.extend(template_corpus())
    except ImportError:
        pass
    return lines


def vocabulary_digest() -> str:
    """A short hash of `vocabulary_corpus()`: what the tiny tokenizer (and so the kit) is built
    from, part of the cached kit's folder name (sce.train.assets)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(vocabulary_corpus()).encode()).hexdigest()[:12]


def build_tiny_kit(
    out_dir: str | Path, seed: int = 0, spec: Any | None = None, family: Family = DEFAULT_FAMILY
) -> Path:
    """Build and save a tiny model of `family` (model, tokenizer, processor) to `out_dir`.

    Deterministic for a seed: the same seed gives the same weights and tokenizer. `spec` is the
    family's tiny sizes (e.g. `sce.models.families.qwen2_5_vl.TinySpec`; None: its defaults).
    Load it back with `AutoProcessor.from_pretrained(out_dir)` and
    `AutoModelForImageTextToText.from_pretrained(out_dir)`.
    """
    return family.build_tiny_kit(Path(out_dir), seed, spec, vocabulary_corpus())
