"""Issue 12 point 3: every table column computed by its recipe.

- BERTScore (paper 000 Tables I/III, paper 003): a local encoder from the callback's
  `bertscore_model` or $SCE_BERTSCORE_MODEL, read at bert-score's recommended layer; scores equal
  the `bert-score` package's; a run without an encoder says so once, at the start.
- Reasoning-mode accuracy (paper 001 Table 9): every clip asked with the reasoning instruction,
  scored on the answer after `</think>`.
- Per-IMU-setting caption and closed-QA keys (paper 000 Table V).
- Issue 25 point 4: paper 000's Closed QA on every closed static-scene pair of the teacher's QA
  (`annotations.qa`), open QA (and LingoQA) by ROUGE-L and BERTScore, not exact match.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from random import Random

import lightning as L
import pytest
import yaml
from helpers import cpu_trainer
from helpers.encoders import build_tiny_encoder, config_only_encoder
from helpers.paths import REPO

from sce.data.clip import WindowSpec
from sce.data.datamodule import SceDataModule
from sce.evaluate.callback import REASONING_MAX_NEW_TOKENS, GenerationEvaluation
from sce.evaluate.summary import summarize
from sce.metrics.parsing import reasoning_mode_answer
from sce.metrics.text import (
    BERTSCORE_MODEL_ENV,
    bertscore_f1,
    recommended_layer,
    resolve_bertscore_encoder,
)
from sce.models.module import SceModule
from sce.tasks import make_task
from sce.tasks.events import event_answer, event_question
from sce.tasks.reasoning import REASONING_SUFFIX

SKIP_MESSAGE = "BERTScore is skipped"


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("encoder") / "tiny_bert")


def _item(task: str, label: str, prediction: str, reference: str = "", **extra) -> dict:
    return {
        "id": extra.pop("id", "clip"),
        "task": task,
        "label": label,
        "source": "synthetic",
        "imu_on": extra.pop("imu_on", True),
        "reference": reference,
        "prediction": prediction,
        **extra,
    }


# ---------------------------------------------------------------------------- BERTScore

PAIRS = [
    ("the ego car brakes hard", "the ego car brakes hard"),
    ("the ego vehicle collides with a truck", "a pedestrian turns left at the red light"),
    ("sunny road", "the car stops"),
    ("a van avoids the cyclist in the bus lane", "the ego vehicle avoids a parked van"),
]


def test_bertscore_equals_the_bert_score_package(tiny_encoder):
    """Per-pair F1 and caption means (overall and per IMU setting) equal bert_score.score on
    the same local encoder and layer."""
    from bert_score import score

    preds, refs = [p for p, _ in PAIRS], [r for _, r in PAIRS]
    for layer in (1, 2):
        expected = score(preds, refs, model_type=str(tiny_encoder), num_layers=layer)[2].tolist()
        got = bertscore_f1(preds, refs, tiny_encoder, num_layers=layer)
        assert got == pytest.approx(expected, abs=1e-6)
    # not in bert-score's table: the last layer (2), as bert_score.score with num_layers=2
    last = score(preds, refs, model_type=str(tiny_encoder), num_layers=2)[2].tolist()
    with pytest.warns(UserWarning, match="using its last layer, 2"):
        assert bertscore_f1(preds, refs, tiny_encoder) == pytest.approx(last, abs=1e-6)
    items = [_item("caption", "collision", p, r, imu_on=k < 2) for k, (p, r) in enumerate(PAIRS)]
    scalars = summarize(items, bertscore_model=str(tiny_encoder), bertscore_layer=2).scalars
    assert scalars["caption/bertscore_f1"] == pytest.approx(sum(last) / 4, abs=1e-6)
    assert scalars["imu_on/caption/bertscore_f1"] == pytest.approx(sum(last[:2]) / 2, abs=1e-6)
    assert scalars["imu_off/caption/bertscore_f1"] == pytest.approx(sum(last[2:]) / 2, abs=1e-6)
    assert scalars["imu_on/caption/n"] == scalars["imu_off/caption/n"] == 2


@pytest.mark.parametrize(
    ("where", "fields", "layer"),
    [
        ("roberta-large", {}, 17),  # folder name
        ("encoder", {"_name_or_path": "roberta-large"}, 17),  # transformers 4 config.json
        ("encoder", {"_name_or_path": "FacebookAI/roberta-large"}, 17),  # hub org prefix
        ("models--FacebookAI--roberta-large/snapshots/0123abc", {}, 17),  # hub cache snapshot
        ("bert-base-uncased", {}, 9),
        ("microsoft-deberta", {"name_or_path": "microsoft/deberta-xlarge-mnli"}, 40),
    ],
)
def test_layer_is_bert_scores_recommended_layer(tmp_path, where, fields, layer):
    """bert-score's own table (its README: roberta-large layer 17, bert-base-uncased 9,
    deberta-xlarge-mnli 40), the model identified from config.json or the folder."""
    folder = config_only_encoder(tmp_path / where, num_layers=48, **fields)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a table model gets no fallback note
        assert recommended_layer(folder)[0] == layer
        assert resolve_bertscore_encoder(folder, environ={}).num_layers == layer


def test_unknown_model_falls_back_to_last_layer_with_a_note(tmp_path):
    folder = config_only_encoder(tmp_path / "my-own-encoder", num_layers=6)
    with pytest.warns(UserWarning, match="not in bert-score's layer table.*last layer, 6"):
        encoder = resolve_bertscore_encoder(folder, environ={})
    assert (encoder.num_layers, encoder.table_name) == (6, None)
    assert resolve_bertscore_encoder(folder, layer=3, environ={}).num_layers == 3  # configured
    with pytest.raises(ValueError, match="bertscore_layer is 7, but the encoder has 6 layers"):
        resolve_bertscore_encoder(folder, layer=7, environ={})
    small = config_only_encoder(tmp_path / "roberta-large", num_layers=2)  # a tiny "roberta"
    with pytest.raises(ValueError, match="layer for roberta-large is 17, but the encoder has 2"):
        resolve_bertscore_encoder(small, environ={})


def test_environment_variable_names_the_encoder_when_the_config_does_not(tmp_path):
    from_env = config_only_encoder(tmp_path / "roberta-large", num_layers=24)
    from_config = config_only_encoder(tmp_path / "bert-base-uncased", num_layers=12)
    env = {BERTSCORE_MODEL_ENV: str(from_env)}
    assert resolve_bertscore_encoder(None, environ=env).path == str(from_env)
    assert resolve_bertscore_encoder(None, environ=env).num_layers == 17
    config_wins = resolve_bertscore_encoder(from_config, environ=env)
    assert (config_wins.path, config_wins.num_layers) == (str(from_config), 9)
    assert resolve_bertscore_encoder(None, environ={}) is None
    assert resolve_bertscore_encoder(None, environ={BERTSCORE_MODEL_ENV: ""}) is None
    with pytest.raises(FileNotFoundError, match="never downloads"):
        resolve_bertscore_encoder(None, environ={BERTSCORE_MODEL_ENV: str(tmp_path / "missing")})


# ---------------------------------------------------------------------------- reasoning mode


def test_reasoning_mode_answer_is_the_text_after_the_closed_think_block():
    assert reasoning_mode_answer("<think>It swerves. A?</think>B. near-collision") == (
        "B. near-collision"
    )
    assert reasoning_mode_answer("<think>The ego car brakes hard, so") is None  # unclosed
    assert reasoning_mode_answer("B. near-collision") is None  # no reasoning trace
    assert reasoning_mode_answer("<think>a</think>B<think>more") is None  # reopened
    assert reasoning_mode_answer(None) is None


def test_reasoning_mode_accuracy_on_constructed_answers():
    """Six 3-class clips (2 per class) and one binary-scope clip; values by hand."""
    items = [
        _item("reasoning", "collision", "<think>impact with the truck</think>A"),  # right
        _item("reasoning", "collision", "<think>the ego car brakes hard, so"),  # unclosed
        _item("reasoning", "near_collision", "<think>it swerves</think>B. near-collision"),
        # the think names B, the answer after it says A: only the answer counts (wrong)
        _item("reasoning", "near_collision", "<think>Answer: B</think>A. collision"),
        _item("reasoning", "normal", "C. normal"),  # right letter, but no reasoning trace
        _item("reasoning", "normal", "<think>smooth driving</think>C"),  # right
        _item("reasoning", "event", "<think>a crash</think>A. yes", label_scope="binary"),
    ]
    s = summarize(items).scalars
    assert s["reasoning/n"] == 6  # 3-class items; the binary one counts in binary/* only
    assert s["reasoning/acc"] == pytest.approx(3 / 6)
    assert s["reasoning/invalid_rate"] == pytest.approx(2 / 6)
    assert s["reasoning/no_trace_rate"] == pytest.approx(2 / 7)
    # predicted collision: clips 1 and 4 (one right); near-collision: clip 3; normal: clip 6
    assert s["reasoning/precision/collision"] == pytest.approx(1 / 2)
    assert s["reasoning/recall/collision"] == pytest.approx(1 / 2)
    assert s["reasoning/f1/collision"] == pytest.approx(1 / 2)
    assert s["reasoning/precision/near_collision"] == pytest.approx(1.0)
    assert s["reasoning/recall/near_collision"] == pytest.approx(1 / 2)
    assert s["reasoning/f1/near_collision"] == pytest.approx(2 / 3)
    assert s["reasoning/f1/normal"] == pytest.approx(2 / 3)
    # binary view (event vs normal) of all 7: right on clips 1, 3, 4, 6 and the binary clip
    assert s["reasoning/binary/acc"] == pytest.approx(5 / 7)
    assert "acc" not in s  # reasoning items never leak into the direct-answer (mcq) keys


def test_every_clip_gets_a_reasoning_item_at_evaluation_only(tiny_kit, synthetic_manifest):
    """The synthetic clips carry no reasoning trace: each still gets an evaluation reasoning
    item (question = event question + reasoning instruction, reference = the final answer),
    left out of the validation loss and of training."""
    data = SceDataModule(
        str(synthetic_manifest),
        str(tiny_kit),
        window=WindowSpec(width=112, height=56),
        eval_tasks=["mcq", "reasoning"],
        task_weights={"mcq": 1.0, "reasoning": 1.0},
    )
    data.setup("validate")
    val = data.dataset("val")
    assert not any(r.annotations.get("reasoning") for r in val.records)
    assert [i.task for i in val.items] == ["mcq", "reasoning"] * len(val.records)
    sample = val.sample(val.items[1])
    assert sample.user_content[-1]["text"] == event_question() + REASONING_SUFFIX
    assert sample.answer == event_answer(sample.label)
    loss_items = [val.items[k] for k in val.loss_indices()]
    assert [i.task for i in loss_items] == ["mcq"] * len(val.records)
    assert len(data.val_dataloader().dataset) == len(val.records)
    assert {i.task for i in data.dataset("train").items} == {"mcq"}  # no trace: no training


# ---------------------------------------------------------------------------- per IMU setting


def test_caption_and_closed_qa_keys_per_imu_setting():
    """paper 000 Table V: closed QA and captions with IMU and video only."""
    from rouge_score.rouge_scorer import RougeScorer

    captions = [
        ("a truck cuts in from the left", "a truck cuts in from the right", True),
        ("the ego car brakes hard", "the ego car brakes", True),
        ("sunny road", "a cyclist crosses at night", False),
    ]
    rouge = [RougeScorer(["rougeL"]).score(r, p)["rougeL"].fmeasure for p, r, _ in captions]
    qa = [
        ("two", "two", True),
        ("yes, a truck", "yes", True),
        ("no", "yes", True),
        ("fog", "fog", False),
    ]
    items = [_item("caption", "normal", p, r, imu_on=on) for p, r, on in captions]
    items += [_item("closed_qa", "normal", p, r, imu_on=on) for p, r, on in qa]
    s = summarize(items).scalars
    assert s["caption/rougeL"] == pytest.approx(sum(rouge) / 3, abs=1e-6)
    assert s["imu_on/caption/rougeL"] == pytest.approx((rouge[0] + rouge[1]) / 2, abs=1e-6)
    assert s["imu_off/caption/rougeL"] == pytest.approx(rouge[2], abs=1e-6)
    assert (s["closed_qa/acc"], s["imu_on/closed_qa/acc"], s["imu_off/closed_qa/acc"]) == (
        pytest.approx(3 / 4),
        pytest.approx(2 / 3),
        1.0,
    )
    assert "caption/bertscore_f1" not in s and "imu_on/caption/bertscore_f1" not in s
    on_only = summarize([i for i in items if i["imu_on"]]).scalars  # like imu_on/acc: only
    assert "imu_on/closed_qa/acc" in on_only and "imu_off/closed_qa/acc" not in on_only


# ---------------------------------------------------------------------------- teacher QA

TEACHER_QA = [
    {"type": "open", "question": "Why does the ego car brake?", "answer": "The van stops."},
    {"type": "closed", "question": "Is it raining?", "answer": "no"},
    {"type": "closed", "question": "How many lanes are there?", "answer": "two"},
    {"type": "closed", "question": "Is there a truck?", "answer": "yes"},
]
# paper 001-style MCQ items (annotations.vqa): not paper 000's Closed QA
MCQ_ITEMS = [
    {"dimension": "event_type", "question": "Collision, near collision or normal?",
     "options": ["collision", "near collision", "normal"], "answer": "B"},
    {"dimension": "weather", "question": "Weather?", "options": ["rain", "clear"], "answer": "B"},
]  # fmt: skip


def test_paper000_closed_qa_asks_every_closed_pair_of_every_clip():
    """Issue 25 point 4: 3 clips x 2 IMU settings x 3 closed pairs = 18 closed-QA items, each
    closed question once per clip and setting (before: 6 items, one random vqa draw per clip
    and setting, 2 of them the event-type question again); the open pair is open_qa's."""
    from sce.data.dataset import SceDataset
    from sce.data.schema import ClipRecord

    data = _config("paper000_dora.yaml")["data"]
    notes = {"caption": "A caption.", "qa": TEACHER_QA, "vqa": MCQ_ITEMS}
    records = [
        ClipRecord(id=f"c{i}", video="v.mp4", label=label, source="private", split="test",
                   annotations=notes)
        for i, label in enumerate(("collision", "near_collision", "normal"))
    ]  # fmt: skip
    dataset = SceDataset(
        records,
        WindowSpec(),
        train=False,
        imu_settings=tuple(data["eval_imu"]),
        eval_tasks=tuple(data["eval_tasks"]),
    )
    counts = {t: dataset.tasks.count(t) for t in set(dataset.tasks)}
    assert counts == {"mcq": 6, "caption": 6, "open_qa": 6, "closed_qa": 18}
    closed = [i for i in dataset.items if i.task == "closed_qa"]
    assert [(i.record, i.imu, i.part) for i in closed[:6]] == [
        (0, "on", 0), (0, "on", 1), (0, "on", 2), (0, "off", 0), (0, "off", 1), (0, "off", 2)
    ]  # fmt: skip
    asked = [make_task("closed_qa", "normal", notes, Random(0), part=i.part) for i in closed[:3]]
    assert [(a.question, a.answer) for a in asked] == [
        (q["question"], q["answer"]) for q in TEACHER_QA[1:]
    ]
    train = SceDataset(records, WindowSpec(), train=True, task_weights=data["task_weights"])
    assert {t: train.tasks.count(t) for t in set(train.tasks)} == {
        "mcq": 3, "caption": 3, "open_qa": 3, "closed_qa": 9
    }  # fmt: skip


