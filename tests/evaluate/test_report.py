"""`sce report`: the papers' tables from run folders, checked cell by cell (markdown and CSV)."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import REPO

from sce.cli import main
from sce.evaluate import paper_tables as r

PAPERS = Path("/work/shared/papers")  # the papers' text, where this checkout has it

# Paper 000 Table V as printed: model -> (Closed QA, SCE 3-cls., SCE 2-cls.) changes in parentheses.
PRINTED_TABLE_V_CHANGES = {
    "Nova Pro": (-2.5, +0.8, +4.3),
    "Sonnet 4.5": (-1.3, -0.2, -15.6),
    "Molmo 2": (-2.4, -3.9, -2.7),
    "InternVL 3.5": (-4.8, -9.5, -10.0),
    "MiniCPM-V 4.5": (-6.3, -7.4, -10.4),
    "QwenVL 3.5": (-3.7, -9.4, -19.1),
    "QwenVL-2.5": (-4.4, -1.4, -1.1),
    "DoRA Adapted (Ours)": (-0.7, -13.2, +9.1),
}
SIGN_TYPOS = {("Nova Pro", 2), ("DoRA Adapted (Ours)", 2)}  # (model, column): SCE (2-cls.)


# --- helpers ---------------------------------------------------------------------------------


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def evaluation(split: str, step: int, scalars: dict) -> dict:
    return {"split": split, "epoch": 0, "step": step, "scalars": scalars, "samples": []}


FINETUNED = {
    "imu_on/n": 40.0,
    "imu_on/acc": 0.877,
    "imu_on/caption/rougeL": 0.4412,
    "imu_on/closed_qa/acc": 0.927,
    "imu_on/binary/precision": 0.933,
    "imu_on/binary/recall": 0.873,
    "imu_on/binary/acc": 0.9,
    "imu_off/n": 40.0,
    "imu_off/acc": 0.745,
    "imu_off/caption/rougeL": 0.40,
    "imu_off/closed_qa/acc": 0.92,
    "imu_off/binary/acc": 0.809,
    "source_nexar/binary/n": 10.0,
    "source_nexar/binary/precision": 0.856,
    "source_nexar/binary/recall": 0.631,
    "source_nexar/binary/acc": 0.761,
    "acc": 0.811,  # pooled over both IMU settings: never shown as either
    "caption/rougeL": 0.42,
}
ZERO_SHOT = {
    "imu_on/n": 40.0,
    "imu_on/acc": 0.461,
    "acc": 0.461,
    "caption/rougeL": 0.18,  # pooled, and the run evaluated only with IMU: the with-IMU value
    "closed_qa/acc": 0.832,
    "caption/bertscore_f1": None,  # undefined (strict JSON null)
    "binary/precision": 0.727,
    "binary/recall": 0.45,
    "binary/acc": 0.607,
}
CONFIG = """\
model:
  model_path: Qwen/Qwen2.5-VL-7B-Instruct
  finetuning: dora
  rank: 32
data:
  fps: 15.0
"""


@pytest.fixture
def run_pair(tmp_path: Path) -> tuple[Path, Path]:
    """A zero-shot run (metrics.json at the top, no config) and a fine-tuned `sce fit` layout:
    runs/finetuned/tensorboard/version_0/ with a val metrics.json, two test evaluations and
    LightningCLI's config.yaml."""
    zero = tmp_path / "zero_shot"
    write_json(zero / "metrics.json", evaluation("test", 0, ZERO_SHOT))
    tuned = tmp_path / "finetuned"
    log_dir = tuned / "tensorboard" / "version_0"
    write_json(log_dir / "metrics.json", evaluation("val", 90, {**FINETUNED, "imu_on/acc": 0.5}))
    write_json(log_dir / "evaluations" / "test_step20.json", evaluation("test", 20, {"acc": 0.1}))
    write_json(log_dir / "evaluations" / "test_step100.json", evaluation("test", 100, FINETUNED))
    write_json(log_dir / "evaluations" / "val_step90.json", evaluation("val", 90, {}))
    (log_dir / "config.yaml").write_text(CONFIG)
    return zero, tuned


def markdown_tables(text: str) -> dict[str, list[list[str]]]:
    """{table title: rows of cells (header first, separator dropped)}."""
    tables: dict[str, list[list[str]]] = {}
    title = None
    for line in text.splitlines():
        if line.startswith("### "):
            title = line[4:]
            tables[title] = []
        elif line.startswith("|") and title and not set(line) <= {"|", "-"}:
            tables[title].append([c.strip() for c in line.strip("|").split("|")])
    return tables


def table(tables: dict[str, list[list[str]]], prefix: str) -> dict[str, list[str]]:
    """Body rows of the table whose title starts with prefix, by row name (first wins)."""
    (title,) = [t for t in tables if t.startswith(prefix)]
    rows: dict[str, list[str]] = {}
    for row in tables[title][1:]:
        rows.setdefault(row[0], row[1:])
    return rows


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def run_report(capsys, *args: str) -> tuple[int, str]:
    code = main(["report", *args])
    return code, capsys.readouterr().out


