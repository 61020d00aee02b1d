"""Tiny randomly initialised models of each supported family, built in the tests (no download)."""

from __future__ import annotations

import torch
from transformers import (AutoModelForSequenceClassification, BertConfig, DistilBertConfig, RobertaConfig)

FAMILIES = {
    "bert": lambda: BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=64),
    "distilbert": lambda: DistilBertConfig(vocab_size=64, dim=32, n_layers=4, n_heads=2, hidden_dim=64,
                                           max_position_embeddings=64),
    "roberta": lambda: RobertaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=70, pad_token_id=1),
}


def tiny_model(family: str, n_classes: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    config = FAMILIES[family]()
    config.num_labels = n_classes
    return AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
