"""Temporal RoPE guard: the installed transformers must give a video's frame pairs increasing
Qwen2.5-VL temporal positions; the `int(second_per_grid_ts)` releases must be refused."""

from __future__ import annotations

import dataclasses
import warnings

import lightning as L
import pytest
import torch
import transformers
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

from sce.data.clip import WindowSpec
from sce.data.datamodule import SceDataModule
from sce.models.module import SceModule
from sce.models.rope_guard import (
    TemporalRopeError,
    check_temporal_rope,
    probe_temporal_positions,
    window_probe,
)


@pytest.fixture
def int_second_per_grid_ts(monkeypatch):
    """get_rope_index as transformers 5.0-5.17 computed it: the interval from
    int(second_per_grid_ts), 0 above 2 fps (5.12-5.17 source; 5.0 cast it to int64)."""
    original = Qwen2_5_VLModel.get_rope_index

    def truncating(self, *args, second_per_grid_ts=None, **kwargs):
        if second_per_grid_ts is not None:
            second_per_grid_ts = torch.as_tensor(second_per_grid_ts).trunc()
        return original(self, *args, second_per_grid_ts=second_per_grid_ts, **kwargs)

    monkeypatch.setattr(Qwen2_5_VLModel, "get_rope_index", truncating)


def test_installed_transformers_spaces_frame_pairs_at_3_fps(tiny_model):
    """Paper 000: 18 frames at 3 fps = 9 pairs, interval 2 x 2/3 = 4/3: floor(k * 4/3)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no pair shares an index: no warning
        probe = check_temporal_rope(tiny_model, 18, 3.0)
    assert probe.positions == (0, 1, 2, 4, 5, 6, 8, 9, 10)


def test_int_second_per_grid_ts_is_refused_naming_the_version(tiny_model, int_second_per_grid_ts):
    assert set(probe_temporal_positions(tiny_model, 18, 3.0).positions) == {0}
    with pytest.raises(TemporalRopeError, match=f"transformers {transformers.__version__} "):
        check_temporal_rope(tiny_model, 18, 3.0)
    assert check_temporal_rope(tiny_model, 128, 2.0).increases  # int(2 / 2) = 1: still right


def test_30_fps_warns_how_many_pairs_share_an_index(tiny_model):
    """Paper 001: 180 frames at 30 fps = 90 pairs on 12 temporal indices, up to 8 per index."""
    with pytest.warns(UserWarning, match=r"90 frame pairs .* only 12 distinct .*up to 8 pairs"):
        probe = check_temporal_rope(tiny_model, 180, 30.0)
    assert probe.positions[:9] == (0,) * 8 + (1,)
    assert probe.positions[-1] == 11


def test_window_probe_of_a_datamodule(tiny_kit, synthetic_manifest):
    paper001 = SceDataModule(
        str(synthetic_manifest), str(tiny_kit), window=WindowSpec(fps=30.0, before=4, after=2)
    )
    assert window_probe(paper001.window) == (180, 30.0)
    # paper 003: the whole clip at 2 fps, at most 128 frames (its before/after are not used)
    paper003 = SceDataModule(
        str(synthetic_manifest),
        str(tiny_kit),
        window=WindowSpec(fps=2.0, mode="whole", max_frames=128),
    )
    assert window_probe(paper003.window) == (128, 2.0)


def test_validate_fails_at_start_on_a_collapsing_release(
    tiny_kit, synthetic_manifest, tmp_path, int_second_per_grid_ts
):
    data = SceDataModule(
        str(synthetic_manifest), str(tiny_kit), window=WindowSpec(width=56, height=56, fps=3.0)
    )
    module = SceModule(str(tiny_kit), finetuning="lora", rank=4, alpha=8)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    with pytest.raises(TemporalRopeError, match="18-frame video at 3 fps"):
        trainer.validate(module, datamodule=data)


def test_keyframe_windows_skip_the_video_probe(
    tiny_kit, synthetic_manifest, int_second_per_grid_ts
):
    """Paper 002 sends its keyframes as images: no video RoPE, so a release that collapses video
    frames must not refuse the run (it used to probe an 18-frame video at 3 fps)."""
    from types import SimpleNamespace

    paper002 = SceDataModule(
        str(synthetic_manifest),
        str(tiny_kit),
        window=WindowSpec(fps=3.0, before=6.0, after=0.0, scales=[6.0, 3.0, 1.5]),
    )
    assert window_probe(paper002.window) is None
    module = SceModule(str(tiny_kit), finetuning="lora", rank=4, alpha=8)
    module.configure_model()
    module._trainer = SimpleNamespace(datamodule=paper002)
    module._check_temporal_rope()  # no TemporalRopeError
    assert module._rope_checked
    same_without_scales = dataclasses.replace(paper002.window, scales=None)
    assert window_probe(same_without_scales) == (18, 3.0)
