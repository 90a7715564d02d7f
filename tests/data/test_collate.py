"""Collator: temporal positions, label mask, padding sides, overflow, skips, probability digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sce.data.channels import TelemetryChannel
from sce.data.collate import IGNORE_INDEX, Collator, SequenceTooLongError
from sce.data.dataset import Sample
from sce.data.imu import FrameTelemetry
from sce.data.prompts import build_user_content
from sce.tasks.probability import probability_answer

H, W = 56, 112


def _sample(
    sid: str,
    answer: str = "A. collision",
    frames: int = 18,
    fps: float = 3.0,
    telemetry: bool = False,
    layout: str = "interleaved",
    size: tuple[int, int] = (H, W),
    target: float | None = None,
) -> Sample:
    rng = np.random.default_rng(len(sid) + frames)
    video = rng.integers(0, 256, (frames, *size, 3), dtype=np.uint8)
    times = (np.arange(frames) + 0.5) / fps
    tele = None
    if telemetry:
        accel = np.tile([[-9.7, 0.3, 9.8]], (frames, 1))
        tele = FrameTelemetry(times, accel, np.full(frames, 0.01), np.full(frames, 12.1))
    content, videos = build_user_content(
        video, times, [TelemetryChannel(tele)], "Which event?", layout
    )
    task = "probability" if target is not None else "mcq"
    return Sample(sid, content, videos, fps, answer, task, "collision", probability_target=target)


@pytest.fixture(scope="module")
def train_batch(tiny_processor) -> dict:
    samples = [_sample("long", telemetry=True), None, _sample("s", answer="C. normal driving")]
    return Collator(tiny_processor)(samples)


def test_second_per_grid_ts_is_temporal_patch_over_fps(tiny_processor, train_batch) -> None:
    # 2 samples x 9 pair videos, each 2 frames at 3 fps: 2 / 3 s per temporal grid step
    assert train_batch["second_per_grid_ts"].shape == (18,)
    assert torch.allclose(train_batch["second_per_grid_ts"], torch.full((18,), 2 / 3))
    batch = Collator(tiny_processor)([_sample("two", frames=12, fps=2.0)])
    assert torch.allclose(batch["second_per_grid_ts"], torch.ones(6))
    table = Collator(tiny_processor)([_sample("tab", layout="table", fps=3.0)])
    assert table["video_grid_thw"].tolist() == [[9, 4, 8]]
    assert table["second_per_grid_ts"].tolist() == pytest.approx([2 / 3])


def test_mm_token_type_ids_marks_video_tokens(tiny_processor, train_batch) -> None:
    video_id = tiny_processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    types = train_batch["mm_token_type_ids"]
    assert types.shape == train_batch["input_ids"].shape
    assert torch.equal(types != 0, train_batch["input_ids"] == video_id)


def test_visual_token_count(tiny_processor, train_batch) -> None:
    video_id = tiny_processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    # per pair video: T/2 * (H/28) * (W/28) = 1 * 2 * 4 = 8 tokens; 9 pairs -> 72 per sample
    assert train_batch["video_grid_thw"].tolist() == [[1, 4, 8]] * 18
    assert (train_batch["input_ids"] == video_id).sum(dim=1).tolist() == [72, 72]
    assert train_batch["pixel_values_videos"].shape[0] == 18 * 1 * 4 * 8
    # 84x140 frames: 3 x 5 tokens per pair (h, w grids 6 x 10), 135 for 18 frames
    batch = Collator(tiny_processor)([_sample("big", size=(84, 140))])
    assert batch["video_grid_thw"].tolist() == [[1, 6, 10]] * 9
    assert int((batch["input_ids"] == video_id).sum()) == 135


def test_labels_supervise_only_the_answer(tiny_processor, train_batch) -> None:
    tok = tiny_processor.tokenizer
    labels, ids = train_batch["labels"], train_batch["input_ids"]
    for row, answer in enumerate(["A. collision", "C. normal driving"]):
        supervised = labels[row] != IGNORE_INDEX
        assert tok.decode(labels[row][supervised]) == answer + "<|im_end|>"
        assert torch.equal(labels[row][supervised], ids[row][supervised])
        # one contiguous span ending at the last <|im_end|> of the real tokens
        pos = supervised.nonzero().flatten()
        assert pos.tolist() == list(range(int(pos[0]), int(pos[-1]) + 1))
        n_real = int(train_batch["attention_mask"][row].sum())
        assert int(pos[-1]) == n_real - 2  # template ends with "<|im_end|>\n"
        assert tok.decode(ids[row][: pos[0]]).endswith("<|im_start|>assistant\n")


def test_train_mode_pads_right(tiny_processor, train_batch) -> None:
    mask = train_batch["attention_mask"]
    lengths = mask.sum(dim=1).tolist()
    assert lengths[0] > lengths[1]  # the telemetry text makes the first sample longer
    for row, n in enumerate(lengths):
        assert mask[row, :n].all() and not mask[row, n:].any()
    pad_id = tiny_processor.tokenizer.pad_token_id
    assert (train_batch["input_ids"][1, lengths[1] :] == pad_id).all()
    assert (train_batch["labels"][1, lengths[1] :] == IGNORE_INDEX).all()


def test_none_samples_are_skipped_and_counted(train_batch, tiny_processor) -> None:
    assert train_batch["skipped"] == 1 and train_batch["dropped"] == 0
    assert [m["id"] for m in train_batch["meta"]] == ["long", "s"]
    assert train_batch["meta"][1]["reference"] == "C. normal driving"
    empty = Collator(tiny_processor)([None, None])
    assert empty == {"empty": True, "skipped": 2, "dropped": 0}


def test_clips_without_usable_telemetry_are_counted(tiny_processor) -> None:
    unusable, missing, fine = _sample("a"), _sample("bb"), _sample("ccc", telemetry=True)
    unusable.meta["imu_reason"] = "imu unusable: NaN gap of 2.0 s > 0.5 s"
    missing.meta["imu_reason"] = "no imu file in manifest"
    fine.meta["imu_reason"] = ""
    batch = Collator(tiny_processor)([unusable, missing, fine])
    assert batch["imu_unavailable"] == 2
    assert batch["meta"][0]["imu_reason"].startswith("imu unusable")


def test_generate_mode_pads_left_and_ends_with_assistant_header(tiny_processor) -> None:
    collator = Collator(tiny_processor, mode="generate")
    batch = collator([_sample("long", telemetry=True), _sample("s")])
    tok = tiny_processor.tokenizer
    mask = batch["attention_mask"]
    lengths = mask.sum(dim=1).tolist()
    width = mask.shape[1]
    assert lengths[0] == width and lengths[1] < width
    for row, n in enumerate(lengths):
        assert mask[row, width - n :].all() and not mask[row, : width - n].any()
        text = tok.decode(batch["input_ids"][row][width - n :])
        assert text.endswith("Which event?<|im_end|>\n<|im_start|>assistant\n")
        assert "A. collision" not in text
    assert "labels" not in batch and "prob_positions" not in batch
    assert torch.allclose(batch["second_per_grid_ts"], torch.full((18,), 2 / 3))


def _short_and_long() -> list[Sample]:
    """Two small samples (4 frames of 56x56) whose lengths differ by the telemetry text."""
    small = {"frames": 4, "size": (56, 56)}
    return [_sample("short", **small), _sample("the-long-one", telemetry=True, **small)]


def test_too_long_raises_naming_the_sample(tiny_processor) -> None:
    samples = _short_and_long()
    lengths = Collator(tiny_processor)(samples)["attention_mask"].sum(dim=1).tolist()
    limit = (lengths[0] + lengths[1]) // 2
    with pytest.raises(SequenceTooLongError, match=rf"'the-long-one' needs {lengths[1]} tokens"):
        Collator(tiny_processor, max_length=limit)(samples)
    # exactly at the limit fits
    assert "labels" in Collator(tiny_processor, max_length=lengths[1])(samples)


def test_overflow_drop_counts(tiny_processor) -> None:
    samples = _short_and_long()
    lengths = Collator(tiny_processor)(samples)["attention_mask"].sum(dim=1).tolist()
    collator = Collator(tiny_processor, max_length=lengths[0], overflow="drop")
    batch = collator(samples + [None])
    assert batch["dropped"] == 1 and batch["skipped"] == 1 and collator.dropped == 1
    assert [m["id"] for m in batch["meta"]] == ["short"]
    assert batch["input_ids"].shape == (1, lengths[0])
    assert batch["video_grid_thw"].shape[0] == 2  # the dropped sample's videos are gone too
    again = collator(samples[1:])
    assert again == {"empty": True, "skipped": 0, "dropped": 1}
    assert collator.dropped == 2


def test_bad_mode_or_overflow(tiny_processor) -> None:
    with pytest.raises(ValueError, match="mode"):
        Collator(tiny_processor, mode="eval")
    with pytest.raises(ValueError, match="overflow"):
        Collator(tiny_processor, overflow="truncate")


def test_probability_digit_positions(tiny_processor) -> None:
    """Paper 002's "Collision Probability: 0.872": all 4 digits are MSE slots, place values
    1, 0.1, 0.01, 0.001, and they read back the annotation's 0.872."""
    tok = tiny_processor.tokenizer
    samples = [
        _sample("p", answer=probability_answer(0.872), target=0.872),
        _sample("m"),
        _sample("one", answer=probability_answer(1.0), target=1.0),
    ]
    assert samples[0].answer == "Collision Probability: 0.872"
    batch = Collator(tiny_processor)(samples)
    pos, scales = batch["prob_positions"], batch["prob_scales"]
    assert pos.shape == scales.shape == (3, 4)
    ids = batch["input_ids"]
    assert [tok.decode(ids[0, p]) for p in pos[0].tolist()] == ["0", "8", "7", "2"]
    assert scales[0].tolist() == pytest.approx([1.0, 0.1, 0.01, 0.001])
    assert pos[0].tolist() == [pos[0, 0] + k for k in (0, 2, 3, 4)]  # "." after the first
    assert (batch["labels"][0, pos[0]] == ids[0, pos[0]]).all()  # digits are supervised
    assert (pos[1] == -1).all() and (scales[1] == 0).all()
    assert [tok.decode(ids[2, p]) for p in pos[2].tolist()] == ["1", "0", "0", "0"]
    targets = batch["prob_targets"]
    assert targets[0].item() == pytest.approx(0.872)
    assert torch.isnan(targets[1])
    assert targets[2].item() == 1.0
    # the digits give the value back: 0 * 1 + 8 * 0.1 + 7 * 0.01 + 2 * 0.001
    digits = [int(tok.decode(ids[0, p])) for p in pos[0].tolist()]
    assert sum(d * s for d, s in zip(digits, scales[0].tolist(), strict=True)) == pytest.approx(
        0.872
    )


