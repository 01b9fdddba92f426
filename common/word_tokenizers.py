"""Word-level CLIP and BERT tokenizers for small vocabularies (tests and the synthetic world).

DEXTER translates BERT tokens to CLIP whole-word tokens (``word</w>``) by text, so the small models that
stand in for BERT and CLIP need tokenizers in which every word of the vocabulary is exactly ONE token, in
the real tokenizers' formats, loadable with ``CLIPTokenizer.from_pretrained`` / ``BertTokenizer.from_pretrained``
exactly like the hub models.

Traps (transformers 5.x): ``CLIPTokenizer(vocab_file=...)`` silently builds a 3-token vocabulary, so the
vocabulary and merges are passed as ``vocab=``/``merges=``; and CLIP's tokenizer is a byte-level BPE that
always splits a word into characters and re-merges them, so a whole-word entry in the vocabulary is not
enough: every word needs a chain of merges that rebuilds it, ranked so that no other word's merge fires
inside it first. Both builders check by round trip that each word is one token and raise otherwise.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path

from common.errors import UserInputError

CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
CLIP_MAX_LENGTH = 77
CLIP_SUFFIX = "</w>"
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
BERT_PUNCTUATION = (".", ",")
BERT_SUBWORDS = ("##s", "##ing")


class WordTokenizerError(UserInputError, ValueError):
    """A word cannot be made a single token (wrong characters, or the merges cannot be ordered)."""


def _unique(words: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for w in words:
        seen.setdefault(w, None)
    return list(seen)


def _clip_pieces(words: Sequence[str]) -> list[str]:
    """Each word as CLIP's normaliser + pre-tokenizer see it (lower case, byte-level characters).

    Raises if a word would be split into several pre-tokens (digits, spaces, mixed letters/punctuation):
    such a word can never be one CLIP token.
    """
    from transformers import CLIPTokenizer

    probe = CLIPTokenizer().backend_tokenizer
    pieces = []
    for w in words:
        if not w or w != w.strip():
            raise WordTokenizerError(f"CLIP word {w!r}: empty or has surrounding whitespace")
        normalised = probe.normalizer.normalize_str(w)
        split = probe.pre_tokenizer.pre_tokenize_str(normalised)
        if len(split) != 1:
            raise WordTokenizerError(
                f"CLIP word {w!r} is split into {[p for p, _ in split]} by CLIP's pre-tokenizer; "
                "use lower-case letters only, or a single run of punctuation"
            )
        pieces.append(split[0][0])
    return pieces


def _clip_vocab_and_merges(pieces: Sequence[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A vocabulary and merge list in which each piece tokenises to ``piece</w>``.

    Merges build each word left to right: (c1, c2), (c1c2, c3), ..., (c1..c_{n-1}, c_n</w>). BPE applies
    the lowest-ranked applicable pair first; merges whose left side has 2+ characters can only apply at the
    start of the word that built it, so they all rank first. The first-level merges (two single characters)
    can fire anywhere, so they are ordered so that a word's own first merge outranks every first-level merge
    that occurs later inside it (a topological sort; a cycle is reported).
    """
    def symbols(p: str) -> list[str]:
        return [*p[:-1], p[-1] + CLIP_SUFFIX]

    first_level: dict[tuple[str, str], None] = {}
    higher: dict[tuple[str, str], None] = {}
    for p in pieces:
        s = symbols(p)
        if len(s) >= 2:
            first_level.setdefault((s[0], s[1]), None)
        for k in range(2, len(s)):
            higher.setdefault(("".join(p[:k]), s[k]), None)

    # Constraint edges: own first merge -> every first-level merge appearing later inside the word.
    after: dict[tuple[str, str], set[tuple[str, str]]] = {m: set() for m in first_level}
    for p in pieces:
        s = symbols(p)
        if len(s) < 3:
            continue
        own = (s[0], s[1])
        for j in range(1, len(s) - 1):
            pair = (s[j], s[j + 1])
            if pair in first_level and pair != own:
                after[own].add(pair)
    order = _toposort(after, pieces)

    merges = list(higher) + order
    vocab: dict[str, int] = {}
    for p in pieces:
        vocab.setdefault(p + CLIP_SUFFIX, len(vocab))
    for p in pieces:
        for sym in symbols(p):
            vocab.setdefault(sym, len(vocab))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab.setdefault(CLIP_BOS, len(vocab))
    vocab.setdefault(CLIP_EOS, len(vocab))
    return vocab, merges


