"""`sce sweep`: planning (merge order, run folders), orchestration (status, failures, HParams,
sweep.json) with a stand-in trainer, the shipped ablation files, and (slow) a real tiny sweep."""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
from pathlib import Path

import pytest
import yaml
from helpers.paths import REPO

from sce.cli import main
from sce.data.clip import WindowSpec
from sce.studies import sweep as sw

DEMO = REPO / "experiments" / "demo.yaml"
ABLATIONS = sorted((REPO / "experiments" / "ablations").glob("*.yaml"))

# Stands in for `sce fit`: reads the variant's config, writes metrics.json and the resolved
# config.yaml into its run folder; fps 5 crashes. Accuracy fps / 10 + seed / 100.
FAKE_FIT = r"""
import json, sys
from pathlib import Path
import yaml
cfg = yaml.safe_load(Path(sys.argv[1]).read_text())
fps = cfg["data"]["window"]["fps"]
if fps == 5.0:
    sys.exit("boom: fake trainer failed")
assert cfg["data"].get("seed", 0) == cfg["seed_everything"]
acc = fps / 10 + cfg["seed_everything"] / 100
scalars = {"acc": acc, "macro_f1": acc / 2, "f1/collision": None, "f1/normal": 0.5, "n": 9.0,
           "ll/acc": 1 - acc, "imu_off/acc": 0.25}
record = {"split": "val", "step": 4, "scalars": scalars}
run_dir = Path(cfg["trainer"]["default_root_dir"])
(run_dir / "metrics.json").write_text(json.dumps(record))
cfg["data"]["class_factors"] = None  # LightningCLI's config.yaml holds every default
(run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
print("fake fit done")
"""


def fake_command(variant: sw.Variant) -> list[str]:
    return [sys.executable, "-c", FAKE_FIT, str(variant.run_dir / sw.CONFIG_NAME)]


def write_ablation(path: Path, variants: dict, **fields) -> Path:
    path.write_text(
        yaml.safe_dump({"base": str(DEMO), "variants": variants, **fields}, sort_keys=False)
    )
    return path


