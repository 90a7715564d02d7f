"""Losses: selected-row CE equals full-logits CE; expected-value probability MSE by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sce.data.channels import TelemetryChannel
from sce.data.collate import Collator, digit_token_ids
from sce.data.dataset import Sample
from sce.data.prompts import build_user_content
from sce.models.adapters import apply_finetuning
from sce.models.losses import (
    LossOutput,
    combined_loss,
    compute_losses,
    expected_probability,
    forward_hidden,
    lm_head_of,
    mm_token_type_ids,
    model_inputs,
    probability_mse,
    supervised_cross_entropy,
)
from sce.tasks.events import EVENT_QUESTION, mcq_answer
from sce.tasks.probability import PROBABILITY_QUESTION, probability_answer


@pytest.fixture(scope="module")
def kit(tiny_kit, tiny_processor):
    return tiny_kit, tiny_processor


def load(path):
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    return AutoModelForImageTextToText.from_pretrained(path)


def samples() -> list[Sample]:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (4, 56, 56, 3), dtype=np.uint8)
    times = np.arange(4) / 3 + 4
    c_prob, v_prob = build_user_content(
        frames, times, [TelemetryChannel(None)], PROBABILITY_QUESTION, layout="table"
    )
    c_mcq, v_mcq = build_user_content(frames, times, [TelemetryChannel(None)], EVENT_QUESTION)
    return [
        Sample(
            "p",
            c_prob,
            v_prob,
            3.0,
            probability_answer(0.87),
            "probability",
            "collision",
            probability_target=0.87,
        ),
        Sample("m", c_mcq, v_mcq, 3.0, mcq_answer("normal"), "mcq", "normal"),
    ]


@pytest.fixture(scope="module")
def batch(kit):
    _, processor = kit
    return Collator(processor, 4096)(samples())


def test_ce_equals_full_logits_ce(kit, batch):
    model = load(kit[0]).eval()
    labels = batch["labels"]
    with torch.no_grad():
        hidden = forward_hidden(model, batch)
        ce, n_tokens = supervised_cross_entropy(hidden, lm_head_of(model), labels)
        full = model(**model_inputs(batch, model.config), labels=labels)
    vocab = full.logits.shape[-1]
    ref = F.cross_entropy(
        full.logits[:, :-1].reshape(-1, vocab), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    assert n_tokens == int((labels[:, 1:] != -100).sum()) > 0
    assert abs(ce.item() - ref.item()) < 1e-6
    assert abs(ce.item() - full.loss.item()) < 1e-6  # transformers' own causal-LM loss


def test_lm_head_runs_on_supervised_rows_only(kit, batch):
    model = load(kit[0]).eval()
    seen: list[tuple[int, ...]] = []
    head = lm_head_of(model)
    spy = head.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    with torch.no_grad():
        hidden = forward_hidden(model, batch)
        seen.clear()
        _, n_tokens = supervised_cross_entropy(hidden, head, batch["labels"])
        rows_ce = list(seen)
        seen.clear()
        out = compute_losses(model, batch, digit_token_ids(kit[1].tokenizer))
    spy.remove()
    assert rows_ce == [(n_tokens, model.config.text_config.hidden_size)]
    assert seen == [(n_tokens, model.config.text_config.hidden_size)]  # one forward, N rows
    assert out.n_tokens == n_tokens


def test_compute_losses_matches_hidden_path(kit, batch):
    model = load(kit[0]).eval()
    digits = digit_token_ids(kit[1].tokenizer)
    with torch.no_grad():
        out = compute_losses(model, batch, digits, mse_weight=5.0, pos_weight=3.0)
        hidden = forward_hidden(model, batch)
        head = lm_head_of(model)
        ce, _ = supervised_cross_entropy(hidden, head, batch["labels"])
        mse, predicted = probability_mse(
            hidden,
            head,
            batch["prob_positions"],
            batch["prob_scales"],
            batch["prob_targets"],
            digits,
        )
    assert isinstance(out, LossOutput)
    assert out.ce.item() == pytest.approx(ce.item(), rel=1e-6)
    assert out.mse.item() == pytest.approx(mse.item(), rel=1e-6)
    assert out.mse.item() > 0
    assert out.total.item() == pytest.approx(ce.item() + 5.0 * mse.item(), rel=1e-6)
    assert torch.allclose(out.predicted[:1], predicted[:1], atol=1e-6)
    assert 0.0 <= out.predicted[0].item() <= 1.0 and math.isnan(out.predicted[1].item())


def test_mm_token_type_ids_rebuilt_like_the_processor(kit):
    _, processor = kit
    collator = Collator(processor, 4096)
    encoded = collator.encode(samples())  # the processor's own output, before the collator
    model_config = load(kit[0]).config
    ours = mm_token_type_ids(encoded["input_ids"], model_config)
    assert torch.equal(ours, encoded["mm_token_type_ids"].to(ours.dtype))
    assert int((ours == 2).sum()) == int(
        (encoded["input_ids"] == model_config.video_token_id).sum()
    )


def _fake_head_batch(digit_ids, digits_per_row, seq=8, vocab=32):
    """Hidden states that ARE logits (lm_head = Identity): a big logit on each chosen digit."""
    batch = len(digits_per_row)
    hidden = torch.zeros(batch, seq, vocab)
    positions = torch.full((batch, 4), -1, dtype=torch.long)
    scales = torch.zeros(batch, 4)
    for b, digits in enumerate(digits_per_row):
        for k, (digit, place) in enumerate(digits):
            pos = 2 + k  # label position of the k-th digit; predicted from position pos - 1
            positions[b, k] = pos
            scales[b, k] = place
            if digit is not None:
                hidden[b, pos - 1, digit_ids[digit]] = 60.0
    return hidden, positions, scales


def test_expected_value_on_hand_made_logits():
    digit_ids = list(range(10, 20))
    # "0.87": all mass on digits 0, 8, 7; second row: uniform over digits -> 4.5 * 1.11.
    rows = [[(0, 1.0), (8, 0.1), (7, 0.01)], [(None, 1.0), (None, 0.1), (None, 0.01)]]
    hidden, positions, scales = _fake_head_batch(digit_ids, rows)
    targets = torch.tensor([0.87, 0.2])
    loss, predicted = probability_mse(
        hidden, nn.Identity(), positions, scales, targets, digit_ids, pos_weight=3.0
    )
    assert predicted[0].item() == pytest.approx(0.87, abs=1e-6)
    assert predicted[1].item() == 1.0  # 4.995 clamped for reporting
    # loss uses the unclamped 4.995: row 0 contributes 3 * 0^2, row 1 (negative) 1 * 4.795^2.
    assert loss.item() == pytest.approx((0.0 + 4.795**2) / 2, rel=1e-5)


def test_expected_value_mixes_digits():
    # Half the mass on 8, half on 6 for the tenths digit: E = 7 -> 0.7.
    logits = torch.full((1, 2, 10), -1e4)
    logits[0, 0, 0] = 0.0
    logits[0, 1, 8] = logits[0, 1, 6] = 0.0
    got = expected_probability(logits, torch.tensor([[1.0, 0.1]]))
    assert got.item() == pytest.approx(0.7, abs=1e-6)


def test_positive_weight_and_mean_over_probability_samples():
    digit_ids = list(range(10, 20))
    rows = [[(0, 1.0), (8, 0.1), (7, 0.01)]] * 3
    hidden, positions, scales = _fake_head_batch(digit_ids, rows)
    positions[2] = -1  # third sample is not a probability sample
    targets = torch.tensor([0.9, 0.2, float("nan")])
    loss, predicted = probability_mse(
        hidden, nn.Identity(), positions, scales, targets, digit_ids, pos_weight=3.0
    )
    expected = (3.0 * (0.87 - 0.9) ** 2 + 1.0 * (0.87 - 0.2) ** 2) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert math.isnan(predicted[2].item())
    unweighted, _ = probability_mse(
        hidden, nn.Identity(), positions, scales, targets, digit_ids, pos_weight=1.0
    )
    assert unweighted.item() == pytest.approx(((0.03) ** 2 + 0.67**2) / 2, rel=1e-5)


def test_no_probability_samples_gives_zero_on_the_graph():
    hidden = torch.randn(2, 6, 32, requires_grad=True)
    positions = torch.full((2, 4), -1)
    loss, predicted = probability_mse(
        hidden,
        nn.Identity(),
        positions,
        torch.zeros(2, 4),
        torch.full((2,), float("nan")),
        list(range(10)),
    )
    assert loss.item() == 0.0 and loss.requires_grad
    assert torch.isnan(predicted).all()


def test_probability_sample_without_digits_is_an_error():
    hidden = torch.zeros(2, 6, 32)
    with pytest.raises(ValueError, match=r"rows \[1\].*no digit positions"):
        probability_mse(
            hidden,
            nn.Identity(),
            torch.tensor([[2, 3, -1, -1], [-1, -1, -1, -1]]),
            torch.tensor([[1.0, 0.1, 0, 0], [0, 0, 0, 0]]),
            torch.tensor([0.5, 0.4]),
            list(range(10)),
        )


def test_supervised_ce_with_no_supervised_tokens():
    hidden = torch.randn(1, 5, 8, requires_grad=True)
    loss, n = supervised_cross_entropy(hidden, nn.Linear(8, 11), torch.full((1, 5), -100))
    assert n == 0 and loss.item() == 0.0 and loss.requires_grad


def test_combined_loss():
    assert combined_loss(torch.tensor(1.5), torch.tensor(0.2)).item() == pytest.approx(2.5)
    assert combined_loss(torch.tensor(1.5), torch.tensor(0.2), 1.0).item() == pytest.approx(1.7)


@pytest.mark.parametrize("mode", ["dora", "lora"])
def test_mse_gradient_reaches_adapters_not_vision(kit, batch, mode):
    model = apply_finetuning(load(kit[0]), mode, rank=4, alpha=8, targets="qv").train()
    hidden = forward_hidden(model, batch)
    mse, _ = probability_mse(
        hidden,
        lm_head_of(model),
        batch["prob_positions"],
        batch["prob_scales"],
        batch["prob_targets"],
        digit_token_ids(kit[1].tokenizer),
    )
    mse.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    lora_b = [n for n in grads if ".lora_B." in n]
    assert len(lora_b) == 4  # q and v of both layers
    for name in lora_b:
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    if mode == "dora":
        mags = [n for n in grads if "lora_magnitude_vector" in n]
        assert mags and all(grads[n].abs().sum() > 0 for n in mags)
    assert all(g is None for n, g in grads.items() if ".visual." in n)
    assert all(g is None for n, g in grads.items() if "lora_" not in n)  # base stays frozen


def test_training_step_with_checkpointing_and_neftune(kit, batch):
    from sce.models.adapters import enable_gradient_checkpointing
    from sce.models.neftune import NEFTune, visual_placeholder_ids

    model = apply_finetuning(load(kit[0]), "dora", rank=4, alpha=8, targets="all")
    enable_gradient_checkpointing(model)
    neftune = NEFTune(5.0, visual_placeholder_ids(model.config)).attach(model)
    model.train()
    with neftune.batch(batch["input_ids"], batch["attention_mask"]):
        out = compute_losses(model, batch, digit_token_ids(kit[1].tokenizer))
    out.total.backward()
    neftune.detach()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert len(grads) == 3 * 7 * 2  # A, B, magnitude x 7 projections x 2 layers
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert all(g.abs().sum() > 0 for n, g in grads.items() if ".lora_B." in n)
    assert torch.isfinite(out.total) and out.mse.item() > 0
