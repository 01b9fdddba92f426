"""Fingerprints: short hashes that decide whether earlier work may be reused (a resumed training run, an
interrupted DEXTER work folder, a reasoning stamp, an embedding cache).

One policy for all of them: a fingerprint covers the settings (as canonical JSON), the data, and the CODE
that produces the result (every file's relative path and bytes), so a fixed bug never resumes work made
with the bug. Large model folders are hashed by file size and modification time (re-hashing gigabytes of
weights on every start would cost more than it protects); small ones (a classifier) by contents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def json_digest(obj: Any, length: int | None = None) -> str:
    """SHA-256 of ``obj`` as canonical JSON (sorted keys; non-JSON values by ``str``)."""
    text = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return digest if length is None else digest[:length]


def tree_signature(path: str | Path, contents: bool = False) -> str:
    """Hash of a file or folder: every file's relative path with its size and modification time, or
    (``contents=True``) its bytes."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(path).as_posix().encode() if path.is_dir() else f.name.encode())
        if contents:
            with open(f, "rb") as handle:
                h.update(hashlib.file_digest(handle, "sha256").digest())
        else:
            st = f.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def code_digest(root: str | Path, files: Iterable[str | Path] | None = None, extra: str = "") -> str:
    """Hash of source files under ``root`` (every ``*.py`` below it when ``files`` is None): each file's
    path relative to ``root`` and its bytes, plus ``extra`` (e.g. torch's version, whose kernels count)."""
    root = Path(root)
    paths = sorted(root.rglob("*.py")) if files is None else sorted(Path(f) for f in files)
    h = hashlib.sha256(extra.encode())
    for path in paths:
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        rel = path.resolve().relative_to(root.resolve()) if path.is_absolute() else path
        h.update(Path(rel).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def module_dir(module: Any) -> Path:
    """The folder of an imported package or module (for :func:`code_digest`)."""
    return Path(module.__file__).resolve().parent


__all__ = ["code_digest", "json_digest", "module_dir", "tree_signature"]
