"""Resume stamps of the reasoning stage: a class whose inputs, reasoning settings and code have not changed
since it was finished (its ``.done.json`` stamp) is skipped on a rerun.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from common.artifacts import VERIFICATION_FILE
from common.fingerprint import code_digest, json_digest
from dexter.reasoning import ATTRIBUTES_FILE, CAPTIONS_FILE, REPORT_FILE
from dexter.reasoning.inputs import load_class_inputs

STAMP = ".done.json"


def stamp_for(class_dir: Path, reasoning_params: dict) -> str:
    """Identity of a class's reasoning: its DEXTER outputs, the reasoning settings and the code."""
    return json_digest([load_class_inputs(class_dir).fingerprint(), reasoning_params, _code_fingerprint()])


@functools.cache
def _code_fingerprint() -> str:
    """Hash of the reasoning and verification code (with prompts and phrase banks) and of the generator's:
    new reasoning code must not be answered from an old stamp."""
    root = Path(__file__).resolve().parent.parent
    files = [*(root / "reasoning").rglob("*"), *(root / "verify").rglob("*"),
             *(root / f for f in ("sampler.py", "text.py", "activation_score.py", "loading.py"))]
    return code_digest(root, files)


def is_done(dest: Path, stamp: str) -> bool:
    """The class in ``dest`` was finished under ``stamp`` and every file it writes is there."""
    try:
        done = json.loads((dest / STAMP).read_text())["stamp"] == stamp
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return done and all((dest / f).is_file() for f in (CAPTIONS_FILE, REPORT_FILE, VERIFICATION_FILE, ATTRIBUTES_FILE))


__all__ = ["STAMP", "is_done", "stamp_for"]
