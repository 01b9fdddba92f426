"""One loading path for every model DEXTER uses: a hub id or a local directory, dtype and device.

Real models (``CompVis/stable-diffusion-v1-4``), the synthetic world's models (``data/world/sd``) and the
tiny test models differ only in the spec string. Every model is loaded with ``torch_dtype=`` (casting a
diffusers model afterwards prints warnings and wastes memory), put in eval mode and frozen: DEXTER trains
nothing but its soft prompts.

:func:`check_spec` answers "can this be loaded?" cheaply, so that a typo or an offline machine is reported
BEFORE gigabytes of other models are read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from common.device import resolve_dtype  # the one dtype policy (re-exported)
from dexter.errors import DexterInputError

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")

# The file whose presence says a hub repo of this kind is in the local cache.
_MARKER = {
    "stable_diffusion": "model_index.json",
    "lcm_lora": "pytorch_lora_weights.safetensors",
    "bert": "config.json",
    "clip": "config.json",
    "tiny_vae": "config.json",
}


class ModelLoadError(DexterInputError):
    """A model spec cannot be loaded; the message names the spec and how to provide it locally."""


def _how_to_provide(spec: str) -> str:
    return (
        f"on a machine with internet run `hf download {spec} --local-dir <dir>` and pass that directory "
        f"instead of the id (or set HF_HOME to a cache that holds it)"
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ).lower() in ("1", "true", "yes")


def check_spec(spec: str, kind: str) -> str:
    """Return ``spec`` if it can plausibly be loaded, else raise :class:`ModelLoadError` naming it.

    A local directory must exist. A hub id must be in the local cache, or reachable on the hub (a metadata
    query with a short timeout; skipped as "unreachable" when HF_HUB_OFFLINE is set).
    """
    path = Path(spec).expanduser()
    if path.is_dir() or (kind == "lcm_lora" and path.is_file()):  # a LoRA may be a single .safetensors file
        return str(path)
    if not _HUB_ID.match(spec) or spec.startswith((".", "/", "~")) or path.exists():
        raise ModelLoadError(f"{kind}: {spec!r} is neither an existing directory nor a hub id (owner/name)")
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(spec, _MARKER.get(kind, "config.json"))
        if isinstance(cached, str):
            return spec
    except Exception:  # noqa: BLE001 - a broken cache is the same as no cache here
        pass
    if _offline():
        raise ModelLoadError(
            f"{kind}: {spec!r} is not in the local Hugging Face cache and the hub is off (HF_HUB_OFFLINE); "
            + _how_to_provide(spec)
        )
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(spec, timeout=15)
    except Exception as e:  # noqa: BLE001 - any failure means "cannot get it"
        raise ModelLoadError(
            f"{kind}: cannot reach {spec!r} on the Hugging Face hub ({type(e).__name__}: {str(e)[:200]}); "
            + _how_to_provide(spec)
        ) from None
    return spec


def _load(kind: str, spec: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a ``from_pretrained``-style ``fn``; turn "not found"/offline errors into a :class:`ModelLoadError`."""
    try:
        return fn(*args, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{kind}: cannot load {spec!r} ({type(e).__name__}: {str(e)[:300]}); "
                             + _how_to_provide(spec)) from e


