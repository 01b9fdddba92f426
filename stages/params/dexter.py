"""The ``dexter`` section: prompt optimisation settings (docs/METHOD.md section 1). Owned by the DEXTER core.

The library's :class:`dexter.config.DexterConfig` is the schema: every one of its fields is a key here, with
ITS default (``_D``), plus the keys only the stage reads (``feature_neurons``, ``dtype``,
``gradient_checkpointing``, ``classes``). The stage builds the library config from the section generically
(:func:`library_config`), never field by field. tests/test_params.py checks that the two agree.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Literal

from pydantic import Field, model_validator

from dexter.config import DexterConfig
from stages.params.base import Section

_D = DexterConfig()  # the library's defaults


class DexterSection(Section):
    mode: Literal["single", "multi"] = _D.mode
    runs_per_class: int = Field(_D.runs_per_class, ge=1)
    steps: int = Field(_D.steps, ge=1)  # step budget per run
    lr: float = Field(_D.lr, gt=0)
    adam_eps: float = Field(_D.adam_eps, gt=0)
    early_stop: int = Field(_D.early_stop, ge=0)  # consecutive steps classified as the class that end a run; 0 = never
    min_steps: int = Field(_D.min_steps, ge=0)  # no early stop before this step
    num_feature_neurons: int = Field(_D.num_feature_neurons, ge=0)  # multi mode: top-k head weights per class
    feature_neurons: dict[int, list[int]] | None = None  # explicit units per class index, overrides the top-k
    images_per_step: int = Field(_D.images_per_step, ge=1)  # images (different fixed noises) per step per run
    collect_hits: int = Field(_D.collect_hits, ge=0)  # stop a run once this many images were classified; 0 = off
    step_noise: Literal["fresh", "fixed"] = _D.step_noise  # noise between the LCM steps: fresh per step | fixed
    safety_checker: bool = _D.safety_checker  # blank saved frames the pipeline's safety checker flags
    max_batch: int | Literal["auto"] | None = _D.max_batch  # runs advanced together; None = all; auto = what fits the GPU
    inference_steps: int = Field(_D.inference_steps, ge=1)
    guidance_scale: float = Field(_D.guidance_scale, ge=0)
    resolution: int | None = Field(_D.resolution, ge=8)  # None = the generator's native size
    pixel_noise: float = Field(_D.pixel_noise, ge=0, lt=1)  # noise added to generated images (the world's sensor noise)
    soft_prompt_length: int = Field(_D.soft_prompt_length, ge=1)
    tau: float = Field(_D.tau, gt=0)  # Gumbel-softmax temperature of the backward pass
    template: str | None = _D.template  # None = the mode's template
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"  # auto = bf16 (else fp16) on CUDA, fp32 on CPU
    gradient_checkpointing: bool = False  # UNet/VAE recompute activations: less GPU memory for big batches
    channels_last: bool = False  # UNet/VAE activations NHWC (same computation; faster on tensor-core GPUs)
    compile: bool = False  # torch.compile the UNet and the VAE decoder (same computation; slow first step)
    backprop_steps: int | None = Field(_D.backprop_steps, ge=1)  # CHANGES THE METHOD: gradient through only the
    # last K sampler steps (the earlier ones run without gradient); None = through all of them (the paper)
    tiny_vae: str | None = _D.tiny_vae  # CHANGES THE METHOD: an AutoencoderTiny (hub id or folder) decodes the
    # step's latents instead of the full VAE decoder; None = the full decoder (the paper)
    seed: int = _D.seed
    classes: list[int | str] | str | None = "all"  # "all" (or null) = every class; indices and ranges "a-b"
    save_frames: bool = _D.save_frames

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


def library_config(section: DexterSection) -> DexterConfig:
    """The library config of a validated section: every DexterConfig field, by name."""
    values = {f.name: getattr(section, f.name) for f in fields(DexterConfig)}
    if values["max_batch"] == "auto":  # measured on the loaded models by the explain stage
        values["max_batch"] = None
    return DexterConfig(**values)


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