# --- paper 000 from a fabricated pair of runs ------------------------------------------------


def test_paper000_tables_cell_by_cell(run_pair, tmp_path, capsys):
    zero, tuned = run_pair
    out_dir = tmp_path / "csv"
    code, out = run_report(capsys, str(zero), str(tuned), "--paper", "000", "--out", str(out_dir))
    assert code == 0
    tables = markdown_tables(out)
    t1 = table(tables, "Paper 000, Table I:")
    assert t1["zero_shot"] == ["-", "0.18", "-", "83.2", "46.1"]
    assert t1["finetuned"] == ["7B", "0.44", "-", "92.7", "87.7"]  # test step 100, not val
    assert t1["paper: DoRA Adapted (Ours)"] == ["7B", "0.44", "0.51", "92.7", "87.7"]
    assert t1["paper: Nova Pro"] == ["-", "0.17", "0.19", "87.5", "53.8"]
    assert tables[next(t for t in tables if t.startswith("Paper 000, Table I:"))][0] == [
        "Model", "Size", "ROUGE-L", "BERTScore", "Closed QA", "SCE"
    ]  # fmt: skip

    t2 = tables[next(t for t in tables if t.startswith("Paper 000, Table II:"))]
    body = {(row[0], row[1]): row[2:] for row in t2[1:]}
    assert body[("zero_shot", "Private")] == ["-", "72.7", "45.0", "60.7"]
    assert body[("finetuned", "Private")] == ["7B", "93.3", "87.3", "90.0"]
    assert body[("finetuned", "Nexar")] == ["7B", "85.6", "63.1", "76.1"]
    assert body[("zero_shot", "Nexar")] == ["-", "-", "-", "-"]
    assert body[("paper: DoRA Adapted (Ours)", "Nexar")] == ["7B", "85.6", "63.1", "76.1"]

    t4 = table(tables, "Paper 000, Table IV:")
    assert t4["finetuned"] == ["7B", "32", "0.44", "-", "92.7", "87.7"]
    assert t4["zero_shot"][:2] == ["-", "-"]

    t5 = table(tables, "Paper 000, Table V:")
    assert t5["finetuned"] == ["7B", "92.0 (-0.7)", "74.5 (-13.2)", "80.9 (-9.1)"]
    assert t5["zero_shot"] == ["-", "-", "-", "-"]
    assert t5["paper: DoRA Adapted (Ours)"] == ["7B", "92.0 (-0.7)", "74.5 (-13.2)", "80.9 (-9.1)"]
    assert t5["paper: Sonnet 4.5"] == ["-", "92.1 (-1.3)", "53.7 (-0.2)", "56.7 (-15.6)"]

    # Why each cell is missing, and which evaluation was read.
    assert "- finetuned: " in out and "test_step100.json (split test, step 100)" in out
    assert "BERTScore (zero_shot): caption/bertscore_f1 is undefined" in out
    assert "BERTScore (finetuned): no BERTScore encoder configured" in out
    assert "Size (zero_shot): no config (config.yaml / hparams.yaml) in the run folder" in out
    assert "(zero_shot): no video only evaluation (imu_off/* keys" in out

    # The same figures in the CSVs; Table V's change in its own column.
    assert read_csv(out_dir / "paper000_table1.csv")[1:3] == [
        ["zero_shot", "", "0.18", "", "83.2", "46.1"],
        ["finetuned", "7B", "0.44", "", "92.7", "87.7"],
    ]
    table5 = read_csv(out_dir / "paper000_table5.csv")
    assert table5[0] == [
        "Model", "Size", "Closed QA", "Closed QA change", "SCE (3-cls.)", "SCE (3-cls.) change",
        "SCE (2-cls.)", "SCE (2-cls.) change",
    ]  # fmt: skip
    assert table5[2] == ["finetuned", "7B", "92.0", "-0.7", "74.5", "-13.2", "80.9", "-9.1"]
    assert table5[1] == ["zero_shot", "", "", "", "", "", "", ""]
    assert f"wrote CSV: {out_dir / 'paper000_table1.csv'}" in out