def _freeze(module: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    module.to(device)
    module.eval()
    module.requires_grad_(False)
    return module


@dataclass
class SDComponents:
    """The parts of a Stable Diffusion pipeline DEXTER differentiates through (all frozen)."""

    tokenizer: Any
    text_encoder: Any
    unet: Any
    vae: Any
    scheduler: Any
    dtype: torch.dtype
    lora: str | None = None

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def default_resolution(self) -> int:
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    def enable_gradient_checkpointing(self) -> None:
        """Recompute UNet/VAE activations during backward (non-reentrant; works with frozen weights)."""
        self.unet.enable_gradient_checkpointing()
        self.vae.enable_gradient_checkpointing()


def load_sd(spec: str, lora: str | None = None, device: torch.device | str = "cpu",
            dtype: torch.dtype = torch.float32, fuse_lora: bool = True) -> SDComponents:
    """Stable Diffusion v1.x components with the scheduler switched to ``LCMScheduler``.

    ``lora`` (hub id or directory with ``pytorch_lora_weights.safetensors``) is loaded through
    ``load_lora_weights`` (peft) and, by default, fused into the UNet weights and its adapter layers
    removed: the same function, one matmul fewer per projection. ``lora=None`` loads no adapter (a model
    that is already few-step, like the synthetic world's). An existing LCMScheduler config (e.g.
    ``prediction_type="sample"``) is kept as it is; any other scheduler's config is converted.
    """
    from diffusers import LCMScheduler, StableDiffusionPipeline

    check_spec(spec, "stable_diffusion")
    if lora is not None:
        check_spec(lora, "lcm_lora")
    pipe = _load("stable_diffusion", spec, StableDiffusionPipeline.from_pretrained, spec, dtype=dtype,
                 safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if lora is not None:
        _load("lcm_lora", lora, pipe.load_lora_weights, lora)
        if fuse_lora:
            pipe.fuse_lora()
            pipe.unload_lora_weights()
    scheduler = pipe.scheduler
    if not isinstance(scheduler, LCMScheduler):
        scheduler = LCMScheduler.from_config(scheduler.config)
    return SDComponents(
        tokenizer=pipe.tokenizer,
        text_encoder=_freeze(pipe.text_encoder, device),
        unet=_freeze(pipe.unet, device),
        vae=_freeze(pipe.vae, device),
        scheduler=scheduler,
        dtype=dtype,
        lora=lora,
    )


def load_bert(spec: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """A frozen masked language model and its tokenizer -> ``(model, tokenizer)``."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    check_spec(spec, "bert")
    tok = _load("bert", spec, AutoTokenizer.from_pretrained, spec)
    model = _load("bert", spec, AutoModelForMaskedLM.from_pretrained, spec, dtype=dtype)
    if tok.mask_token_id is None:
        raise ModelLoadError(f"bert: {spec!r} has no mask token; DEXTER needs a masked language model")
    return _freeze(model, device), tok


def tiny_vae_mismatch(tiny_config, latent_channels: int, scale_factor: int) -> str | None:
    """Why an AutoencoderTiny of config ``tiny_config`` cannot decode the generator's latents (``latent_channels``
    channels, ``scale_factor`` pixels per latent), or None when it can."""
    channels = int(tiny_config["latent_channels"])
    if channels != latent_channels:
        return (f"tiny_vae has {channels} latent channels but the UNet makes {latent_channels}: it decodes "
                f"another model family's latents (SD v1.x: madebyollin/taesd)")
    blocks = len(tiny_config["decoder_block_out_channels"])
    factor = int(tiny_config["upsampling_scaling_factor"]) ** (blocks - 1)
    if factor != scale_factor:
        return f"tiny_vae upsamples latents {factor}x but the generator's VAE {scale_factor}x"
    return None


def check_tiny_vae(spec: str, sd_spec: str) -> str:
    """``spec`` if it names an AutoencoderTiny that can decode ``sd_spec``'s latents, else a one-line
    :class:`ModelLoadError`. Reads only the three models' config files (before any weights are loaded)."""
    from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel

    check_spec(spec, "tiny_vae")
    tiny = _load("tiny_vae", spec, AutoencoderTiny.load_config, spec)
    if tiny.get("_class_name", "AutoencoderTiny") != "AutoencoderTiny" or "decoder_block_out_channels" not in tiny:
        raise ModelLoadError(f"tiny_vae: {spec!r} is a {tiny.get('_class_name')}, not a diffusers AutoencoderTiny")
    unet = _load("stable_diffusion", sd_spec, UNet2DConditionModel.load_config, sd_spec, subfolder="unet")
    vae = _load("stable_diffusion", sd_spec, AutoencoderKL.load_config, sd_spec, subfolder="vae")
    why = tiny_vae_mismatch(tiny, int(unet["in_channels"]), 2 ** (len(vae["block_out_channels"]) - 1))
    if why is not None:
        raise ModelLoadError(f"{why} ({spec!r} with {sd_spec!r})")
    return spec


def load_tiny_vae(spec: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """A frozen diffusers ``AutoencoderTiny`` (its decoder replaces the VAE decoder: ``dexter.tiny_vae``)."""
    from diffusers import AutoencoderTiny

    check_spec(spec, "tiny_vae")
    return _freeze(_load("tiny_vae", spec, AutoencoderTiny.from_pretrained, spec, dtype=dtype), device)


__all__ = ["ModelLoadError", "SDComponents", "check_spec", "check_tiny_vae", "load_bert", "load_sd", "load_tiny_vae",
           "resolve_dtype", "tiny_vae_mismatch"]
