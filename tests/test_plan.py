"""sce plan: predicted peak GPU memory per device of one training step (issue 18)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sce.budget import load_config
from sce.plan import (
    GiB,
    Setup,
    _extrapolate,
    parse_size,
    plan,
    setup_from_config,
    state_bytes,
    trace_step,
)

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SEVEN_B = "Qwen/Qwen2.5-VL-7B-Instruct"
# Real 7B widths of the tests below are too slow for the default suite; these keep the
# architecture's shape ratios (GQA 4:1, SwiGLU) at small widths.
SMALL = dict(
    hidden_size=512,
    intermediate_size=2048,
    num_attention_heads=8,
    num_key_value_heads=2,
    vocab_size=4096,
    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 12, 12]},
)
SMALL_VISION = dict(depth=2, fullatt_block_indexes=[1], out_hidden_size=512)


def recipe(name: str, **overrides) -> Setup:
    setup = setup_from_config(load_config(EXPERIMENTS / f"{name}.yaml"))
    return Setup(**{**setup.__dict__, **overrides})


def test_trainable_state_is_counted_exactly_from_the_7b_shapes():
    # paper 000's header: DoRA r=32 on all 7 LM linears of the 7B model = 82,130,944 trainable;
    # AdamW keeps two fp32 moments (8 bytes) and an fp32 gradient (4 bytes) per trainable one.
    dora = state_bytes(recipe("paper000_dora"))
    assert dora["trainable"] == 82_130_944
    assert dora["optimizer state"] == 8 * 82_130_944
    assert dora["gradients"] == 4 * 82_130_944
    # paper 001: full fine-tuning of the language model = 7,615,616,512 parameters; fp32 weights,
    # gradients and AdamW state 16 B each, sharded over 8 ranks: the header's "15 GB per rank".
    full = state_bytes(recipe("paper001_sft"))
    assert full["trainable"] == 7_615_616_512
    trainable_state = 16 * 7_615_616_512 / 8
    assert full["gradients"] + full["optimizer state"] == 12 * 7_615_616_512 / 8
    assert 15e9 < trainable_state < 15.5e9


def test_depth_extrapolation_equals_a_traced_deeper_model():
    """Per-layer extrapolation from 1 and 2 traced layers is what 4 traced layers give."""
    setup = Setup(
        SEVEN_B,
        "dora",
        rank=8,
        alpha=16,
        seq_len=512,
        text_overrides=SMALL,
        vision_overrides=SMALL_VISION,
    )
    traces = {(n, b): trace_step(setup, n, b) for n in (1, 2, 4) for b in (1, 2)}
    for phase in ("forward_backward", "optimizer_step"):
        c = [traces[k][phase] for k in ((1, 1), (2, 1), (1, 2), (2, 2))]
        for batch in (1, 2):
            predicted = _extrapolate(*c, 4, batch)
            traced = traces[4, batch][phase]
            assert sum(predicted.values()) == pytest.approx(sum(traced.values()), rel=0.01)
            assert predicted["optimizer state"] == traced["optimizer state"]


def test_checkpointing_keeps_one_layer_input_per_layer():
    # With gradient checkpointing a decoder layer keeps only its input, [B, S, H] in bf16, until
    # backward: the traced peak grows by that much per layer (FlopCounterMode is not nested in
    # the tracker: its module hooks keep checkpointed tensors alive).
    setup = Setup(
        SEVEN_B,
        "lora",
        rank=8,
        alpha=16,
        seq_len=1024,
        text_overrides=SMALL,
        vision_overrides=SMALL_VISION,
    )
    acts = [trace_step(setup, n, 1)["forward_backward"]["activations"] for n in (1, 2, 3)]
    layer_input = 1024 * 512 * 2
    assert acts[2] - acts[1] == pytest.approx(layer_input, rel=0.05)
    assert acts[1] - acts[0] == pytest.approx(layer_input, rel=0.05)


def test_paper000_fits_4x24gb_at_micro_batch_2(capsys):
    """Paper 000's header: 4x 24 GB GPUs, micro-batch 2 (the acceptance command)."""
    from sce.cli import main

    code = main(["plan", "--config", str(EXPERIMENTS / "paper000_dora.yaml"),
                 "--devices", "4", "--gpu-memory", "24GB"])  # fmt: skip
    out = capsys.readouterr().out
    for category in ("parameters", "gradients", "optimizer state", "activations", "temporaries"):
        assert re.search(rf"{category}\s+\d+\.\d\d GiB", out)
    assert "ddp x 4, micro-batch 2 x 2027 tokens" in out
    assert "fits in 22.4 GiB" in out and "largest micro-batch that fits: 2" in out
    assert code == 0


def test_a_config_that_does_not_fit_exits_1(capsys):
    from sce.cli import main

    code = main(["plan", "--config", str(EXPERIMENTS / "paper002_risk.yaml"),
                 "--gpu-memory", "2GiB"])  # fmt: skip
    out = capsys.readouterr().out
    assert "does NOT fit in 2.0 GiB" in out and "largest micro-batch that fits: 0" in out
    assert code == 1


def test_parse_size_units():
    assert parse_size("24GiB") == 24 * GiB
    assert parse_size("80GB") == 80e9
    assert parse_size("24") == 24 * GiB
    with pytest.raises(ValueError, match="--gpu-memory"):
        parse_size("lots")


def test_unknown_model_without_config_json_is_refused():
    with pytest.raises(ValueError, match="no config.json there"):
        plan(Setup("someone/unknown-model"))