def test_a_nexar_only_evaluation_fills_the_nexar_row(tmp_path, capsys):
    """An evaluation of one source logs no `source_<s>/` copies; its `sources` field says which
    source it was, so Table II's Nexar row reads the overall binary metrics."""
    scalars = {"binary/n": 10.0, "binary/precision": 0.8, "binary/recall": 0.5, "binary/acc": 0.7}
    nexar = write_json(tmp_path / "nexar" / "metrics.json", evaluation("test", 5, scalars))
    nexar.write_text(json.dumps({**json.loads(nexar.read_text()), "sources": ["nexar"]}))
    other = write_json(tmp_path / "other" / "metrics.json", evaluation("test", 5, scalars))
    other.write_text(json.dumps({**json.loads(other.read_text()), "sources": ["private"]}))
    code, out = run_report(capsys, str(nexar.parent), str(other.parent), "--paper", "000")
    assert code == 0
    t2 = markdown_tables(out)[next(t for t in markdown_tables(out) if "Table II:" in t)]
    body = {(row[0], row[1]): row[2:] for row in t2[1:]}
    assert body[("nexar", "Nexar")][1:] == ["80.0", "50.0", "70.0"]
    assert body[("other", "Nexar")][1:] == ["-", "-", "-"]


def test_pooled_values_never_stand_for_one_imu_setting_of_a_mixed_run():
    run = r.Run("x", {"imu_on/n": 4.0, "imu_off/n": 4.0, "acc": 0.5, "caption/rougeL": 0.3})
    assert r.scalar_cell(run, r.SCE3, "on").value is None
    cell = r.scalar_cell(run, r.ROUGE, "off")
    assert cell.value is None and "pools both IMU settings" in cell.why_missing
    only_on = r.Run("y", {"imu_on/n": 4.0, "caption/rougeL": 0.3})
    assert r.scalar_cell(only_on, r.ROUGE, "on").value == 0.3
    assert r.scalar_cell(only_on, r.ROUGE, "off").value is None


def test_closed_qa_column_reads_the_closed_qa_task_never_vqa():
    """Issue 25 point 4: paper 000's Closed QA column is the closed_qa task's accuracy over the
    teacher's static-scene pairs; paper 001-style MCQ items (vqa/acc) never fill it."""
    summary = summarize_items(
        [("closed_qa", "two", "two"), ("closed_qa", "no", "yes"), ("vqa", "B", "B")]
    )
    run = r.Run("x", summary)
    assert summary["vqa/acc"] == 1.0 and summary["closed_qa/acc"] == 0.5
    assert r.scalar_cell(run, r.CLOSED_QA, "on").text() == "50.0"
    vqa_only = r.Run("y", {"imu_on/n": 1.0, "imu_on/vqa/acc": 1.0, "vqa/acc": 1.0})
    cell = r.scalar_cell(vqa_only, r.CLOSED_QA, "on")
    assert cell.value is None and "add closed_qa to data.eval_tasks" in cell.why_missing


def summarize_items(rows: list[tuple[str, str, str]]) -> dict:
    """The scalars of evaluated items (task, prediction, reference), all with IMU."""
    from sce.evaluate.summary import summarize

    items = [
        {"task": t, "label": "normal", "source": "private", "imu_on": True, "prediction": p,
         "reference": ref}
        for t, p, ref in rows
    ]  # fmt: skip
    return summarize(items).scalars


def test_change_is_computed_from_unrounded_values():
    cell = r.change_cell(r.Cell(74.46, 1), r.Cell(87.74, 1))
    assert cell.text() == "74.5 (-13.3)"
    assert r.change_cell(r.Cell(72.9, 1), r.Cell(72.9, 1)).text() == "72.9 (0.0)"
    assert r.change_cell(r.Cell(54.6, 1), r.Cell(53.8, 1)).text() == "54.6 (+0.8)"


# --- the demo folder -------------------------------------------------------------------------


def test_demo_folder_gives_untrained_and_trained_rows_with_both_imu_settings(tmp_path, capsys):
    def stage(on: float, off: float) -> dict:
        scalars = {"imu_on/n": 48.0, "imu_on/acc": on, "imu_on/binary/acc": on + 0.05}
        scalars |= {"imu_off/n": 48.0, "imu_off/acc": off, "imu_off/binary/acc": off + 0.05}
        return {"scalars": scalars, "confusion_matrix": None, "labels": [], "samples": []}

    demo = tmp_path / "demo"
    write_json(demo / "metrics.json", {"untrained": stage(0.0, 0.0), "trained": stage(0.896, 0.75), "seconds": 308.0})  # fmt: skip
    hparams = demo / "tensorboard" / "trained" / "hparams.yaml"
    hparams.parent.mkdir(parents=True)
    hparams.write_text(
        "eval_imu: !!python/tuple\n- 'on'\n- 'off'\nfinetuning: dora\nrank: 16\n"
        "model_path: runs/demo/model_warm\nfps: 3.0\n"
    )
    code, out = run_report(capsys, str(demo), "--paper", "000", "--out", str(tmp_path / "o"))
    assert code == 0
    tables = markdown_tables(out)
    t1, t5 = table(tables, "Paper 000, Table I:"), table(tables, "Paper 000, Table V:")
    assert list(t5)[:2] == ["untrained", "trained"]
    assert t1["trained"][4] == "89.6" and t1["untrained"][4] == "0.0"
    assert t5["trained"] == ["-", "-", "75.0 (-14.6)", "80.0 (-14.6)"]
    assert t5["untrained"] == ["-", "-", "0.0 (0.0)", "5.0 (0.0)"]
    assert table(tables, "Paper 000, Table IV:")["trained"][:2] == ["-", "16"]  # from hparams

    code, out = run_report(capsys, str(demo), "--paper", "001", "--name", "demo", "--out", str(tmp_path / "o"))  # fmt: skip
    t3 = table(markdown_tables(out), "Paper 001, Table 3:")
    assert t3["demo trained"][0] == "3" and t3["demo untrained"][0] == "-"