def test_open_qa_is_scored_by_rouge_l_and_bertscore_not_exact_match(tiny_encoder):
    """Paper 000 Table III (LingoQA) and the teacher's open questions: ROUGE-L F1 and BERTScore
    F1 of the free-text answer; a paraphrase with extra words scores above 0 (exact match: 0)."""
    from bert_score import score

    pairs = [("The van stops suddenly.", "The van stops."), ("A cyclist.", "The van stops.")]
    items = [_item("open_qa", "normal", p, r) for p, r in pairs]
    s = summarize(items, bertscore_model=str(tiny_encoder), bertscore_layer=2).scalars
    # "the van stops suddenly" vs "the van stops": P 3/4, R 3/3, F 6/7; the second shares nothing
    assert s["open_qa/rougeL"] == pytest.approx((6 / 7 + 0.0) / 2, abs=1e-6)
    bert = score([p for p, _ in pairs], [r for _, r in pairs], model_type=str(tiny_encoder),
                 num_layers=2)[2].tolist()  # fmt: skip
    assert s["open_qa/bertscore_f1"] == pytest.approx(sum(bert) / 2, abs=1e-6)
    assert s["open_qa/n"] == 2 and "closed_qa/acc" not in s


NEW_TASKS = ("structured_caption", "open_qa", "closed_qa", "reasoning_vqa")


