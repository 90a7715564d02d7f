"""Synthetic dashcam generator: file formats, class signatures in IMU and pixels, determinism."""

from __future__ import annotations

from pathlib import Path

import decord
import numpy as np
import pytest

from sce.data.schema import LABELS, SPLITS, ClipRecord, load_manifest
from sce.prepare.synthetic import assign_splits, generate_synthetic_dataset, make_caption

CLIPS, SEED, DURATION, FPS, WIDTH, HEIGHT = 9, 5, 7.0, 30, 128, 72


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    return generate_synthetic_dataset(
        out, clips=CLIPS, seed=SEED, duration=DURATION, width=WIDTH, height=HEIGHT, progress=False
    )


@pytest.fixture(scope="module")
def records(dataset: Path) -> list[ClipRecord]:
    return load_manifest(dataset)


def _read_csv(path: Path) -> tuple[str, np.ndarray]:
    header = path.read_text().splitlines()[0]
    return header, np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def _agent_fraction(frame: np.ndarray, rgb: list[int], tol: float = 0.07) -> float:
    """Share of pixels whose chromaticity matches the agent colour (brightness-invariant)."""
    pixels = frame.astype(np.float32)
    total = pixels.sum(-1, keepdims=True) + 1e-6
    ref = np.asarray(rgb, np.float32) / sum(rgb)
    match = (np.abs(pixels / total - ref).sum(-1) < tol) & (total[..., 0] > 90)
    return float(match.mean())


def test_manifest_records(dataset: Path, records: list[ClipRecord]) -> None:
    assert dataset.name == "manifest.jsonl"
    assert len(records) == CLIPS
    assert sorted(r.label for r in records) == sorted(LABELS * 3)
    for r in records:
        assert r.source == "synthetic"
        assert r.video == f"videos/{r.id}.mp4" and r.imu == f"imu/{r.id}.csv"
        assert r.gps == f"gps/{r.id}.csv"
        assert 4.0 <= r.event_time <= DURATION - 2.0
        meta = r.metadata
        assert meta["weather"] in ("clear", "rain", "fog")
        assert meta["light"] in ("day", "dusk", "night")
        assert meta["scene"] in ("urban", "highway", "rural")
        assert (meta["impact_side"] is not None) == (r.label == "collision")
        assert 20.0 < meta["ego_speed_kmh"] < 120.0
        assert r.annotations["caption"] == make_caption(r.label, meta, r.event_time)
        assert f"{meta['ego_speed_kmh']:.0f} km/h" in r.annotations["caption"]


def test_records_carry_what_every_annotated_task_reads(records: list[ClipRecord]) -> None:
    """Issue 25 (acceptance): `sce synth` writes teacher-style open and closed QA (paper 000),
    reasoning VQA and the metadata caption (paper 001), so those tasks train and evaluate on
    synthetic data; each closed pair answers from the clip's own metadata."""
    from sce.labeling.templates import structured_caption
    from sce.tasks import available_tasks, item_parts

    for r in records:
        meta, notes = r.metadata, r.annotations
        assert notes["structured_caption"] == structured_caption(meta, r.label, r.event_time)
        closed = {q["question"]: q["answer"] for q in notes["qa"] if q["type"] == "closed"}
        assert closed["What is the weather?"] == meta["weather"]
        assert closed["Is it night?"] == ("yes" if meta["light"] == "night" else "no")
        assert closed[f"What colour is the {meta['other_agent']}?"] == meta["agent_color"]
        assert [q["type"] for q in notes["qa"]] == ["open"] * 2 + ["closed"] * 4
        rvqa = notes["reasoning_vqa"]
        right = rvqa["options"][ord(rvqa["answer"]) - ord("A")]
        words = {"collision": "collide", "near_collision": "succeeds", "normal": "steady"}
        assert words[r.label] in right and len(rvqa["options"]) == 4
        served = available_tasks(r.label, notes, r.label_scope)
        for task in ("structured_caption", "open_qa", "closed_qa", "reasoning_vqa"):
            assert task in served
        assert item_parts("closed_qa", r.label, notes) == [0, 1, 2, 3]
    # the answer letter varies over clips (options rotate by the initial speed)
    assert len({r.annotations["reasoning_vqa"]["answer"] for r in records}) > 1