def hparams_of(run_dir: Path) -> tuple[dict, list[str]]:
    """(hparams, metric tags) of the HParams session in a run folder's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    params = {
        k: v.number_value if v.HasField("number_value") else v.string_value
        for k, v in start.session_start_info.hparams.items()
    }
    return params, [m.name.tag for m in experiment.experiment.metric_infos]


# ------------------------------------------------------------------------------ planning
def test_plan_merges_base_overrides_sets_then_variant(tmp_path):
    ablation = write_ablation(
        tmp_path / "fps.yaml",
        {"fps1": {"data.window.fps": 1.0}, "fps2": {"data.window.fps": 2.0}},
        overrides={"data.window.fps": 9.0, "trainer.max_epochs": 5, "data.batch_size": 2},
    )
    plan = sw.plan_sweep(
        ablation,
        sets=["--trainer.max_epochs=1", "--data.window.fps=7", "--data.eval_seed=3"],
        out=tmp_path / "out",
    )
    assert (plan.name, plan.swept, plan.base) == ("fps", ["data.window.fps"], DEMO)
    assert [v.name for v in plan.variants] == ["fps1", "fps2"]
    v = plan.variants[0]
    assert (
        v.config["data"]["window"]["fps"] == 1.0
    )  # the variant wins over the arguments and overrides
    assert v.config["trainer"]["max_epochs"] == 1  # an argument wins over the ablation's overrides
    assert v.config["data"]["batch_size"] == 2
    assert v.config["data"]["eval_seed"] == 3
    assert v.config["model"]["rank"] == 16  # untouched base values stay
    assert v.run_dir == tmp_path / "out" / "fps" / "fps1"
    assert v.config["trainer"]["default_root_dir"] == str(v.run_dir)
    logger = v.config["trainer"]["logger"]["init_args"]
    assert (logger["save_dir"], logger["name"], logger["version"]) == (
        str(tmp_path / "out"),
        "fps",
        "fps1",
    )
    assert logger["default_hp_metric"] is False
    assert v.label == "fps=1"
    assert plan.variants[1].config["data"]["window"]["fps"] == 2.0
    assert sw.variant_command(v)[-4:] == [
        "sce.cli",
        "fit",
        "--config",
        str(v.run_dir / sw.CONFIG_NAME),
    ]


def test_plan_only_and_base_lookup(tmp_path):
    folder = tmp_path / "experiments" / "ablations"
    folder.mkdir(parents=True)
    (tmp_path / "experiments" / "b.yaml").write_text(DEMO.read_text())
    ablation = folder / "r.yaml"
    ablation.write_text(
        yaml.safe_dump(
            {
                "base": "experiments/b.yaml",
                "name": "rk",
                "variants": {"r4": {"model.rank": 4}, "r8": {"model.rank": 8}},
            }
        )
    )
    plan = sw.plan_sweep(ablation, only=["r8"], out=tmp_path / "o")
    assert plan.base == tmp_path / "experiments" / "b.yaml"  # found above the ablation file
    assert [v.name for v in plan.variants] == ["r8"] and plan.all_variants == ["r4", "r8"]
    assert plan.variants[0].run_dir == tmp_path / "o" / "rk" / "r8"
    assert sw.plan_sweep(ablation, base=DEMO, out=tmp_path).base == DEMO
    with pytest.raises(sw.SweepError, match="unknown variant"):
        sw.plan_sweep(ablation, only=["r16"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"base": "x.yaml"}, "variants"),
        ({"variants": {"a b": {"data.window.fps": 1}}}, "folder-safe"),
        ({"variants": {"a": {}}}, "dotted keys"),
        ({"variants": {"a": {"data.window.fps": 1}}, "sweep": 1}, "unknown field"),
    ],
)
def test_bad_ablation_files_are_named(tmp_path, spec, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(sw.SweepError, match=message):
        sw.load_ablation(path)


@pytest.mark.parametrize("ablation", ABLATIONS, ids=lambda p: p.stem)
def test_shipped_ablations_plan_with_known_keys(ablation):
    from sce.data.datamodule import SceDataModule
    from sce.models.module import SceModule

    header = "\n".join(line for line in ablation.read_text().splitlines() if line.startswith("#"))
    assert f"Command:  sce sweep experiments/ablations/{ablation.name}" in header
    plan = sw.plan_sweep(ablation, out="unused")
    assert len(plan.variants) >= 2
    known = {
        "data": set(inspect.signature(SceDataModule.__init__).parameters),
        "model": set(inspect.signature(SceModule.__init__).parameters),
    }
    known["data"] |= {f"window.{f.name}" for f in dataclasses.fields(WindowSpec)}
    for key in [*plan.swept, *plan.overrides]:
        section, name = key.split(".", 1)
        assert name in known.get(section, {name}), f"{ablation.name}: unknown key {key}"
    values = [
        tuple(v.values[k] if k in v.values else None for k in plan.swept) for v in plan.variants
    ]
    assert len(set(map(repr, values))) == len(values), "two variants run the same config"


def test_shipped_ablation_values():
    plans = {p.stem: sw.plan_sweep(p, out="unused") for p in ABLATIONS}
    assert {p for p in plans} >= {
        "fps",
        "rank",
        "resolution",
        "duration",
        "imu_dropout",
        "balancing",
    }
    fps = [v.config["data"]["window"]["fps"] for v in plans["fps"].variants]
    assert fps == [1.0, 3.0, 15.0, 30.0]
    assert [v.config["model"]["rank"] for v in plans["rank"].variants] == [8, 16, 32, 64]
    assert [v.config["data"]["imu_dropout"] for v in plans["imu_dropout"].variants] == [0.0, 0.5]
    factors = [v.config["data"].get("class_factors") for v in plans["balancing"].variants]
    assert factors == [None, {"mcq": {"collision": 15, "near_collision": 2}}]


def test_dry_run_prints_plan_and_budget_and_writes_nothing(tmp_path, tiny_kit, capsys):
    ablation = write_ablation(
        tmp_path / "fps.yaml", {"fps1": {"data.window.fps": 1.0}, "fps2": {"data.window.fps": 2.0}}
    )
    out = tmp_path / "out"
    code = main(
        [
            "sweep",
            str(ablation),
            "--dry-run",
            "--out",
            str(out),
            f"--model.model_path={tiny_kit}",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    # Demo frames 112x56: 4 x 2 merged patches per frame pair; 6 and 12 frames.
    assert "fps1: fps=1  [6 frames, 24 visual tokens" in text
    assert "fps2: fps=2  [12 frames, 48 visual tokens" in text
    assert f"fit --config {out / 'fps' / 'fps2' / sw.CONFIG_NAME}" in text
    assert not out.exists()


# ------------------------------------------------------------------------------ running
@pytest.fixture()
def fake_sweep(tmp_path):
    ablation = write_ablation(
        tmp_path / "fps.yaml",
        {
            "fps1": {"data.window.fps": 1.0},
            "fps5": {"data.window.fps": 5.0},
            "fps2": {"data.window.fps": 2.0},
        },
        overrides={"model.model_path": "sce-test/none"},
    )
    return ablation, tmp_path / "out"


def test_run_sweep_records_status_metrics_and_hparams(fake_sweep):
    ablation, out = fake_sweep
    plan = sw.plan_sweep(ablation, out=out)
    sw.attach_budgets(plan)  # Qwen defaults: 112x56 -> 112x56, 4 x 2 tokens per frame pair
    summary = sw.run_sweep(plan, command=fake_command, echo=False)
    on_disk = json.loads((out / "fps" / "sweep.json").read_text())
    assert on_disk["variants"] == summary["variants"]
    assert on_disk["swept"] == ["data.window.fps"]
    entries = {e["name"]: e for e in on_disk["variants"]}
    assert [e["name"] for e in on_disk["variants"]] == ["fps1", "fps5", "fps2"]
    assert {n: e["status"] for n, e in entries.items()} == {
        "fps1": "ok",
        "fps5": "failed",
        "fps2": "ok",
    }
    assert (
        entries["fps5"]["returncode"] == 1
        and "boom: fake trainer failed" in entries["fps5"]["error"]
    )
    assert entries["fps2"]["metrics"] == {
        "split": "val",
        "step": 4,
        "acc": 0.2,
        "macro_f1": 0.1,
        "f1/collision": None,
        "f1/normal": 0.5,
        "ll/acc": 0.8,
        "imu_off/acc": 0.25,
    }
    assert on_disk["seconds"] == pytest.approx(sum(e["seconds"] for e in entries.values()))
    assert "spread" not in on_disk and "runs" not in entries["fps2"]  # the unseeded layout
    assert entries["fps2"]["budget"]["frames_per_clip"] == 12
    assert entries["fps2"]["budget"]["visual_tokens_per_clip"] == 6 * 8
    assert entries["fps1"]["values"] == {"data.window.fps": 1.0}
    assert "fake fit done" in (out / "fps" / "fps1" / sw.LOG_NAME).read_text()
    params, tags = hparams_of(out / "fps" / "fps2")
    assert params["data.window.fps"] == 2.0 and params["variant"] == "fps2"
    assert params["model.rank"] == 16 and params["model.finetuning"] == "dora"
    assert params["budget/visual_tokens_per_clip"] == 48
    assert params["data.class_factors"] == "none"
    assert {"val_gen/acc", "val_gen_class/f1/collision", "val/loss"} <= set(tags)
    assert not (out / "fps" / "fps5" / "metrics.json").exists()


def test_cli_exit_codes_overwrite_and_only(fake_sweep, monkeypatch, capsys):
    ablation, out = fake_sweep
    monkeypatch.setattr(sw, "variant_command", fake_command)
    args = ["sweep", str(ablation), "--out", str(out), "--no-budget"]
    assert main([*args, "--only", "fps1,fps5"]) == 1
    captured = capsys.readouterr()
    assert "1 variant(s) failed: fps5" in captured.err
    assert "boom: fake trainer failed" in captured.out
    assert main([*args, "--only", "fps1"]) == 2  # fps1 already holds a run
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--only", "fps2"]) == 0
    names = [e["name"] for e in json.loads((out / "fps" / "sweep.json").read_text())["variants"]]
    assert names == ["fps1", "fps5", "fps2"]  # earlier entries kept, ablation order
    assert main([*args, "--only", "fps1", "--overwrite"]) == 0


# Stands in for `sce test --run RUN --ckpt C`: the test split's metrics.json, in the run folder.
FAKE_TEST = r"""
import json, sys
from pathlib import Path
run_dir, ckpt = Path(sys.argv[1]), sys.argv[2]
record = {"split": "test", "step": 9, "scalars": {"acc": 0.75 if ckpt == "last" else 0.5}}
(run_dir / "metrics.json").write_text(json.dumps(record))
print("fake test done", ckpt)
"""


def test_test_option_tests_each_trained_run(fake_sweep, monkeypatch, capsys):
    """--test last: after each fit that succeeded, `sce test --run RUN --ckpt last` in the same
    log; the summary and sweep.json then hold the test split's metrics."""
    ablation, out = fake_sweep
    run = sw.Variant("fps1", {}, {}, out / "fps" / "fps1")
    assert sw.test_command(run, "last")[-5:] == [
        "test",
        "--run",
        str(run.run_dir),
        "--ckpt",
        "last",
    ]
    tested = []

    def fake_test(variant: sw.Variant, ckpt: str) -> list[str]:
        tested.append(variant.run_name)
        return [sys.executable, "-c", FAKE_TEST, str(variant.run_dir), ckpt]

    monkeypatch.setattr(sw, "variant_command", fake_command)
    monkeypatch.setattr(sw, "test_command", fake_test)
    args = ["sweep", str(ablation), "--out", str(out), "--no-budget", "--test", "last"]
    assert main(args) == 1  # fps5's fit fails: it is not tested
    assert tested == ["fps1", "fps2"]
    entries = {
        e["name"]: e for e in json.loads((out / "fps" / "sweep.json").read_text())["variants"]
    }
    assert entries["fps1"]["metrics"] == {"split": "test", "step": 9, "acc": 0.75}
    log = (out / "fps" / "fps1" / sw.LOG_NAME).read_text()
    assert log.index("fake fit done") < log.index("fake test done last")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*args[:-1], "first"])  # best or last only
    assert "invalid choice: 'first'" in capsys.readouterr().err


