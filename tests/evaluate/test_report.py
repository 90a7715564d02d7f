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
    table4 = _block(p0, "Size\tRank\tROUGE-L", "TABLE V")
    assert table4 == [[row[1], *row[2:]] for row in r.P0_TABLE_IV]
    table5 = _block(p0, "Model\tSize\tClosed QA\tSCE (3-cls.)", "show a decrease")
    for row, printed, numbers in zip(r.P0_TABLE_V, PRINTED_TABLE_V_CHANGES.values(), table5, strict=True):  # fmt: skip
        assert numbers == [row[2], printed[0], row[3], printed[1], row[4], printed[2]]
    p1 = (PAPERS / "001_8744e2c966d5292e.txt").read_text()
    assert _block(p1, "\tPrec. ↑\tRec. ↑", "ating the model") == [list(v) for _, v in r.P1_TABLE_2]
    assert _block(p1, "\tC ↑\tNC ↑", "4.5.1") == [list(row) for row in r.P1_TABLE_3]
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
