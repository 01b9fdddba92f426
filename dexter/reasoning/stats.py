"""Keyword and caption statistics: the evidence the offline backend reasons with.

"Over-represented" needs a reference rate. Captions made by retrieval over a phrase bank can only
use the bank's words, so the natural reference is the share of bank phrases that contain a word:
if the class's frames were unrelated to any word, retrieval would pick it at about that rate. A word
is over-represented when its share among the class's captions is clearly above that rate (lift) AND
unlikely under it (a one-sided binomial test), so three lucky frames do not make a bias. Template
words ("a", "picture") are in every phrase, so their lift is 1 and they drop out by themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from dexter.reasoning.bank import stopwords, words_of
from dexter.reasoning.schema import KeywordsFile


@dataclass(frozen=True)
class WordStat:
    word: str
    frames: int  # class frames whose caption contains the word
    share: float  # frames / number of captions
    expected: float  # share of phrase-bank phrases containing the word (the reference rate)
    lift: float  # share / expected
    p_value: float  # P(at least `frames` | binomial(n, expected))
    over_represented: bool
    under_represented: bool  # clearly rarer than the bank rate: the frames contradict the word


@dataclass(frozen=True)
class KeywordSupport:
    keyword: str
    runs: int  # DEXTER runs whose final words contain the keyword
    hits: int  # images assigned to the class in those runs
    caption_share: float | None  # share of captions containing all its words (None: no captions)


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space (exact for the n of a class's frames)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
        for i in range(k, n + 1)
    ]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def caption_word_stats(
    captions: Sequence[str],
    bank: Sequence[str],
    *,
    min_lift: float = 1.25,
    alpha: float = 0.05,
    min_frames: int = 2,
    extra_words: Sequence[str] = (),
) -> list[WordStat]:
    """Per caption word (and per ``extra_words``, e.g. keywords): class captions versus the phrase bank.

    Sorted most over-represented first (over-represented, then smaller p-value, then larger lift).
    Stop words are left out entirely.
    """
    n = len(captions)
    if n == 0:
        return []
    bank_sets = [set(words_of(p)) for p in bank]
    if not bank_sets:
        raise ValueError("caption_word_stats needs a non-empty phrase bank as the reference rate")
    caption_sets = [set(words_of(c)) for c in captions]
    stop = stopwords()
    words = sorted(({w for s in caption_sets for w in s} | {w.lower() for w in extra_words}) - stop)
    out = []
    for w in words:
        frames = sum(w in s for s in caption_sets)
        in_bank = sum(w in s for s in bank_sets)
        # A caption word missing from the bank (free-text captions) is rare, not impossible: half a phrase.
        expected = in_bank / len(bank_sets) if in_bank else 0.5 / (len(bank_sets) + 1)
        share = frames / n
        lift = share / expected
        p = binomial_upper_tail(frames, n, expected)
        p_low = 1.0 - binomial_upper_tail(frames + 1, n, expected)  # P(X <= frames)
        over = lift >= min_lift and p < alpha and frames >= min_frames
        under = in_bank > 0 and lift * min_lift <= 1.0 and p_low < alpha
        out.append(WordStat(w, frames, share, expected, lift, p, over, under))
    out.sort(key=lambda s: (not s.over_represented, s.p_value, -s.lift, s.word))
    return out


def keyword_support(meta: KeywordsFile, captions: Sequence[str]) -> list[KeywordSupport]:
    """DEXTER's keywords ranked by support: runs that found them, caption evidence, then hits."""
    keywords = list(dict.fromkeys(k.strip().lower() for k in meta.keywords if k.strip()))
    if not keywords:  # fall back to the runs' final words
        keywords = list(dict.fromkeys(w.strip().lower() for r in meta.runs for w in r.words if w.strip()))
    caption_sets = [set(words_of(c)) for c in captions]
    ranked = []
    for order, kw in enumerate(keywords):
        runs = [r for r in meta.runs if kw in {w.strip().lower() for w in r.words}]
        parts = set(words_of(kw))
        share = sum(parts <= s for s in caption_sets) / len(caption_sets) if caption_sets and parts else None
        ranked.append((KeywordSupport(kw, len(runs), sum(r.hits for r in runs), share), order))
    ranked.sort(key=lambda t: (-t[0].runs, -(t[0].caption_share or 0.0), -t[0].hits, t[1]))
    return [k for k, _ in ranked]


def is_informative(phrase: str) -> bool:
    """False for phrases made only of stop words (``"a"``, ``"the picture"``)."""
    return any(w not in stopwords() for w in words_of(phrase))