def test_real_demo_output_reads_when_present(capsys, tmp_path):
    demo = Path("/work/main/runs/demo")
    if not (demo / "metrics.json").is_file():
        pytest.skip("no demo output in this checkout")
    code, out = run_report(capsys, str(demo), "--paper", "000", "--out", str(tmp_path))
    assert code == 0
    assert list(table(markdown_tables(out), "Paper 000, Table V:"))[:2] == ["untrained", "trained"]


# --- papers 001, 002, 003 --------------------------------------------------------------------


def test_paper001_tables_2_3_9(tmp_path, capsys):
    scalars = {"acc": 0.7727, "reasoning/acc": 0.6313}
    for i, c in enumerate(r.CLASSES):
        scalars |= {f"precision/{c}": 0.9 - i / 10, f"recall/{c}": 0.5 + i / 10, f"f1/{c}": 0.6}
    run = tmp_path / "cr1"
    write_json(run / "metrics.json", evaluation("test", 5, scalars))
    (run / "config.yaml").write_text(CONFIG)
    code, out = run_report(capsys, str(run), "--paper", "001", "--name", "CR1 sft", "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 0
    tables = markdown_tables(out)
    t2 = table(tables, "Paper 001, Table 2:")
    assert t2["CR1 sft"] == [
        "0.900", "0.500", "0.600", "0.800", "0.600", "0.600", "0.700", "0.700", "0.600", "77.27"
    ]  # fmt: skip
    assert t2["paper: Cosmos-Reason1 Zero-shot"][3:6] == ["0.454", "0.0075", "0.129"]
    assert t2["paper: NVILA Fine-tuned"][9] == "86.36"
    assert table(tables, "Paper 001, Table 3:")["CR1 sft"] == [
        "15",
        "0.600",
        "0.600",
        "0.600",
        "77.27",
    ]
    t9 = table(tables, "Paper 001, Table 9:")
    assert t9["CR1 sft"] == ["77.27", "63.13"]
    assert t9["paper: CR1 MCQ, Caption, VQA"] == ["74.75", "-"]
    assert read_csv(tmp_path / "o" / "paper001_table9.csv")[1] == ["CR1 sft", "77.27", "63.13"]


def test_paper002_table_iii_is_transposed_like_the_paper(tmp_path, capsys):
    values = {"precision": 0.9405, "recall": 0.4634, "f1": 0.6209, "mae": 0.2998, "brier": 0.2822}
    run = tmp_path / "risk"
    write_json(run / "metrics.json", evaluation("test", 5, {f"calibration/{k}": v for k, v in values.items()}))  # fmt: skip
    code, out = run_report(capsys, str(run), "--paper", "002", "--out", str(tmp_path / "o"))
    assert code == 0
    rows = table(markdown_tables(out), "Paper 002, Table III:")
    assert rows["Precision"] == ["94.05", "92.86", "94.05"]
    assert rows["F1-score"] == ["62.09", "59.09", "64.41"]
    assert rows["ECE"] == ["-", "29.72", "27.21"]
    grid = read_csv(tmp_path / "o" / "paper002_table3.csv")
    assert grid[0] == ["Metric", "risk", "paper: Baseline SFT", "paper: Enhanced FT"]
    assert grid[6] == ["ECE", "", "29.72", "27.21"]


def test_paper003_bertscore_and_bleu(tmp_path, capsys):
    scalars = {"instruction/bleu4": 11.94, "instruction/bertscore_f1": 0.8912}
    scalars |= {"instruction/distinct4": 0.412, "instruction/self_bleu4": 0.2}
    scalars |= {"instruction/event_bertscore_f1": 0.9034}  # issue 25, point 10: the event part
    run = tmp_path / "instr"
    write_json(run / "metrics.json", evaluation("test", 5, scalars))
    code, out = run_report(capsys, str(run), "--paper", "003", "--out", str(tmp_path / "o"))
    rows = table(markdown_tables(out), "Paper 003:")
    assert rows["instr"] == ["0.903", "0.891", "11.9", "0.412", "0.200"]
    assert rows["paper: Qwen2.5-VL-7B fine-tuned"] == ["0.897", "0.894", "-", "-", "-"]


# --- the published figures -------------------------------------------------------------------


def test_table_v_changes_computed_from_tables_i_and_ii_match_the_printed_ones():
    """22 of 24 printed changes are video only minus Table I / Table II Private Acc.; the two
    SCE (2-cls.) ones printed positive (Nova Pro +4.3, DoRA +9.1) are that difference negated."""
    rows = dict(r.paper000_table_v([]).rows)
    for model, printed in PRINTED_TABLE_V_CHANGES.items():
        cells = rows[r.published(model)][1:]
        for column, (cell, change) in enumerate(zip(cells, printed, strict=True)):
            expected = -change if (model, column) in SIGN_TYPOS else change
            assert cell.change == pytest.approx(expected, abs=1e-9), (model, column)
    # The other columns of Table II do not give the printed +9.1 either (Nexar Acc.: +4.8).
    dora = r.P0_TABLE_II[-1]
    assert {round(80.9 - v, 1) for v in dora[2:]} == {-12.4, -6.4, -9.1, -4.7, 17.8, 4.8}


def test_published_figures_are_self_consistent_where_the_notes_say():
    for name, values in r.P1_TABLE_2:  # F1 = 2PR/(P+R) except CR1 zero-shot near-collision
        for p, rec, f1 in (values[0:3], values[3:6], values[6:9]):
            harmonic = 2 * p * rec / (p + rec) if p + rec else 0.0
            if name == "Cosmos-Reason1 Zero-shot" and p == 0.454:
                assert harmonic == pytest.approx(0.0148, abs=1e-4)
                assert 2 * p * 0.075 / (p + 0.075) == pytest.approx(f1, abs=5e-4)
            else:
                assert harmonic == pytest.approx(f1, abs=1.5e-3), name
        assert values[9] * 198 / 100 == pytest.approx(round(values[9] * 1.98), abs=0.01)  # k/198
    (_, base), (_, enhanced) = r.P2_TABLE_III
    assert 2 * base[0] * base[1] / (base[0] + base[1]) == pytest.approx(base[2], abs=0.01)
    assert 2 * enhanced[0] * enhanced[1] / (enhanced[0] + enhanced[1]) == pytest.approx(62.09, abs=0.01)  # fmt: skip
    assert r.P0_TABLE_IV[5][2:] == r.P0_TABLE_I[-1][2:]  # the selected 7B r=32 row is Table I's


def _numbers(line: str) -> list[float]:
    cells = [c.strip() for c in re.sub(r"</?u>|%|\*", "", line).split("\t")]
    out = []
    for cell in cells:
        match = re.fullmatch(r"-?\d+(?:\.\d+)?(?: \(([+-]\d+\.\d+)\))?", cell)
        if match:
            out.append(float(cell.split(" ")[0]))
            if match.group(1):
                out.append(float(match.group(1)))
    return out


def _block(text: str, start: str, end: str) -> list[list[float]]:
    body = text[text.index(start) :]
    body = body[: body.index(end)]
    return [n for line in body.splitlines()[1:] if (n := _numbers(line))]


@pytest.mark.skipif(not PAPERS.is_dir(), reason="the papers' text is not in this checkout")
def test_published_rows_equal_the_papers_text():
    p0 = (PAPERS / "000_9fdbbc60a042ab9a.txt").read_text()
    table1 = _block(p0, "Model\tSize\tROUGE-L\tBERTScore\tClosed QA", "ROUGE-L of 0.44")
    assert table1 == [list(row[2:]) for row in r.P0_TABLE_I]
    table2 = _block(p0, "\tModel\tSize\tPrec.", "TABLE III")
    assert table2 == [list(row[2:5]) for row in r.P0_TABLE_II] + [list(row[5:]) for row in r.P0_TABLE_II]  # fmt: skip
    table3 = _block(p0, "TABLE III: Evaluation on the LingoQA", "not overfit")
    assert table3 == [list(row[2:]) for row in r.P0_TABLE_III]
    table4 = _block(p0, "Size\tRank\tROUGE-L", "TABLE V")
    assert table4 == [[row[1], *row[2:]] for row in r.P0_TABLE_IV]
    table5 = _block(p0, "Model\tSize\tClosed QA\tSCE (3-cls.)", "show a decrease")
    for row, printed, numbers in zip(r.P0_TABLE_V, PRINTED_TABLE_V_CHANGES.values(), table5, strict=True):  # fmt: skip
        assert numbers == [row[2], printed[0], row[3], printed[1], row[4], printed[2]]
    p1 = (PAPERS / "001_8744e2c966d5292e.txt").read_text()
    assert _block(p1, "\tPrec. ↑\tRec. ↑", "ating the model") == [list(v) for _, v in r.P1_TABLE_2]
    assert _block(p1, "\tC ↑\tNC ↑", "4.5.1") == [list(row) for row in r.P1_TABLE_3]
    assert _block(p1, "Model Size\tOverall", "4.5.2") == [[acc] for *_, acc in r.P1_TABLE_4]
    assert _block(p1, "Learning Rate\tF1", "4.5.3") == [list(row[1:]) for row in r.P1_TABLE_5]
    for lr, f1_collision, *_ in r.P1_TABLE_5:
        assert f"\n{lr:g}\t{f1_collision:.3f}\t" in p1
    table6 = _block(p1, "Video Duration\tSpatial", "Moving from")
    assert table6 == [list(row[2:]) for row in r.P1_TABLE_6]
    for seconds, resolution, *_ in r.P1_TABLE_6:
        assert f"{seconds} sec\t{resolution}\t" in p1
    table7 = _block(p1, "Data Distribution\tF1", "Impact of Data")
    assert table7 == [list(row[1:]) for row in r.P1_TABLE_7]
    table8 = _block(p1, "Model\tMCQ\tCaption\tVQA\tAccuracy", "Contribution")
    assert table8 == [[row[-1]] for row in r.P1_TABLE_8]
    ticks = [
        line.count("\u2713")
        for line in p1[p1.index("Model\tMCQ\tCaption\tVQA\tAccuracy") :].splitlines()[1:4]
    ]
    assert ticks == [sum(row[:3]) for row in r.P1_TABLE_8]
    assert f"Binary anomaly detection accuracy reached **{r.P1_BINARY[2]}%**" in p1
    table9 = _block(p1, "Reasoning MCQ x2\tReasoning VQA", "with refined")
    assert table9 == [[off] + ([on] if on is not None else []) for _, off, on in r.P1_TABLE_9]
    p2 = (PAPERS / "002_349ff15c30630707.txt").read_text()
    columns = list(zip(*_block(p2, "Metric\tBaseline SFT\tEnhanced FT", "TABLE III:"), strict=True))
    assert columns == [values for _, values in r.P2_TABLE_III]


# --- errors and the CLI ----------------------------------------------------------------------


def test_bad_folders_name_the_file_and_field(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere"), "--paper", "000"]) == 2
    assert "nowhere: no such run folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--paper", "000"]) == 2
    assert "no metrics.json in the folder or 2 levels below it" in capsys.readouterr().err
    bad = write_json(tmp_path / "bad" / "metrics.json", {"split": "val", "scalars": {"acc": "x"}})
    assert main(["report", str(bad.parent), "--paper", "000"]) == 2
    assert f"{bad}: field scalars['acc'] is not a number or null" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", str(bad.parent), "--paper", "004"])