def test_synthetic_clips_train_and_score_the_teacher_qa_and_reasoning_vqa(
    tiny_kit, synthetic_manifest, tmp_path
):
    """Issue 25 acceptance: on `sce synth` data the new tasks train one step and are scored on
    every pair of each validation clip (2 open, 4 closed, 1 reasoning VQA, 1 metadata caption
    per clip); reasoning VQA gets the reasoning budget."""
    L.seed_everything(0)
    data = SceDataModule(
        str(synthetic_manifest),
        str(tiny_kit),
        window=WindowSpec(width=112, height=56),
        batch_size=4,
        eval_batch_size=8,
        max_length=2048,
        task_weights=dict.fromkeys(NEW_TASKS, 1.0),
        eval_tasks=NEW_TASKS,
    )
    module = SceModule(str(tiny_kit), finetuning="lora", rank=4, alpha=8, max_new_tokens=3)
    evaluation = GenerationEvaluation(max_samples=None, reasoning_max_new_tokens=5)
    trainer = cpu_trainer(
        tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=1, callbacks=[evaluation]
    )
    trainer.fit(module, datamodule=data)
    clips = len(data.dataset("val").records)
    train_tasks = data.dataset("train").tasks
    assert {t: train_tasks.count(t) // len(data.dataset("train").records) for t in NEW_TASKS} == {
        "structured_caption": 1, "open_qa": 2, "closed_qa": 4, "reasoning_vqa": 1
    }  # fmt: skip
    s = evaluation.last["val"].scalars
    assert (s["closed_qa/n"], s["open_qa/n"], s["reasoning_vqa/n"]) == (4 * clips, 2 * clips, clips)
    assert s["structured_caption/n"] == clips and 0.0 <= s["closed_qa/acc"] <= 1.0
    assert 0.0 <= s["open_qa/rougeL"] <= 1.0 and 0.0 <= s["reasoning_vqa/no_trace_rate"] <= 1.0
    assert evaluation.token_budgets(3)["reasoning_vqa"] == 5