def test_reasoning_vqa_letter_and_qa_answers_of_one_clip() -> None:
    """The options rotate by round(10 x initial speed) % 4; the QA answers state the scenario."""
    from sce.prepare.synthetic.questions import teacher_annotations

    meta = {"agent_color": "red", "other_agent": "car", "impact_side": "front", "road": "dry",
            "scene": "urban", "weather": "fog", "light": "night", "peak_decel_ms2": -9.0,
            "peak_accel_ms2": -9.0, "min_distance_m": 0.0, "lead_distance_m": 12.0,
            "evasive_action": None, "crossing_from": None, "initial_speed_kmh": 50.0}  # fmt: skip
    notes = teacher_annotations("collision", meta, 6.2)
    assert notes["reasoning_vqa"]["answer"] == "C"  # 500 % 4 = 0: no rotation, collision is C
    rotated = teacher_annotations("collision", meta | {"initial_speed_kmh": 50.1}, 6.2)
    assert rotated["reasoning_vqa"]["answer"] == "B"  # 501 % 4 = 1: every option moves up one
    assert notes["qa"][0]["answer"] == (
        "It cannot stop in time and hits the red car at 6.2 s (front impact), braking at -9.0 m/s²."
    )


def test_collision_caption_mentions_peak_and_time() -> None:
    meta = {
        "light": "night",
        "weather": "clear",
        "road": "wet",
        "scene": "urban",
        "other_agent": "car",
        "agent_color": "orange",
        "impact_side": "front",
        "ego_speed_kmh": 48.2,
        "peak_decel_ms2": -10.44,
    }
    assert make_caption("collision", meta, 7.94) == (
        "The ego vehicle, travelling at 48 km/h on a wet urban road at night, collides with an "
        "orange car ahead; the frontal impact produces a -10.4 m/s² deceleration spike at 7.9 s."
    )


def test_splits_are_stratified(records: list[ClipRecord]) -> None:
    for split in SPLITS:
        assert sorted(r.label for r in records if r.split == split) == sorted(LABELS)
    labels = [LABELS[i % 3] for i in range(30)]  # 10 per class: 6 / 2 / 2 at 0.6 / 0.2 / 0.2
    splits = assign_splits(labels, (0.6, 0.2, 0.2))
    for label in LABELS:
        mine = [s for s, lab in zip(splits, labels, strict=True) if lab == label]
        assert [mine.count(s) for s in SPLITS] == [6, 2, 2]
    with pytest.raises(ValueError, match="split_fractions"):
        assign_splits(labels, (0.5, 0.2, 0.2))


def test_video_length_rate_and_size(records: list[ClipRecord]) -> None:
    for r in records:
        reader = decord.VideoReader(str(r.path("video")))
        assert reader.get_avg_fps() == pytest.approx(FPS)
        assert abs(len(reader) / FPS - DURATION) <= 1.0 / FPS
        assert reader[0].shape == (HEIGHT, WIDTH, 3)


def test_imu_and_gps_files(records: list[ClipRecord]) -> None:
    for r in records:
        header, imu = _read_csv(r.path("imu"))
        assert header == "t,ax,ay,az,gx,gy,gz"
        assert imu.shape == (700, 7)
        assert imu[0, 0] == 0.0 and np.median(np.diff(imu[:, 0])) == pytest.approx(0.01)
        assert imu[:, 3].mean() == pytest.approx(9.81, abs=0.05)  # gravity on z
        assert np.abs(imu[:, 6]).max() < 1.5  # yaw rate in rad/s, not deg/s
        header, gps = _read_csv(r.path("gps"))
        assert header == "t,speed"
        np.testing.assert_array_equal(gps[:, 0], np.arange(8.0))  # 1 Hz, 0..7 s
        assert gps[:, 1].min() >= 0.0 and gps[:, 1].max() < 40.0


