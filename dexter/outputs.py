"""DEXTER's files on disk (all written atomically, so a killed run never leaves a truncated file).

Layout under an output folder::

    <class_index:03d>_<class_name>/
        keywords.json          {"class_index", "class_name", "mode", "classifier_input", "keywords": [one per run],
                                "frames_flagged",
                                "runs": [{"run", "words", "prompt", "steps", "stopped_early", "hits",
                                          "hit_images", "frames_flagged"}]}
                               keyword = the run's pseudo-label of mask 1 (runs without one add none);
                               words = the run's pseudo-labels in mask order (masks without one omitted);
                               hits = steps whose images were all classified as the class, hit_images =
                               such images; frames_flagged = saved frames the safety checker blanked
        run_<r>/
            config.json        the run's settings (models, seeds, excluded words; never a secret)
            losses.csv         one row per optimisation step
            prompt.txt         the final prompt (template filled with the pseudo-labels)
            result.json        the run's entry of keywords.json; its presence marks the run complete
            frames/step_<s:05d>.png        images of step s classified as the class
                   (step_<s:05d>_<j:02d>.png when several images are generated per step)

A class whose ``keywords.json`` exists is finished and skipped on a rerun; completed runs of an unfinished
class (``result.json`` present) are reused, so a crash repeats at most one run.

Reuse is only sound for runs made by the same settings, models and code. A caller that reruns under a
tool which deletes its outputs first (the DVC stage) computes in a work folder stamped with a fingerprint
of all that (:func:`open_work_dir`: a folder of another fingerprint is emptied) and moves the finished
classes to the output folder at the end (:func:`publish_work_dir`).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.artifacts import KEYWORDS_FILE, class_dir, safe_name  # noqa: F401  (re-exported)
from common.fingerprint import tree_signature  # re-exported: the work folder's model stamps
from common.io import atomic_write_json, atomic_write_text, atomic_writer

RUN_KEYS = ("run", "words", "prompt", "steps", "stopped_early", "hits", "hit_images", "frames_flagged")
LOSS_COLUMNS = ("step", "loss", "activation_loss", "mask_loss", "class_loss", "class_prob", "hit", "words",
                "labels", "mask_losses")


def run_dir(out_dir: str | Path, class_index: int, class_name: str, run: int) -> Path:
    return class_dir(out_dir, class_index, class_name) / f"run_{run}"


def keywords_path(out_dir: str | Path, class_index: int, class_name: str) -> Path:
    return class_dir(out_dir, class_index, class_name) / KEYWORDS_FILE


def save_frame(path: Path, image01: torch.Tensor) -> None:
    """A (3, H, W) image in [0, 1] as PNG."""
    from PIL import Image

    array = (image01.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    with atomic_writer(path, "wb") as f:
        f.write(buffer.getvalue())


def frame_name(step: int, image: int, images_per_step: int) -> str:
    return f"step_{step:05d}.png" if images_per_step == 1 else f"step_{step:05d}_{image:02d}.png"


def write_losses(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOSS_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def write_run(directory: Path, config: dict[str, Any], rows: Sequence[dict[str, Any]], prompt: str,
              result: dict[str, Any]) -> None:
    """Everything of a finished run; ``result.json`` last, because it marks the run complete."""
    atomic_write_json(directory / "config.json", config)
    write_losses(directory / "losses.csv", rows)
    atomic_write_text(directory / "prompt.txt", prompt + "\n")
    atomic_write_json(directory / "result.json", result)


def completed_runs(directory: Path) -> list[dict[str, Any]]:
    """Results of runs 0, 1, ... that finished, in order, stopping at the first missing one."""
    out = []
    r = 0
    while (path := directory / f"run_{r}" / "result.json").exists():
        out.append(json.loads(path.read_text()))
        r += 1
    return out


def write_keywords(out_dir: str | Path, class_index: int, class_name: str, mode: str,
                   runs: Sequence[dict[str, Any]], classifier_input: dict[str, Any] | None = None) -> Path:
    path = keywords_path(out_dir, class_index, class_name)
    atomic_write_json(path, {
        "class_index": class_index,
        "class_name": class_name,
        "mode": mode,
        "classifier_input": classifier_input or {},
        "keywords": [r["keyword"] for r in runs if r.get("keyword")],
        "frames_flagged": sum(r.get("frames_flagged", 0) for r in runs),
        "runs": [{k: r[k] for k in RUN_KEYS if k in r} for r in runs],
    })
    return path


WORK_STAMP = "fingerprint.json"


def open_work_dir(work_dir: str | Path, fingerprint: str) -> dict[str, int]:
    """Make ``work_dir`` hold only runs made under ``fingerprint``; returns ``{class folder: finished runs}``
    of what is kept (empty for a new or discarded folder).

    A folder stamped with another fingerprint (or none: a folder whose stamp was never written) holds runs
    of other settings, models or code, and reusing them would mix two experiments: it is emptied.
    """
    work_dir = Path(work_dir)
    stamp = work_dir / WORK_STAMP
    if work_dir.exists():
        try:
            same = json.loads(stamp.read_text())["fingerprint"] == fingerprint
        except (OSError, ValueError, KeyError, TypeError):
            same = False
        if not same:
            shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stamp, {"fingerprint": fingerprint})
    kept = {d.name: len(completed_runs(d)) for d in sorted(work_dir.iterdir()) if d.is_dir()}
    return {name: n for name, n in kept.items() if n}


def publish_work_dir(work_dir: str | Path, out_dir: str | Path, done: dict[int, Path]) -> dict[int, Path]:
    """Move the finished classes ``done`` (``{class_index: keywords.json}`` under ``work_dir``) into
    ``out_dir``, replacing folders of the same name, and remove ``work_dir``; returns the new paths.

    A crash between two moves leaves the unmoved classes finished in ``work_dir``: the rerun reuses them.
    """
    work_dir, out_dir = Path(work_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    moved = {}
    for c, path in sorted(done.items()):
        dest = out_dir / path.parent.name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.move(path.parent, dest)  # a rename when both folders are on one file system
        moved[c] = dest / path.name
    shutil.rmtree(work_dir)
    return moved


__all__ = [
    "LOSS_COLUMNS",
    "RUN_KEYS",
    "WORK_STAMP",
    "class_dir",
    "completed_runs",
    "frame_name",
    "keywords_path",
    "open_work_dir",
    "publish_work_dir",
    "run_dir",
    "safe_name",
    "save_frame",
    "tree_signature",
    "write_keywords",
    "write_losses",
    "write_run",
]