# ---------------------------------------------------------------------------- recipes


def _config(name: str) -> dict:
    return yaml.safe_load((REPO / "experiments" / name).read_text())


def _evaluation_args(config: dict) -> dict:
    (callback,) = [c for c in config["trainer"]["callbacks"] if "GenerationEvaluation" in str(c)]
    return callback["init_args"]


def test_paper_recipes_evaluate_every_table_column():
    paper000 = _config("paper000_dora.yaml")["data"]  # Tables I, II, III, V
    assert {"mcq", "caption", "open_qa", "closed_qa"} <= set(paper000["eval_tasks"])
    assert "vqa" not in paper000["eval_tasks"]  # paper 001's MCQ items are not its Closed QA
    assert paper000["eval_imu"] == ["on", "off"]
    for name in ("paper001_sft.yaml", "paper001_sft_lora.yaml"):  # Tables 2, 3, 9
        config = _config(name)
        assert {"mcq", "reasoning"} <= set(config["data"]["eval_tasks"])
        assert _evaluation_args(config)["per_class"] == 66
        assert _evaluation_args(config)["reasoning_max_new_tokens"] >= 1024
    assert "probability" in _config("paper002_risk.yaml")["data"]["eval_tasks"]  # Table III


# ---------------------------------------------------------------------------- one run