# ------------------------------------------------------------------------------ seeds, resume
def counting(calls: list[str]):
    """fake_command that records which runs it was asked to train."""

    def command(variant: sw.Variant) -> list[str]:
        calls.append(variant.run_name)
        return fake_command(variant)

    return command


def seeded_plan(ablation: Path, out: Path, only=("fps1", "fps2"), **kwargs) -> sw.SweepPlan:
    return sw.plan_sweep(ablation, only=list(only), out=out, seeds=[3, 7], **kwargs)


def test_seeds_plan_one_run_folder_per_variant_and_seed(fake_sweep):
    ablation, out = fake_sweep
    plan = seeded_plan(ablation, out)
    assert [v.run_name for v in plan.variants] == [
        "fps1/seed3",
        "fps1/seed7",
        "fps2/seed3",
        "fps2/seed7",
    ]
    run = plan.variants[1]
    assert run.run_dir == out / "fps" / "fps1" / "seed7"
    assert run.config["seed_everything"] == 7 and run.config["data"]["seed"] == 7
    # eval_seed untouched: every seed is scored on the same evaluation items
    assert {v.config["data"]["eval_seed"] for v in plan.variants} == {0}  # the default
    assert run.config["trainer"]["default_root_dir"] == str(run.run_dir)
    logger = run.config["trainer"]["logger"]["init_args"]
    assert (logger["name"], logger["version"]) == ("fps", "fps1/seed7")
    text = sw.format_plan(plan)
    assert "sweep fps: 2 variant(s) x 2 seed(s) [3, 7] of" in text
    assert text.count("  fps1: fps=1") == 1
    assert f"fit --config {out / 'fps' / 'fps2' / 'seed7' / sw.CONFIG_NAME}" in text
    with pytest.raises(sw.SweepError, match="--seeds sets"):
        sw.plan_sweep(ablation, sets=["--data.seed=1"], out=out, seeds=[0, 1])
    with pytest.raises(sw.SweepError, match="distinct"):
        sw.plan_sweep(ablation, out=out, seeds=[1, 1])


