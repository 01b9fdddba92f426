"""The BERT -> CLIP vocabulary translation (docs/METHOD.md 1.1).

A 0/1 matrix M (V_bert x V_clip): BERT token ``w`` maps to CLIP's whole-word token ``w</w>`` when CLIP has
one; otherwise its row is empty and the word contributes nothing to the image. Each row has at most one 1,
so M is stored as one CLIP index per BERT token (-1 = no match): the sparsest exact representation (the
dense float matrix for the real vocabularies is 5.6 GiB). ``o @ M @ E_clip`` is then ``o @ T`` with the
translated table ``T[b] = E_clip[map[b]]`` (zero row where unmatched), which :func:`translated_table` builds.

Building the map walks both vocabularies (about a second for the real ones); it is cached on disk under a
key that hashes both vocabularies, so a changed tokenizer can never reuse a stale map.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

CLIP_WORD_SUFFIX = "</w>"


@dataclass(frozen=True)
class VocabMap:
    """``clip_index[b]`` is the CLIP id of BERT token ``b``'s whole word, or -1."""

    clip_index: np.ndarray  # int64, shape (V_bert,)
    clip_vocab_size: int

    @property
    def matched(self) -> np.ndarray:
        return self.clip_index >= 0

    def as_sparse(self) -> torch.Tensor:
        """M as a torch sparse COO 0/1 matrix (V_bert x V_clip)."""
        rows = np.nonzero(self.matched)[0]
        idx = torch.from_numpy(np.stack([rows, self.clip_index[rows]]))
        return torch.sparse_coo_tensor(idx, torch.ones(len(rows)), (len(self.clip_index), self.clip_vocab_size),
                                       check_invariants=True)


def vocab_key(bert_vocab: dict[str, int], clip_vocab: dict[str, int]) -> str:
    h = hashlib.sha256()
    for vocab in (bert_vocab, clip_vocab):
        h.update(json.dumps(sorted(vocab.items(), key=lambda kv: kv[1]), ensure_ascii=False).encode())
        h.update(b"\x00")
    return h.hexdigest()[:24]


def build_vocab_map(bert_vocab: dict[str, int], clip_vocab: dict[str, int]) -> VocabMap:
    """Match BERT token text ``w`` to CLIP token ``w</w>`` (exact text; BERT ``##`` pieces never match)."""
    size = max(bert_vocab.values()) + 1
    index = np.full(size, -1, dtype=np.int64)
    for word, b in bert_vocab.items():
        if word.startswith("##"):
            continue
        c = clip_vocab.get(word + CLIP_WORD_SUFFIX)
        if c is not None:
            index[b] = c
    return VocabMap(index, max(clip_vocab.values()) + 1)


def load_or_build_vocab_map(bert_tokenizer, clip_tokenizer, cache_dir: str | Path | None = None) -> VocabMap:
    """The map for two tokenizers, from ``cache_dir/vocab_map_<key>.npz`` when present (built and saved otherwise)."""
    bert_vocab, clip_vocab = bert_tokenizer.get_vocab(), clip_tokenizer.get_vocab()
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"vocab_map_{vocab_key(bert_vocab, clip_vocab)}.npz"
        if path.exists():
            data = np.load(path)
            return VocabMap(data["clip_index"], int(data["clip_vocab_size"]))
    vmap = build_vocab_map(bert_vocab, clip_vocab)
    if path is not None:
        from common.io import atomic_writer

        with atomic_writer(path, "wb") as f:
            np.savez(f, clip_index=vmap.clip_index, clip_vocab_size=np.int64(vmap.clip_vocab_size))
    return vmap


def translated_table(vmap: VocabMap, clip_token_embedding: torch.Tensor) -> torch.Tensor:
    """``M @ E_clip`` (V_bert x D) without forming M: CLIP embedding rows gathered by the map, zeros where unmatched."""
    if clip_token_embedding.shape[0] < vmap.clip_vocab_size:
        raise ValueError(
            f"CLIP embedding table has {clip_token_embedding.shape[0]} rows, tokenizer vocabulary {vmap.clip_vocab_size}"
        )
    index = torch.from_numpy(vmap.clip_index).to(clip_token_embedding.device)
    table = clip_token_embedding[index.clamp(min=0)]
    return table * (index >= 0).unsqueeze(1).to(table.dtype)


__all__ = ["VocabMap", "build_vocab_map", "load_or_build_vocab_map", "translated_table", "vocab_key"]
