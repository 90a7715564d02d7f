"""The fast Qwen video preprocessing equals transformers' own, and frames decode at model size."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import Qwen2VLVideoProcessor

from sce.data.clip import WindowSpec
from sce.data.collate import Collator, video_metadata
from sce.data.video_processing import (
    at_model_size,
    model_frame_size,
    with_fast_video_processor,
)
from sce.models.families.qwen2_5_vl import FastQwen2VLVideoProcessor

TEXT = "<|vision_start|><|video_pad|><|vision_end|> what happens?"


def _videos(*shapes: tuple[int, int, int], dtype=np.uint8) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*shape, 3)).astype(dtype) for shape in shapes]


def _both(processor, videos: list[np.ndarray]) -> tuple[dict, dict]:
    processor = copy.copy(processor)
    processor.video_processor = copy.copy(processor.video_processor)
    processor.video_processor.cap_pixels_per_frame = False
    fast = with_fast_video_processor(processor)
    kwargs = dict(
        text=[TEXT] * len(videos),
        videos=videos,
        video_metadata=[video_metadata(v, 3.0) for v in videos],
        padding=True,
        return_tensors="pt",
    )
    return processor(**kwargs), fast(**kwargs)


@pytest.mark.parametrize(
    "shapes",
    [
        [(2, 252, 420)] * 9,  # interleaved frame pairs already at the model's size
        [(18, 240, 420)],  # one table block that the processor resizes
        [(7, 100, 200), (4, 56, 84)],  # odd frame count (last frame repeated) and mixed sizes
    ],
)
def test_fast_path_equals_the_processor_bit_for_bit(tiny_processor, shapes) -> None:
    reference, fast = _both(tiny_processor, _videos(*shapes))
    assert set(reference) == set(fast)
    for key in reference:
        expected, got = reference[key], fast[key]
        if isinstance(expected, torch.Tensor):
            assert expected.dtype == got.dtype and torch.equal(expected, got), key
        else:
            assert expected == got, key
    assert reference["pixel_values_videos"].abs().sum() > 0


def test_float_frames_fall_back_to_the_original_path(tiny_processor) -> None:
    reference, fast = _both(tiny_processor, _videos((2, 56, 84), dtype=np.float32))
    assert torch.equal(reference["pixel_values_videos"], fast["pixel_values_videos"])


def test_videos_off_the_cpu_take_the_original_path(tiny_processor) -> None:
    (frames,) = _videos((2, 56, 84))
    fast = with_fast_video_processor(tiny_processor).video_processor
    out = fast(videos=[frames], video_metadata=[video_metadata(frames, 3.0)], device="meta")
    assert out["pixel_values_videos"].device.type == "meta"  # upstream's; the fast path is CPU
    assert out["video_grid_thw"].tolist() == [[1, 4, 6]]


def test_callers_processor_is_untouched_and_saved_configs_name_upstream(tiny_processor) -> None:
    collator = Collator(tiny_processor)
    assert type(tiny_processor.video_processor) is Qwen2VLVideoProcessor
    assert type(collator.processor.video_processor) is FastQwen2VLVideoProcessor
    config = collator.processor.video_processor.to_dict()
    assert config["video_processor_type"] == "Qwen2VLVideoProcessor"


def _qwen(min_pixels: int = 56 * 56, max_pixels: int = 12845056, cap=False) -> SimpleNamespace:
    video = Qwen2VLVideoProcessor(size={"shortest_edge": min_pixels, "longest_edge": max_pixels})
    video.cap_pixels_per_frame = cap
    return SimpleNamespace(video_processor=video)


def test_model_frame_size_is_the_processors_resize() -> None:
    assert model_frame_size(_qwen(), 420, 240) == (420, 252)  # 240 -> nearest multiple of 28
    assert model_frame_size(_qwen(), 1280, 720) == (1288, 728)
    # max_pixels 200x112: scaled down, keeping the aspect ratio, to multiples of 28
    assert model_frame_size(_qwen(max_pixels=200 * 112), 420, 240) == (196, 112)
    # not Qwen, or the per-frame cap (its limit depends on each video's length): unchanged
    assert model_frame_size(SimpleNamespace(video_processor=None), 420, 240) == (420, 240)
    assert model_frame_size(_qwen(cap=True), 420, 240) == (420, 240)


def test_frames_at_model_size_are_not_resized_again(tiny_processor) -> None:
    spec = at_model_size(WindowSpec(width=420, height=240), tiny_processor)
    assert (spec.fps, spec.before, spec.after) == (3.0, 4.0, 2.0)
    (frames,) = _videos((2, spec.height, spec.width))
    batch = Collator(tiny_processor).processor.video_processor(
        videos=[frames], video_metadata=[video_metadata(frames, 3.0)], return_tensors="pt"
    )
    patch = tiny_processor.video_processor.patch_size
    assert batch["video_grid_thw"].tolist() == [[1, spec.height // patch, spec.width // patch]]
    # the pixels are the frames' own: patch (0, 0) of the first frame, red channel, normalised
    vp = tiny_processor.video_processor
    first = batch["pixel_values_videos"][0, : patch * patch].view(patch, patch)
    expected = (frames[0, :patch, :patch, 0] / 255.0 - vp.image_mean[0]) / vp.image_std[0]
    assert torch.allclose(first, torch.as_tensor(expected, dtype=torch.float32), atol=1e-5)


def test_datamodule_decodes_frames_at_the_model_size(synthetic_manifest, tiny_kit) -> None:
    from sce.data.datamodule import SceDataModule

    data = SceDataModule(
        str(synthetic_manifest), processor_path=str(tiny_kit), window=WindowSpec(width=140)
    )
    data.setup("fit")
    width, height = model_frame_size(data.processor, 140, 240)
    assert (width, height) != (140, 240) and (width % 28, height % 28) == (0, 0)
    dataset = data.dataset("train")
    assert (dataset.spec.width, dataset.spec.height) == (width, height)
    assert dataset[0].videos[0].shape == (2, height, width, 3)
