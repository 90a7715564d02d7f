"""A tiny local BERT encoder for BERTScore tests: built and saved by the test, never downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = (
    "the a car truck ego vehicle brakes hard collides with avoids pedestrian road sunny rain "
    "night turns left right stops at red light parked van cyclist bus lane"
).split()


def build_tiny_encoder(folder: Path, num_layers: int = 2, seed: int = 0) -> Path:
    """A BERT with random weights (hidden 32, `num_layers` layers) and a WordPiece vocabulary
    covering WORDS, saved like a real one (config.json, weights, tokenizer files)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(vocab), model_max_length=64)
    assert tokenizer.unk_token_id not in tokenizer("the ego car")["input_ids"]
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=32,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def config_only_encoder(folder: Path, num_layers: int, **fields: str) -> Path:
    """A folder with only a config.json (enough to choose a BERTScore layer), e.g.
    `_name_or_path="roberta-large"`: no weights, nothing to score with."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "roberta", "num_hidden_layers": num_layers, **fields}
    (folder / "config.json").write_text(json.dumps(config))
    return folder
