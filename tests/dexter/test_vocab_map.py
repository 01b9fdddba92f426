import numpy as np
import pytest
import torch

from dexter import vocab_map as vm


class FakeTok:
    def __init__(self, vocab):
        self._v = vocab

    def get_vocab(self):
        return dict(self._v)


BERT = {"[PAD]": 0, "[MASK]": 1, "sea": 2, "lake": 3, "harbor": 4, "##s": 5, ".": 6, "zebra": 7}
CLIP = {"lake</w>": 0, "sea</w>": 1, "sea": 2, "s</w>": 3, ".</w>": 4, "harbor": 5, "<|endoftext|>": 6}


def test_matches_whole_words_only():
    m = vm.build_vocab_map(BERT, CLIP)
    assert m.clip_index.tolist() == [-1, -1, 1, 0, -1, -1, 4, -1]
    # harbor has only a non-final piece in CLIP, ##s is a sub-word piece, zebra is absent: empty rows
    dense = m.as_sparse().to_dense()
    assert dense.shape == (8, 7)
    assert dense.sum(1).tolist() == [0, 0, 1, 1, 0, 0, 1, 0]
    assert dense[2, 1] == 1 and dense[3, 0] == 1 and dense[6, 4] == 1


def test_translated_table_is_map_times_embeddings():
    m = vm.build_vocab_map(BERT, CLIP)
    emb = torch.randn(7, 5)
    table = vm.translated_table(m, emb)
    expected = m.as_sparse().to_dense() @ emb
    assert torch.allclose(table, expected)
    assert table[7].abs().sum() == 0


def test_cache_is_used_and_keyed_by_both_vocabularies(tmp_path, monkeypatch):
    first = vm.load_or_build_vocab_map(FakeTok(BERT), FakeTok(CLIP), tmp_path)
    assert len(list(tmp_path.glob("vocab_map_*.npz"))) == 1

    def boom(*a, **k):
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(vm, "build_vocab_map", boom)
    again = vm.load_or_build_vocab_map(FakeTok(BERT), FakeTok(CLIP), tmp_path)
    assert np.array_equal(first.clip_index, again.clip_index)
    changed = dict(CLIP, **{"zebra</w>": 7})
    with pytest.raises(AssertionError, match="rebuilt"):
        vm.load_or_build_vocab_map(FakeTok(BERT), FakeTok(changed), tmp_path)
