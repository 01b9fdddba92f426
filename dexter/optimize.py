"""DEXTER's scheduler: k sequential runs per class (each excluding earlier runs' words) for many classes at
once, advanced together by :func:`dexter.step.dexter_step`; writes every run's outputs (``dexter.outputs``)
and resumes after a crash. The step itself (math and per-run state) is :mod:`dexter.step`.
"""


from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dexter import outputs
from dexter.config import STEP_NOISE, DexterConfig  # noqa: F401  (re-exported)
from dexter.errors import DexterInputError
from dexter.presets import PRESETS  # noqa: F401  (re-exported)
from dexter.step import (  # noqa: F401  (re-exported: the optimiser's public names)
    DexterModels,
    RunState,
    StepResult,
    derive_seed,
    dexter_step,
    new_run_state,
    run_words,
    step_noise_seeds,
)


def run_result(models: DexterModels, state: RunState) -> dict[str, Any]:
    words = run_words(models, state)
    shown = [w if w is not None else lw for w, lw in zip(words, state.last_words or [None] * len(words))]
    return {
        "run": state.run,
        "keyword": words[0],  # mask 1's pseudo-label (the class-neuron slot); None if it never got one
        "words": [w for w in words if w is not None],
        "mask_words": words,  # per mask, None where a mask never got a pseudo-label
        "prompt": models.text.tokens.fill(shown),
        "steps": state.step,
        "stopped_early": state.stopped_early,
        "hits": state.hits,
        "hit_images": state.hit_images,
        "frames_flagged": state.flagged,  # saved frames the safety checker blanked
        "excluded": list(state.excluded_words),
        "reference_losses": [sl.reference if math.isfinite(sl.reference) else None for sl in state.slots],
    }


def run_config(models: DexterModels, state: RunState, extra: dict[str, Any] | None) -> dict[str, Any]:
    return {
        **asdict(models.config),
        "template": models.config.template_text,
        "resolution": models.resolution,
        "class_index": state.class_index,
        "class_name": state.class_name,
        "run": state.run,
        "excluded_words": list(state.excluded_words),
        "feature_neurons": state.feature_ids[: models.num_features],
        "lora": models.sd.lora,
        "dtype": str(models.sd.dtype).removeprefix("torch."),
        "safety_checker": ("on" if models.safety is not None else "none shipped") if models.config.safety_checker
        else "off",
        "classifier_input": models.classifier.info,  # weights and preprocessing that ran (dexter.classifiers)
        **(extra or {}),
    }


@dataclass
class _ClassJob:
    index: int
    name: str
    done_runs: list[dict[str, Any]]


def explain_classes(
    models: DexterModels,
    classes: Sequence[int],
    out_dir: str | Path,
    class_names: Sequence[str] | None = None,
    feature_neurons: dict[int, Sequence[int]] | None = None,
    run_info: dict[str, Any] | None = None,
    progress: bool = True,
    on_class_done: Callable[[int, Path], None] | None = None,
) -> dict[int, Path]:
    """Run ``runs_per_class`` sequential runs for each class, many classes per batched step.

    Each class advances through its runs independently: when a run ends its outputs are written and the
    class's next run (excluding every word chosen so far) takes its place in the batch. Returns
    ``{class_index: keywords.json path}``. ``run_info`` is added to every run's config.json (model specs,
    classifier); it must not hold secrets.
    """
    from common.progress import progress_bar

    cfg = models.config
    names = list(class_names) if class_names is not None else models.classifier.class_names
    for c in classes:
        if not 0 <= c < len(names):
            raise DexterInputError(f"class index {c} out of range [0, {len(names)})")
    finished: dict[int, Path] = {}
    queue: list[_ClassJob] = []
    for c in classes:
        path = outputs.keywords_path(out_dir, c, names[c])
        if path.exists():
            finished[c] = path
            continue
        queue.append(_ClassJob(c, names[c], outputs.completed_runs(outputs.class_dir(out_dir, c, names[c]))))

    def next_state(job: _ClassJob) -> RunState | None:
        if len(job.done_runs) >= cfg.runs_per_class:
            runs = job.done_runs[: cfg.runs_per_class]
            finished[job.index] = outputs.write_keywords(out_dir, job.index, job.name, cfg.mode, runs,
                                                         classifier_input=models.classifier.info)
            if on_class_done is not None:
                on_class_done(job.index, finished[job.index])
            return None
        excluded = [w for r in job.done_runs for w in r["words"] if w]
        stale = outputs.run_dir(out_dir, job.index, job.name, len(job.done_runs))
        if stale.exists():  # an interrupted attempt of this run: its frames would mix with the new ones
            shutil.rmtree(stale)
        fids = feature_neurons.get(job.index) if feature_neurons else None
        return new_run_state(models, job.index, job.name, len(job.done_runs), excluded, fids)

    jobs = {j.index: j for j in queue}
    capacity = cfg.max_batch or max(len(queue), 1)
    active: list[RunState] = []
    waiting = list(queue)

    def fill() -> None:
        while waiting and len(active) < capacity:
            job = waiting.pop(0)
            state = next_state(job)
            if state is not None:
                active.append(state)

    fill()
    bar = progress_bar(desc="dexter", unit="step", disable=not progress)
    try:
        while active:
            results = dexter_step(models, active)
            bar.update(1)
            bar.set_postfix_str(" | ".join(
                f"{s.class_index}/r{s.run} {r.row['words']} {r.row['loss']:.3g}" for s, r in zip(active, results)
            )[:200])
            still = []
            for s, r in zip(active, results):
                rdir = outputs.run_dir(out_dir, s.class_index, s.class_name, s.run)
                if cfg.save_frames and any(r.image_hits):
                    keep = [j for j, hit in enumerate(r.image_hits) if hit]
                    frames = r.images[keep]
                    if models.safety is not None:  # on what is saved only, never in the gradient loop
                        frames, flags = models.safety(frames)
                        s.flagged += sum(flags)
                    for j, frame in zip(keep, frames):
                        name = outputs.frame_name(s.step, j, cfg.images_per_step)
                        outputs.save_frame(rdir / "frames" / name, frame)
                if not s.done:
                    still.append(s)
                    continue
                result = run_result(models, s)
                outputs.write_run(rdir, run_config(models, s, run_info), s.rows, result["prompt"], result)
                job = jobs[s.class_index]
                job.done_runs.append(result)
                nxt = next_state(job)
                if nxt is not None:
                    still.append(nxt)
            active = still
            fill()
    finally:
        bar.close()
    return finished


__all__ = [
    "DexterConfig",
    "DexterModels",
    "RunState",
    "StepResult",
    "PRESETS",
    "STEP_NOISE",
    "derive_seed",
    "dexter_step",
    "explain_classes",
    "new_run_state",
    "run_result",
    "step_noise_seeds",
]