def test_default_csv_folder_is_inside_the_first_run(run_pair, capsys):
    zero, _ = run_pair
    code, out = run_report(capsys, str(zero), "--paper", "002")
    assert code == 0
    assert (zero / "report_paper002" / "paper002_table3.csv").is_file()
    assert str(zero / "report_paper002" / "paper002_table3.csv") in out


def test_report_module_does_not_import_torch():
    code = "import sys, sce.evaluate.paper_tables; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


@pytest.mark.parametrize("name", ["metrics.json", "config.yaml"])
def test_a_non_utf8_run_file_is_named_not_a_traceback(tmp_path, capsys, name):
    """Issue 26.10: `sce report` on a non-UTF-8 metrics.json or config.yaml exits 2 naming it."""
    run = tmp_path / "run"
    write_json(run / "metrics.json", evaluation("test", 1, {"acc": 0.5}))
    (run / "config.yaml").write_text(CONFIG)
    bad = run / name
    bad.write_bytes(bad.read_bytes() + b"\n# \xff\xfe\n")
    assert main(["report", str(run), "--paper", "001", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sce report: error: {bad}: not UTF-8 text (byte 0xff at offset ")


# --- sweep folders: paper 001 Tables 4-8 and the binary anomaly accuracy ---------------------


def sweep_config(lr: float = 1e-5, size: str = "7B", seconds: float = 6.0, width: int = 448,
                 factors: str = "null", weights: str = "{mcq: 1.0}") -> str:  # fmt: skip
    """A LightningCLI config.yaml of a paper 001 run with the settings the tables read."""
    return (
        f"model:\n  model_path: Qwen/Qwen2.5-VL-{size}-Instruct\n  finetuning: full\n  lr: {lr}\n"
        f"data:\n  window:\n    before: {seconds - 2.0}\n    after: 2.0\n    width: {width}\n"
        f"    height: 252\n    fps: 30.0\n    mode: event\n  class_factors: {factors}\n"
        f"  task_weights: {weights}\n"
    )


def p1_scalars(acc: float, f1: tuple[float | None, ...], binary: float) -> dict:
    scalars = {"acc": acc, "binary/acc": binary}
    return scalars | {f"f1/{c}": v for c, v in zip(r.CLASSES, f1, strict=True)}


def write_sweep(folder: Path, variants: dict[str, list[tuple[dict, str]]]) -> Path:
    """A `sce sweep` folder: sweep.json listing the variants (in the given order) and, per
    variant, one run folder or one per seed (each: metrics.json + config.yaml); a variant
    with no runs failed (no metrics.json)."""
    entries = []
    for name, runs in variants.items():
        entry = {"name": name, "label": name, "values": {}, "run_dir": f"elsewhere/{name}"}
        seeded = len(runs) > 1
        if seeded:
            entry["runs"] = [{"seed": s, "status": "ok"} for s in range(len(runs))]
        entry["status"] = "ok" if runs else "failed"
        entries.append(entry)
        for seed, (scalars, config) in enumerate(runs):
            run = folder / name / (f"seed{seed}" if seeded else "")
            write_json(run / "metrics.json", evaluation("test", 7, scalars))
            (run / "config.yaml").write_text(config)
    write_json(folder / "sweep.json", {"name": folder.name, "variants": entries})
    return folder


def test_paper001_tables_4_to_8_from_sweep_folders_one_row_per_variant(tmp_path, capsys):
    lr = write_sweep(tmp_path / "lr", {
        "lr1e-6": [(p1_scalars(0.5555, (0.567, 0.271, 0.674), 0.70), sweep_config(lr=1e-6))],
        "lr2e-5": [(p1_scalars(0.7373, (0.646, 0.725, 0.802), 0.85), sweep_config(lr=2e-5))],
        "lr1e-5": [],  # failed: no metrics.json
    })  # fmt: skip
    balanced = "{mcq: {collision: 15, near_collision: 2}}"
    balancing = write_sweep(tmp_path / "balancing", {
        "unbalanced": [(p1_scalars(0.5657, (0.0, 0.603, 0.748), 0.75), sweep_config())],
        "balanced": [  # two seeds: the row is their mean, an undefined F1 left out of it
            (p1_scalars(0.70, (0.6, 0.7, 0.8), 0.85), sweep_config(factors=balanced, seconds=4.0)),
            (p1_scalars(0.80, (None, 0.8, 0.9), 0.95), sweep_config(factors=balanced, seconds=4.0)),
        ],
    })  # fmt: skip
    mix = write_sweep(tmp_path / "data_mix", {
        "mcq": [(p1_scalars(0.803, (0.5, 0.5, 0.5), 0.8), sweep_config(size="3B"))],
        "mcq_caption_vqa": [(p1_scalars(0.8636, (0.5, 0.5, 0.5), 0.9),
                             sweep_config(width=640, weights="{mcq: 1, caption: 1, vqa: 1, reasoning: 0}"))],
    })  # fmt: skip
    code, out = run_report(
        capsys, str(lr), str(balancing), str(mix), "--paper", "001", "--name", "lr",
        "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert code == 0
    tables = markdown_tables(out)
    rows = [
        "lr lr1e-6",
        "lr lr2e-5",
        "lr lr1e-5",
        "unbalanced",
        "balanced",
        "mcq",
        "mcq_caption_vqa",
    ]
    t5 = table(tables, "Paper 001, Table 5:")
    assert list(t5)[: len(rows)] == rows  # one row per variant, in sweep.json's order
    assert t5["lr lr1e-6"] == ["1e-06", "0.567", "0.271", "0.674", "55.55"]
    assert t5["lr lr2e-5"] == ["2e-05", "0.646", "0.725", "0.802", "73.73"]
    assert t5["lr lr1e-5"] == ["-", "-", "-", "-", "-"]
    assert "- lr lr1e-5: no metrics.json in " in out and "(sweep.json: failed)" in out
    assert t5["paper: VLM-AutoDrive"] == ["1e-06", "0.567", "0.271", "0.674", "55.55"]
    t7 = table(tables, "Paper 001, Table 7:")
    assert t7["unbalanced"] == ["Unbalanced", "0.000", "0.603", "0.748", "56.57"]
    assert t7["balanced"] == [
        "Balanced (mcq: collision x15, near_collision x2)", "0.600", "0.750", "0.850", "75.00"
    ]  # fmt: skip
    assert "- balanced: mean of 2 of 2 seed runs: " in out
    t6 = table(tables, "Paper 001, Table 6:")
    assert t6["balanced"][:2] == ["4 sec", "448x252"] and t6["mcq_caption_vqa"][:2] == [
        "6 sec",
        "640x252",
    ]
    assert [r for r in tables[next(t for t in tables if "Table 6:" in t)] if r[0].startswith("paper")] == [
        ["paper: VLM-AutoDrive", "6 sec", "32x4", "0.500", "0.702", "0.820", "70.20"],
        ["paper: VLM-AutoDrive", "6 sec", "128x32", "0.640", "0.757", "0.849", "76.26"],
        ["paper: VLM-AutoDrive", "4 sec", "128x32", "0.672", "0.744", "0.845", "76.26"],
        ["paper: VLM-AutoDrive", "4 sec", "192x48", "0.711", "0.748", "0.857", "77.77"],
    ]  # fmt: skip
    t4 = table(tables, "Paper 001, Table 4:")
    assert t4["mcq"] == ["3B", "80.30"] and t4["paper: NVILA-33B"] == ["33B", "80.30"]
    t8 = table(tables, "Paper 001, Table 8:")
    assert t8["mcq"] == ["\u2713", "", "", "80.30"]
    assert t8["mcq_caption_vqa"] == ["\u2713", "\u2713", "\u2713", "86.36"]
    assert [row for name, row in t8.items() if name == "paper: NVILA"] == [
        ["\u2713", "", "", "80.30"]
    ]
    binary = table(tables, "Paper 001: binary anomaly")
    assert binary["lr lr2e-5"] == ["73.73", "85.00"] and binary["balanced"] == ["75.00", "90.00"]
    assert binary["paper: Cosmos-Reason1 Fine-tuned"] == ["77.27", "87.9"]
    assert read_csv(tmp_path / "o" / "paper001_table8.csv")[0] == [
        "Model",
        "MCQ",
        "Caption",
        "VQA",
        "Accuracy",
    ]
    assert table(tables, "Paper 001, Table 3:")["lr lr1e-6"][0] == "30"


def test_paper000_table_iii_reads_the_lingoqa_items(tmp_path, capsys):
    """LingoQA open QA (ROUGE-L, BERTScore): a test run of the LingoQA manifest alone fills the
    row (its keys count as source_lingoqa/...); a run pooling sources does not."""
    scalars = {"open_qa/n": 500.0, "open_qa/rougeL": 0.2812, "open_qa/bertscore_f1": 0.3104}
    lingo = write_json(tmp_path / "lingoqa" / "metrics.json", evaluation("test", 3, scalars))
    lingo.write_text(json.dumps({**json.loads(lingo.read_text()), "sources": ["lingoqa"]}))
    (lingo.parent / "config.yaml").write_text(CONFIG)
    mixed = write_json(tmp_path / "mixed" / "metrics.json", evaluation("test", 3, scalars))
    mixed.write_text(
        json.dumps({**json.loads(mixed.read_text()), "sources": ["lingoqa", "private"]})
    )
    code, out = run_report(capsys, str(lingo.parent), str(mixed.parent), "--paper", "000",
                           "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 0
    t3 = table(markdown_tables(out), "Paper 000, Table III:")
    assert t3["lingoqa"] == ["7B", "0.28", "0.31"]
    assert t3["mixed"] == ["-", "-", "-"]
    assert t3["paper: DoRA Adapted (Ours)"] == ["7B", "0.28", "0.31"]
    assert t3["paper: QwenVL 3.5"] == ["8B", "0.32", "0.32"]
    assert "(mixed): no LingoQA open-QA scores (no source_lingoqa/open_qa/* keys" in out
    assert read_csv(tmp_path / "o" / "paper000_table3.csv")[1] == ["lingoqa", "7B", "0.28", "0.31"]


def test_a_bad_sweep_json_names_the_file_and_field(tmp_path, capsys):
    bad = write_json(tmp_path / "sw" / "sweep.json", {"variants": [{"label": "x"}]})
    assert main(["report", str(bad.parent), "--paper", "001"]) == 2
    assert f"{bad}: field variants[0].name missing or not a string" in capsys.readouterr().err


def test_a_setting_that_is_not_a_number_leaves_its_cell_missing_with_the_key(tmp_path, capsys):
    run = tmp_path / "odd"
    write_json(run / "metrics.json", evaluation("test", 1, {"acc": 0.5}))
    (run / "config.yaml").write_text(
        sweep_config(weights="{mcq: many}").replace("lr: 1e-05", "lr: fast")
    )
    code, out = run_report(capsys, str(run), "--paper", "001", "--out", str(tmp_path / "o"))
    assert code == 0
    tables = markdown_tables(out)
    assert table(tables, "Paper 001, Table 5:")["odd"][0] == "-"
    assert table(tables, "Paper 001, Table 8:")["odd"] == ["-", "-", "-", "50.00"]
    assert "(odd): config key model.lr = 'fast' is not a number" in out
    assert "(odd): config key data.task_weights.mcq = 'many' is not a number" in out


@pytest.mark.parametrize("paper", r.PAPERS)
def test_every_table_says_its_n(tmp_path, capsys, paper):
    # issue 25.11: a table's figures come from the whole test split, and say on how many clips
    run = tmp_path / "whole"
    write_json(run / "metrics.json", evaluation("test", 5, {"clips": 912.0, "items": 1824.0}))
    old = tmp_path / "old"  # written before evaluations recorded their clips
    write_json(old / "metrics.json", evaluation("test", 5, {"items": 85.0}))
    code, out = run_report(
        capsys, str(run), str(old), "--paper", paper, "--out", str(tmp_path / "o")
    )
    assert code == 0
    n_lines = [line for line in out.splitlines() if line.startswith("- n: ")]
    assert n_lines == len(r.TABLES[paper]) * ["- n: whole 912 clips (1,824 items); old 85 items"]
