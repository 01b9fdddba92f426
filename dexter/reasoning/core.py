"""The public entry points: build a backend, reason about one class folder.

``reason_about_class`` is the same whether called by the DVC stage, the single-class explain command
or a notebook. It writes, each atomically (a crash never leaves a truncated file): ``captions.json``
(frame path -> caption), ``report.md`` and ``attributes.json``; with an :class:`~dexter.reasoning.audit.Auditor`
(the audited classifier and DEXTER's generator) also the fresh-noise ``frames/``, ``verification.json``,
``effects.png``, ``counterfactuals.png``, ``as_dexter_prompts.txt`` and ``as_captions.txt``.
``attributes.json`` is written last, so its presence means the class is complete. A frame the backend
could not caption acceptably (``None``) is left out of ``captions.json`` and of the evidence, and
counted (``captions_dropped`` in ``attributes.json``).

With an auditor the frames captioned are fresh-noise images of each run's final prompt and the
attributes handed on are those the counterfactual test verified. Without one (no generator at hand)
DEXTER's optimisation frames are captioned, the backend's proposal is passed on and every output says
it is UNVERIFIED.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from common.artifacts import ATTRIBUTES_FILE, VERIFICATION_FILE
from common.io import atomic_write_json, atomic_write_text
from dexter.reasoning.backend import Evidence, ReasoningBackend
from dexter.reasoning.errors import ReasoningError
from dexter.reasoning.inputs import load_class_inputs
from dexter.reasoning.schema import AttributesFile, ClassReasoning, finalize_attributes
from dexter.reasoning.summary import contradictions, verdict_sentence, verification_section
from dexter.reasoning.summary import rationale as verified_rationale

log = logging.getLogger(__name__)

CAPTIONS_FILE = "captions.json"
REPORT_FILE = "report.md"
EFFECTS_PNG = "effects.png"
PAIRS_PNG = "counterfactuals.png"
AS_PROMPTS_FILE = "as_dexter_prompts.txt"
AS_CAPTIONS_FILE = "as_captions.txt"
UNVERIFIED = ("UNVERIFIED: no counterfactual test was run (no generator and classifier were given), so these "
              "attributes are the reasoning backend's proposal, not tested on the classifier.")


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


def reason_about_class(class_dir: Path, out_dir: Path, backend: ReasoningBackend, auditor=None) -> ClassReasoning:
    """Caption a class's frames, test its keywords (with ``auditor``), write its report and attributes."""
    if isinstance(backend, str):
        raise ReasoningError(
            f"reason_about_class needs a backend object, got the string {backend!r}: build one with "
            f"make_backend({backend!r}, ...) (offline needs clip=..., openai the endpoint settings)"
        )
    inputs = load_class_inputs(class_dir)
    out_dir = Path(out_dir)
    name = inputs.class_name
    log.info("reasoning about class %r: keywords %s", name, inputs.meta.keywords)
    activation: dict = {}
    if auditor is not None:
        start_images, start_s = auditor.prober.images_generated, auditor.prober.seconds
        rel_frames, prompt_scores = auditor.fresh_frames(inputs, out_dir)
        frame_paths = [out_dir / f for f in rel_frames]
        activation["prompts"] = [a.as_dict() for a in prompt_scores]
    else:
        rel_frames, frame_paths = list(inputs.frames), [inputs.frame_path(f) for f in inputs.frames]

    texts = backend.caption(name, frame_paths) if frame_paths else []
    if len(texts) != len(frame_paths):
        raise ReasoningError(f"backend returned {len(texts)} captions for {len(frame_paths)} frames")
    captions = {f: t for f, t in zip(rel_frames, texts) if t is not None}
    dropped = len(texts) - len(captions)
    if dropped and not captions:
        raise ReasoningError(f"class {name!r}: none of the {dropped} frames got an acceptable caption "
                             f"({backend.written_by}); check that the captioning model accepts images")
    if dropped:
        log.warning("class %r: %d of %d captions dropped (not a plain description, even after a retry)",
                    name, dropped, len(texts))
    atomic_write_json(out_dir / CAPTIONS_FILE, captions)

    verification = None
    if auditor is not None:
        c = inputs.meta.class_index
        activation["captions"] = [a.as_dict() for a in auditor.score_prompts(list(captions.values()), c)]
        result = auditor.verify(inputs, backend)
        verification = result.as_dict()
        verification["cost_total"] = {"images_generated": auditor.prober.images_generated - start_images,
                                      "seconds": round(auditor.prober.seconds - start_s, 2)}
        verification["activation"] = activation
        _write_pictures(out_dir, result, auditor)
        _write_activation(out_dir, name, activation)
        atomic_write_json(out_dir / VERIFICATION_FILE, verification)

    evidence = Evidence(inputs.meta, captions, verification=verification, activation=activation)
    report = backend.report(evidence).strip() + "\n"
    if verification is not None:
        report = _with_measured_verdict(report, verification, activation)
    else:
        report += f"\n_{UNVERIFIED}_\n"
    atomic_write_text(out_dir / REPORT_FILE, report)

    phrases, backend_rationale = backend.attributes(evidence, report)
    proposed = finalize_attributes(phrases, name)
    if verification is not None:
        attributes = AttributesFile(
            class_name=name, attributes=list(verification["verified"]),
            rationale=verified_rationale(verification, proposed, backend_rationale),
            keywords=list(inputs.meta.keywords), written_by=backend.written_by, verdict=verification["verdict"],
            alternatives=verification["alternatives"],
            captions_dropped=dropped,
            effects=[e for e in verification["effects"] if e["attribute"] in verification["verified"]]
            + [e for e in verification["effects"] if e["attribute"] not in verification["verified"]],
        )
    else:
        attributes = AttributesFile(
            class_name=name, attributes=proposed, rationale=f"{UNVERIFIED} {backend_rationale}",
            keywords=list(inputs.meta.keywords), written_by=backend.written_by,
            verdict="biased" if proposed else "no_evidence", captions_dropped=dropped,
        )
    if not attributes.attributes:
        log.info("class %r: no attribute handed on (verdict %s)", name, attributes.verdict)
    atomic_write_json(out_dir / ATTRIBUTES_FILE, attributes.model_dump())
    return ClassReasoning(class_name=name, captions=captions, report=report, attributes=attributes,
                          captions_dropped=dropped)


