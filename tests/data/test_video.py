"""Video windows, chunking, multi-scale windows, decoding (decord vs PyAV) and dual view."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from sce.data.video import VideoError, frame_indices, read_frames, stack_dual_view, video_info
from sce.data.windows import (
    Window,
    WindowError,
    event_window,
    multiscale_windows,
    sliding_chunks,
    window_frame_times,
)

W, H, FPS, N = 160, 96, 30, 120  # 4 s test clip


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def source_frame(i: int) -> np.ndarray:
    """Frame i: per-frame brightness and a bar that jumps 7 px a frame (a wrong index shows)."""
    img = np.empty((H, W, 3), np.uint8)
    img[..., 0] = (np.arange(W) * 255 // W)[None, :]
    img[..., 1] = 30 + (i * 53) % 190
    img[..., 2] = 40
    x0 = (i * 7) % (W - 24)
    img[16:80, x0 : x0 + 24, 2] = 250
    return img


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"g": "12", "crf": "12", "preset": "veryfast"}  # key frame every 0.4 s
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(source_frame(i), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# --------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------


def test_event_window_inside_clip() -> None:
    assert event_window(16.0, 8.0, 4.0, 2.0) == Window(4.0, 10.0, 0.0, 0.0, 0.0)


def test_event_window_shifted_at_start_and_end() -> None:
    w = event_window(16.0, 1.0, 4.0, 2.0)
    assert (w.start, w.end, w.shifted) == (0.0, 6.0, 3.0)
    w = event_window(16.0, 15.5, 4.0, 2.0)
    assert (w.start, w.end, w.shifted) == (10.0, 16.0, -1.5)
    assert w.padded_before == w.padded_after == 0.0


def test_event_window_even_frame_count_at_fps() -> None:
    assert event_window(16.0, 8.0, 4.0, 2.0, fps=3.0) == Window(4.0, 10.0)  # 18 frames, as asked
    w = event_window(16.0, 8.0, before=4.0, after=1.0, fps=3.0)  # 15 -> 16 frames, both ends
    assert (w.start, w.end) == pytest.approx((8.0 - 4.0 - 1 / 6, 8.0 + 1.0 + 1 / 6))


def test_event_window_shrinks_inside_a_short_span() -> None:
    # A 6 s window in a 5 s chunk: the largest even frame count that fits, never padding from
    # outside (3 fps: 14 frames = 4.67 s; 30 fps: 150 frames = the whole 5 s).
    w = event_window(5.0, 2.5, 4.0, 2.0, fps=3.0)
    assert (w.start, w.end, w.padded_before, w.padded_after) == pytest.approx((0, 14 / 3, 0, 0))
    t = window_frame_times(w, 3.0)
    assert len(t) == 14 and t[0] > 0.0 and t[-1] < 5.0
    w = event_window(5.0, 4.9, 4.0, 2.0, fps=3.0)  # event near the end: shifted, still inside
    assert (w.start, w.end) == pytest.approx((5.0 - 14 / 3, 5.0))
    w = event_window(5.0, 2.5, 4.0, 2.0, fps=30.0)
    assert (w.start, w.end) == pytest.approx((0.0, 5.0))
    assert len(window_frame_times(w, 30.0)) == 150
    w = event_window(4.0, 1.0, 4.0, 2.0)  # without fps: the whole clip
    assert (w.start, w.end, w.shifted) == (0.0, 4.0, 2.0)
    with pytest.raises(WindowError, match="0.500 s holds fewer than 2 frames at 3 fps"):
        event_window(0.5, 0.2, 4.0, 2.0, fps=3.0)


def test_event_window_rejects_event_outside_clip() -> None:
    with pytest.raises(WindowError, match=r"clip42: event_time 17.000 s is outside"):
        event_window(16.0, 17.0, 4.0, 2.0, name="clip42")
    with pytest.raises(WindowError):
        event_window(16.0, -0.5, 4.0, 2.0)


def test_window_frame_times_even_and_spaced() -> None:
    t = window_frame_times(Window(2.0, 8.0), 3.0)
    assert len(t) == 18
    np.testing.assert_allclose(t[:3], [2 + 1 / 6, 2.5, 2 + 5 / 6])
    np.testing.assert_allclose(np.diff(t), 1 / 3)
    t = window_frame_times(Window(0.0, 5.0), 3.0)  # 15 -> 16 frames, still 1/3 s apart
    assert len(t) == 16
    np.testing.assert_allclose([t[0], t[-1]], [0.0, 5.0], atol=1e-12)


def test_frame_indices_nearest_and_clamped() -> None:
    idx = frame_indices(np.array([-1.0, 0.0166, 0.0167, 1 / 6, 100.0]), 30.0, 90)
    assert idx.tolist() == [0, 0, 1, 5, 89]
    # exact half-frame ties go to the earlier frame, however float rounding lands
    halves = (np.array([0, 1, 2, 121, 12345, 107999]) + 0.5) / 30.0
    assert frame_indices(halves, 30.0, 10**6).tolist() == [0, 1, 2, 121, 12345, 107999]


EVENTS = np.round(np.arange(400, 1400) * 0.01, 2)  # 4.00 .. 13.99 s on a 0.01 s grid


@pytest.mark.parametrize("fps, step", [(30.0, 1), (3.0, 10)])
def test_window_takes_distinct_evenly_spaced_source_frames(fps: float, step: int) -> None:
    # 30 fps source. Before: 62 in 100 of the 30 fps windows (event times on a 0.1 s grid)
    # repeated ~15 of their 180 frames and skipped as many; 3 fps windows with the event at an
    # odd multiple of 0.05 s mixed steps of 9, 10 and 11 frames.
    for event in EVENTS:
        times = window_frame_times(event_window(40.0, event, 4.0, 2.0, fps=fps), fps)
        idx = frame_indices(times, 30.0, 1200)
        assert len(idx) == 6 * fps and (np.diff(idx) == step).all(), f"event at {event} s"


def test_window_frames_from_a_29_97_fps_source() -> None:
    ntsc = 30000 / 1001
    for event in EVENTS:
        idx = frame_indices(
            window_frame_times(event_window(40.0, event, 4.0, 2.0, fps=3.0), 3.0), ntsc, 1198
        )
        assert set(np.diff(idx).tolist()) <= {9, 10}  # 9.99 frames per 1/3 s
        idx = frame_indices(
            window_frame_times(event_window(40.0, event, 4.0, 2.0, fps=30.0), 30.0), ntsc, 1198
        )
        # 30 fps from 29.97: one repeat per 1000 frames at most, never a skip
        assert set(np.diff(idx).tolist()) <= {0, 1} and (np.diff(idx) == 0).sum() <= 1


# --------------------------------------------------------------------------------------------
# chunking and multi-scale
# --------------------------------------------------------------------------------------------


def _spans(chunks, label=None) -> list[tuple[float, float]]:
    return [(c.start, c.end) for c in chunks if label is None or c.label == label]


def test_sliding_chunks_defaults_give_paper_001s_seven_6s_chunks() -> None:
    # paper 001: a 40 s video gives "6-7 overlapping segments" of 4-6 s; 6 s keep 180 frames
    chunks = sliding_chunks(40.0)
    assert [c.start for c in chunks] == [0.0, 6.0, 12.0, 18.0, 24.0, 30.0, 34.0]
    assert all(c.end - c.start == 6.0 for c in chunks) and chunks[-1].end == 40.0


def test_sliding_chunks_one_event_chunk_per_event() -> None:
    # issue 25.7: a collision at 21 s inside [17.5, 22.5] and [20, 25] gave two collision chunks
    chunks = sliding_chunks(40.0, chunk=5.0, stride=2.5, event_time=21.0, label="collision")
    assert _spans(chunks, "collision") == [(17.5, 22.5)]  # the event nearer its centre
    # [20, 25] holds the event too: never normal, dropped
    assert (20.0, 25.0) not in _spans(chunks) and len(chunks) == 14


@pytest.mark.parametrize(
    ("event_time", "chunk", "stride", "not_normal"),
    [
        (17.15, 5.0, 2.5, (17.5, 22.5)),  # the event 0.35 s before the chunk's start
        (35.35, 5.0, 2.5, (30.0, 35.0)),  # the collision 0.35 s after the chunk's end
        (6.26, 6.0, 6.0, (0.0, 6.0)),  # the near-collision 0.26 s after the chunk's end
    ],
)
def test_sliding_chunks_guard_band_is_never_normal(event_time, chunk, stride, not_normal) -> None:
    """The issue's probes: each of these chunks was labelled normal."""
    chunks = sliding_chunks(
        40.0, chunk=chunk, stride=stride, event_time=event_time, label="near_collision"
    )
    assert not_normal not in _spans(chunks, "normal")
    (event,) = [c for c in chunks if c.has_event]  # exactly one, holding event_time +- 0.5 s
    assert event.start <= event_time - 0.5 and event.end >= event_time + 0.5
    assert event.end - event.start == chunk and event.label == "near_collision"
    for c in chunks:  # no normal chunk within 0.5 s of the event
        assert c.label != "normal" or c.end <= event_time - 0.5 or c.start >= event_time + 0.5


