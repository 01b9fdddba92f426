"""Reasoning: from DEXTER's frames and keywords to a bias report and pseudo-slice attributes.

docs/METHOD.md section 2. Per class: captions of the frames DEXTER kept (a VLM, or CLIP retrieval over a
phrase bank offline), a Markdown report with four sections (an LLM, or keyword/caption statistics
offline) and ``attributes.json``, the short phrases the CLIP slice-labelling stage uses. With an
:class:`~dexter.reasoning.audit.Auditor` (the classifier answering DEXTER's generator) the frames are
fresh-noise images and every keyword is tested by a counterfactual test before it becomes an attribute.

Heavy imports (torch, transformers, openai) happen only when a backend is built.
"""

from dexter.reasoning.backend import REPORT_SECTIONS, Evidence, ReasoningBackend
from dexter.reasoning.bank import load_phrase_bank
from dexter.reasoning.core import ATTRIBUTES_FILE, CAPTIONS_FILE, REPORT_FILE, make_backend, reason_about_class
from dexter.reasoning.errors import ReasoningError
from dexter.reasoning.schema import AttributesFile, ClassReasoning

__all__ = [
    "ATTRIBUTES_FILE",
    "CAPTIONS_FILE",
    "REPORT_FILE",
    "REPORT_SECTIONS",
    "AttributesFile",
    "ClassReasoning",
    "Evidence",
    "ReasoningBackend",
    "ReasoningError",
    "load_phrase_bank",
    "make_backend",
    "reason_about_class",
]
