"""The ``dexter`` section: prompt optimisation settings (docs/METHOD.md section 1). Owned by the DEXTER core.

Defaults are the paper's slice-discovery settings (single word, 4 runs of at most 1,000 steps, lr 0.1,
early stop after 3 consecutive hits, LCM 4 steps, guidance 1.0, 1 image per step).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from stages.params.base import Section


class DexterSection(Section):
    mode: Literal["single", "multi"] = "single"
    runs_per_class: int = Field(4, ge=1)
    steps: int = Field(1000, ge=1)  # step budget per run
    lr: float = Field(0.1, gt=0)
    adam_eps: float = Field(1e-4, gt=0)
    early_stop: int = Field(3, ge=0)  # consecutive steps classified as the class that end a run; 0 = never
    min_steps: int = Field(0, ge=0)  # no early stop before this step
    num_feature_neurons: int = Field(5, ge=0)  # multi mode: top-k head weights per class (data-free)
    feature_neurons: dict[int, list[int]] | None = None  # explicit units per class index, overrides the top-k
    images_per_step: int = Field(1, ge=1)  # images (different fixed noises) per step per run
    collect_hits: int = Field(0, ge=0)  # stop a run once this many images were classified as the class; 0 = off
    step_noise: Literal["fresh", "fixed"] = "fresh"  # noise between the LCM steps: fresh per step (original) | fixed
    safety_checker: bool = True  # blank saved frames the pipeline's safety checker flags (when it ships one)
    max_batch: int | Literal["auto"] | None = None  # runs advanced together; None = all; auto = what fits the GPU
    inference_steps: int = Field(4, ge=1)
    guidance_scale: float = Field(1.0, ge=0)
    resolution: int | None = Field(None, ge=8)  # None = the generator's native size
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"  # auto = bf16 (else fp16) on CUDA, fp32 on CPU
    gradient_checkpointing: bool = False  # UNet/VAE recompute activations: less GPU memory for big batches
    channels_last: bool = False  # UNet/VAE activations NHWC (same computation; faster on tensor-core GPUs)
    compile: bool = False  # torch.compile the UNet and the VAE decoder (same computation; slow first step)
    backprop_steps: int | None = Field(None, ge=1)  # CHANGES THE METHOD: gradient through only the last K
    # sampler steps (the earlier ones run without gradient); None = through all of them (the paper)
    seed: int = 0
    classes: list[int | str] | str | None = None  # None / "all" = every class; indices and ranges "a-b"
    save_frames: bool = True

    @model_validator(mode="after")
    def _check(self) -> DexterSection:
        from dexter.errors import DexterInputError
        from dexter.shards import parse_classes

        if isinstance(self.max_batch, int) and self.max_batch < 1:
            raise ValueError("max_batch must be at least 1, auto or null")
        try:
            parse_classes(self.classes)
        except DexterInputError as e:
            raise ValueError(str(e).removeprefix("classes: ")) from None
        return self

    def class_indices(self, num_classes: int) -> list[int]:
        """``classes`` resolved against a classifier of ``num_classes`` classes (ranges expanded)."""
        from dexter.shards import parse_classes

        return parse_classes(self.classes, num_classes)


def _overrides_model() -> type[Section]:
    """The same keys as DexterSection, all optional: a dataset's overrides of the global ``dexter`` section."""
    from typing import Any, Optional

    from pydantic import create_model

    fields: dict[str, Any] = {name: (Optional[f.annotation], None) for name, f in DexterSection.model_fields.items()}
    return create_model("DexterOverrides", __base__=Section, **fields)


DexterOverrides = _overrides_model()


def merged_dexter(base: DexterSection, overrides: Section | None) -> DexterSection:
    """``base`` with the keys ``overrides`` sets; the result is validated like the section itself."""
    if overrides is None:
        return base
    return DexterSection.model_validate({**base.model_dump(), **overrides.model_dump(exclude_none=True)})