def test_sliding_chunks_places_the_event_chunk_when_no_grid_chunk_holds_it() -> None:
    # 6 s / 6 s, near-collision at 6.26 s: [0, 6] and [6, 12] both cut it; before, the video
    # yielded no near-collision chunk at all (and [0, 6] as normal)
    chunks = sliding_chunks(40.0, event_time=6.26, label="near_collision")
    assert _spans(chunks, "near_collision") == [(3.26, 9.26)]  # centred on the band
    assert chunks[0].placed and _spans(chunks, "normal") == [
        (12.0, 18.0), (18.0, 24.0), (24.0, 30.0), (30.0, 36.0), (34.0, 40.0)
    ]  # fmt: skip
    # an IMU excursion [5.5, 10.5] (braking after the event) widens the band: [12, 18] stays
    # normal, the event chunk holds the whole band
    chunks = sliding_chunks(40.0, event_time=6.26, label="collision", signature=(5.5, 10.5))
    assert _spans(chunks, "collision") == [(5.0, 11.0)]
    assert _spans(chunks, "normal")[0] == (12.0, 18.0)


def test_sliding_chunks_cut_chunks_kept_with_label_or_dropped() -> None:
    kept = sliding_chunks(40.0, event_time=6.26, label="near_collision", drop_cut=False)
    cut = [c for c in kept if c.cut]
    assert _spans(cut) == [(0.0, 6.0), (6.0, 12.0)] and {c.label for c in cut} == {"near_collision"}
    assert sum(c.has_event for c in kept) == 1 and len(kept) == 8