def test_seeded_sweep_records_runs_means_and_sample_std(fake_sweep):
    ablation, out = fake_sweep
    calls: list[str] = []
    plan = seeded_plan(ablation, out, only=("fps1", "fps5", "fps2"))
    summary = sw.run_sweep(plan, command=counting(calls), echo=False)
    assert len(calls) == 6
    assert sorted(p.parent.relative_to(out).as_posix() for p in out.glob("*/*/*/metrics.json")) == [
        "fps/fps1/seed3",
        "fps/fps1/seed7",
        "fps/fps2/seed3",
        "fps/fps2/seed7",
    ]
    on_disk = json.loads((out / "fps" / sw.SUMMARY_NAME).read_text())
    assert on_disk["variants"] == summary["variants"]
    assert "sample standard deviation" in on_disk["spread"]
    entries = {e["name"]: e for e in on_disk["variants"]}
    fps1 = entries["fps1"]
    assert (fps1["status"], fps1["seeds"], fps1["n_ok"]) == ("ok", [3, 7], 2)
    assert [(r["seed"], r["status"]) for r in fps1["runs"]] == [(3, "ok"), (7, "ok")]
    assert [r["metrics"]["acc"] for r in fps1["runs"]] == pytest.approx([0.13, 0.17])
    # mean of 0.13 and 0.17; sample std |0.17 - 0.13| / sqrt(2) (the population std is 0.02)
    assert fps1["metrics"]["acc"] == pytest.approx(0.15)
    assert fps1["std"]["acc"] == pytest.approx(0.04 / 2**0.5)
    assert fps1["metrics"]["macro_f1"] == pytest.approx(0.075)
    assert fps1["std"]["macro_f1"] == pytest.approx(0.02 / 2**0.5)
    assert fps1["metrics"]["ll/acc"] == pytest.approx(0.85)
    assert (fps1["metrics"]["f1/normal"], fps1["std"]["f1/normal"]) == (0.5, 0.0)
    assert "f1/collision" not in fps1["metrics"]  # null in every run: no mean
    assert entries["fps2"]["metrics"]["acc"] == pytest.approx(0.25)
    assert fps1["seconds"] == pytest.approx(sum(r["seconds"] for r in fps1["runs"]), abs=0.11)
    assert on_disk["seconds"] == pytest.approx(sum(e["seconds"] for e in entries.values()))
    fps5 = entries["fps5"]
    assert (fps5["status"], fps5["n_ok"], fps5["metrics"]) == ("failed", 0, {})
    assert "boom" in fps5["runs"][1]["error"]
    params, _ = hparams_of(out / "fps" / "fps2" / "seed7")
    assert (params["variant"], params["seed"], params["data.window.fps"]) == ("fps2", 7, 2.0)

    text = sw.format_summary(on_disk)
    assert "mean ± sample std over seeds" in text
    line = next(x for x in text.splitlines() if x.strip().startswith("fps1"))
    assert "2/2 seeds ok" in line
    assert "acc 0.150 ± 0.028" in line and "ll/acc 0.850 ± 0.028" in line
    assert "IMU off acc 0.250 ± 0.000" in line
    assert "[fps5/seed7] failed" in text


