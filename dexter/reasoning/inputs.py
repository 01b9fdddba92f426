"""Reading one class's DEXTER output folder.

Layout (written by DEXTER core): ``keywords.json`` plus ``run_<r>/frames/step_<s>.png`` (images the
classifier assigned to the class) and ``run_<r>/prompt.txt``. Frame paths are kept RELATIVE to the
class folder, so captions.json stays valid when the outputs move (DVC cache, another machine).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from common.artifacts import KEYWORDS_FILE, ArtifactError, KeywordsFile, read_keywords
from dexter.reasoning.errors import ReasoningError

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class ClassInputs:
    """What the reasoning step knows about one class."""

    class_dir: Path
    meta: KeywordsFile
    frames: tuple[str, ...]  # relative posix paths, sorted by run then step

    @property
    def class_name(self) -> str:
        return self.meta.class_name

    def frame_path(self, rel: str) -> Path:
        return self.class_dir / rel

    def fingerprint(self) -> str:
        """Hash of everything the outputs depend on: keywords.json and the frames' bytes."""
        h = hashlib.sha256((self.class_dir / KEYWORDS_FILE).read_bytes())
        for rel in self.frames:
            h.update(rel.encode())
            h.update(hashlib.sha256(self.frame_path(rel).read_bytes()).digest())
        return h.hexdigest()


def load_class_inputs(class_dir: Path | str) -> ClassInputs:
    """The class's ``keywords.json`` (read by :func:`common.artifacts.read_keywords`, its one contract) and its
    frames. Raises :class:`ReasoningError`, the reasoning's error, with the reader's message."""
    class_dir = Path(class_dir)
    try:
        meta = read_keywords(class_dir / KEYWORDS_FILE)
    except ArtifactError as e:
        raise ReasoningError(str(e)) from None
    frames = sorted(
        (p for p in class_dir.glob("run_*/frames/*") if p.suffix.lower() in FRAME_SUFFIXES and p.is_file()),
        key=_frame_order,
    )
    return ClassInputs(class_dir, meta, tuple(p.relative_to(class_dir).as_posix() for p in frames))


def _frame_order(p: Path) -> tuple:
    run = p.parent.parent.name.removeprefix("run_")
    return (0, int(run), "", p.name) if run.isdigit() else (1, 0, run, p.name)