def test_sliding_chunks_inside_a_span() -> None:
    # a record that is itself a chunk [12, 18] of its video: cut inside it, in video seconds
    chunks = sliding_chunks(6.0, event_time=15.36, label="near_collision", offset=12.0)
    assert _spans(chunks) == [(12.0, 18.0)] and chunks[0].has_event
    with pytest.raises(WindowError, match=r"outside the span \[12.0, 18.0\]"):
        sliding_chunks(6.0, event_time=4.92, label="near_collision", offset=12.0)


def test_sliding_chunks_tail_normal_and_errors() -> None:
    starts = [c.start for c in sliding_chunks(12.0, chunk=5.0, stride=5.0)]
    assert starts == [0.0, 5.0, 7.0]  # tail chunk aligned to the clip end
    assert all(c.label == "normal" for c in sliding_chunks(40.0, event_time=21.0))
    assert [(c.start, c.end) for c in sliding_chunks(3.0)] == [(0.0, 3.0)]
    with pytest.raises(WindowError, match="unknown label"):
        sliding_chunks(40.0, event_time=3.0, label="crash")
    with pytest.raises(WindowError, match="longer than twice the event margin"):
        sliding_chunks(40.0, chunk=1.0, event_time=3.0, label="collision")


def test_multiscale_windows_paper_keyframes() -> None:
    mx, mid, mini = multiscale_windows(10.0)
    assert (mx.name, mx.window.start, mx.window.end) == ("max", 4.0, 10.0)
    np.testing.assert_allclose(mx.keyframe_times, [4.0, 7.0, 10.0])
    np.testing.assert_allclose(mid.keyframe_times, [7.0, 8.5, 10.0])
    np.testing.assert_allclose(mid.keyframe_fractions, [0.5, 0.75, 1.0])
    np.testing.assert_allclose(mini.keyframe_times, [8.5, 9.25, 10.0])
    np.testing.assert_allclose(mini.keyframe_fractions, [0.75, 0.875, 1.0])
    early = multiscale_windows(2.0, end_offset=0.5, duration=16.0)
    assert early[0].window.end == 1.5 and early[0].window.padded_before == 4.5
    with pytest.raises(WindowError):
        multiscale_windows(20.0, duration=16.0)


