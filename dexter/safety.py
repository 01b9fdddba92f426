"""The Stable Diffusion safety checker, on what is SAVED and SHOWN only (frames, report images).

Stable Diffusion v1.4 ships a ``StableDiffusionSafetyChecker`` (the pipeline folder's ``safety_checker/``,
with its CLIP image processor in ``feature_extractor/``). DEXTER optimises prompts towards whatever a
classifier responds to, so an unsafe image is a plausible by-product. The checker runs on an image
only when it is about to be written or returned, never inside the gradient loop (it would cost a CLIP
ViT-L forward per step and change nothing the optimisation sees). A flagged image is replaced by a black
one and counted; the counts go into the run's outputs.

A pipeline without checker weights (the synthetic world's models, the tiny test models) has nothing to
run: that is said once per process and the frames are written as they are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)
_SAID_MISSING: set[str] = set()


@dataclass
class SafetyFilter:
    """``filter(images01)`` -> (images with flagged ones blacked out, flags)."""

    checker: Any  # StableDiffusionSafetyChecker
    feature_extractor: Any  # CLIPImageProcessor
    device: torch.device

    @torch.no_grad()
    def __call__(self, images01: torch.Tensor) -> tuple[torch.Tensor, list[bool]]:
        """``images01`` (N, 3, H, W) in [0, 1] -> (a copy with flagged images all zero, one flag per image)."""
        if images01.shape[0] == 0:
            return images01, []
        from PIL import Image

        arrays = (images01.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round()
        pils = [Image.fromarray(a.astype("uint8")) for a in arrays]
        dtype = next(self.checker.parameters()).dtype
        clip_input = self.feature_extractor(pils, return_tensors="pt").pixel_values.to(self.device, dtype)
        # The checker blanks its own copy of the images and logs a warning per batch; we only need its flags
        # (we blank our images and count them in the outputs), so its logger is quiet meanwhile.
        checker_log = logging.getLogger(type(self.checker).__module__)
        level = checker_log.level
        checker_log.setLevel(logging.ERROR)
        try:
            _, flags = self.checker(clip_input=clip_input, images=[a.copy() for a in arrays])
        finally:
            checker_log.setLevel(level)
        flags = [bool(f) for f in flags]
        out = images01.clone()
        for i, flagged in enumerate(flags):
            if flagged:
                out[i] = 0
        return out, flags


def _has_component(spec: str, name: str) -> bool:
    """Does the pipeline ``spec`` (folder or hub id) list component ``name`` with weights?"""
    path = Path(spec).expanduser()
    if path.is_dir():
        return (path / name).is_dir() and any((path / name).iterdir())
    try:
        import json

        from huggingface_hub import hf_hub_download

        index = json.loads(Path(hf_hub_download(spec, "model_index.json")).read_text())
    except Exception:  # noqa: BLE001 - an index we cannot read lists nothing
        return False
    entry = index.get(name)
    return isinstance(entry, list | tuple) and len(entry) == 2 and entry[0] is not None


def load_safety_filter(spec: str, device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32) -> SafetyFilter | None:
    """The checker of pipeline ``spec``, or None (said once per spec and process) when it ships none."""
    if not (_has_component(spec, "safety_checker") and _has_component(spec, "feature_extractor")):
        if spec not in _SAID_MISSING:
            _SAID_MISSING.add(spec)
            log.warning("dexter: %s has no safety checker (safety_checker/ + feature_extractor/); frames are "
                        "saved unfiltered", spec)
        return None
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    from dexter.loading import _freeze, _load

    checker = _load("safety_checker", spec, StableDiffusionSafetyChecker.from_pretrained, spec,
                    subfolder="safety_checker", dtype=dtype)
    extractor = _load("safety_checker", spec, CLIPImageProcessor.from_pretrained, spec, subfolder="feature_extractor")
    return SafetyFilter(_freeze(checker, device), extractor, torch.device(device))


__all__ = ["SafetyFilter", "load_safety_filter"]
