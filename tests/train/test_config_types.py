"""String options are Literal-typed: the `sce fit` parser rejects a typo before anything loads,
lists the choices in the error and in `--help`, and direct construction checks the same set
(issue 13 point 4)."""

from __future__ import annotations

from typing import get_args

import pytest
from helpers.paths import REPO

from sce.cli import run_lightning_cli
from sce.data import datamodule as datamodule_lib
from sce.data.collate import Collator
from sce.data.datamodule import SceDataModule
from sce.models import module as module_lib
from sce.models.module import SceModule

# sce hands LightningCLI its own argument list on purpose (here: pytest's argv is not ours)
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
DEMO = str(REPO / "experiments" / "demo.yaml")


@pytest.fixture
def nothing_may_load(monkeypatch):
    """Make any model, processor or module construction fail the test loudly, and count the
    option checks that construction runs (the parser must stop before either)."""
    constructed: list[str] = []

    def forbidden(*args, **kwargs):
        raise AssertionError("a model or processor was loaded before the parser rejected it")

    def count(name, check):
        def wrapped(args):
            constructed.append(name)
            return check(args)

        return wrapped

    monkeypatch.setattr(module_lib, "load_model", forbidden)
    monkeypatch.setattr(module_lib, "load_tokenizer", forbidden)
    monkeypatch.setattr(SceDataModule, "_load_processor", forbidden)
    monkeypatch.setattr(module_lib, "check_options", count("model", module_lib.check_options))
    monkeypatch.setattr(
        datamodule_lib, "check_options", count("data", datamodule_lib.check_options)
    )
    return constructed


@pytest.mark.parametrize(
    ("override", "key", "choices"),
    [
        ("--model.finetuning=droa", "model.finetuning", ["dora", "lora", "full", "qlora", "none"]),
        ("--data.window.layout=tabel", "data.window.layout", ["interleaved", "table"]),
        ("--data.overflow=truncate", "data.overflow", ["error", "drop"]),  # the collator's
    ],
)
def test_parser_rejects_a_typo_before_anything_loads(
    override, key, choices, nothing_may_load, capsys
):
    with pytest.raises(SystemExit) as exited:
        run_lightning_cli(["fit", "--config", DEMO, override])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f'Parser key "{key}"' in error
    assert f"Literal{choices}" in error  # every valid choice, in order
    assert nothing_may_load == []  # neither SceModule nor SceDataModule was built


def test_fit_help_lists_the_finetuning_choices(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps help to the terminal width
    with pytest.raises(SystemExit) as exited:
        run_lightning_cli(["fit", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "--model.finetuning {dora,lora,full,qlora,none}" in out
    assert "--data.overflow {error,drop}" in out
    assert "--data.decoder {decord,pyav}" in out


def test_each_choice_set_is_defined_once():
    """The runtime lists are the Literal aliases' arguments, not second hand-written copies."""
    from sce import tasks
    from sce.data import dataset, prompts
    from sce.models import adapters

    assert adapters.MODES == get_args(adapters.AdapterMode)
    assert get_args(module_lib.Finetuning) == (*adapters.MODES, "none")
    assert tasks.task_names() == get_args(tasks.TaskName)
    assert prompts.LAYOUTS == get_args(prompts.Layout)
    assert dataset.IMU_SETTINGS == get_args(dataset.ImuSetting)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("finetuning", "droa"),
        ("dtype", "fp16"),
        ("attn_implementation", "flash"),
        ("scheduler", "cosin"),
        ("targets", "qkv"),
        ("loss_normalization", "token"),
    ],
)
def test_direct_module_construction_checks_the_same_choices(option, value, nothing_may_load):
    with pytest.raises(ValueError, match=f"model.{option} must be one of"):
        SceModule("tiny:0", **{option: value})


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("decoder", "ffmpeg"),
        ("overflow", "truncate"),
        ("on_bad_sample", "ignore"),
        ("eval_imu", ["on", "of"]),
        ("eval_tasks", ["mcq", "captions"]),
        ("task_weights", {"mcqs": 1.0}),
    ],
)
def test_direct_datamodule_construction_checks_the_same_choices(option, value):
    with pytest.raises(ValueError, match=f"data.{option}"):
        SceDataModule("synthetic:4:0", **{option: value})


def test_collator_names_the_choices(tiny_processor):
    with pytest.raises(ValueError, match=r"data.overflow must be one of \['error', 'drop'\]"):
        Collator(tiny_processor, overflow="truncate")
    with pytest.raises(ValueError, match=r"collator mode must be one of \['train', 'generate'\]"):
        Collator(tiny_processor, mode="eval")


def test_module_with_valid_options_constructs_without_loading(nothing_may_load):
    module = SceModule("tiny:0", finetuning="none", targets=["q_proj"], scheduler="linear")
    assert module.hparams.finetuning == "none" and module.model is None
    assert nothing_may_load == ["model"]
