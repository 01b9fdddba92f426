"""The world BERT: a tiny ``BertForMaskedLM`` trained by masked-language modelling on caption variants.

DEXTER reads words off BERT's masked-LM head at the [MASK] slots of its templates, so the variants
include the templates' own shapes ("a picture of a X.", "a picture of a X with Y and Z ..."); a masked
attribute slot then spreads its probability over the world's attribute words.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from world.captions import random_caption
from world.schedule import one_cycle
from world.synthetic import SyntheticWorldConfig, WorldSample

log = logging.getLogger(__name__)


def build_bert(tokenizer, hidden: int = 64, layers: int = 2):
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    return BertForMaskedLM(config)


def mask_tokens(
    input_ids: torch.Tensor, special: torch.Tensor, mask_id: int, vocab_size: int, prob: float,
    g: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 80/10/10 masking; at least one maskable token per row is chosen. Returns (inputs, labels)."""
    maskable = ~special
    chosen = (torch.rand(input_ids.shape, generator=g) < prob) & maskable
    # guarantee one masked token per row: the maskable token with the largest random key
    keys = torch.rand(input_ids.shape, generator=g).masked_fill(~maskable, -1.0)
    chosen |= torch.zeros_like(chosen).scatter_(1, keys.argmax(1, keepdim=True), True) & maskable
    labels = input_ids.masked_fill(~chosen, -100)
    inputs = input_ids.clone()
    u = torch.rand(input_ids.shape, generator=g)
    inputs[chosen & (u < 0.8)] = mask_id
    random_pos = chosen & (u >= 0.8) & (u < 0.9)
    inputs[random_pos] = torch.randint(0, vocab_size, (int(random_pos.sum()),), generator=g)
    return inputs, labels


def train_bert(
    model,
    tokenizer,
    cfg: SyntheticWorldConfig,
    samples: list[WorldSample],
    steps: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    mask_prob: float = 0.25,
    seed: int = 0,
    log_every: int = 100,
) -> list[float]:
    """Masked-LM training in place on fresh caption variants of ``samples``; returns per-step losses."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = one_cycle(opt, lr, steps, pct_start=0.1)
    losses: list[float] = []
    t0 = time.time()
    for step in range(steps):
        idx = rng.integers(0, len(samples), size=batch_size)
        texts = [random_caption(cfg, samples[i], rng).text for i in idx]
        batch = tokenizer(texts, padding=True, return_tensors="pt", return_special_tokens_mask=True)
        special = batch.special_tokens_mask.bool() | ~batch.attention_mask.bool()
        inputs, labels = mask_tokens(batch.input_ids, special, tokenizer.mask_token_id, len(tokenizer), mask_prob, g)
        out = model(input_ids=inputs, attention_mask=batch.attention_mask, labels=labels)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        sched.step()
        losses.append(float(out.loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            log.info("bert step %d/%d loss %.4f (%.0fs)", step + 1, steps, np.mean(losses[-log_every:]),
                     time.time() - t0)
    model.eval()
    return losses
