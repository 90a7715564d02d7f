"""The demo's curves and its with-IMU / video-only table (issue 12 point 5), at tiny scale."""

from __future__ import annotations

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sce.demo import DemoConfig, summary_table, train_recipe


def _scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def test_recipe_stage_logs_validation_loss_and_generation_curves(
    tmp_path, tiny_kit, synthetic_manifest
):
    cfg = DemoConfig(recipe_epochs=2, val_generation_every=1, frame_size=(56, 56), batch_size=3)
    train_recipe(tiny_kit, synthetic_manifest, tmp_path, cfg)
    scalars = _scalars(tmp_path / "tensorboard" / "recipe")
    # one validation loss point per epoch, and one generation evaluation per epoch, with IMU
    # and video only (9 clips: 3 per class, 60/20/20 split: 3 validation clips)
    assert len(scalars["val/loss"]) == 2
    for setting in ("on", "off"):
        points = scalars[f"val_gen/imu_{setting}/acc"]
        assert len(points) == 2
        assert [n for _, n in scalars[f"val_gen/imu_{setting}/n"]] == [3.0, 3.0]


def _result(on: float, off: float) -> dict:
    keys = {"acc": 1.0, "ll/acc": 1.0, "binary/acc": 1.0}
    scalars = {}
    for key, scale in keys.items():
        head, _, rest = key.partition("/")
        for imu, value in (("on", on), ("off", off)):
            name = f"ll/imu_{imu}/{rest}" if head == "ll" else f"imu_{imu}/{key}"
            scalars[name] = value * scale
    return {"scalars": scalars}


def test_summary_table_prints_both_imu_settings_and_the_video_only_change():
    table = summary_table(
        {"untrained": _result(0.0, 0.0), "trained": _result(0.877, 0.745), "seconds": 1.0}
    )
    header, columns, rule, *rows = table.splitlines()
    assert set(rule) == {"-", " "}
    assert columns.split() == [
        "metric", "untrained", "IMU", "untrained", "video", "trained", "IMU", "trained",
        "video", "video", "-", "IMU",
    ]  # fmt: skip
    acc = next(r for r in rows if r.split()[0] == "acc").split()
    assert acc[1:] == ["0.000", "0.000", "0.877", "0.745", "-0.132"]
    ll_acc = next(r for r in rows if r.split()[0] == "ll/acc").split()
    assert ll_acc[3:] == ["0.877", "0.745", "-0.132"]
    macro = next(r for r in rows if r.split()[0] == "macro_f1").split()
    assert macro[1:] == ["-"] * 5  # not in the results: shown as missing, never as 0
