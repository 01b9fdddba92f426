"""The original code's ``activation_score(...)``: same arguments, same return values, our sampler underneath.

    score, last_img, mean_act = activation_score(classifier=clf, prompt="...", class_to_activate=145,
                                                 n_images=100, transforms=tfms, device="cuda")

Returns, as the original does: the FRACTION of the ``n_images`` images classified as the class (0..1;
``dexter score`` and :func:`dexter.activation_score.activation_score` report it in percent), the last
generated image (PIL), and the mean "activation" the original reports: per image, the class cross-entropy
plus the mean of the negated activations of the class's top-5 feature neurons (lower = more activated).
Feature neurons: ``feature_indices``, else the class's top-5 head weights (data-free; the original read
lists made from Salient-ImageNet annotations).

Differences, on purpose: ``n_images`` images in total, ``batch_size`` at a time (the original generated
``n_images`` batches and divided by ``n_images``); ``seed=None`` means 0 (reproducible); images pass the
pipeline's safety checker before they are returned or saved (the original ran it and ignored its answer).
``pipe`` may be a :class:`dexter.loading.SDComponents` or a diffusers Stable Diffusion pipeline; otherwise
``sd``/``lora`` are loaded (hub ids or folders).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from dexter.errors import DexterInputError

DEFAULT_SD = "CompVis/stable-diffusion-v1-4"
DEFAULT_LORA = "latent-consistency/lcm-lora-sdv1-5"


def _components(pipe: Any, sd: str, lora: str | None, device: torch.device, dtype: str):
    from dexter.loading import SDComponents, load_sd, resolve_dtype

    if isinstance(pipe, SDComponents):
        return pipe
    if pipe is not None:
        from diffusers import LCMScheduler

        scheduler = pipe.scheduler
        if not isinstance(scheduler, LCMScheduler):
            scheduler = LCMScheduler.from_config(scheduler.config)
        return SDComponents(pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.vae, scheduler,
                            next(pipe.unet.parameters()).dtype)
    return load_sd(sd, lora, device=device, dtype=resolve_dtype(dtype, device))


@torch.no_grad()
def activation_score(
    classifier: torch.nn.Module,
    prompt: str,
    *,
    class_to_activate: int,
    n_images: int = 100,
    diff_steps: int = 4,
    batch_size: int = 1,
    device: str | None = None,
    seed: int | None = None,
    transforms: Callable[[torch.Tensor], torch.Tensor] | None = None,
    feature_indices: Sequence[int] | None = None,
    guidance_scale: float = 1.0,
    latent_dim: int | None = None,
    save_images_to: str | None = None,
    pipe: Any = None,
    sd: str = DEFAULT_SD,
    lora: str | None = DEFAULT_LORA,
    dtype: str = "auto",
    safety_checker: bool = True,
):
    """-> (score in [0, 1], last image as PIL, mean activation). See the module docstring."""
    from PIL import Image

    from dexter.activation_score import fresh_noise_batches
    from dexter.classifiers import as_feature_head_classifier, freeze_classifier, top_feature_neurons
    from dexter.outputs import save_frame
    from dexter.pipeline import resolve_device

    if not isinstance(prompt, str) or not prompt.strip():
        raise DexterInputError("prompt must be a non-empty string")
    if n_images < 1 or batch_size < 1 or diff_steps < 1:
        raise DexterInputError("n_images, batch_size and diff_steps must be at least 1")
    dev = resolve_device(device)
    clf = freeze_classifier(as_feature_head_classifier(classifier, transforms), dev)
    if not 0 <= class_to_activate < clf.num_classes:
        raise DexterInputError(f"class_to_activate {class_to_activate} out of range [0, {clf.num_classes})")
    feats = list(feature_indices) if feature_indices else top_feature_neurons(clf.head_weight, class_to_activate, 5)
    comps = _components(pipe, sd, lora, dev, dtype)
    safety = None
    if safety_checker and pipe is None:
        from dexter.safety import load_safety_filter

        safety = load_safety_filter(sd, device=dev, dtype=comps.dtype)
    seed = 0 if seed is None else int(seed)
    out_dir = Path(save_images_to) if save_images_to else None
    correct, activation_sum, last = 0, 0.0, None
    for seeds, images in fresh_noise_batches(comps, prompt, n_images, seed, batch_size, diff_steps,
                                             guidance_scale, latent_dim):
        start = seeds[0] - seed
        logits, features = clf(images.to(clf.head.weight.dtype))
        target = torch.full((len(seeds),), class_to_activate, device=logits.device)
        ce = torch.nn.functional.cross_entropy(logits.float(), target, reduction="none")
        act = ce - features.float()[:, feats].mean(dim=1)
        correct += int((logits.argmax(-1) == class_to_activate).sum())
        activation_sum += float(act.sum())
        shown = images.float().cpu()
        if safety is not None and (out_dir is not None or start + len(seeds) >= n_images):
            shown, _ = safety(shown)  # only what is returned or saved is checked
        if out_dir is not None:
            for k, image in enumerate(shown):
                save_frame(out_dir / f"{start + k:04d}.png", image)
        last = shown[-1]
    array = (last.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    return correct / n_images, Image.fromarray(array), activation_sum / n_images


__all__ = ["activation_score"]
