"""Batch samples with the model's processor and chat template.

Training batches: right padding, labels = -100 everywhere except the assistant's answer and its
end token. Generation batches: left padding, the prompt ends with the assistant header.

A sample's visual inputs are videos (event windows) or images (paper 002's keyframes), each
array paired with its `{"type": "video"}` / `{"type": "image"}` placeholder in the user turn:
the collator hands images to the processor's image path (pixel_values, image_grid_thw) and
videos to its video path (pixel_values_videos, video_grid_thw), each in text order, so a batch
may mix both.

The processor receives each video's true sampling rate through `video_metadata`, so that
`second_per_grid_ts` = temporal_patch_size / fps (2/3 s at 3 fps). Handing it bare frame arrays
makes transformers assume 24 fps (2/24 s): wrong temporal positions, silently.

A sequence longer than `max_length` is never truncated (that would cut video tokens and break
the model): it raises an error naming the sample, or is dropped and counted when
`overflow="drop"`.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from sce.common.choices import check_choice
from sce.data.dataset import Sample
from sce.data.video_processing import with_fast_video_processor
from sce.models.families import DEFAULT_FAMILY, family_of_processor
from sce.tasks.probability import PROBABILITY_DECIMALS

IGNORE_INDEX = -100
# Digit slots of a probability answer: "0.872" / "1.000" (one integer digit + the decimals).
PROBABILITY_DIGITS = 1 + PROBABILITY_DECIMALS


# Per-batch counts of data problems the collator reports (logged as `data/{stage}_{name}`).
CollateMode = Literal["train", "generate"]  # answers supervised | prompt only
Overflow = Literal["error", "drop"]  # data.overflow: a sample longer than max_length
DATA_PROBLEM_COUNTS = ("skipped", "dropped", "imu_unavailable", "gps_unavailable", "window_shrunk")


class SequenceTooLongError(ValueError):
    """A sample does not fit in max_length without cutting visual tokens."""


def video_metadata(frames: np.ndarray, fps: float):
    """VideoMetadata telling the processor the frames were sampled at `fps`."""
    from transformers.video_utils import VideoMetadata

    n, h, w = frames.shape[:3]
    return VideoMetadata(
        total_num_frames=n, fps=float(fps), width=w, height=h, frames_indices=list(range(n))
    )


class Collator:
    """Turns a list of Samples into model inputs.

    Args:
        processor: a known family's processor (tokenizer + video processor + chat template);
            its chat markers find the answer (sce.models.families).
        max_length: the sequence limit; visual tokens are never cut.
        mode: "train" (answers supervised, right padding) or "generate" (prompt only, left padding).
        overflow: "error" raises SequenceTooLongError naming the sample; "drop" drops and counts.
    """

    def __init__(
        self,
        processor,
        max_length: int = 4096,
        mode: CollateMode = "train",
        overflow: Overflow = "error",
    ):
        check_choice("collator mode", mode, CollateMode)
        check_choice("data.overflow", overflow, Overflow)
        # A copy whose video preprocessing is its family's bit-identical fast path (the caller's
        # processor is not modified: it may be saved with an exported model).
        self.processor = processor = with_fast_video_processor(processor)
        self.tokenizer = processor.tokenizer
        self.max_length = max_length
        self.mode = mode
        self.overflow = overflow
        self.dropped = 0
        markers = (family_of_processor(processor) or DEFAULT_FAMILY).markers
        self.im_start_id = self.tokenizer.convert_tokens_to_ids(markers.turn_start)
        self.im_end_id = self.tokenizer.convert_tokens_to_ids(markers.turn_end)
        header = self.tokenizer(markers.assistant_header(), add_special_tokens=False)
        self.header_len = len(header["input_ids"])
        self.digit_ids = digit_token_ids(self.tokenizer)
        video_processor = getattr(processor, "video_processor", None)
        if getattr(video_processor, "cap_pixels_per_frame", False) is None:
            # Frames arrive already sized for the model (SceDataModule decodes at the processor's
            # size for data.window.width x height); the per-frame cap would shrink them again and break
            # the token budget the config promises.
            video_processor.cap_pixels_per_frame = False

    def texts(self, samples: list[Sample]) -> list[str]:
        train = self.mode == "train"
        return [
            self.processor.apply_chat_template(
                s.messages(with_answer=train),
                tokenize=False,
                add_generation_prompt=not train,
            )
            for s in samples
        ]

    def encode(self, samples: list[Sample]) -> dict[str, Any]:
        # Each list is in text order (samples in order, placeholders in order within each), as
        # the processor pairs the n-th image/video token of the batch with the n-th array.
        images = [im for s in samples for im in s.images]
        videos = [v for s in samples for v in s.videos]
        metadata = [video_metadata(v, s.fps) for s in samples for v in s.videos]
        return self.processor(
            text=self.texts(samples),
            images=images or None,
            videos=videos or None,
            video_metadata=metadata or None,
            padding=True,
            padding_side="right" if self.mode == "train" else "left",
            return_tensors="pt",
        )

    def __call__(self, samples: list[Sample | None]) -> dict[str, Any]:
        skipped = sum(s is None for s in samples)  # bad samples the dataset was told to skip
        samples = [s for s in samples if s is not None]
        if not samples:
            return {"empty": True, "skipped": skipped, "dropped": 0}
        batch = self.encode(samples)
        lengths = batch["attention_mask"].sum(dim=1)
        too_long = [i for i, n in enumerate(lengths.tolist()) if n > self.max_length]
        if too_long:
            if self.overflow == "error":
                i = too_long[0]
                raise SequenceTooLongError(
                    f"sample {samples[i].id!r} needs {int(lengths[i])} tokens > max_length="
                    f"{self.max_length}; cutting would drop visual tokens. Lower fps/resolution, "
                    "raise data.max_length, or set data.overflow=drop to skip (counted)."
                )
            self.dropped += len(too_long)
            samples = [s for i, s in enumerate(samples) if i not in too_long]
            if not samples:
                return {"empty": True, "skipped": skipped, "dropped": len(too_long)}
            batch = self.encode(samples)
        batch = dict(batch)
        batch["skipped"] = skipped
        batch["dropped"] = len(too_long)
        # Clips whose telemetry is missing or unusable (not the deliberate dropout/off setting).
        batch["imu_unavailable"] = sum(bool(s.meta.get("imu_reason")) for s in samples)
        # Clips whose GPS speed is missing or unusable (the prompt then shows no speed).
        batch["gps_unavailable"] = sum(bool(s.meta.get("gps_reason")) for s in samples)
        # Event windows cut shorter than asked to fit their record's span (e.g. short chunks).
        batch["window_shrunk"] = sum(s.meta.get("window_shrunk", 0.0) > 0 for s in samples)
        if self.mode == "train":
            batch["labels"] = self.answer_labels(batch["input_ids"], batch["attention_mask"])
            batch.update(self.probability_targets(samples, batch["labels"]))
        batch["meta"] = [
            {
                "id": s.id,
                "task": s.task,
                "label": s.label,
                "source": s.source,
                "imu_on": s.imu_on,
                "reference": s.answer,
                **s.meta,
            }
            for s in samples
        ]
        return batch

    def answer_labels(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """-100 everywhere but the last assistant turn's answer and its <|im_end|>."""
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for row, (ids, mask) in enumerate(zip(input_ids, attention_mask, strict=True)):
            starts = (ids == self.im_start_id).nonzero().flatten()
            begin = int(starts[-1]) + self.header_len
            ends = ((ids == self.im_end_id) & mask.bool()).nonzero().flatten()
            ends = ends[ends >= begin]
            if len(ends) == 0:
                end = self.tokenizer.convert_ids_to_tokens(self.im_end_id)
                raise ValueError(f"assistant answer has no {end}: chat template mismatch")
            stop = int(ends[0]) + 1
            labels[row, begin:stop] = ids[begin:stop]
        return labels

    def probability_targets(self, samples: list[Sample], labels: torch.Tensor) -> dict:
        """Positions and place values of the probability digits in each answer (MSE term)."""
        positions = torch.full((len(samples), PROBABILITY_DIGITS), -1, dtype=torch.long)
        scales = torch.zeros((len(samples), PROBABILITY_DIGITS))
        targets = torch.full((len(samples),), float("nan"))
        for row, sample in enumerate(samples):
            if sample.probability_target is None:
                continue
            found = number_digit_positions(labels[row], self.digit_ids, self.tokenizer)
            if len(found) > PROBABILITY_DIGITS:  # cutting digits would change the number read
                raise ValueError(
                    f"sample {sample.id!r}: the probability answer {sample.answer!r} has "
                    f"{len(found)} digits; at most {PROBABILITY_DIGITS} are read by the MSE term"
                )
            for slot, (pos, scale) in enumerate(found):
                positions[row, slot] = pos
                scales[row, slot] = scale
            targets[row] = sample.probability_target
        return {"prob_positions": positions, "prob_scales": scales, "prob_targets": targets}


