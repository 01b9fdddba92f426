"""The files the stages hand each other: their names, where a class's folder is, and typed readers.

One place for each contract, so the writer (DEXTER, the reasoning, the labelling) and every reader agree:

- a class's folder is ``<index:03d>_<safe name>`` under the stage's output folder (DEXTER's runs, the
  reasoning's outputs for the same class use the same name);
- DEXTER writes ``keywords.json`` per class (:class:`KeywordsFile`, read by :func:`read_keywords`); the
  reasoning writes ``attributes.json`` (``class_name``, ``attributes``, ``verdict``, ``alternatives``, ...;
  :func:`read_attributes`, :func:`read_class_attributes`) and, when it verified the class,
  ``verification.json`` (:func:`read_verification`); the labelling writes ``pseudo_groups.csv`` (the
  ``dro_dexter`` row's; an ablation row's is ``pseudo_groups.<method>.csv``) with ``meta.json``.

Every reader of these files goes through this module, so a malformed file is ONE :class:`ArtifactError`
line naming the file, the problem and the stage that writes it, wherever it is read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import UserInputError

KEYWORDS_FILE = "keywords.json"
ATTRIBUTES_FILE = "attributes.json"
VERIFICATION_FILE = "verification.json"
PSEUDO_GROUPS_FILE = "pseudo_groups.csv"
PSEUDO_GROUPS_META = "meta.json"
DEFAULT_METHOD = "dro_dexter"  # the row whose labels carry the plain file names


class ArtifactError(UserInputError, RuntimeError):
    """A file another stage should have written is missing or malformed (the message says which stage)."""


def safe_name(name: str) -> str:
    """A class name usable in a folder name: 'great white shark' -> 'great_white_shark'."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("_")
    return cleaned or "class"


def class_folder(class_index: int, class_name: str) -> str:
    return f"{class_index:03d}_{safe_name(class_name)}"


def class_dir(root: str | Path, class_index: int, class_name: str) -> Path:
    return Path(root) / class_folder(class_index, class_name)


def class_dirs_with(root: str | Path, filename: str) -> list[Path]:
    """Every class folder under ``root`` (at any depth: the explain stages nest one per stage) holding
    ``filename``, sorted."""
    return sorted(p.parent for p in Path(root).glob(f"**/{filename}"))


def pseudo_groups_file(method: str = DEFAULT_METHOD) -> str:
    return PSEUDO_GROUPS_FILE if method == DEFAULT_METHOD else f"pseudo_groups.{method}.csv"


def pseudo_groups_meta(method: str = DEFAULT_METHOD) -> str:
    return PSEUDO_GROUPS_META if method == DEFAULT_METHOD else f"meta.{method}.json"


