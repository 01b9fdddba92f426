"""DEXTER: data-free explanations of image classifiers (see dexter/README.md).

The original code's programmatic names are here too, imported on first use so that ``import dexter``
(and the ``dexter`` command's start-up) stays free of torch::

    from dexter import DEXTER, RunConfig, build_classifier_and_transforms
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DEXTER": "dexter.original_api",
    "RunConfig": "dexter.original_api",
    "build_classifier_and_transforms": "dexter.classifiers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dexter' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = list(_LAZY)
