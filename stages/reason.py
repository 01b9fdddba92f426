"""Stage ``reason``: captions, a bias report and pseudo-slice attributes for every DEXTER class.

Reads ``outputs/dexter/<class folder>/`` (keywords.json + frames), writes
``outputs/reasoning/<same folder>/{captions.json, report.md, attributes.json}`` and
``outputs/reasoning/summary.json`` (every class's attributes in one file, for the labelling stage).

Resumable: a class whose inputs and reasoning params have not changed since it was finished
(``.done.json`` stamp) is skipped, and with the openai backend every answer already paid for comes
from the on-disk cache. The API key is read from the environment variable named by
``reasoning.api_key_env`` and is written nowhere.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import shutil
from pathlib import Path

from stages.common import OUTPUTS_DIR, StageInputError, resolve_device, stage_main

DEXTER_DIR = OUTPUTS_DIR / "dexter"
REASONING_DIR = OUTPUTS_DIR / "reasoning"
STAMP = ".done.json"


def synthetic_phrase_bank(section) -> list[str]:
    """Every caption the synthetic world can produce, built by the world's own caption function."""
    from itertools import product

    from dro.data.synthetic import WorldSample, caption

    cfg = section.world_config()
    return [caption(cfg, WorldSample(s, c, b, 0)) for s, c, b in
            product(range(len(cfg.classes)), range(len(cfg.colors)), range(len(cfg.backgrounds)))]


def backend_settings(params) -> tuple[str, dict]:
    """(kind, keyword arguments of make_backend) from the validated params."""
    r = params.reasoning
    if r.backend == "openai":
        return "openai", dict(
            base_url=r.base_url, vlm=r.vlm, llm=r.llm, api_key_env=r.api_key_env, temperature=r.temperature,
            top_p=r.top_p, timeout_s=r.timeout_s, max_retries=r.max_retries, concurrency=r.concurrency,
            cache_dir=r.cache_dir, prompts=r.prompts.model_dump(), json_mode=r.json_mode,
            json_retries=r.json_retries, max_attributes=r.max_attributes,
        )
    settings = dict(clip=r.clip or params.model_set.clip, device=str(resolve_device(params.device)),
                    batch_size=r.batch_size, min_lift=r.min_lift, alpha=r.alpha, max_attributes=r.max_attributes)
    if r.phrase_bank == "auto":
        if params.dataset == "synthetic":
            settings["phrases"] = synthetic_phrase_bank(params.synthetic)
        else:
            settings["bank"] = "general"
    else:
        settings["bank"] = r.phrase_bank
    return "offline", settings


def class_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise StageInputError(f"{root}: not found (run the DEXTER stage first)")
    # The explain stages write one folder per class, possibly inside a per-stage folder (explain@<c>).
    dirs = sorted(p.parent for p in root.glob("**/keywords.json"))
    if not dirs:
        raise StageInputError(f"{root}: no class folder with a keywords.json (run the DEXTER stage first)")
    return dirs


def stamp_for(class_dir: Path, reasoning_params: dict) -> str:
    from dexter.reasoning.inputs import load_class_inputs

    h = hashlib.sha256(load_class_inputs(class_dir).fingerprint().encode())
    h.update(json.dumps(reasoning_params, sort_keys=True).encode())
    h.update(_code_fingerprint().encode())  # new reasoning code must not be answered from an old stamp
    return h.hexdigest()


@functools.cache
def _code_fingerprint() -> str:
    """Hash of the reasoning package's files (code, prompts, phrase banks)."""
    import dexter.reasoning

    root = Path(dexter.reasoning.__file__).parent
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def is_done(dest: Path, stamp: str) -> bool:
    from dexter.reasoning import ATTRIBUTES_FILE, CAPTIONS_FILE, REPORT_FILE

    try:
        done = json.loads((dest / STAMP).read_text())["stamp"] == stamp
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return done and all((dest / f).is_file() for f in (CAPTIONS_FILE, REPORT_FILE, ATTRIBUTES_FILE))


def run(params, dexter_dir: Path = DEXTER_DIR, out_dir: Path = REASONING_DIR) -> dict:
    """Reason about every class folder; returns the summary it writes."""
    from dexter.reasoning import ATTRIBUTES_FILE, ReasoningError, make_backend, reason_about_class
    from dro.io import atomic_write_json

    dirs = class_dirs(dexter_dir)
    reasoning_params = params.reasoning.model_dump()
    kind, settings = backend_settings(params)
    if kind == "offline":  # which CLIP and bank decide the captions, so they belong in the stamp
        reasoning_params["_offline"] = {k: v for k, v in settings.items() if k in ("clip", "phrases", "bank")}
    try:
        backend = make_backend(kind, **settings)
        try:
            for class_dir in dirs:
                dest = out_dir / class_dir.name
                stamp = stamp_for(class_dir, reasoning_params)
                if is_done(dest, stamp):
                    print(f"{class_dir.name}: done before, skipped")
                    continue
                result = reason_about_class(class_dir, dest, backend)
                atomic_write_json(dest / STAMP, {"stamp": stamp})
                print(f"{class_dir.name}: {len(result.captions)} captions, attributes {result.attributes.attributes}")
        finally:
            backend.close()
    except ReasoningError as e:
        raise StageInputError(str(e)) from None

    names = {d.name for d in dirs}
    for stale in out_dir.iterdir():  # classes DEXTER no longer produced (only folders this stage stamped)
        if stale.is_dir() and stale.name not in names and (stale / STAMP).is_file():
            shutil.rmtree(stale)
    summary = {"backend": kind, "classes": {}}
    for d in dirs:
        attrs = json.loads((out_dir / d.name / ATTRIBUTES_FILE).read_text())
        summary["classes"][d.name] = {"class_name": attrs["class_name"], "attributes": attrs["attributes"],
                                      "written_by": attrs["written_by"]}
    atomic_write_json(out_dir / "summary.json", summary)
    return summary


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--dexter-dir", type=Path, default=DEXTER_DIR)
    parser.add_argument("--out", type=Path, default=REASONING_DIR)
    args = parser.parse_args()

    from stages.params import load_params

    run(load_params(args.params), args.dexter_dir, args.out)


if __name__ == "__main__":
    main()
