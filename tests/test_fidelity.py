"""Recipe fidelity: the README "Fidelity" tables agree with the experiment configs, and the
configs carry the papers' hyperparameters.

README format (section `## Fidelity`): one table per config under a heading that names it
(`### experiments/NAME.yaml`; "variant of" in the heading marks a variant that lists only the
rows where it differs), rows `| setting | paper | config | note |`. The config cell is `-` (no
config key) or `key = value` items separated by `;` (backticks allowed). Keys are dotted paths
into the YAML (`model.lr`, `trainer.callbacks.0.init_args.max_samples`); a `model.`/`data.`/
`trainer.` key absent from the YAML is the SceModule / SceDataModule / Trainer default. Two
derived keys: `effective_batch` (trainer.devices x data.batch_size x
trainer.accumulate_grad_batches) and `frames` (the frame count sce samples from the event window
[t_e - data.window.before, t_e + data.window.after] at data.window.fps). Values are YAML flow scalars, lists or maps.

A row needs a note when its config cell is `-`, or when a config value does not appear in its
paper cell (numbers compared as numbers, "50%" also reads as 0.5; words case-insensitively with
`_` and `-` read as spaces).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import yaml
from helpers.paths import REPO

README = REPO / "README.md"
PAPER_CONFIGS = sorted((REPO / "experiments").glob("paper*.yaml"))
# Every recipe table has a row for each of these settings (issue 11, point 13).
REQUIRED_SETTINGS = (
    "model",
    "window",
    "fps",
    "frames",
    "pixels",
    "inputs",
    "adapters",
    "targets",
    "rank / alpha / dropout",
    "lr",
    "optimizer",
    "batch",
    "epochs",
    "schedule",
    "precision",
    "loss",
    "sampling",
    "metrics",
)
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(%?)")


@dataclass(frozen=True)
class Row:
    """One row of a fidelity table."""

    config: str  # experiments/NAME.yaml
    line: int  # README line number
    setting: str
    paper: str
    cell: str
    note: str

    def where(self) -> str:
        return f"README.md:{self.line} ({self.config}, {self.setting!r})"


# ------------------------------------------------------------------------------ parsing
def fidelity_tables(text: str) -> tuple[dict[str, list[Row]], set[str]]:
    """{config path: rows} of the `## Fidelity` section, and the set of variant configs."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "## Fidelity"]
    assert len(starts) == 1, "README.md needs exactly one '## Fidelity' section"
    tables: dict[str, list[Row]] = {}
    variants: set[str] = set()
    config = None
    for number, line in enumerate(lines[starts[0] + 1 :], start=starts[0] + 2):
        if line.startswith("## "):
            break
        heading = re.match(r"### .*?`?(experiments/[\w./-]+\.yaml)`?(.*)", line)
        if heading:
            config = heading.group(1)
            assert config not in tables, f"README.md:{number}: second table for {config}"
            tables[config] = []
            if "variant of" in heading.group(2):
                variants.add(config)
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or config is None:
            continue
        if cells[0] == "setting" or set(line) <= set("|-: "):
            continue
        assert len(cells) == 4, f"README.md:{number}: a row has 4 cells, got {len(cells)}"
        tables[config].append(Row(config, number, *cells))
    return tables, variants


def config_items(cell: str) -> list[tuple[str, Any]]:
    """`key = value` items of a config cell ([] for `-`)."""
    if cell in ("-", ""):
        return []
    items = []
    for part in cell.split(";"):
        part = part.strip().strip("`").strip()
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"config item {part!r} is not `key = value`")
        items.append((key.strip(), yaml.safe_load(value.strip())))
    return items


