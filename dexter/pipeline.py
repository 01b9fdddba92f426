"""High-level entry points: build the frozen models from specs, explain classes. Used by the CLI and the stage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from common.device import resolve_device
from dexter.classifiers import FeatureHeadClassifier, freeze_classifier
from dexter.loading import check_spec, check_tiny_vae, load_bert, load_sd, load_tiny_vae, resolve_dtype
from dexter.optimize import DexterConfig, DexterModels, explain_classes
from dexter.vocab_map import load_or_build_vocab_map


def check_model_specs(sd: str, bert: str, lora: str | None = None, tiny_vae: str | None = None) -> None:
    """Fail fast (before anything big is read) when a model cannot be found, or the tiny VAE cannot decode
    the generator's latents."""
    check_spec(sd, "stable_diffusion")
    check_spec(bert, "bert")
    if lora is not None:
        check_spec(lora, "lcm_lora")
    if tiny_vae is not None:
        check_tiny_vae(tiny_vae, sd)


def load_dexter_models(
    classifier: FeatureHeadClassifier,
    config: DexterConfig,
    sd: str,
    bert: str,
    lora: str | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = "auto",
    cache_dir: str | Path | None = None,
    gradient_checkpointing: bool = False,
    channels_last: bool = False,
    compile: bool = False,
) -> DexterModels:
    """Load SD (+LoRA) and BERT by spec, build the BERT->CLIP map (cached in ``cache_dir``), freeze the classifier.

    Diffusion and text models use ``dtype`` ('auto' = bf16, else fp16, on CUDA; fp32 on CPU); the classifier stays fp32
    (its gradients feed the image; fp16 classifiers are the user's choice via FeatureHeadClassifier).
    ``config.safety_checker`` loads the pipeline's safety checker (when it ships one) for the saved frames.
    ``gradient_checkpointing`` makes the UNet and VAE recompute activations in the backward pass: same
    gradients, far less memory, about a third more time (for large batches of classes on a GPU).
    ``channels_last`` and ``compile``: speed options that keep the computation (``dexter.speed``).
    ``config.tiny_vae``: that AutoencoderTiny decodes the step's latents instead of the VAE (same options).
    """
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    check_model_specs(sd, bert, lora, config.tiny_vae)
    components = load_sd(sd, lora, device=device, dtype=dtype)
    decoder = None if config.tiny_vae is None else load_tiny_vae(config.tiny_vae, device=device, dtype=dtype)
    if gradient_checkpointing:
        components.enable_gradient_checkpointing()
        if decoder is not None:
            decoder.enable_gradient_checkpointing()
    if channels_last or compile:
        from dexter.speed import apply_speed_options

        apply_speed_options(components, channels_last=channels_last, compile=compile)
        if decoder is not None and channels_last:
            decoder.to(memory_format=torch.channels_last)
        if decoder is not None and compile:
            decoder.decoder = torch.compile(decoder.decoder)
    bert_model, bert_tok = load_bert(bert, device=device, dtype=dtype)
    vmap = load_or_build_vocab_map(bert_tok, components.tokenizer, cache_dir)
    freeze_classifier(classifier, device)
    models = DexterModels(components, bert_model, bert_tok, classifier, vmap, config, device, decoder=decoder)
    if config.safety_checker:
        from dexter.safety import load_safety_filter

        models.safety = load_safety_filter(sd, device=device, dtype=dtype)
    return models


def explain(
    models: DexterModels,
    out_dir: str | Path,
    classes: Sequence[int] | None = None,
    feature_neurons: dict[int, Sequence[int]] | None = None,
    run_info: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[int, Path]:
    """Explain ``classes`` (default: all of the classifier's) -> {class_index: keywords.json}."""
    if classes is None:
        classes = range(models.classifier.num_classes)
    return explain_classes(models, list(classes), out_dir, feature_neurons=feature_neurons, run_info=run_info,
                           progress=progress)


__all__ = ["check_model_specs", "explain", "load_dexter_models", "resolve_device"]