def test_resume_skips_exactly_the_finished_runs(fake_sweep, capsys):
    ablation, out = fake_sweep
    first: list[str] = []
    sw.run_sweep(seeded_plan(ablation, out, only=("fps1", "fps5")), command=counting(first))
    assert len(first) == 4  # fps1 seeds 3, 7 ok; fps5 seeds 3, 7 fail
    (out / "fps" / "fps1" / "seed7" / "metrics.json").unlink()  # as if it died before the end
    (out / "fps" / "fps1" / "seed3" / "kept").write_text("")
    (out / "fps" / "fps5" / "seed3" / "stale").write_text("")
    with pytest.raises(sw.SweepError, match="--resume"):
        sw.run_sweep(seeded_plan(ablation, out, only=("fps1", "fps5")), command=fake_command)
    capsys.readouterr()

    again: list[str] = []
    plan = seeded_plan(ablation, out, only=("fps1", "fps5", "fps2"))
    summary = sw.run_sweep(plan, command=counting(again), echo=False, resume=True)
    assert again == ["fps1/seed7", "fps5/seed3", "fps5/seed7", "fps2/seed3", "fps2/seed7"]
    assert "skipping 1 finished run(s) (fps1/seed3); 5 to run" in capsys.readouterr().out
    assert (out / "fps" / "fps1" / "seed3" / "kept").exists()  # the skipped folder is untouched
    assert not (out / "fps" / "fps5" / "seed3" / "stale").exists()  # reruns start clean
    entries = {e["name"]: e for e in summary["variants"]}
    assert entries["fps1"]["n_ok"] == 2 and entries["fps1"]["metrics"]["acc"] == pytest.approx(0.15)

    none: list[str] = []
    sw.run_sweep(seeded_plan(ablation, out), command=counting(none), echo=False, resume=True)
    assert none == []
    changed = seeded_plan(ablation, out, sets=["--data.batch_size=3"])
    with pytest.raises(sw.SweepError, match="data.batch_size differ"):
        sw.run_sweep(changed, command=fake_command, resume=True)
    unseeded = sw.plan_sweep(ablation, only=["fps1"], out=out)
    with pytest.raises(sw.SweepError, match="holds runs per seed"):
        sw.run_sweep(unseeded, command=fake_command, resume=True)


