"""System prompts of the language-model backend.

They live in editable ``prompts/*.txt`` files shipped with the package; a user (or params.yaml) can
point any of them at another file without touching code.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from dexter.reasoning.errors import ReasoningError

PROMPT_NAMES = ("caption", "report", "attributes", "counterfactual")


def load_prompts(overrides: dict[str, str | Path | None] | None = None) -> dict[str, str]:
    """The system prompts, each from the packaged file unless ``overrides[name]`` names a file."""
    overrides = {k: v for k, v in (overrides or {}).items() if v}
    unknown = set(overrides) - set(PROMPT_NAMES)
    if unknown:
        raise ReasoningError(f"unknown prompt name(s) {sorted(unknown)}; expected some of {list(PROMPT_NAMES)}")
    prompts = {}
    for name in PROMPT_NAMES:
        if name in overrides:
            path = Path(overrides[name])
            if not path.is_file():
                raise ReasoningError(f"prompt file for {name!r} not found: {path}")
            text = path.read_text(encoding="utf-8")
        else:
            text = resources.files("dexter.reasoning").joinpath("prompts", f"{name}.txt").read_text(encoding="utf-8")
        text = text.strip()
        if not text:
            raise ReasoningError(f"the {name!r} prompt is empty")
        prompts[name] = text
    return prompts