# ------------------------------------------------------------------------------ config values
@functools.cache
def signature_defaults() -> dict[str, dict[str, Any]]:
    from lightning.pytorch import Trainer

    from sce.data.datamodule import SceDataModule
    from sce.models.module import SceModule

    return {
        section: {
            name: p.default
            for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        for section, cls in (("model", SceModule), ("data", SceDataModule), ("trainer", Trainer))
    }


def lookup(config: dict, key: str) -> Any:
    """The config's value for a dotted key (list indices as numbers), signature default if absent."""
    if key == "effective_batch":
        return (
            lookup(config, "trainer.devices")
            * lookup(config, "data.batch_size")
            * lookup(config, "trainer.accumulate_grad_batches")
        )
    if key == "frames":
        return frames_of(config)
    node: Any = config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        elif depth >= 1 and isinstance(node, dict):
            return signature_default(key)
        else:
            raise KeyError(f"{key}: not in the config")
    return node


def signature_default(key: str) -> Any:
    """The default of a dotted key from the signatures (into a dataclass default such as
    data.window's WindowSpec)."""
    section, *rest = key.split(".")
    node: Any = signature_defaults().get(section, {})
    for part in rest:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif dataclasses.is_dataclass(node) and part in {f.name for f in dataclasses.fields(node)}:
            node = getattr(node, part)
        else:
            raise KeyError(f"{key}: not in the config and no default")
    return node


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def same_value(table: Any, actual: Any) -> bool:
    """Equal as numbers (relative 1e-6), as lists/maps element-wise, else exactly."""
    a, b = _number(table), _number(actual)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    if isinstance(table, (list, tuple)) and isinstance(actual, (list, tuple)):
        return len(table) == len(actual) and all(map(same_value, table, actual))
    if isinstance(table, dict) and isinstance(actual, dict):
        return table.keys() == actual.keys() and all(same_value(table[k], actual[k]) for k in table)
    return table == actual


def _words(text: str) -> str:
    return re.sub(r"[_\-\s]+", " ", text.lower())


def mentioned(value: Any, paper: str) -> bool:
    """Whether the paper cell states this value (every element of a list/map)."""
    if isinstance(value, dict):
        return all(mentioned(k, paper) and mentioned(v, paper) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(mentioned(v, paper) for v in value)
    number = _number(value)
    if number is not None:
        found = [
            float(m.group(0).rstrip("%")) / (100.0 if m.group(1) else 1.0)
            for m in NUMBER.finditer(paper)
        ]
        return any(math.isclose(number, f, rel_tol=1e-6, abs_tol=1e-12) for f in found)
    if isinstance(value, str):
        return _words(value) in _words(paper)
    return False


def row_problems(row: Row, config: dict) -> list[str]:
    """Why a row is wrong: a value that is not the config's, or a difference without a note."""
    try:
        items = config_items(row.cell)
    except (ValueError, yaml.YAMLError) as err:
        return [f"{row.where()}: unreadable config cell: {err}"]
    problems = []
    for key, value in items:
        try:
            actual = lookup(config, key)
        except KeyError as err:
            problems.append(f"{row.where()}: {err.args[0]}")
            continue
        if not same_value(value, actual):
            problems.append(f"{row.where()}: table says {key} = {value!r}, config has {actual!r}")
    differs = not items or not all(mentioned(value, row.paper) for _, value in items)
    if differs and not row.note:
        problems.append(f"{row.where()}: paper and config differ (or no config key): add a note")
    return problems


def table_problems(tables: dict[str, list[Row]], variants: set[str]) -> list[str]:
    problems = []
    for name, rows in tables.items():
        path = REPO / name
        if not path.is_file():
            problems.append(f"README Fidelity: {name} does not exist")
            continue
        config = yaml.safe_load(path.read_text())
        settings = {row.setting.lower() for row in rows}
        if name not in variants:
            missing = [s for s in REQUIRED_SETTINGS if s not in settings]
            if missing:
                problems.append(f"README Fidelity, {name}: no row for {missing}")
        for row in rows:
            problems.extend(row_problems(row, config))
    return problems


# ------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def tables():
    return fidelity_tables(README.read_text())


def test_every_paper_config_has_a_fidelity_table(tables):
    names = set(tables[0])
    expected = {f"experiments/{p.name}" for p in PAPER_CONFIGS}
    assert names == expected


def test_fidelity_tables_agree_with_configs(tables):
    problems = table_problems(*tables)
    assert not problems, "\n".join(problems)


SAMPLE = """\
## Fidelity

### `experiments/paper002_risk.yaml`

| setting | paper | config | note |
|---|---|---|---|
| lr | 2e-5 | `model.lr = 2.0e-5` | |
| batch | "1 GPU batch with 16 step accumulation" | `data.batch_size = 1`; `trainer.accumulate_grad_batches = 16` | |
| schedule | "warmup_ratio = 0.1" | `model.warmup_ratio = 0.1`; `model.num_cycles = 3` | restarts not given |
| optimizer | not stated | `model.betas = [0.9, 0.999]` | torch defaults |
| precision | fp16 | - | bf16 |
"""


def test_checker_accepts_a_correct_table():
    tables, variants = fidelity_tables(SAMPLE)
    assert [r.setting for r in tables["experiments/paper002_risk.yaml"]] == [
        "lr",
        "batch",
        "schedule",
        "optimizer",
        "precision",
    ]
    problems = table_problems(tables, variants | {"experiments/paper002_risk.yaml"})
    assert problems == []


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "`model.lr = 2.0e-5`",
            "`model.lr = 2.0e-4`",
            "table says model.lr = 0.0002, config has 2e-05",
        ),
        ("accumulate_grad_batches = 16`", "accumulate_grad_batches = 4`", "config has 16"),
        ("| lr | 2e-5 |", "| lr | 1e-5 |", "'lr'): paper and config differ"),
        ("restarts not given |", "|", "'schedule'): paper and config differ"),
        ("| fp16 | - | bf16 |", "| fp16 | - | |", "'precision'): paper and config differ"),
        ("`model.betas = [0.9, 0.999]`", "`model.betas = [0.9, 0.99]`", "config has (0.9, 0.999)"),
        (
            "`model.lr = 2.0e-5`",
            "`model.learning_rate = 2.0e-5`",
            "not in the config and no default",
        ),
    ],
)
def test_checker_names_the_row_that_disagrees(old, new, message):
    assert SAMPLE.count(old) == 1
    tables, variants = fidelity_tables(SAMPLE.replace(old, new))
    problems = table_problems(tables, variants | {"experiments/paper002_risk.yaml"})
    assert problems and message in problems[0], problems
    assert all(p.startswith("README.md:") for p in problems)