def test_cli_resume_unseeded_reruns_failed_variants_only(fake_sweep, monkeypatch, capsys):
    ablation, out = fake_sweep
    calls: list[str] = []
    monkeypatch.setattr(sw, "variant_command", counting(calls))
    args = ["sweep", str(ablation), "--out", str(out), "--no-budget"]
    assert main(args) == 1 and calls == ["fps1", "fps5", "fps2"]
    calls.clear()
    assert main([*args, "--resume"]) == 1 and calls == ["fps5"]
    captured = capsys.readouterr()
    assert "skipping 2 finished run(s) (fps1, fps2); 1 to run" in captured.out
    assert "1 variant(s) failed: fps5" in captured.err
    with pytest.raises(SystemExit, match="2"):
        main([*args, "--resume", "--overwrite"])  # argparse: one or the other
    assert "not allowed with argument" in capsys.readouterr().err
    assert main([*args, "--seeds", "0,1"]) == 2  # seed runs inside unseeded run folders
    assert "holds an unseeded run" in capsys.readouterr().err


# ------------------------------------------------------------------------------ end to end
TINY_OVERRIDES = {
    "data.manifest": "synthetic:9:0",
    "data.batch_size": 2,
    "trainer.max_epochs": 1,
    "trainer.max_steps": 2,
    "trainer.limit_val_batches": 1,
    "trainer.log_every_n_steps": 1,
    # one parser for every command: a list item cannot be addressed by index, so the run's
    # callbacks are given whole (demo.yaml's, with a smaller evaluation)
    "trainer.callbacks": [
        {
            "class_path": "sce.evaluate.callback.GenerationEvaluation",
            "init_args": {"every_n_epochs": 1, "max_samples": 3, "max_new_tokens": 4},
        },
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {
                "save_top_k": 1,
                "monitor": "val_gen/acc",
                "mode": "max",
                "save_last": True,
            },
        },
    ],
}


@pytest.mark.slow
def test_tiny_sweep_end_to_end(tmp_path, monkeypatch):
    """Two real `sce fit` runs of the tiny model (about 40 s), then the notebook on them."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("SCE_CACHE", str(tmp_path / "cache"))
    ablation = write_ablation(
        tmp_path / "tinyfps.yaml",
        {"fps1": {"data.window.fps": 1.0}, "fps2": {"data.window.fps": 2.0}},
        overrides=TINY_OVERRIDES,
    )
    out = tmp_path / "sweeps"
    assert main(["sweep", str(ablation), "--out", str(out)]) == 0
    summary = json.loads((out / "tinyfps" / "sweep.json").read_text())
    assert [(e["name"], e["status"]) for e in summary["variants"]] == [
        ("fps1", "ok"),
        ("fps2", "ok"),
    ]
    for entry, fps in zip(summary["variants"], (1.0, 2.0), strict=True):
        run_dir = out / "tinyfps" / entry["name"]
        assert list(run_dir.glob("events.out.tfevents.*"))
        assert json.loads((run_dir / "metrics.json").read_text())["split"] == "val"
        assert "acc" in entry["metrics"] and entry["budget"]["visual_tokens_per_clip"] == fps * 24
        params, tags = hparams_of(run_dir)
        assert params["data.window.fps"] == fps and "val_gen/acc" in tags
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["window"]["fps"] == fps

    nb = nbformat.read(REPO / "notebooks" / "ablations.ipynb", as_version=4)
    monkeypatch.setenv("SCE_SWEEP_DIR", str(out / "tinyfps"))
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    assert (out / "tinyfps" / "figures" / "train_loss.png").is_file()


@pytest.mark.slow
def test_tiny_seeded_sweep_with_report(tmp_path, monkeypatch, capsys):
    """One variant, two seeds, real `sce fit` (about 40 s): Lightning writes each run into its
    seed folder, the seeds train differently, are scored on the same items, and --report
    writes the executed notebook and its figures."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("SCE_CACHE", str(tmp_path / "cache"))
    ablation = write_ablation(
        tmp_path / "tinyseed.yaml", {"fps1": {"data.window.fps": 1.0}}, overrides=TINY_OVERRIDES
    )
    out = tmp_path / "sweeps"
    assert main(["sweep", str(ablation), "--out", str(out), "--seeds", "0,1", "--report"]) == 0
    variant_dir = out / "tinyseed" / "fps1"
    assert sorted(p.name for p in variant_dir.iterdir()) == ["seed0", "seed1"]
    losses = []
    for seed in (0, 1):
        config = yaml.safe_load((variant_dir / f"seed{seed}" / "config.yaml").read_text())
        assert (config["seed_everything"], config["data"]["seed"]) == (seed, seed)
        assert config["data"]["eval_seed"] == 0
        events = EventAccumulator(str(variant_dir / f"seed{seed}"))
        events.Reload()
        losses.append([e.value for e in events.Scalars("train/loss_step")])
    assert losses[0] != losses[1]
    entry = json.loads((out / "tinyseed" / "sweep.json").read_text())["variants"][0]
    assert (entry["status"], entry["n_ok"]) == ("ok", 2) and "acc" in entry["std"]
    assert (out / "tinyseed" / "ablations.ipynb").is_file()
    assert (out / "tinyseed" / "figures" / "val_loss.png").is_file()
    assert "mean ± sample std over seeds" in capsys.readouterr().out


