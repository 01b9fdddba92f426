"""On-disk cache of model answers, so a rerun (or a run after a crash) pays for nothing twice.

The key is a hash of (model, messages, sampling parameters) with every image data URI replaced by
the SHA-256 of its bytes, so keys stay small and an edited frame is a new key. Only answers are
stored (never request headers), so the API key cannot end up in the cache. ``diskcache`` is safe
across the caption threads and across processes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

CACHE_VERSION = 1


def _strip_images(obj: Any) -> Any:
    if isinstance(obj, str) and obj.startswith("data:"):
        return "sha256:" + hashlib.sha256(obj.encode()).hexdigest()
    if isinstance(obj, dict):
        return {k: _strip_images(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_strip_images(v) for v in obj]
    return obj


def cache_key(model: str, messages: list[dict], params: dict[str, Any]) -> str:
    payload = {"v": CACHE_VERSION, "model": model, "messages": _strip_images(messages), "params": params}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ResponseCache:
    """A text-valued cache; ``directory=None`` disables it (every call goes to the endpoint)."""

    def __init__(self, directory: str | Path | None) -> None:
        self._cache = None
        if directory is not None:
            import diskcache

            Path(directory).mkdir(parents=True, exist_ok=True)
            self._cache = diskcache.Cache(str(directory))

    def get(self, key: str) -> str | None:
        return None if self._cache is None else self._cache.get(key)

    def set(self, key: str, text: str) -> None:
        if self._cache is not None:
            self._cache.set(key, text)

    def delete(self, key: str) -> None:
        if self._cache is not None:
            self._cache.delete(key)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
