"""What every reasoning backend offers, and the evidence it reasons about.

Two backends implement it: :mod:`dexter.reasoning.openai_backend` (a VLM and an LLM behind any
OpenAI-compatible endpoint) and :mod:`dexter.reasoning.offline` (CLIP retrieval + statistics, no
language model). :func:`dexter.reasoning.core.reason_about_class` only talks to this protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from dexter.reasoning.schema import KeywordsFile

REPORT_SECTIONS = (
    "Key attributes and visual features",
    "Context analysis",
    "Over-represented elements",
    "Bias hypothesis",
)


@dataclass(frozen=True)
class Evidence:
    """One class's DEXTER outputs plus their captions: the input of a report and of the attributes."""

    meta: KeywordsFile
    captions: dict[str, str]  # frame path -> caption
    # the counterfactual test (dexter.verify.ClassVerification.as_dict()); None when it was not run
    verification: dict | None = None
    # activation scores: {"prompts": [...], "captions": [...]}, each ActivationScore.as_dict()
    activation: dict = field(default_factory=dict)

    @property
    def class_name(self) -> str:
        return self.meta.class_name


@runtime_checkable
class ReasoningBackend(Protocol):
    """Captions, report and attribute proposals for one class at a time."""

    written_by: str  # one line saying who wrote the outputs (model ids or "no language model")

    def caption(self, class_name: str, images: Sequence[Path]) -> list[str | None]:
        """One factual sentence per image, in order; None for an image the backend could not caption
        acceptably (it is then left out of the evidence and counted)."""
        ...

    def report(self, evidence: Evidence) -> str:
        """A Markdown report with the four sections of docs/METHOD.md section 2 (:data:`REPORT_SECTIONS`)."""
        ...

    def attributes(self, evidence: Evidence, report: str) -> tuple[list[str], str]:
        """Pseudo-slice attribute phrases (most important first) and the rationale behind them.

        A proposal only: when the counterfactual test ran, the attributes handed on are the verified ones.
        """
        ...

    def counterfactuals(self, class_name: str, attribute: str, class_names: Sequence[str]):
        """How to test ``attribute`` for ``class_name`` on data without a known vocabulary:
        a :class:`dexter.reasoning.proposals.CounterfactualProposal`, or a string saying why it cannot be tested."""
        ...

    def close(self) -> None: ...
