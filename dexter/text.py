"""The text side of DEXTER (docs/METHOD.md 1.1): soft prompt -> BERT -> Gumbel one-hot -> CLIP embeddings.

Gradient path: CLIP text features <- spliced token embeddings <- ``o @ T`` (T = M @ E_clip, the translated
table) <- straight-through Gumbel one-hot <- BERT logits at the masks <- soft prompt. The soft prompt is
the ONLY tensor with ``requires_grad``; every model here is frozen.

Everything that does not depend on the soft prompt (BERT ids of the template, the CLIP token sequence with
its fixed words, their embeddings) is computed ONCE in :class:`TextSide`, not per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dexter.config import MULTI_TEMPLATE, SINGLE_TEMPLATE, TEMPLATES  # noqa: F401  (re-exported)
from dexter.vocab_map import VocabMap, translated_table

MASK = "[MASK]"


def init_soft_prompt(length: int, hidden: int, generator: torch.Generator) -> torch.Tensor:
    """U(-1, 1) initialisation (docs/METHOD.md 1.1), fp32, on the CPU (moved by the caller)."""
    return torch.rand(length, hidden, generator=generator) * 2 - 1


def gumbel_straight_through(logits: torch.Tensor, generators: Sequence[torch.Generator], tau: float = 1.0
                            ) -> torch.Tensor:
    """Hard one-hot forward, softmax((logits + g) / tau) backward. ``logits``: (B, M, V); one generator per row.

    Per-row generators (on the CPU) make each optimisation's noise independent of what else is in the batch.
    """
    if len(generators) != logits.shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {logits.shape[0]}")
    u = torch.stack([torch.rand(logits.shape[1:], generator=g, dtype=torch.float32) for g in generators])
    gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7))).to(logits.device)
    soft = torch.softmax((logits.float() + gumbel) / tau, dim=-1)
    hard = torch.nn.functional.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def clip_text_forward(text_encoder: nn.Module, inputs_embeds: torch.Tensor) -> torch.Tensor:
    """CLIP's text transformer on token embeddings: embeddings (+positions) -> causal mask -> encoder -> final LN.

    transformers 5's ``CLIPTextModel.forward`` takes only ids, so its steps are called explicitly; a test
    checks this is bit-exact against ``text_encoder(input_ids).last_hidden_state``.
    """
    from transformers.masking_utils import create_causal_mask

    hidden = text_encoder.embeddings(inputs_embeds=inputs_embeds)
    mask = create_causal_mask(config=text_encoder.config, inputs_embeds=hidden, attention_mask=None,
                              past_key_values=None)
    out = text_encoder.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True)
    return text_encoder.final_layer_norm(out.last_hidden_state)


@dataclass(frozen=True)
class TemplateTokens:
    """A template tokenised once for both models."""

    bert_ids: torch.Tensor  # (L,)
    bert_mask_positions: torch.Tensor  # (M,) positions in bert_ids
    clip_ids: torch.Tensor  # (77,) with a placeholder at each slot
    clip_slot_positions: torch.Tensor  # (M,)
    segments: tuple[str, ...]  # the fixed text around the masks, len M + 1

    @property
    def num_masks(self) -> int:
        return len(self.bert_mask_positions)

    def fill(self, words: Sequence[str | None]) -> str:
        """The prompt as text, e.g. ``a picture of a sea.``; an empty slot shows as ``[MASK]``."""
        out = self.segments[0]
        for w, seg in zip(words, self.segments[1:]):
            out += (w if w else MASK) + seg
        return out


def tokenize_template(template: str, bert_tokenizer, clip_tokenizer) -> TemplateTokens:
    """Tokenise the fixed text of ``template`` for BERT (with [MASK]s) and for CLIP (BOS, pieces, slots, EOS, EOS padding)."""
    segments = tuple(template.split(MASK))
    if len(segments) < 2:
        raise ValueError(f"template {template!r} has no {MASK}")
    bert_text = template.replace(MASK, bert_tokenizer.mask_token)
    bert_ids = torch.tensor(bert_tokenizer(bert_text).input_ids)
    bert_masks = torch.nonzero(bert_ids == bert_tokenizer.mask_token_id).flatten()
    if len(bert_masks) != len(segments) - 1:
        raise ValueError(f"BERT tokenised {template!r} to {len(bert_masks)} masks, expected {len(segments) - 1}")

    ids = [clip_tokenizer.bos_token_id]
    slots = []
    for i, seg in enumerate(segments):
        if seg.strip():
            ids += clip_tokenizer(seg.strip(), add_special_tokens=False).input_ids
        if i < len(segments) - 1:
            slots.append(len(ids))
            ids.append(clip_tokenizer.eos_token_id)  # placeholder, replaced by the word embedding
    ids.append(clip_tokenizer.eos_token_id)
    max_len = clip_tokenizer.model_max_length
    if len(ids) > max_len:
        raise ValueError(f"template {template!r} is {len(ids)} CLIP tokens, more than {max_len}")
    pad = clip_tokenizer.pad_token_id if clip_tokenizer.pad_token_id is not None else clip_tokenizer.eos_token_id
    ids += [pad] * (max_len - len(ids))
    return TemplateTokens(bert_ids, bert_masks, torch.tensor(ids), torch.tensor(slots), segments)


class TextSide:
    """Frozen BERT + translation + CLIP text encoder, prepared for one template.

    ``mask_logits(p)`` -> BERT logits at the masks for a batch of soft prompts ``p`` (B, P, H);
    ``clip_states(onehots)`` -> CLIP text features (B, 77, D) that condition the UNet.
    """

    def __init__(self, bert: nn.Module, bert_tokenizer, text_encoder: nn.Module, clip_tokenizer,
                 vmap: VocabMap, template: str) -> None:
        self.bert = bert
        self.bert_tokenizer = bert_tokenizer
        self.text_encoder = text_encoder
        self.clip_tokenizer = clip_tokenizer
        self.tokens = tokenize_template(template, bert_tokenizer, clip_tokenizer)
        bert_device = next(bert.parameters()).device
        clip_table = text_encoder.embeddings.token_embedding.weight
        with torch.no_grad():
            self.bert_template_embeds = bert.get_input_embeddings()(self.tokens.bert_ids.to(bert_device))  # (L, H)
            table = translated_table(vmap, clip_table)
            vocab_out = bert.get_output_embeddings().weight.shape[0]  # logits size (may exceed the tokenizer's)
            if table.shape[0] < vocab_out:
                table = torch.cat([table, table.new_zeros(vocab_out - table.shape[0], table.shape[1])])
            self.table = table[:vocab_out].detach()  # (V_bert, D) = M @ E_clip
            self.clip_fixed_embeds = clip_table[self.tokens.clip_ids.to(clip_table.device)].detach()  # (77, D)
        self.hidden_size = self.bert_template_embeds.shape[-1]
        self.vocab_size = self.table.shape[0]

    @property
    def num_masks(self) -> int:
        return self.tokens.num_masks

    def mask_logits(self, soft_prompts: torch.Tensor) -> torch.Tensor:
        """Soft prompts (B, P, H) prepended to the template's token embeddings -> logits at the masks (B, M, V)."""
        b, p, _ = soft_prompts.shape
        emb = self.bert_template_embeds.unsqueeze(0).expand(b, -1, -1)
        inputs = torch.cat([soft_prompts.to(emb.dtype), emb], dim=1)
        attention = torch.ones(inputs.shape[:2], dtype=torch.long, device=inputs.device)
        logits = self.bert(inputs_embeds=inputs, attention_mask=attention).logits
        return logits[:, p + self.tokens.bert_mask_positions.to(logits.device)]

    def word_embeddings(self, onehots: torch.Tensor) -> torch.Tensor:
        """One-hots over BERT's vocabulary (B, M, V) -> CLIP token embeddings (B, M, D) via the translation map."""
        return onehots.to(self.table.dtype) @ self.table

    def splice(self, words: torch.Tensor) -> torch.Tensor:
        """Put word embeddings (B, M, D) into the fixed CLIP token embeddings at the slots -> (B, 77, D)."""
        b = words.shape[0]
        out = self.clip_fixed_embeds.unsqueeze(0).expand(b, -1, -1).clone()
        out[:, self.tokens.clip_slot_positions.to(out.device)] = words.to(out.dtype)
        return out

    def clip_states(self, onehots: torch.Tensor) -> torch.Tensor:
        return clip_text_forward(self.text_encoder, self.splice(self.word_embeddings(onehots)))

    def words(self, token_ids: Sequence[int]) -> list[str]:
        return self.bert_tokenizer.convert_ids_to_tokens([int(t) for t in token_ids])


def encode_prompts(text_encoder: nn.Module, clip_tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """Plain text prompts -> CLIP text features (N, 77, D), the tokenised path (used for scoring)."""
    ids = clip_tokenizer(list(prompts), padding="max_length", max_length=clip_tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids
    device = text_encoder.embeddings.token_embedding.weight.device
    return text_encoder(ids.to(device)).last_hidden_state


__all__ = [
    "MULTI_TEMPLATE",
    "SINGLE_TEMPLATE",
    "TEMPLATES",
    "TemplateTokens",
    "TextSide",
    "clip_text_forward",
    "encode_prompts",
    "gumbel_straight_through",
    "init_soft_prompt",
    "tokenize_template",
]