def test_recipe_tables_need_every_setting():
    tables, variants = fidelity_tables(SAMPLE)
    (problem,) = [p for p in table_problems(tables, variants) if "no row for" in p]
    assert "'model'" in problem and "'window'" in problem and "'lr'" not in problem


def frames_of(config: dict) -> int:
    """Frames per window as sce samples them: the event window's count at data.window.fps, a whole-clip
    window's data.window.max_frames (the most a clip gets), or a multi-scale window's keyframes."""
    from sce.data.clip import WindowSpec
    from sce.data.windows import Window, window_frame_times

    if lookup(config, "data.window.scales"):
        return len(WindowSpec().keyframes)
    if lookup(config, "data.window.mode") == "whole":
        return WindowSpec(
            mode="whole", max_frames=lookup(config, "data.window.max_frames")
        ).num_frames
    before, after = lookup(config, "data.window.before"), lookup(config, "data.window.after")
    return len(window_frame_times(Window(-before, after), lookup(config, "data.window.fps")))


def _config(name: str) -> dict:
    return yaml.safe_load((REPO / "experiments" / name).read_text())


# The papers' own numbers (issue 11, point 11), asserted on the configs directly.
PAPER_VALUES = {
    "paper000_dora.yaml": {  # Sec. III-A, III-D, IV-A
        "model.finetuning": "dora",
        "model.targets": "all",
        "model.rank": 32,
        "model.alpha": 64,
        "model.lr": 5e-5,
        "effective_batch": 32,
        "data.window.width": 420,
        "data.window.height": 240,
        "data.window.fps": 3.0,
        "frames": 18,
        "model.neftune_alpha": 5.0,
        "data.imu_dropout": 0.5,
        # issue 25 point 4: the teacher's captions, open and closed QA (Sec. III-B, Fig. 2),
        # scored by ROUGE-L/BERTScore and Closed QA accuracy (Tables I, III, V)
        "data.task_weights": {"caption": 1.0, "open_qa": 1.0, "closed_qa": 1.0, "mcq": 1.0},
        "data.eval_tasks": ["mcq", "caption", "open_qa", "closed_qa"],
        "data.window.channels": ["telemetry"],  # video + telemetry (issue 25)
    },
    "paper001_sft.yaml": {  # Sec. 3.3.7, 4.1.2
        "model.finetuning": "full",
        "model.train_vision": False,
        "model.train_merger": False,
        "model.lr": 1e-5,
        "model.weight_decay": 0.01,
        "effective_batch": 8,
        "trainer.max_epochs": 1,
        "trainer.precision": "bf16-mixed",
        "data.window.fps": 30.0,
        "frames": 180,
        # issue 25 point 5: Table 1's mix (MCQ, detailed + Gemini captions, VQA, reasoning MCQ and
        # VQA) at Table 9's best row (Reasoning MCQ x2 + Reasoning VQA)
        "data.task_weights": {
            "mcq": 1.0,
            "structured_caption": 1.0,
            "caption": 1.0,
            "vqa": 1.0,
            "reasoning": 2.0,
            "reasoning_vqa": 1.0,
        },
        "data.window.channels": [],  # video only (issue 25)
    },
    "paper002_risk.yaml": {  # Sec. III-C, "Enhanced FT hyperparameters" on the baseline's
        "model.model_path": "Qwen/Qwen2.5-VL-3B-Instruct",
        "model.finetuning": "qlora",
        "model.targets": "qkvo",
        "model.rank": 8,
        "model.alpha": 16,
        "model.dropout": 0.10,
        "model.lr": 2e-5,
        "data.batch_size": 1,
        "trainer.accumulate_grad_batches": 16,
        "trainer.devices": 1,
        "trainer.max_epochs": 3,
        "model.scheduler": "cosine_with_restarts",
        "model.warmup_ratio": 0.1,
        "model.mse_weight": 5.0,
        "model.pos_weight": 3.0,
        "data.window.channels": [],  # keyframes (+ object table, later), no telemetry
        "data.window.prompt": "paper002",  # Fig. 3's prompt as written
    },
    "paper003_instruction.yaml": {
        "model.finetuning": "full",
        "model.train_vision": False,
        "data.window.fps": 2.0,
        "data.window.mode": "whole",
        "frames": 128,
        "data.window.max_pixels": 16384,
        "data.window.channels": [],  # "omitted from model inputs" (issue 25)
    },
}