def test_run_says_once_that_bertscore_is_skipped_and_budgets_reasoning(
    tiny_kit, synthetic_manifest, tmp_path, monkeypatch
):
    """Two epochs, captions and reasoning evaluated, no encoder: the skip message once; each
    generation batch holds one task, reasoning batches with the reasoning budget."""
    monkeypatch.delenv(BERTSCORE_MODEL_ENV, raising=False)
    L.seed_everything(0)
    data = SceDataModule(
        str(synthetic_manifest),
        str(tiny_kit),
        window=WindowSpec(width=112, height=56),
        batch_size=3,
        eval_batch_size=2,
        max_length=2048,
        eval_tasks=["mcq", "caption", "reasoning"],
    )
    module = SceModule(str(tiny_kit), finetuning="lora", rank=4, alpha=8, max_new_tokens=3)
    budgets: list[tuple[set[str], int]] = []
    generate = module.generate_batch

    def recording(batch, max_new_tokens=None):
        budgets.append(({m["task"] for m in batch["meta"]}, max_new_tokens))
        return generate(batch, max_new_tokens)

    monkeypatch.setattr(module, "generate_batch", recording)
    # 6 items = 2 clips x 3 tasks, grouped by task in batches of 2: one task per batch
    evaluation = GenerationEvaluation(max_samples=6, reasoning_max_new_tokens=5)
    trainer = cpu_trainer(
        tmp_path, max_epochs=2, limit_train_batches=1, limit_val_batches=1, callbacks=[evaluation]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, datamodule=data)
    messages = [str(w.message) for w in caught if SKIP_MESSAGE in str(w.message)]
    assert len(messages) == 1 and BERTSCORE_MODEL_ENV in messages[0]
    assert "caption" in messages[0]
    scalars = evaluation.last["val"].scalars
    assert "caption/rougeL" in scalars and "caption/bertscore_f1" not in scalars
    assert "reasoning/acc" in scalars
    assert [(sorted(t), n) for t, n in budgets] == 2 * [
        (["mcq"], 3),
        (["caption"], 3),
        (["reasoning"], 5),
    ]
    assert GenerationEvaluation().token_budgets(64) == {
        "*": 64,
        "reasoning": 1024,
        "reasoning_vqa": 1024,
    }
    assert REASONING_MAX_NEW_TOKENS == 1024


