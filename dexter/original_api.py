"""The original DEXTER code's programmatic API, as thin names over this package.

Users of the released code keep their scripts::

    from dexter import DEXTER, RunConfig, build_classifier_and_transforms

    cfg = RunConfig(class_to_activate=291, classifier="robust50", optim_steps=100)
    clf, tfms = build_classifier_and_transforms(cfg.classifier, device="cuda", use_tfms=True)
    run_dir = DEXTER(cfg, device="cuda").analyze_classifier(clf, tfms)

:class:`RunConfig` has the original's fields and defaults (multi-mask, 5,000 steps, class 416, robust50)
plus this package's (model specs, safety checker, noise, the bias-report stop). Fields of the original
that change nothing here (or nothing there either) are accepted at their default values only; any other
value is refused with the field's name, never silently ignored. ``analyze_classifier`` runs the prompt
optimisation (``dexter.optimize``) and returns the class folder (``keywords.json``, ``run_<r>/frames``);
the original's reasoning step (``Metrics``) is ``dexter explain --reasoning`` / ``dexter.reasoning``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dexter.classifiers import build_classifier_and_transforms
from dexter.errors import DexterInputError

DEFAULT_SD = "CompVis/stable-diffusion-v1-4"
DEFAULT_LORA = "latent-consistency/lcm-lora-sdv1-5"
DEFAULT_BERT = "google-bert/bert-base-uncased"

# Original fields this package has no counterpart for: their original defaults are the only accepted values.
_UNSUPPORTED = {"prefix": "", "n_tokens": 1, "approx_opt_prompt": False, "nn_loss": False, "init_mode": "",
                "run_idx": 0, "stop_after": 20, "sp_init": "none", "no_match_uniform": "none", "feat_idx": 0}


@dataclass
class RunConfig:
    """The original ``RunConfig`` (same names and defaults) with this package's settings appended."""

    # ---- the original's fields ---------------------------------------------------------------------------
    prefix: str = ""
    n_tokens: int = 1
    approx_opt_prompt: bool = False
    nn_loss: bool = False
    init_mode: str = ""
    class_to_activate: int = 416
    seed: int | None = None  # None = 0 here: runs are reproducible
    optim_steps: int = 5000
    diff_steps: int = 4
    lr: float = 0.1
    outdir: str = "out"
    run_idx: int = 0
    classifier: str = "robust50"
    bs: int = 1  # images per step
    use_tfms: bool = True
    stop_after: int = 20  # unused by the original too (its early stop is 3 consecutive hits: early_stop)
    sp_init: str = "none"
    no_match_uniform: str = "none"
    tau: float = 1.0
    save_images: bool = True
    n_soft_prompt: int = 1
    mask_type: str = "multi_mask"  # multi_mask | single_mask
    topk: int = 1  # sequential runs, each excluding the words of the earlier ones
    feat_idx: int = 0
    vlm_id: str = "llava:13b"  # reasoning settings: used by dexter.reasoning, not by analyze_classifier
    llm_id: str = "gpt-oss:120b"
    api_key: str = field(default="", repr=False)
    base_url: str = ""
    system_prompt_config_path: str = "sp_config"
    # ---- this package's --------------------------------------------------------------------------------
    sd: str = DEFAULT_SD
    lora: str | None = DEFAULT_LORA
    bert: str = DEFAULT_BERT
    dtype: str = "auto"
    resolution: int | None = None  # None = the generator's native size (512 for SD v1.4, as the original)
    early_stop: int = 3
    min_steps: int = 0
    collect_hits: int = 0
    step_noise: str = "fresh"
    safety_checker: bool = True
    feature_neurons: list[int] | None = None  # None = the class's top-5 head weights (data-free)
    gradient_checkpointing: bool = False
    cache_dir: str | None = None  # the BERT->CLIP map cache; None = <outdir>/.cache

    def __post_init__(self) -> None:
        for name, default in _UNSUPPORTED.items():
            if getattr(self, name) != default:
                raise DexterInputError(f"RunConfig.{name}={getattr(self, name)!r}: this option of the original code "
                                       f"has no counterpart here (only {default!r} is accepted)")
        if self.mask_type not in ("multi_mask", "single_mask", "multi", "single"):
            raise DexterInputError(f"RunConfig.mask_type must be multi_mask or single_mask, got {self.mask_type!r}")
        self.dexter_config()  # every value is checked now, not at the first step

    def to_kwargs(self) -> dict[str, Any]:
        """The config as a plain dict (the API key left out)."""
        return {k: v for k, v in asdict(self).items() if k != "api_key"}

    def dexter_config(self):
        """The equivalent :class:`dexter.optimize.DexterConfig`."""
        from dexter.optimize import DexterConfig

        return DexterConfig(
            mode="multi" if self.mask_type.startswith("multi") else "single", runs_per_class=self.topk,
            steps=self.optim_steps, lr=self.lr, early_stop=self.early_stop, min_steps=self.min_steps,
            num_feature_neurons=len(self.feature_neurons) if self.feature_neurons else 5,
            images_per_step=self.bs, collect_hits=self.collect_hits, step_noise=self.step_noise,
            safety_checker=self.safety_checker, inference_steps=self.diff_steps, resolution=self.resolution,
            seed=0 if self.seed is None else self.seed, soft_prompt_length=self.n_soft_prompt, tau=self.tau,
            save_frames=self.save_images,
        )


class DEXTER:
    """``DEXTER(config, device).analyze_classifier(classifier, transforms)`` -> the class's output folder."""

    def __init__(self, config: RunConfig, device: str = "cuda") -> None:
        from dexter.pipeline import check_model_specs, resolve_device

        if not isinstance(config, RunConfig):
            raise DexterInputError(f"config must be a RunConfig, got {type(config).__name__}")
        self.config = config
        self.device = resolve_device(device)
        self.dexter_config = config.dexter_config()
        check_model_specs(config.sd, config.bert, config.lora)  # a missing model fails here, not later

    def analyze_classifier(self, target_classifier, transforms=None) -> Path:
        """Optimise prompts for ``config.class_to_activate`` of ``target_classifier``; returns the class folder.

        ``transforms`` (from :func:`build_classifier_and_transforms`, or any differentiable callable on
        [0, 1] image tensors) is applied before the classifier when ``config.use_tfms`` is true.
        """
        from dexter.classifiers import as_feature_head_classifier
        from dexter.pipeline import explain, load_dexter_models

        cfg = self.config
        clf = as_feature_head_classifier(target_classifier, transforms if cfg.use_tfms else None)
        if not 0 <= cfg.class_to_activate < clf.num_classes:
            raise DexterInputError(f"class_to_activate {cfg.class_to_activate} out of range: the classifier has "
                                   f"{clf.num_classes} classes")
        out = Path(cfg.outdir)
        models = load_dexter_models(clf, self.dexter_config, sd=cfg.sd, bert=cfg.bert, lora=cfg.lora,
                                    device=self.device, dtype=cfg.dtype,
                                    cache_dir=cfg.cache_dir or out / ".cache",
                                    gradient_checkpointing=cfg.gradient_checkpointing)
        c = cfg.class_to_activate
        fids = {c: list(cfg.feature_neurons)} if cfg.feature_neurons else None
        run_info = {"classifier": cfg.classifier, "stable_diffusion": cfg.sd, "lcm_lora": cfg.lora,
                    "bert": cfg.bert, "api": "dexter.DEXTER"}
        done = explain(models, out, [c], feature_neurons=fids, run_info=run_info)
        return done[c].parent


__all__ = ["DEXTER", "RunConfig", "build_classifier_and_transforms"]