def test_expected_probability_reads_all_three_decimals(tiny_processor) -> None:
    """The MSE readout at the collated digit slots: logits peaked on the answer's digits give
    0.872 (not 0.87), so the MSE of a perfect answer is 0."""
    from sce.data.collate import digit_token_ids
    from sce.models.losses import probability_mse

    batch = Collator(tiny_processor)([_sample("p", answer=probability_answer(0.872), target=0.872)])
    digit_ids = digit_token_ids(tiny_processor.tokenizer)
    seq = batch["input_ids"].shape[1]
    # an identity "lm_head" over one-hot hidden states: position s predicts label[s + 1]
    hidden = torch.full((1, seq, len(tiny_processor.tokenizer)), -50.0)
    for s in range(seq - 1):
        hidden[0, s, batch["input_ids"][0, s + 1]] = 50.0
    loss, predicted = probability_mse(
        hidden,
        torch.nn.Identity(),
        batch["prob_positions"],
        batch["prob_scales"],
        batch["prob_targets"],
        digit_ids,
    )
    assert predicted.item() == pytest.approx(0.872, abs=1e-6)
    assert loss.item() == pytest.approx(0.0, abs=1e-9)


def test_probability_answer_with_too_many_digits_is_an_error(tiny_processor) -> None:
    sample = _sample("long_p", answer="Collision Probability: 0.8725", target=0.8725)
    with pytest.raises(ValueError, match="'long_p'.*5 digits"):
        Collator(tiny_processor)([sample])