def digit_token_ids(tokenizer) -> list[int]:
    """Token ids of '0'..'9' (Qwen's pre-tokenizer always splits digits one by one)."""
    ids = [tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)]
    if any(i is None or i == tokenizer.unk_token_id for i in ids):
        raise ValueError("tokenizer lacks single-digit tokens; probability MSE needs them")
    return ids


def number_digit_positions(labels: torch.Tensor, digit_ids: list[int], tokenizer) -> list[tuple]:
    """(label position, place value) of the digits of the last number in the answer.

    "Collision Probability: 0.872" -> [(p0, 1), (p1, 0.1), (p2, 0.01), (p3, 0.001)].
    """
    digit_of = {tid: d for d, tid in enumerate(digit_ids)}
    dot_id = tokenizer.convert_tokens_to_ids(".")
    supervised = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
    runs: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    for pos in supervised:
        tid = int(labels[pos])
        if tid in digit_of or (tid == dot_id and current):
            current.append((pos, "." if tid == dot_id else "d"))
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    if not runs:
        return []
    run = runs[-1]
    kinds = [k for _, k in run]
    n_int = kinds.index(".") if "." in kinds else len(kinds)
    out, place = [], 10.0 ** (n_int - 1)
    for pos, kind in run:
        if kind == ".":
            continue
        out.append((pos, place))
        place /= 10
    return out
