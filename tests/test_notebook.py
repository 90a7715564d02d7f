"""notebooks/ablations.ipynb: stored without outputs, and runs top to bottom on a sweep folder
(made by `run_sweep` with a stand-in trainer, curves written with SummaryWriter)."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from sce import sweep as sw

ROOT = Path(__file__).parents[1]
NOTEBOOK = ROOT / "notebooks" / "ablations.ipynb"

FAKE_FIT = r"""
import json, sys
from pathlib import Path
import yaml
cfg = yaml.safe_load(Path(sys.argv[1]).read_text())
rank = cfg["model"]["rank"]
scalars = {"acc": rank / 10, "ll/acc": 0.5, "macro_f1": 0.3, "f1/collision": None,
           "f1/near_collision": 0.2, "f1/normal": 0.7}
Path(cfg["trainer"]["default_root_dir"], "metrics.json").write_text(
    json.dumps({"split": "val", "step": 3, "scalars": scalars}))
"""


@pytest.fixture()
def sweep_dir(tmp_path) -> Path:
    """A rank sweep of two variants with metrics.json, loss curves and sweep.json."""
    from torch.utils.tensorboard import SummaryWriter

    ablation = tmp_path / "rank.yaml"
    ablation.write_text(
        yaml.safe_dump(
            {
                "base": str(ROOT / "experiments" / "demo.yaml"),
                "overrides": {"model.model_path": "sce-test/none"},
                "variants": {"r2": {"model.rank": 2}, "r4": {"model.rank": 4}},
            },
            sort_keys=False,
        )
    )
    plan = sw.plan_sweep(ablation, out=tmp_path / "sweeps")
    sw.attach_budgets(plan)
    command = lambda v: [sys.executable, "-c", FAKE_FIT, str(v.run_dir / sw.CONFIG_NAME)]  # noqa: E731
    summary = sw.run_sweep(plan, command=command, echo=False)
    assert [e["status"] for e in summary["variants"]] == ["ok", "ok"]
    for variant in plan.variants:
        writer = SummaryWriter(log_dir=str(variant.run_dir))
        for step in range(3):
            loss = 5.0 - step * variant.config["model"]["rank"] / 4
            writer.add_scalar("train/loss_step", loss, step)
        writer.close()
    return plan.out_dir


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


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert 'SWEEP_DIR = os.environ.get("SCE_SWEEP_DIR", "runs/sweeps/fps")' in code[0].source


def test_notebook_runs_on_a_sweep_folder(sweep_dir, monkeypatch, tmp_path):
    nb = execute(sweep_dir, monkeypatch, tmp_path)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3
    figures = sorted(p.name for p in (sweep_dir / "figures").glob("*.png"))
    assert figures == ["accuracy_f1.png", "train_loss.png", "visual_tokens.png"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "sweep 'rank': swept ['model.rank'], 2 variant(s)" in text
    table = pd.read_csv(sweep_dir / "ablation_table.csv")
    assert table["label"].tolist() == ["rank=2", "rank=4"]
    assert table["model.rank"].tolist() == [2, 4]
    assert table["acc"].tolist() == [0.2, 0.4]  # rank / 10, from each metrics.json
    assert table["f1_collision"].isna().all() and table["f1_normal"].tolist() == [0.7, 0.7]
    # 18 frames of 112x56 with the Qwen defaults: 9 pairs x 4 x 2 tokens.
    assert table["visual_tokens"].tolist() == [72, 72]


def test_notebook_names_a_missing_sweep(monkeypatch, tmp_path):
    from nbclient.exceptions import CellExecutionError

    with pytest.raises(CellExecutionError, match="sweep.json not found"):
        execute(tmp_path / "nothing", monkeypatch, tmp_path)
