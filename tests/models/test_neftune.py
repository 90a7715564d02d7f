"""NEFTune: noise bound alpha/sqrt(L d) with L = real text tokens, uniform, training only."""

from __future__ import annotations

import math

import pytest
import torch

from sce.models.adapters import apply_finetuning
from sce.models.neftune import NEFTune, noise_scale, text_token_mask, visual_placeholder_ids

ALPHA = 5.0


@pytest.fixture(scope="module")
def model(tiny_kit):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_kit)  # its own copy: tests hook it


def make_batch(config, layout: list[list[tuple[str, int]]]):
    """Right-padded input_ids from (kind, count) runs: kind in text / video / pad."""
    pad_id = config.text_config.pad_token_id
    rows, masks = [], []
    for row in layout:
        ids, mask, text_id = [], [], 20
        for kind, n in row:
            for _ in range(n):
                if kind == "text":
                    ids.append(text_id)
                    text_id += 1
                else:
                    ids.append(config.video_token_id if kind == "video" else pad_id)
                mask.append(0 if kind == "pad" else 1)
        rows.append(ids)
        masks.append(mask)
    return torch.tensor(rows), torch.tensor(masks)


# Sample 0: 40 text tokens around 24 video placeholders, 16 pad. Sample 1: 10 text, 70 video.
LAYOUT = [
    [("text", 30), ("video", 24), ("text", 10), ("pad", 16)],
    [("text", 6), ("video", 70), ("text", 4)],
]
TEXT_COUNTS = [40, 10]


def measured_noise(model, input_ids, attention_mask, seed=0):
    emb = model.get_input_embeddings()
    emb.train()
    with torch.no_grad():
        clean = emb(input_ids)
        neft = NEFTune(ALPHA, visual_placeholder_ids(model.config)).attach(model)
        try:
            torch.manual_seed(seed)
            with neft.batch(input_ids, attention_mask):
                noisy = emb(input_ids)
        finally:
            neft.detach()
            emb.eval()
    return noisy - clean


def test_noise_bound_distribution_and_zero_positions(model):
    ids, mask = make_batch(model.config, LAYOUT)
    noise = measured_noise(model, ids, mask)
    d = model.config.text_config.hidden_size
    text = text_token_mask(ids, mask, visual_placeholder_ids(model.config))
    assert text.sum(dim=1).tolist() == TEXT_COUNTS
    scales = []
    for b, n_text in enumerate(TEXT_COUNTS):
        bound = ALPHA / math.sqrt(n_text * d)
        at_text = noise[b][text[b]]
        assert at_text.abs().max().item() <= bound * (1 + 1e-6)
        assert at_text.abs().max().item() >= 0.98 * bound  # the bound is reached: U(-1, 1)
        # Uniform on [-bound, bound]: std = bound / sqrt(3), mean 0.
        assert at_text.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
        assert abs(at_text.mean().item()) < 0.05 * bound
        assert torch.count_nonzero(noise[b][~text[b]]) == 0  # pad and video placeholders
        scales.append(at_text.abs().max().item())
    # Fewer real tokens -> larger noise: ratio sqrt(40 / 10) = 2, not set by the padded length.
    assert scales[1] / scales[0] == pytest.approx(2.0, rel=0.03)


def test_noise_scale_formula():
    text = torch.tensor([[1, 1, 1, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    got = noise_scale(text, hidden_size=100, alpha=5.0)
    assert got.tolist() == pytest.approx([5.0 / math.sqrt(400), 5.0 / math.sqrt(100)])


def test_eval_mode_adds_nothing(model):
    ids, mask = make_batch(model.config, LAYOUT)
    neft = NEFTune(ALPHA, visual_placeholder_ids(model.config)).attach(model)
    try:
        model.eval()
        with torch.no_grad(), neft.batch(ids, mask):
            with_hook = model(input_ids=ids, attention_mask=mask).logits
        neft.detach()
        with torch.no_grad():
            without = model(input_ids=ids, attention_mask=mask).logits
        assert torch.equal(with_hook, without)
        assert torch.count_nonzero(measured_noise(model.eval(), ids, mask)) > 0  # train() inside
    finally:
        neft.detach()
        model.eval()


def test_training_forward_changes_and_is_reproducible(model):
    ids, mask = make_batch(model.config, [[("text", 12)]])
    neft = NEFTune(ALPHA, visual_placeholder_ids(model.config)).attach(model)
    model.train()
    try:
        outs = []
        for seed in (0, 0, 1):
            torch.manual_seed(seed)
            with torch.no_grad(), neft.batch(ids, mask):
                outs.append(model(input_ids=ids, attention_mask=mask).logits)
        neft.detach()
        with torch.no_grad():
            clean = model(input_ids=ids, attention_mask=mask).logits
    finally:
        neft.detach()
        model.eval()
    assert torch.equal(outs[0], outs[1])
    assert not torch.allclose(outs[0], outs[2])
    assert not torch.allclose(outs[0], clean)


def test_without_context_pad_id_must_be_excluded(model):
    ids, mask = make_batch(model.config, LAYOUT)
    with_context = measured_noise(model, ids, mask, seed=3)
    emb = model.get_input_embeddings().train()
    pad = model.config.text_config.pad_token_id
    excluded = [*visual_placeholder_ids(model.config), pad]
    neft = NEFTune(ALPHA, excluded).attach(model)
    try:
        with torch.no_grad():
            torch.manual_seed(3)
            noisy = emb(ids)
    finally:
        neft.detach()
        emb.eval()
    with torch.no_grad():
        assert torch.allclose(noisy - emb(ids), with_context, atol=1e-7)


def test_works_through_peft_and_checks_the_batch(model):
    from copy import deepcopy

    peft_model = apply_finetuning(deepcopy(model), "dora", rank=2, alpha=4, targets="qv")
    ids, mask = make_batch(model.config, [[("text", 8)]])
    neft = NEFTune(ALPHA, visual_placeholder_ids(model.config)).attach(peft_model)
    peft_model.train()
    try:
        with pytest.raises(RuntimeError, match="already attached"):
            neft.attach(peft_model)
        with neft.batch(ids[:, :5], mask[:, :5]), pytest.raises(ValueError, match="same batch"):
            peft_model(input_ids=ids, attention_mask=mask)
    finally:
        neft.detach()
    assert not neft.attached


def test_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        NEFTune(-1.0)
