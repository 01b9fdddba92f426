"""Phrase banks: the sentences the offline backend can choose from when it captions an image.

A bank is a plain text file, one phrase per line (``#`` comments allowed). The package ships a
general bank for real photographs; for the synthetic world the stage builds the bank from the
world's own caption function, so no world fact is written here.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from dexter.reasoning.errors import ReasoningError

_WORD = re.compile(r"[a-z][a-z'-]*")


def words_of(text: str) -> list[str]:
    """Lower-case word tokens of a caption (what the statistics count)."""
    return _WORD.findall(text.lower())


def parse_bank(text: str) -> list[str]:
    """Phrases of a bank file: stripped, comments and blank lines dropped, duplicates removed in order."""
    seen: dict[str, None] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            seen.setdefault(" ".join(line.split()), None)
    return list(seen)


def load_phrase_bank(name_or_path: str | Path = "general") -> list[str]:
    """A packaged bank by name (``general``) or any bank file by path."""
    path = Path(name_or_path)
    if path.suffix or path.exists():
        if not path.is_file():
            raise ReasoningError(f"phrase bank file not found: {path}")
        text = path.read_text(encoding="utf-8")
    else:
        ref = resources.files("dexter.reasoning").joinpath("phrases", f"{name_or_path}.txt")
        if not ref.is_file():
            raise ReasoningError(f"unknown phrase bank {str(name_or_path)!r}: not a packaged bank and not a file")
        text = ref.read_text(encoding="utf-8")
    phrases = parse_bank(text)
    if len(phrases) < 2:
        raise ReasoningError(f"phrase bank {str(name_or_path)!r} holds {len(phrases)} phrase(s); retrieval needs at least 2")
    return phrases


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    text = resources.files("dexter.reasoning").joinpath("phrases", "stopwords.txt").read_text(encoding="utf-8")
    return frozenset(parse_bank(text))
