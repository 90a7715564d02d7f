"""notebooks/ablations.ipynb: stored without outputs, and runs top to bottom on a sweep folder
(made by `run_sweep` with a stand-in trainer, curves written with SummaryWriter)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from helpers.paths import REPO

from sce.studies import sweep as sw

NOTEBOOK = REPO / "notebooks" / "ablations.ipynb"

FAKE_FIT = r"""
import json, sys
from pathlib import Path
import yaml
cfg = yaml.safe_load(Path(sys.argv[1]).read_text())
rank, seed = cfg["model"]["rank"], cfg["seed_everything"]
acc = rank / 10 + seed / 100
scalars = {"acc": acc, "ll/acc": 0.5, "macro_f1": 0.3, "f1/collision": None,
           "f1/near_collision": 0.2, "f1/normal": 0.7, "invalid_rate": rank / 100,
           "imu_on/acc": acc, "imu_off/acc": acc - 0.1}
Path(cfg["trainer"]["default_root_dir"], "metrics.json").write_text(
    json.dumps({"split": "val", "step": 3, "scalars": scalars}))
"""
FIGURES = [
    "accuracy_f1.png",
    "imu_on_off.png",
    "invalid_rate.png",
    "train_loss.png",
    "val_loss.png",
    "visual_tokens.png",
    "wall_time.png",
]


def make_sweep(tmp_path: Path, seeds: list[int] | None = None, grid: dict | None = None) -> Path:
    """A rank sweep of two variants (rank 2 and 4; with seeds, one run per seed; or the
    variants of `grid`) with metrics.json, train and validation loss curves and sweep.json."""
    from torch.utils.tensorboard import SummaryWriter

    ablation = tmp_path / "rank.yaml"
    variants = {"r2": {"model.rank": 2}, "r4": {"model.rank": 4}}
    ablation.write_text(
        yaml.safe_dump(
            {
                "base": str(REPO / "experiments" / "demo.yaml"),
                "overrides": {"model.model_path": "sce-test/none"},
                **({"grid": grid} if grid else {"variants": variants}),
            },
            sort_keys=False,
        )
    )
    plan = sw.plan_sweep(ablation, out=tmp_path / "sweeps", seeds=seeds)
    sw.attach_budgets(plan)
    command = lambda v: [sys.executable, "-c", FAKE_FIT, str(v.run_dir / sw.CONFIG_NAME)]  # noqa: E731
    summary = sw.run_sweep(plan, command=command, echo=False)
    assert {e["status"] for e in summary["variants"]} == {"ok"}
    for variant in plan.variants:
        writer = SummaryWriter(log_dir=str(variant.run_dir))
        for step in range(3):
            loss = 5.0 - step * variant.config["model"]["rank"] / 4
            writer.add_scalar("train/loss_step", loss, step)
            writer.add_scalar("val/loss", loss + 0.5, step)
        writer.close()
    return plan.out_dir


@pytest.fixture()
def sweep_dir(tmp_path) -> Path:
    return make_sweep(tmp_path)


def execute(sweep: Path, monkeypatch, cwd: Path) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("SCE_SWEEP_DIR", str(sweep))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def images_and_errors(nb) -> tuple[list, list]:
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    return images, [o for o in outputs if o["output_type"] == "error"]


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert 'SWEEP_DIR = os.environ.get("SCE_SWEEP_DIR", "runs/sweeps/fps")' in code[0].source


def test_notebook_runs_on_a_sweep_folder(sweep_dir, monkeypatch, tmp_path):
    nb = execute(sweep_dir, monkeypatch, tmp_path)
    images, errors = images_and_errors(nb)
    assert not errors
    assert len(images) == len(FIGURES)
    assert sorted(p.name for p in (sweep_dir / "figures").glob("*.png")) == FIGURES
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "sweep 'rank': swept ['model.rank'], 2 variant(s)\n" in text
    table = pd.read_csv(sweep_dir / "ablation_table.csv")
    assert table["label"].tolist() == ["rank=2", "rank=4"]
    assert table["model.rank"].tolist() == [2, 4]
    assert table["acc"].tolist() == [0.2, 0.4]  # rank / 10, from each metrics.json
    assert table["imu_off_acc"].tolist() == pytest.approx([0.1, 0.3])
    assert table["invalid_rate"].tolist() == [0.02, 0.04]
    assert table["f1_collision"].isna().all() and table["f1_normal"].tolist() == [0.7, 0.7]
    assert not any(c.endswith("_std") for c in table.columns)  # no seeds, no spread
    # 18 frames of 112x56 with the Qwen defaults: 9 pairs x 4 x 2 tokens.
    assert table["visual_tokens"].tolist() == [72, 72]


def test_report_of_a_seeded_sweep_in_process(tmp_path):
    """`write_report` without a kernel: the code cells run here on the Agg backend; means and
    sample stds over seeds 0 and 1 in the table, every figure written."""
    sweep_dir = make_sweep(tmp_path, seeds=[0, 1])
    path = sw.write_report(sweep_dir, engine="inprocess")
    assert path == sweep_dir.resolve() / "ablations.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    injected = nb.cells[2]
    assert injected.metadata.tags == ["injected-parameters"]
    assert injected.source.startswith(f"SWEEP_DIR = {str(sweep_dir.resolve())!r}")
    images, errors = images_and_errors(nb)
    assert not errors and len(images) == len(FIGURES)
    assert sorted(p.name for p in (sweep_dir / "figures").glob("*.png")) == FIGURES
    printed = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "2 variant(s), seeds [0, 1] (mean ± sample std)" in printed
    runs = pd.read_csv(sweep_dir / "ablation_runs.csv")
    assert list(zip(runs["variant"], runs["seed"], strict=True)) == [
        ("r2", 0),
        ("r2", 1),
        ("r4", 0),
        ("r4", 1),
    ]
    table = pd.read_csv(sweep_dir / "ablation_table.csv")
    # acc = rank / 10 + seed / 100: r2 0.20, 0.21 -> mean 0.205, sample std 0.01 / sqrt(2)
    assert table["acc"].tolist() == pytest.approx([0.205, 0.405])
    assert table["acc_std"].tolist() == pytest.approx([0.01 / 2**0.5] * 2)
    assert table["invalid_rate_std"].tolist() == [0.0, 0.0]
    assert table["runs_ok"].tolist() == [2, 2]
    summary = json.loads((sweep_dir / sw.SUMMARY_NAME).read_text())
    assert [e["std"]["acc"] for e in summary["variants"]] == pytest.approx(table["acc_std"])


def test_report_of_a_grid_sweep_labels_each_combination(tmp_path):
    """A rank x alpha grid (issue 27): the figures' x axis names both keys and each tick is a
    combination's values, not the first key's numbers."""
    sweep_dir = make_sweep(tmp_path, grid={"model.rank": [2, 4], "model.alpha": [8, 16]})
    nb = nbformat.read(sw.write_report(sweep_dir, engine="inprocess"), as_version=4)
    images, errors = images_and_errors(nb)
    assert not errors and len(images) == len(FIGURES)
    printed = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    ticks = ["rank=2, alpha=8", "rank=2, alpha=16", "rank=4, alpha=8", "rank=4, alpha=16"]
    assert f"x axis: model.rank x model.alpha; ticks: {ticks}" in printed
    table = pd.read_csv(sweep_dir / "ablation_table.csv")
    assert table["variant"].tolist() == ["rank2_alpha8", "rank2_alpha16", "rank4_alpha8"] + [
        "rank4_alpha16"
    ]
    assert table["acc"].tolist() == [0.2, 0.2, 0.4, 0.4]  # rank / 10


def test_in_process_report_keeps_the_failing_cell(tmp_path):
    notebook = tmp_path / "nb.ipynb"
    cells = [
        nbformat.v4.new_code_cell("SWEEP_DIR = None"),
        nbformat.v4.new_code_cell("print('from', SWEEP_DIR)\n1 / 0"),
    ]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), notebook)
    (tmp_path / sw.SUMMARY_NAME).write_text("{}")
    with pytest.raises(sw.NotebookError, match="cell 3: ZeroDivisionError"):
        sw.write_report(tmp_path, notebook=notebook, engine="inprocess")
    outputs = nbformat.read(tmp_path / "ablations.ipynb", as_version=4).cells[2].outputs
    assert outputs[0].text == f"from {tmp_path.resolve()}\n"
    assert outputs[1].ename == "ZeroDivisionError"


def test_notebook_names_a_missing_sweep(monkeypatch, tmp_path):
    from nbclient.exceptions import CellExecutionError

    with pytest.raises(CellExecutionError, match="sweep.json not found"):
        execute(tmp_path / "nothing", monkeypatch, tmp_path)


def test_cli_resume_with_report_runs_nothing_and_executes_the_notebook(
    tmp_path, monkeypatch, capsys
):
    """`sce sweep ... --seeds 0,1 --resume --report` on a finished sweep: no run trained, the
    notebook executed by a Jupyter kernel into the sweep folder."""
    from sce.cli import main

    sweep_dir = make_sweep(tmp_path, seeds=[0, 1])
    calls = []
    monkeypatch.setattr(sw, "variant_command", lambda v: calls.append(v) or ["false"])
    args = ["sweep", str(tmp_path / "rank.yaml"), "--out", str(tmp_path / "sweeps")]
    assert main([*args, "--no-budget", "--seeds", "0,1", "--resume", "--report"]) == 0
    assert calls == []
    out = capsys.readouterr().out
    assert "skipping 4 finished run(s) (r2/seed0, r2/seed1, r4/seed0, r4/seed1); 0 to run" in out
    assert "r2               ok       2/2 seeds ok visual tokens 72  acc 0.205 ± 0.007" in out
    report = sweep_dir.resolve() / "ablations.ipynb"
    assert f"report: {report}" in out
    assert f"figures (7): {sweep_dir.resolve() / 'figures'}/" in out
    images, errors = images_and_errors(nbformat.read(report, as_version=4))
    assert not errors and len(images) == len(FIGURES)


def test_notebook_extra_installs_jupyterlab_and_is_optional():
    import configparser

    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    extra = setup["options.extras_require"]["notebook"].split()
    assert {"jupyterlab", "nbclient", "ipykernel"} <= set(extra)
    assert not {"jupyterlab", "nbclient"} & set(setup["options"]["install_requires"].split())
