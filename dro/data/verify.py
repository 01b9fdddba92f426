"""Decode every image of a file-backed dataset once, at ``prepare``, so a corrupt file stops the pipeline there.

Checking only that the files exist let a truncated JPEG through to training, where it surfaced an epoch
later (from a DataLoader worker, as a long traceback). Decoding runs in a thread pool (Pillow releases the
GIL while decoding) with JPEGs decoded at reduced scale (``Image.draft``: every entropy-coded byte is still
read, so truncation and corrupt data are found, but the inverse DCT is cheap). Files found good are
remembered by size and modification time in a cache file, so a rerun decodes only new or changed files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from dro.data.base import DatasetError

CACHE_VERSION = 1


def decode_error(path: Path) -> str | None:
    """None if ``path`` decodes as an image, else what is wrong (one line)."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))  # JPEG only; no-op otherwise
            im.load()
        return None
    except FileNotFoundError:
        return "file missing"
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError ...
        return " ".join(f"{type(e).__name__}: {e}".split())


def _signature(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _load_cache(cache_file: Path | None) -> dict[str, list[int]]:
    if cache_file is None:
        return {}
    try:
        data = json.loads(Path(cache_file).read_text())
        return data["ok"] if data.get("version") == CACHE_VERSION and isinstance(data.get("ok"), dict) else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def verify_images(
    files: Sequence[Path],
    dataset: str,
    cache_file: Path | None = None,
    workers: int | None = None,
    show: int = 3,
    log: Callable[[str], None] | None = None,
) -> int:
    """Decode every file not already known good; raise one :class:`DatasetError` naming the bad ones.

    Returns how many files were decoded (0 when the cache covered them all). ``cache_file`` (JSON, written
    atomically, also when some files are bad so a rerun after replacing them is cheap) maps each good
    file's path to its size and modification time; a file whose size or time changed is decoded again.
    """
    from common.io import atomic_write_json

    known = _load_cache(cache_file)
    todo, good = [], {}
    for f in files:
        key, sig = str(f), _signature(f)
        if sig is not None and known.get(key) == sig:
            good[key] = sig
        else:
            todo.append(f)
    if todo:
        workers = workers or min(32, 2 * (os.cpu_count() or 1))
        if log is not None:
            log(f"{dataset}: decoding {len(todo)} of {len(files)} images ({workers} threads) to find corrupt files")
        with ThreadPoolExecutor(max_workers=workers) as pool:
            errors = list(pool.map(decode_error, todo))
        bad = []
        for f, err in zip(todo, errors):
            if err is None:
                sig = _signature(f)
                if sig is not None:
                    good[str(f)] = sig
            else:
                bad.append((f, err))
        if cache_file is not None:
            atomic_write_json(cache_file, {"version": CACHE_VERSION, "ok": good})
        if bad:
            first = "; ".join(f"{f} ({err})" for f, err in bad[:show])
            more = f" and {len(bad) - show} more" if len(bad) > show else ""
            raise DatasetError(
                f"{dataset}: {len(bad)} of {len(files)} images cannot be decoded: {first}{more}; replace them with "
                "intact copies (re-extract the archive)"
            )
    return len(todo)