@dataclass(frozen=True)
class ClassAttributes:
    """What ``attributes.json`` tells the labelling about one class (see :func:`read_class_attributes`)."""

    path: Path
    class_name: str | None
    attributes: tuple[str, ...]
    verdict: str | None  # "biased" | "no_evidence"; None: reasoning output without a verdict
    alternatives: dict[str, tuple[str, ...]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


def _phrases(values) -> list[str]:
    return [str(w).strip() for w in values if str(w).strip()]


def _read_json(path: Path, stage: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: not found (run the {stage} stage first)") from None
    except ValueError as e:
        raise ArtifactError(f"{path}: not valid JSON ({e})") from None


def read_class_attributes(reasoning_dir: str | Path, class_index: int, class_name: str) -> ClassAttributes:
    """The ``attributes.json`` of class ``class_index`` under ``reasoning_dir`` (:func:`read_attributes`)."""
    reasoning_dir = Path(reasoning_dir)
    matches = sorted(reasoning_dir.glob(f"{class_index:03d}_*/{ATTRIBUTES_FILE}"))
    if not matches:
        raise ArtifactError(f"no attributes for class {class_index} ({class_name}): expected "
                            f"{reasoning_dir}/{class_index:03d}_<name>/{ATTRIBUTES_FILE} (run the reason stage)")
    return read_attributes(matches[0])


def read_attributes(path: str | Path) -> ClassAttributes:
    """One ``attributes.json``, checked: without a verdict the class must have attributes (older reasoning
    output); ``verdict: no_evidence`` means none."""
    path = Path(path)
    d = _read_json(path, "reason")
    if not isinstance(d, dict):
        raise ArtifactError(f"{path}: must be a JSON object")
    words = _phrases(d.get("attributes", []))
    verdict = d.get("verdict")
    if verdict not in (None, "biased", "no_evidence"):
        raise ArtifactError(f"{path}: verdict must be 'biased' or 'no_evidence', got {verdict!r}")
    if verdict == "no_evidence" and words:
        raise ArtifactError(f"{path}: verdict is no_evidence but 'attributes' is not empty")
    if verdict != "no_evidence" and not words:
        raise ArtifactError(f"{path}: 'attributes' is empty")
    raw_alt = d.get("alternatives") or {}
    if not isinstance(raw_alt, dict):
        raise ArtifactError(f"{path}: 'alternatives' must map each attribute to a list of phrases")
    alternatives = {}
    for a in words:
        alt = [p for p in _phrases(raw_alt.get(a, [])) if p != a]
        if alt:
            alternatives[a] = tuple(dict.fromkeys(alt))
    return ClassAttributes(path, d.get("class_name"), tuple(words), verdict, alternatives, d)


class RunRecord(BaseModel):
    """One DEXTER run of a class, as ``keywords.json`` lists it (extra fields are tolerated)."""

    model_config = ConfigDict(extra="allow")

    run: int
    words: list[str] = Field(default_factory=list)
    prompt: str = ""
    steps: int = 0
    stopped_early: bool = False
    hits: int = 0


class KeywordsFile(BaseModel):
    """``keywords.json``, written by DEXTER for one class (``dexter.outputs``); extra fields are tolerated."""

    model_config = ConfigDict(extra="allow")

    class_index: int
    class_name: str = Field(min_length=1)
    mode: str = "single"
    keywords: list[str]
    runs: list[RunRecord] = Field(default_factory=list)


_KEYWORDS_REQUIRED = ("class_index", "class_name", "keywords")


def read_keywords(path: str | Path) -> KeywordsFile:
    """A class's ``keywords.json`` (DEXTER's output), checked against :class:`KeywordsFile`."""
    path = Path(path)
    d = _read_json(path, "DEXTER")
    missing = [k for k in _KEYWORDS_REQUIRED if not isinstance(d, dict) or k not in d]
    if missing:
        raise ArtifactError(f"{path}: missing {missing} (not written by the DEXTER stage?)")
    try:
        return KeywordsFile.model_validate(d)
    except ValidationError as e:
        err = e.errors()[0]
        raise ArtifactError(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


_VERIFICATION_REQUIRED = ("verdict", "verified", "effects")


def read_verification(path: str | Path) -> dict[str, Any]:
    """A class's ``verification.json`` (the reason stage's counterfactual test), with the keys its readers
    rely on checked (``verdict``, ``verified``, ``effects``)."""
    path = Path(path)
    d = _read_json(path, "reason")
    missing = [k for k in _VERIFICATION_REQUIRED if not isinstance(d, dict) or k not in d]
    if missing:
        raise ArtifactError(f"{path}: missing {missing} (not written by the reason stage?)")
    if d["verdict"] not in ("biased", "no_evidence"):
        raise ArtifactError(f"{path}: verdict must be 'biased' or 'no_evidence', got {d['verdict']!r}")
    if not isinstance(d["verified"], list) or not isinstance(d["effects"], list):
        raise ArtifactError(f"{path}: 'verified' and 'effects' must be lists")
    return d


__all__ = [
    "ATTRIBUTES_FILE", "ArtifactError", "ClassAttributes", "DEFAULT_METHOD", "KEYWORDS_FILE", "KeywordsFile",
    "PSEUDO_GROUPS_FILE", "PSEUDO_GROUPS_META", "RunRecord", "VERIFICATION_FILE", "class_dir", "class_dirs_with",
    "class_folder", "pseudo_groups_file", "pseudo_groups_meta", "read_attributes", "read_class_attributes",
    "read_keywords", "read_verification", "safe_name",
]
