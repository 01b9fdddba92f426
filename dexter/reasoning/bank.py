"""Phrase banks: the sentences the offline backend can choose from when it captions an image.

A bank is a plain text file, one phrase per line (``#`` comments allowed). The package ships a
general bank for real photographs; for the synthetic world the stage builds the bank from the
world's own caption function, so no world fact is written here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
    phrases = parse_bank(_bank_text(name_or_path))
    if len(phrases) < 2:
        raise ReasoningError(f"phrase bank {str(name_or_path)!r} holds {len(phrases)} phrase(s); retrieval needs at least 2")
    return phrases


_GROUP = re.compile(r"^#\s*group:\s*(?P<name>[^|]+?)\s*\|\s*(?P<template>.+?)\s*$")
_PREFIX = re.compile(r"^(a|an) (photo|picture|image) of ", re.I)


@dataclass(frozen=True)
class PhraseGroup:
    """Bank phrases that are values of one kind of attribute, and a prompt template to test them with.

    ``template`` has a ``{class}`` slot (a class name) and a ``{value}`` slot (one of ``values``).
    """

    name: str
    template: str
    values: tuple[str, ...]  # the phrases without their leading "a photo of"


def parse_groups(text: str) -> list[PhraseGroup]:
    """Groups declared by ``# group: <name> | <template>`` lines; a group runs until the next header."""
    groups: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        m = _GROUP.match(line.strip())
        if m:
            template = m["template"]
            if "{class}" not in template or "{value}" not in template:
                raise ReasoningError(f"phrase group {m['name']!r}: template {template!r} needs {{class}} and {{value}}")
            groups.append((m["name"], template, []))
            continue
        phrase = " ".join(line.split("#", 1)[0].split())
        if phrase and groups:
            value = _PREFIX.sub("", phrase)
            if value not in groups[-1][2]:
                groups[-1][2].append(value)
    return [PhraseGroup(name, template, tuple(values)) for name, template, values in groups if len(values) >= 2]


def load_phrase_groups(name_or_path: str | Path = "general") -> list[PhraseGroup]:
    """The attribute groups of a bank (empty when the bank declares none)."""
    return parse_groups(_bank_text(name_or_path))


def _bank_text(name_or_path: str | Path) -> str:
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
    return text


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    text = resources.files("dexter.reasoning").joinpath("phrases", "stopwords.txt").read_text(encoding="utf-8")
    return frozenset(parse_bank(text))