def test_imu_class_signatures(records: list[ClipRecord]) -> None:
    minima: dict[str, list[float]] = {label: [] for label in LABELS}
    for r in records:
        _, imu = _read_csv(r.path("imu"))
        ax = imu[:, 1]
        minima[r.label].append(ax.min())
        peak_time = imu[np.argmax(np.abs(ax)), 0]
        if r.label == "normal":  # event time is the paper-000 heuristic itself
            assert peak_time == pytest.approx(r.event_time)
            assert np.abs(ax).max() < 2.0
        else:
            assert abs(peak_time - r.event_time) <= 0.5
        assert r.metadata["peak_decel_ms2"] == pytest.approx(ax.min(), abs=0.006)
    assert all(-12.0 < m < -8.0 for m in minima["collision"])
    assert all(-7.0 < m < -4.0 for m in minima["near_collision"])
    assert all(m > -2.5 for m in minima["normal"])


def test_gps_speed_follows_integrated_ax(records: list[ClipRecord]) -> None:
    for r in records:
        _, imu = _read_csv(r.path("imu"))
        _, gps = _read_csv(r.path("gps"))
        # Speed change between the 1 s and 6 s fixes equals the integral of ax in between.
        integral = imu[100:600, 1].sum() * 0.01
        assert gps[6, 1] - gps[1, 1] == pytest.approx(integral, abs=0.4), r.id
        if r.label != "normal":
            assert integral < -1.0  # braking shows in the speed


def test_agent_fills_the_view_at_collision(records: list[ClipRecord]) -> None:
    covered: dict[str, list[float]] = {label: [] for label in LABELS}
    for r in records:
        reader = decord.VideoReader(str(r.path("video")))
        frame = reader[int(round(r.event_time * FPS))].asnumpy()
        covered[r.label].append(_agent_fraction(frame, r.metadata["agent_rgb"]))
        if r.label == "collision":  # it was far ahead at the start: the agent closed in
            start = _agent_fraction(reader[0].asnumpy(), r.metadata["agent_rgb"])
            assert covered["collision"][-1] > start + 0.1, r.id
    assert min(covered["collision"]) > 0.15
    assert max(covered["normal"]) < 0.05
    assert min(covered["collision"]) > 3 * max(covered["normal"])


def test_same_seed_same_files_other_seed_differs(
    dataset: Path, records: list[ClipRecord], tmp_path: Path
) -> None:
    again = generate_synthetic_dataset(
        tmp_path / "a",
        clips=CLIPS,
        seed=SEED,
        duration=DURATION,
        width=WIDTH,
        height=HEIGHT,
        progress=False,
    )
    assert again.read_bytes() == dataset.read_bytes()
    for r in records:
        for name in ("imu", "gps"):
            assert (again.parent / getattr(r, name)).read_bytes() == r.path(name).read_bytes()
    first = records[0]
    frames = decord.VideoReader(str(first.path("video"))).get_batch([0, 100, 200]).asnumpy()
    twin = decord.VideoReader(str(again.parent / first.video)).get_batch([0, 100, 200]).asnumpy()
    np.testing.assert_array_equal(frames, twin)
    other = generate_synthetic_dataset(
        tmp_path / "b",
        clips=3,
        seed=SEED + 1,
        duration=DURATION,
        width=WIDTH,
        height=HEIGHT,
        progress=False,
    )
    assert other.read_text().splitlines()[0] != dataset.read_text().splitlines()[0]
    others = load_manifest(other)
    assert others[0].path("imu").read_bytes() != records[0].path("imu").read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"duration": 5.0}, "duration"),
        ({"width": 121}, "width"),
        ({"clips": 0}, "clips"),
        ({"seed": -1}, "seed"),
        ({"split_fractions": (0.7, 0.7, 0.0)}, "split_fractions"),
    ],
)
def test_bad_arguments_are_named(tmp_path: Path, kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        generate_synthetic_dataset(tmp_path, **{"clips": 3, "progress": False, **kwargs})