# --------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------


def test_video_info(clip: Path) -> None:
    info = video_info(clip)
    assert info == (pytest.approx(4.0), pytest.approx(30.0), 120, (160, 96))


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_read_frames_picks_right_frames(clip: Path, backend: str) -> None:
    win = Window(-2.0, 4.0)  # times before the clip (2 s) repeat its first frame
    times = np.append(window_frame_times(win, 3.0), [4.2, 5.0])  # and 2 frames past the end
    frames = read_frames(clip, times, size=None, backend=backend)
    assert frames.shape == (20, H, W, 3) and frames.dtype == np.uint8
    idx = frame_indices(times, FPS, N)
    assert idx[:8].tolist() == [0] * 6 + [5, 15] and idx[-3:].tolist() == [115, 119, 119]
    for f, i in zip(frames, idx, strict=True):
        assert psnr(f, source_frame(i)) > 28  # yuv420 chroma blur on the bar edges
        assert psnr(f, source_frame(i + 1)) < 20 or i == N - 1
    # the padding repeats the edge frames
    assert (frames[:6] == frames[0]).all() and (frames[-2] == frames[-1]).all()


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_read_frames_half_frame_ties_decode_consecutive_frames(clip: Path, backend: str) -> None:
    times = window_frame_times(Window(1.0, 2.0), 30.0)  # 30 times halfway between frames
    frames = read_frames(clip, times, size=None, backend=backend)
    for k, f in enumerate(frames):
        assert psnr(f, source_frame(30 + k)) > 28, f"frame {k} is not source frame {30 + k}"


def test_backends_agree_after_resize(clip: Path) -> None:
    times = np.array([0.9, 1.5, 2.05, 2.5, 3.3, 3.9])  # starts after several key frames
    a = read_frames(clip, times, size=(80, 48), backend="decord")
    b = read_frames(clip, times, size=(80, 48), backend="pyav")
    assert a.shape == b.shape == (6, 48, 80, 3)
    assert psnr(a, b) > 35
    wrong = read_frames(clip, times + 1 / FPS, size=(80, 48), backend="pyav")
    assert psnr(a, wrong) < 25  # one frame off is clearly detected


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_corrupt_video_raises(tmp_path: Path, clip: Path, backend: str) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    with pytest.raises(VideoError, match="junk.mp4"):
        read_frames(junk, [0.5], backend=backend)
    cut = tmp_path / "truncated.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    with pytest.raises(VideoError, match="truncated.mp4"):
        read_frames(cut, [3.5], backend=backend)
    with pytest.raises(VideoError, match="missing.mp4: video file not found"):
        read_frames(tmp_path / "missing.mp4", [0.5], backend=backend)


def test_video_info_corrupt(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(VideoError, match="junk.mp4"):
        video_info(junk)


# --------------------------------------------------------------------------------------------
# dual view
# --------------------------------------------------------------------------------------------


def test_stack_dual_view_road_top_driver_bottom() -> None:
    road = np.zeros((4, 24, 40, 3), np.uint8)
    road[..., 0] = np.arange(40, dtype=np.uint8)[None, None, :]
    driver = np.full((4, 30, 20, 3), 200, np.uint8)
    out = stack_dual_view(road, driver)
    assert out.shape == (4, 24 + 60, 40, 3)  # driver scaled 2x to the road width
    assert (out[:, :24] == road).all() and (out[:, 24:] == 200).all()
    fixed = stack_dual_view(road, driver, size=(40, 48))
    assert fixed.shape == (4, 48, 40, 3)
    assert (fixed[:, :24] == road).all() and (fixed[:, 24:] == 200).all()
    with pytest.raises(ValueError, match="frame count"):
        stack_dual_view(road, driver[:3])


def test_pyav_converts_only_needed_frames(clip: Path, monkeypatch) -> None:
    import sce.data.video as video_mod

    calls = []
    real = video_mod._to_rgb
    monkeypatch.setattr(video_mod, "_to_rgb", lambda f, s: calls.append(f.time) or real(f, s))
    out = read_frames(clip, [2.0, 2.0, 2.5, 3.0], size=(80, 48), backend="pyav")
    assert out.shape == (4, 48, 80, 3) and (out[0] == out[1]).all()
    assert calls == pytest.approx([2.0, 2.5, 3.0])  # 3 unique frames, decoded in order
