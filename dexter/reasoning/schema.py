"""Validated shapes of what the reasoning module reads and writes.

Inputs (``keywords.json`` from DEXTER, whose contract :class:`common.artifacts.KeywordsFile` is re-exported
here) are validated on the way in so a malformed file is reported by name instead of surfacing as a KeyError
deep inside a backend; outputs are validated on the way
out so nothing unchecked (for instance an LLM's half-JSON) ever reaches ``attributes.json``.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.artifacts import KeywordsFile, RunRecord  # noqa: F401 - keywords.json, re-exported from its one contract

MAX_ATTRIBUTE_WORDS = 8
MAX_ATTRIBUTE_CHARS = 60
MIN_CAPTION_WORDS = 3
MAX_CAPTION_WORDS = 80
MAX_CAPTION_CHARS = 500
_CAPTION_MARKUP = set("{}[]<>`|")
_CAPTION_PREAMBLE = re.compile(r"^(sure|certainly|of course|okay|ok|here is|here's|here are|the image is described)\b",
                               re.IGNORECASE)
_CAPTION_REFUSAL = re.compile(r"\b(i'm sorry|i am sorry|i cannot|i can't|i'm unable|i am unable|as an ai)\b",
                              re.IGNORECASE)


def clean_phrase(text: str) -> str:
    """Lower-case, trim and collapse whitespace and surrounding punctuation of one attribute phrase."""
    text = " ".join(str(text).split()).strip(" .,;:!?\"'`*-_").lower()
    return text


class AttributeProposal(BaseModel):
    """What a backend proposes as pseudo-slice attributes: short phrases usable as CLIP text.

    The validators are strict on purpose: an LLM answer that fails them is sent back for repair.
    """

    model_config = ConfigDict(extra="ignore")

    attributes: list[str] = Field(min_length=1)
    rationale: str = Field(min_length=1)

    @field_validator("attributes")
    @classmethod
    def _short_phrases(cls, value: list[str]) -> list[str]:
        out = []
        for raw in value:
            if not isinstance(raw, str):
                raise ValueError(f"every attribute must be a string, got {raw!r}")
            phrase = clean_phrase(raw)
            if not phrase:
                raise ValueError("attributes must not be empty strings")
            if "\n" in raw or len(phrase) > MAX_ATTRIBUTE_CHARS or len(phrase.split()) > MAX_ATTRIBUTE_WORDS:
                raise ValueError(
                    f"attribute {raw!r} is not a short phrase (at most {MAX_ATTRIBUTE_WORDS} words, "
                    f"{MAX_ATTRIBUTE_CHARS} characters)"
                )
            out.append(phrase)
        return out

    @field_validator("rationale")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("rationale must not be empty")
        return value


class EffectRecord(BaseModel):
    """One counterfactual comparison as ``attributes.json`` lists it (see :class:`dexter.verify.Effect`)."""

    model_config = ConfigDict(extra="ignore")

    attribute: str
    kind: Literal["flip", "drop"]
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float
    n: int
    significant: bool


class AttributesFile(BaseModel):
    """``attributes.json``: what the slice-labelling stage reads.

    ``attributes`` are the VERIFIED ones (empty when ``verdict`` is "no_evidence"), each with its
    ``alternatives`` (the other values of the same kind) for the labelling stage's zero-shot choice.
    ``effects`` is empty only when no counterfactual test was run (library use without a generator); the
    rationale then says that the attributes are unverified. ``captions_dropped``: frames whose caption
    failed :func:`check_caption` even after a retry and were left out of the evidence.
    """

    model_config = ConfigDict(extra="forbid")

    class_name: str
    attributes: list[str]
    rationale: str
    keywords: list[str]
    written_by: str
    verdict: Literal["biased", "no_evidence"]
    alternatives: dict[str, list[str]] = Field(default_factory=dict)
    effects: list[EffectRecord] = Field(default_factory=list)
    captions_dropped: int = 0


class ClassReasoning(BaseModel):
    """Everything :func:`reason_about_class` produced for one class (also what it wrote to disk)."""

    class_name: str
    captions: dict[str, str]
    report: str
    attributes: AttributesFile
    captions_dropped: int = 0


def check_caption(text: str) -> str:
    """The caption with whitespace collapsed and surrounding quotes removed; ValueError saying why it is not one.

    A caption is evidence the LLM reasons on, so it must be a plain description: an answer that carries JSON or
    markup, opens with a chat preamble ("Sure! Here is ..."), refuses, or is too short or too long to be the
    one sentence the prompt asks for is an answer to some other question (or a truncated one).
    """
    caption = " ".join(str(text).split()).strip("\"' ")
    if not caption:
        raise ValueError("the caption is empty")
    if _CAPTION_MARKUP & set(caption) or caption[0] in "#*-":
        raise ValueError("it contains JSON, a list or markup")
    if _CAPTION_PREAMBLE.match(caption):
        raise ValueError("it starts with a preamble ('Sure', 'Here is', ...) instead of the description")
    if _CAPTION_REFUSAL.search(caption):
        raise ValueError("it is a refusal or an apology, not a description of the image")
    words = len(caption.split())
    if words < MIN_CAPTION_WORDS:
        raise ValueError(f"it is too short ({words} words) to describe the image")
    if words > MAX_CAPTION_WORDS or len(caption) > MAX_CAPTION_CHARS:
        raise ValueError(f"it is too long ({words} words) for one sentence")
    return caption


def finalize_attributes(phrases: list[str], class_name: str, limit: int | None = None) -> list[str]:
    """Deduplicate phrases and drop the class name itself (and its plural), keeping order.

    Why: the class name is what every class image shows, so as a slice attribute it separates
    nothing; and a duplicate would double its weight in the CLIP prototype.
    """
    banned = class_name_forms(class_name)
    seen: set[str] = set()
    out = []
    for raw in phrases:
        phrase = clean_phrase(raw)
        key = singular(phrase)
        if not phrase or key in banned or key in seen:
            continue
        seen.add(key)
        out.append(phrase)
        if limit is not None and len(out) >= limit:
            break
    return out


def singular(phrase: str) -> str:
    words = phrase.split()
    if words and len(words[-1]) > 3 and words[-1].endswith("s") and not words[-1].endswith("ss"):
        words[-1] = words[-1][:-1]
    return " ".join(words)


def class_name_forms(class_name: str) -> set[str]:
    name = clean_phrase(re.sub(r"[_]+", " ", class_name))
    forms = {singular(name), singular(name.replace(" ", ""))}
    return {f for f in forms if f}