def _with_measured_verdict(report: str, verification: dict, activation: dict) -> str:
    """The measured verdict first (under the title) and in full at the end; claims of the text that the test
    contradicts are quoted in a note, so no reader takes them for findings."""
    lines = report.split("\n")
    at = 1 if lines and lines[0].startswith("# ") else 0
    note = [f"> Measured on the classifier: {verdict_sentence(verification)}"]
    wrong = contradictions(report, verification)
    if wrong:
        note.append("> The text below claims what the counterfactual test does not support, so the test's verdict "
                    "stands: " + " / ".join(f"\"{w}\"" for w in wrong))
    lines[at:at] = (["", *note] if at and at < len(lines) and not lines[at].strip() else ["", *note, ""]) if at \
        else [*note, ""]
    return "\n".join(lines).rstrip() + "\n\n" + verification_section(verification, activation)


def _write_pictures(out_dir: Path, result, auditor) -> None:
    from dexter.verify.plots import effects_chart, pairs_grid

    _save_png(out_dir / EFFECTS_PNG, effects_chart(result))
    grid = pairs_grid(result, auditor.prober)
    if grid is not None:
        _save_png(out_dir / PAIRS_PNG, grid)
    else:
        (out_dir / PAIRS_PNG).unlink(missing_ok=True)


def _save_png(path: Path, image) -> None:
    import io

    from common.io import atomic_writer

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    with atomic_writer(path, "wb") as f:
        f.write(buffer.getvalue())


def _write_activation(out_dir: Path, class_name: str, activation: dict) -> None:
    from dexter.activation_score import ActivationScore
    from dexter.reasoning.audit import activation_lines

    for key, fname in (("prompts", AS_PROMPTS_FILE), ("captions", AS_CAPTIONS_FILE)):
        scores = [ActivationScore(a["prompt"], a["class_index"], a["n"], a["hits"], a["mean_prob"])
                  for a in activation.get(key, [])]
        atomic_write_text(out_dir / fname, activation_lines(scores, class_name))