def _keyframe_sample(sid: str, n: int = 3) -> Sample:
    rng = np.random.default_rng(len(sid))
    frames = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    times = np.array([4.0, 5.5, 7.0][:n])
    content, images = build_user_content(
        frames, times, [TelemetryChannel(None)], "Which event?", "table", True
    )
    return Sample(sid, content, images, 2 / 3, "A. collision", "mcq", "collision")


def test_keyframe_images_take_the_image_path(tiny_processor) -> None:
    sample = _keyframe_sample("kf")
    assert len(sample.images) == 3 and sample.videos == []
    batch = Collator(tiny_processor)([sample])
    assert "pixel_values_videos" not in batch
    assert batch["image_grid_thw"].tolist() == [[1, 4, 8]] * 3  # 56x112: 4 x 8 patches
    assert tuple(batch["pixel_values"].shape) == (3 * 32, 3 * 2 * 14 * 14)
    image_id = tiny_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((batch["input_ids"] == image_id).sum()) == 3 * 8
    assert torch.equal(batch["mm_token_type_ids"] == 1, batch["input_ids"] == image_id)


def test_a_batch_mixing_images_and_videos_keeps_each_with_its_sample(tiny_processor) -> None:
    """Images go to pixel_values, videos to pixel_values_videos, each in text order: the mixed
    batch holds exactly the pixels of the two samples collated alone."""
    collator = Collator(tiny_processor)
    video, keyframes = _sample("video", frames=4, layout="table"), _keyframe_sample("kf")
    mixed = collator([video, keyframes])
    alone_video, alone_keyframes = collator([video]), collator([keyframes])
    assert mixed["video_grid_thw"].tolist() == alone_video["video_grid_thw"].tolist()
    assert mixed["image_grid_thw"].tolist() == alone_keyframes["image_grid_thw"].tolist()
    assert torch.equal(mixed["pixel_values_videos"], alone_video["pixel_values_videos"])
    assert torch.equal(mixed["pixel_values"], alone_keyframes["pixel_values"])
    image_id = tiny_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    video_id = tiny_processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    ids = mixed["input_ids"]
    assert (ids[0] == image_id).sum() == 0 and (ids[0] == video_id).sum() == 2 * 8
    assert (ids[1] == image_id).sum() == 3 * 8 and (ids[1] == video_id).sum() == 0


def test_sample_visuals_must_match_the_placeholders() -> None:
    good = _keyframe_sample("kf")
    with pytest.raises(ValueError, match="'kf'.*3 visual placeholders but 2"):
        Sample("kf", good.user_content, good.visuals[:2], 1.0, "A", "mcq", "collision")
    stacked = [np.stack(good.visuals)] * 3  # videos where the content asks for images
    with pytest.raises(
        ValueError,
        match=r"'kf': visual 0 has shape \(3, 56, 112, 3\) but its placeholder is 'image'",
    ):
        Sample("kf", good.user_content, stacked, 1.0, "A", "mcq", "collision")