@pytest.mark.parametrize("name", sorted(PAPER_VALUES), ids=lambda n: n.split("_")[0])
def test_configs_carry_the_papers_hyperparameters(name):
    config = _config(name)
    wrong = {
        key: lookup(config, key)
        for key, value in PAPER_VALUES[name].items()
        if not same_value(value, lookup(config, key))
    }
    assert not wrong, f"{name}: {wrong} (paper: { {k: PAPER_VALUES[name][k] for k in wrong} })"


def test_paper001_lora_variant_differs_only_in_adapters():
    full, lora = _config("paper001_sft.yaml"), _config("paper001_sft_lora.yaml")
    for key in (
        "model.lr",
        "model.weight_decay",
        "effective_batch",
        "trainer.max_epochs",
        "frames",
    ):
        assert same_value(lookup(full, key), lookup(lora, key)), key
    assert full["data"] == lora["data"]
    assert lora["model"]["finetuning"] == "lora" and full["model"]["finetuning"] == "full"


def _qwen25_vl_7b_on_meta():
    """Qwen2.5-VL-7B-Instruct's sizes (its config.json), weights on the meta device."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from sce.models.families.qwen2_5_vl import QWEN25_VL_7B as SIZES
    from sce.models.families.qwen2_5_vl import QWEN25_VL_7B_VOCAB

    text = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    config = Qwen2_5_VLConfig(
        text_config={key: SIZES[key] for key in (*text, "num_key_value_heads")}
        | {"vocab_size": QWEN25_VL_7B_VOCAB},
        # 2 vision blocks: the tower is frozen and not counted, only its output width matters
        vision_config=dict(
            depth=2,
            hidden_size=SIZES["vision_hidden_size"],
            intermediate_size=SIZES["vision_intermediate_size"],
            num_heads=SIZES["vision_heads"],
            out_hidden_size=SIZES["hidden_size"],
        ),
    )
    with torch.device("meta"):
        return Qwen2_5_VLForConditionalGeneration(config)


@pytest.mark.parametrize(
    "mode, rank, targets, expected",
    [
        ("dora", 32, "all", 82_130_944),  # paper 000 as configured (paper: "fewer than 50M")
        ("dora", 16, "all", 41_760_768),
        ("dora", 32, "qkvo", 20_414_464),
        ("lora", 64, "all", 161_480_704),  # paper001_sft_lora.yaml
        ("full", 0, "all", 7_615_616_512),  # paper 001 / 003: the language model, vision frozen
    ],
)
def test_trainable_parameters_on_the_7b_model(mode, rank, targets, expected):
    """The figures in the paper000/paper001 config headers, counted by sce's own fine-tuning code.

    Per decoder layer LoRA adds r x (in + out) per linear: q 3584+3584, k and v 3584+512,
    o 3584+3584, gate and up 3584+18944, down 18944+3584 = 90,112 r; DoRA adds `out` per
    linear (49,664; 8,192 for q,k,v,o). 28 layers.
    """
    from sce.models.adapters import apply_finetuning, count_parameters, is_visual_param

    model = _qwen25_vl_7b_on_meta()
    visual = sum(p.numel() for n, p in model.named_parameters() if is_visual_param(n))
    model = apply_finetuning(
        model, mode, rank=max(rank, 1), alpha=2 * max(rank, 1), targets=targets
    )
    counts = count_parameters(model)
    assert counts["trainable"] == expected
    if mode == "full":
        assert counts["total"] - visual == expected
