import pytest
from transformers import BertTokenizer, CLIPTokenizer

from common.word_tokenizers import WordTokenizerError, build_bert_word_tokenizer, build_clip_word_tokenizer

WORDS = ["a", "picture", "of", "on", "red", "circle", "square", "water", "land", "sand", "and", "an",
         "with", "banana", "."]


def test_clip_every_word_is_one_token_after_reload(tmp_path):
    build_clip_word_tokenizer(WORDS, tmp_path)
    tok = CLIPTokenizer.from_pretrained(tmp_path)
    vocab = tok.get_vocab()
    for w in WORDS:
        assert tok(w, add_special_tokens=False).input_ids == [vocab[w + "</w>"]]
    ids = tok("a picture of a red circle on sand.", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77 and tok.model_max_length == 77
    assert ids[0] == vocab["<|startoftext|>"]
    assert ids[1:10] == [vocab[w + "</w>"] for w in ["a", "picture", "of", "a", "red", "circle", "on", "sand", "."]]
    assert set(ids[10:]) == {vocab["<|endoftext|>"]}  # EOS then EOS padding
    assert tok.convert_ids_to_tokens(list(range(len(WORDS)))) == [w + "</w>" for w in WORDS]


def test_clip_rejects_words_that_cannot_be_one_token():
    with pytest.raises(WordTokenizerError, match="split"):
        build_clip_word_tokenizer(["red car"])
    with pytest.raises(WordTokenizerError, match="split"):
        build_clip_word_tokenizer(["r2d2"])


def test_bert_vocab_layout_and_filters(tmp_path):
    build_bert_word_tokenizer(WORDS, tmp_path)
    tok = BertTokenizer.from_pretrained(tmp_path)
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert tok.mask_token_id == 4
    for w in WORDS:
        assert tok.convert_ids_to_tokens(tok(w, add_special_tokens=False).input_ids) == [w]
    assert tok.convert_ids_to_tokens(tok("circles", add_special_tokens=False).input_ids) == ["circle", "##s"]
    assert "," in tok.get_vocab()
