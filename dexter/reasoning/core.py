"""The public entry points: build a backend, reason about one class folder.

``reason_about_class`` is the same whether called by the DVC stage, the single-class explain command
or a notebook. It writes three files per class, each atomically (a crash never leaves a truncated
file): ``captions.json`` (frame path -> caption), ``report.md`` and ``attributes.json``.
``attributes.json`` is written last, so its presence means the class is complete. A frame the backend
could not caption acceptably (``None``) is left out of ``captions.json`` and of the evidence, and
counted (``captions_dropped`` in ``attributes.json``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from dro.io import atomic_write_json, atomic_write_text

from dexter.reasoning.backend import Evidence, ReasoningBackend
from dexter.reasoning.errors import ReasoningError
from dexter.reasoning.inputs import load_class_inputs
from dexter.reasoning.schema import AttributesFile, ClassReasoning, finalize_attributes

log = logging.getLogger(__name__)

CAPTIONS_FILE = "captions.json"
REPORT_FILE = "report.md"
ATTRIBUTES_FILE = "attributes.json"


def make_backend(kind: Literal["offline", "openai"], **settings: Any) -> ReasoningBackend:
    """Build a backend by name; ``settings`` are the backend class's keyword arguments.

    offline: ``clip`` (path or hub id of a CLIPModel + CLIPProcessor), ``phrases`` (a list) or
    ``bank`` (packaged bank name or file), ``device``, ``batch_size``, ``min_lift``, ``alpha``,
    ``max_attributes``, ``embedder`` (an already-loaded retriever).
    openai: ``base_url``, ``vlm``, ``llm``, ``api_key_env``, ``temperature``, ``top_p``, ``timeout_s``,
    ``max_retries``, ``concurrency``, ``cache_dir``, ``prompts``, ``json_mode``, ``json_retries``,
    ``max_attributes``, ``caption_retries``. The API key is read from the environment variable ``api_key_env`` only.
    """
    if kind == "offline":
        from dexter.reasoning.offline import OfflineBackend as cls
    elif kind == "openai":
        from dexter.reasoning.openai_backend import OpenAIBackend as cls
    else:
        raise ReasoningError(f"unknown reasoning backend {kind!r}; expected 'offline' or 'openai'")
    try:
        return cls(**settings)
    except TypeError as e:
        raise ReasoningError(f"{kind} backend: {e}") from None


def reason_about_class(class_dir: Path, out_dir: Path, backend: ReasoningBackend) -> ClassReasoning:
    """Caption a class's DEXTER frames, write its bias report and its pseudo-slice attributes."""
    if isinstance(backend, str):
        raise ReasoningError(
            f"reason_about_class needs a backend object, got the string {backend!r}: build one with "
            f"make_backend({backend!r}, ...) (offline needs clip=..., openai the endpoint settings)"
        )
    inputs = load_class_inputs(class_dir)
    out_dir = Path(out_dir)
    name = inputs.class_name
    log.info("reasoning about class %r: %d frames, keywords %s", name, len(inputs.frames), inputs.meta.keywords)

    texts = backend.caption(name, [inputs.frame_path(f) for f in inputs.frames]) if inputs.frames else []
    if len(texts) != len(inputs.frames):
        raise ReasoningError(f"backend returned {len(texts)} captions for {len(inputs.frames)} frames")
    captions = {f: t for f, t in zip(inputs.frames, texts) if t is not None}
    dropped = len(texts) - len(captions)
    if dropped and not captions:
        raise ReasoningError(f"class {name!r}: none of the {dropped} frames got an acceptable caption "
                             f"({backend.written_by}); check that the captioning model accepts images")
    if dropped:
        log.warning("class %r: %d of %d captions dropped (not a plain description, even after a retry)",
                    name, dropped, len(texts))
    atomic_write_json(out_dir / CAPTIONS_FILE, captions)

    evidence = Evidence(inputs.meta, captions)
    report = backend.report(evidence).strip() + "\n"
    atomic_write_text(out_dir / REPORT_FILE, report)

    phrases, rationale = backend.attributes(evidence, report)
    attributes = AttributesFile(
        class_name=name,
        attributes=finalize_attributes(phrases, name),
        rationale=rationale,
        keywords=list(inputs.meta.keywords),
        written_by=backend.written_by,
        captions_dropped=dropped,
    )
    if not attributes.attributes:
        log.warning("class %r: no attribute survived (no keyword and no over-represented word)", name)
    atomic_write_json(out_dir / ATTRIBUTES_FILE, attributes.model_dump())
    return ClassReasoning(class_name=name, captions=captions, report=report, attributes=attributes,
                          captions_dropped=dropped)
