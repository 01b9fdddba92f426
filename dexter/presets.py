"""Named settings of the paper, importable without torch (the CLI reads them while parsing arguments).

bias-report: the bias-report experiments run multi-word for up to 5,000 steps and stop once 50 images
classified as the class have been collected (the frames the report is written from). The 3-consecutive-
hits early stop would end them long before that, so it is off. (The released code meant to stop at 50
collected images but never did: its counter was never filled.)
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "bias-report": {"mode": "multi", "steps": 5000, "collect_hits": 50, "early_stop": 0},
}

__all__ = ["PRESETS"]