def test_no_skip_message_when_no_task_needs_bertscore(tmp_path, monkeypatch):
    monkeypatch.delenv(BERTSCORE_MODEL_ENV, raising=False)

    class Data:
        hparams = {"eval_tasks": ("mcq", "vqa")}

    class Trainer:
        datamodule = Data()

    evaluation = GenerationEvaluation()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluation.setup(Trainer(), None, "fit")
        Data.hparams = {"eval_tasks": ("instruction",)}
        evaluation.setup(Trainer(), None, "test")
    messages = [str(w.message) for w in caught if SKIP_MESSAGE in str(w.message)]
    assert len(messages) == 1 and "instruction" in messages[0]


# ---------------------------------------------------------------------------- test scores all


def test_max_samples_subsets_validation_only_test_scores_the_whole_split(
    tiny_kit, synthetic_manifest, tmp_path
):
    # issue 25.11: max_samples applied at test too (about 85 of paper 000's ~900 test clips)
    from sce.data.schema import load_manifest

    test_clips = sum(r.split == "test" for r in load_manifest(synthetic_manifest))
    val_clips = sum(r.split == "val" for r in load_manifest(synthetic_manifest))
    assert test_clips > 1 and val_clips > 1
    data = SceDataModule(
        str(synthetic_manifest), str(tiny_kit), window=WindowSpec(width=112, height=56),
        eval_batch_size=4, max_length=2048, eval_tasks=["mcq"],
    )  # fmt: skip
    module = SceModule(str(tiny_kit), finetuning="none", max_new_tokens=2)
    evaluation = GenerationEvaluation(max_samples=1)
    trainer = cpu_trainer(
        tmp_path, limit_val_batches=1, limit_test_batches=1, callbacks=[evaluation]
    )
    trainer.validate(module, datamodule=data)
    trainer.test(module, datamodule=data)
    val, test = evaluation.last["val"].scalars, evaluation.last["test"].scalars
    assert (val["clips"], val["items"]) == (1, 1)  # the validation subset stays
    assert (test["clips"], test["items"]) == (test_clips, test_clips)  # the whole test split
    evaluation = GenerationEvaluation(max_samples=None, per_class=66)
    assert evaluation.subset("test") == evaluation.subset("val") == (None, 66)  # paper 001