# ------------------------------------------------------------------------------ grid (issue 27)


def test_grid_plans_the_cartesian_product(tmp_path):
    """`grid:` fps x rank: 2 x 2 = 4 variants, the last key fastest, each with both values."""
    path = tmp_path / "fps_rank.yaml"
    grid = {"data.window.fps": [1.0, 3.0], "model.rank": [8, 32]}
    path.write_text(yaml.safe_dump({"base": str(DEMO), "grid": grid}, sort_keys=False))
    plan = sw.plan_sweep(path, out=tmp_path / "out")
    assert plan.names == ["fps1_rank8", "fps1_rank32", "fps3_rank8", "fps3_rank32"]
    assert plan.swept == ["data.window.fps", "model.rank"]
    configs = [
        (v.config["data"]["window"]["fps"], v.config["model"]["rank"]) for v in plan.variants
    ]
    assert configs == [(1.0, 8), (1.0, 32), (3.0, 8), (3.0, 32)]
    assert plan.variants[1].label == "fps=1, rank=32"
    assert plan.variants[1].run_dir == tmp_path / "out" / "fps_rank" / "fps1_rank32"


def test_grid_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    for spec, message in (
        ({"grid": {"model.rank": [8]}, "variants": {"a": {"model.rank": 8}}}, "not both"),
        ({"grid": {"model.rank": 8}}, "grid key 'model.rank' must list its values"),
        ({"grid": {"model.rank": [8, 8.0]}}, "variant 'rank8' twice"),
    ):
        path.write_text(yaml.safe_dump({"base": str(DEMO), **spec}))
        with pytest.raises(sw.SweepError, match=rf"{path}: .*{message}"):
            sw.load_ablation(path)
    # a value without a folder-safe text is named by its position
    variants = sw.grid_variants({"data.window": [{"width": 420}, {"width": 210}]}, path)
    assert list(variants) == ["window0", "window1"]


def test_x_axis_labels_combined_variants_by_every_swept_key():
    """The issue's probe: an fps x rank sweep was drawn with the x axis labelled `data.fps`.
    A single swept number keeps its numeric axis; anything else gets one tick per variant,
    labelled by its values, and the axis names every swept key."""
    values = [{"data.window.fps": f, "model.rank": r} for f in (1.0, 3.0) for r in (8, 32)]
    labels = ["fps=1, rank=8", "fps=1, rank=32", "fps=3, rank=8", "fps=3, rank=32"]
    x, label, log, ticks = sw.x_axis(["data.window.fps", "model.rank"], values, labels)
    assert (x, label, log, ticks) == ([0, 1, 2, 3], "data.window.fps x model.rank", False, labels)
    # variants that set different keys: never the first key's numbers
    mixed = [{"data.window.fps": 1.0}, {"model.rank": 8}]
    x, label, _, ticks = sw.x_axis(["data.window.fps", "model.rank"], mixed, ["fps=1", "rank=8"])
    assert (x, label, ticks) == ([0, 1], "data.window.fps x model.rank", ["fps=1", "rank=8"])
    fps = [{"data.window.fps": v} for v in (1.0, 3.0, 10.0)]
    assert sw.x_axis(["data.window.fps"], fps, ["a", "b", "c"]) == (
        [1.0, 3.0, 10.0],
        "data.window.fps",
        True,
        ["1", "3", "10"],
    )
