"""One config path (issue 13 points 3 and 6): every command that reads a config resolves it with
the `sce fit` parser and takes `--data.window.fps=15` overrides; help imports no torch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.paths import REPO

from sce.cli import main
from sce.train.config import ConfigError, resolve_config

DEMO = REPO / "experiments" / "demo.yaml"


@pytest.mark.parametrize("argv", [["--help"], ["synth", "--help"], ["data", "--help"]])
def test_help_imports_no_torch(argv):
    code = (
        "import sys\nfrom sce.cli import main\ntry:\n    main(sys.argv[1:])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'lightning', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout
    assert "usage: sce" in out
    assert out.strip().splitlines()[-1] == "[]"


def test_resolve_config_fills_defaults_links_and_checks_types():
    config = resolve_config(DEMO, ["--data.window.fps=15"])
    assert config["data"]["window"]["fps"] == 15.0
    assert config["model"]["model_path"] == "tiny:0"
    # as in a run's config.yaml: data.processor_path is the link's target, set when parsed
    assert "processor_path" not in config["data"]
    assert config["data"]["eval_seed"] == 0  # SceDataModule's default, not in demo.yaml
    assert resolve_config(config) == config  # a resolved config resolves to itself
    with pytest.raises(ConfigError, match=r"demo.yaml: .*data.window.fps"):
        resolve_config(DEMO, ["--data.window.fps=fast"])
    with pytest.raises(ConfigError, match="unrecognized arguments: --data.fsp=15"):
        resolve_config(DEMO, ["--data.fsp=15"])


def test_data_cache_takes_fit_overrides(tmp_path, synthetic_manifest, tiny_kit, capsys):
    """`sce data cache --config X --data.cache_dir=D --data.manifest=M`: the overrides decide
    where the frames go (D holds the decoded windows; the config's own cache_dir stays empty)."""
    config = {
        "model": {"model_path": str(tiny_kit)},
        "data": {"manifest": "nowhere.jsonl", "window": {"width": 64, "height": 36}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**config, "data": {**config["data"], "cache_dir": "x"}}))
    cache = tmp_path / "frames"
    args = ["data", "cache", "--config", str(path), "--splits", "val", "--workers", "0"]
    overrides = [f"--data.cache_dir={cache}", f"--data.manifest={synthetic_manifest}"]
    assert main([*args, *overrides]) == 0
    assert "val: 3 decoded, 0 already cached, 0 failed" in capsys.readouterr().out
    assert len(list(cache.rglob("*.npy"))) == 3
    assert not (tmp_path / "x").exists() and not Path("x").exists()
    assert main([*args, "--data.window.fps=bad", *overrides]) == 2
    assert 'Parser key "data.window.fps"' in capsys.readouterr().out


def test_sweep_takes_fit_overrides_and_rejects_set(tmp_path, capsys):
    ablation = tmp_path / "fps.yaml"
    ablation.write_text(yaml.safe_dump({"base": str(DEMO), "variants": {"r8": {"model.rank": 8}}}))
    out = tmp_path / "out"
    argv = ["sweep", str(ablation), "--dry-run", "--no-budget", "--out", str(out)]
    assert main([*argv, "--data.window.fps=15", "--trainer.max_epochs=1"]) == 0
    assert "every variant: data.window.fps=15, max_epochs=1" in capsys.readouterr().out.replace(
        "trainer.", ""
    )
    from sce.studies.sweep import plan_sweep

    plan = plan_sweep(ablation, sets=["--data.window.fps=15"], out=out)
    assert (
        plan.variants[0].config["data"]["window"]["fps"],
        plan.variants[0].config["model"]["rank"],
    ) == (
        15.0,
        8,
    )
    with pytest.raises(SystemExit):
        main([*argv, "--set", "data.window.fps=15"])
    assert "--set was removed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("data", "overrides", "hint"),
    [
        ({}, ["--data.fps=15"], "data.fps moved to data.window.fps"),
        ({"window_scales": [6.0]}, [], "data.window_scales moved to data.window.scales"),
        ({"width": 112}, [], "data.width moved to data.window.width"),
        ({"window": "whole"}, [], "the old data.window is data.window.mode"),
    ],
)
def test_a_flat_window_key_names_its_new_place(data, overrides, hint):
    """A config written before the window was one value fails naming the key that replaced
    its flat setting."""
    config = {"model": {"model_path": "tiny:0"}, "data": {"manifest": "m.jsonl", **data}}
    with pytest.raises(ConfigError, match=re.escape(hint)):
        resolve_config(config, overrides)