def _toposort(after: dict, pieces: Sequence[str]) -> list:
    """Kahn's algorithm in a stable order (insertion order of ``after``)."""
    indegree = {m: 0 for m in after}
    for m, succ in after.items():
        for s in succ:
            indegree[s] += 1
    rank = {m: i for i, m in enumerate(after)}
    ready = deque(m for m in after if indegree[m] == 0)
    out = []
    while ready:
        m = ready.popleft()
        out.append(m)
        for s in sorted(after[m], key=rank.__getitem__):
            indegree[s] -= 1
            if indegree[s] == 0:
                ready.append(s)
    if len(out) != len(after):
        stuck = sorted({"".join(m).replace(CLIP_SUFFIX, "") for m in after if m not in out})
        raise WordTokenizerError(
            f"cannot order CLIP merges so that every word is one token; conflicting letter pairs: {stuck}"
        )
    return out


def build_clip_word_tokenizer(words: Iterable[str], save_dir: str | Path | None = None):
    """A CLIP tokenizer in which every word is one ``word</w>`` token, plus BOS/EOS (EOS also pads).

    ``words`` are lower-case words or single punctuation runs ('.', ','). Ids: the words first in the given
    order (``word</w>`` of ``words[i]`` has id i), then the character and merge pieces, then
    ``<|startoftext|>`` and ``<|endoftext|>`` last, as in the real CLIP vocabulary.
    ``model_max_length`` is 77. When ``save_dir`` is given the tokenizer is saved there and reloaded with
    ``CLIPTokenizer.from_pretrained`` (the path every model takes), and the reloaded one is returned.
    """
    from transformers import CLIPTokenizer

    words = _unique(words)
    if not words:
        raise WordTokenizerError("no words given")
    pieces = _clip_pieces(words)
    vocab, merges = _clip_vocab_and_merges(pieces)
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_MAX_LENGTH)
    if save_dir is not None:
        save_dir = Path(save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        tok.save_pretrained(save_dir)
        tok = CLIPTokenizer.from_pretrained(save_dir)
    _check_clip(tok, words, pieces)
    return tok


def _check_clip(tok, words: Sequence[str], pieces: Sequence[str]) -> None:
    if tok.model_max_length != CLIP_MAX_LENGTH:
        raise WordTokenizerError(f"CLIP tokenizer model_max_length is {tok.model_max_length}, expected 77")
    vocab = tok.get_vocab()
    for w, p in zip(words, pieces):
        ids = tok(w, add_special_tokens=False).input_ids
        want = vocab.get(p + CLIP_SUFFIX)
        if ids != [want]:
            raise WordTokenizerError(f"CLIP word {w!r} tokenises to {ids}, expected the single token {want}")
    sentence = words[:50]
    ids = tok(" ".join(sentence)).input_ids
    if ids[0] != tok.bos_token_id or ids[-1] != tok.eos_token_id or len(ids) != len(sentence) + 2:
        raise WordTokenizerError(f"CLIP tokenizer does not frame a sentence as BOS words EOS: {ids}")


def build_bert_word_tokenizer(
    words: Iterable[str],
    save_dir: str | Path | None = None,
    punctuation: Sequence[str] = BERT_PUNCTUATION,
    subwords: Sequence[str] = BERT_SUBWORDS,
):
    """A WordPiece (BERT) tokenizer: [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0-4), the words, punctuation, ``##`` pieces.

    Punctuation and ``##`` pieces are there so that DEXTER's word filters (docs/METHOD.md 1.4) have something to
    filter in tests and in the synthetic world. Each word must be one token (checked). ``save_dir`` as for
    :func:`build_clip_word_tokenizer`; a ``vocab.txt`` is written beside ``tokenizer.json`` too.
    """
    from transformers import BertTokenizer

    words = _unique(words)
    if not words:
        raise WordTokenizerError("no words given")
    entries = _unique([*BERT_SPECIALS, *words, *punctuation, *subwords])
    vocab = {t: i for i, t in enumerate(entries)}
    tok = BertTokenizer(vocab=vocab, model_max_length=512)
    if save_dir is not None:
        save_dir = Path(save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        tok.save_pretrained(save_dir)
        (save_dir / "vocab.txt").write_text("".join(t + "\n" for t in entries), encoding="utf-8")
        tok = BertTokenizer.from_pretrained(save_dir)
    got = tok.get_vocab()
    for w in words:
        ids = tok(w, add_special_tokens=False).input_ids
        if ids != [got.get(w)]:
            raise WordTokenizerError(f"BERT word {w!r} tokenises to {ids}, expected the single token {got.get(w)}")
    if tok.mask_token_id is None or tok.cls_token_id is None:
        raise WordTokenizerError("BERT tokenizer lost its special tokens")
    return tok


__all__ = [
    "CLIP_BOS",
    "CLIP_EOS",
    "CLIP_MAX_LENGTH",
    "WordTokenizerError",
    "build_bert_word_tokenizer",
    "build_clip_word_tokenizer",
]
