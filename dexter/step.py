"""One DEXTER optimisation step, batched: the math and the per-run state (docs/METHOD.md §1).

A :class:`RunState` is everything one optimisation owns (soft prompt and its AdamW, mask pseudo-labels and
histories, excluded words, step and hit counters, its random generators). :class:`DexterModels` is
everything shared and frozen. :func:`dexter_step` advances a BATCH of states — different classes, runs or
seeds — with one BERT forward, one CLIP forward, one sampling pass and one classifier forward, and one
backward: the states do not interact (each loss term depends on one state's prompt only, AdamW is
per-parameter), so a batched step equals the individual steps up to floating-point summation order.

The scheduler that drives runs of many classes and writes their outputs is :mod:`dexter.optimize`.
"""


from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dexter.classifiers import FeatureHeadClassifier, top_feature_neurons
from dexter.config import DexterConfig
from dexter.errors import DexterInputError
from dexter.loading import SDComponents
from dexter.objective import (
    activation_loss,
    aggregated_mask_losses,
    mask_label_loss,
    mask_reference_neurons,
    neuron_losses,
)
from dexter.pseudo_labels import MaskSlot, candidate_filter, new_slots, update_slots
from dexter.sampler import initial_latents, sample_images
from dexter.text import TextSide, gumbel_straight_through, init_soft_prompt
from dexter.vocab_map import VocabMap


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (independent streams for prompt init, Gumbel noise, ...)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


class DexterModels:
    """The frozen models of one DEXTER setup, prepared for one template."""

    def __init__(self, sd: SDComponents, bert, bert_tokenizer, classifier: FeatureHeadClassifier, vmap: VocabMap,
                 config: DexterConfig, device: torch.device | str, decoder=None) -> None:
        self.sd, self.classifier, self.config = sd, classifier, config
        self.device = torch.device(device)
        self.text = TextSide(bert, bert_tokenizer, sd.text_encoder, sd.tokenizer, vmap, config.template_text)
        tokens = bert_tokenizer.convert_ids_to_tokens(list(range(self.text.vocab_size)))
        keep = candidate_filter(tokens, special=bert_tokenizer.all_special_tokens)
        # A word with no CLIP whole-word token has an all-zero row in the translation map: the image never
        # sees it, so it explains nothing and may not become a pseudo-label.
        matched = vmap.matched
        self.allowed = frozenset(i for i, ok in enumerate(keep) if ok and i < len(matched) and matched[i])
        self.tokens = tokens
        self.resolution = config.resolution or sd.default_resolution
        f = sd.vae_scale_factor
        if self.resolution % f:
            raise DexterInputError(f"resolution {self.resolution} is not a multiple of the VAE's downsampling "
                                   f"factor {f}")
        self.safety = None  # a dexter.safety.SafetyFilter for saved frames (set by the loader), or None
        self.latent_shape = (int(sd.unet.config.in_channels), self.resolution // f, self.resolution // f)
        # What decodes the step's latents: the VAE, or an AutoencoderTiny (``config.tiny_vae``, changes the method)
        self.decoder = sd.vae if decoder is None else decoder
        if decoder is not None:
            from dexter.loading import tiny_vae_mismatch

            why = tiny_vae_mismatch(decoder.config, self.latent_shape[0], f)
            if why is not None:
                raise DexterInputError(why)
        self.uncond_states = None
        if config.guidance_scale > 1.0:
            from dexter.text import encode_prompts

            with torch.no_grad():
                self.uncond_states = encode_prompts(sd.text_encoder, sd.tokenizer, [""])
        self.references = mask_reference_neurons(config.mode, self.text.num_masks, self.num_features)

    @property
    def num_features(self) -> int:
        return self.config.num_feature_neurons if self.config.mode == "multi" else 0

    def token_ids(self, words: Sequence[str]) -> set[int]:
        ids = self.text.bert_tokenizer.convert_tokens_to_ids(list(words))
        unk = self.text.bert_tokenizer.unk_token_id
        return {int(i) for i in ids if i is not None and i != unk}

    def feature_neurons(self, class_index: int) -> list[int]:
        return top_feature_neurons(self.classifier.head_weight, class_index, self.num_features)


@dataclass
class RunState:
    """One optimisation (a class, a run); holds no model."""

    class_index: int
    class_name: str
    run: int
    soft_prompt: torch.Tensor
    optimizer: torch.optim.Optimizer
    slots: list[MaskSlot]
    excluded_words: tuple[str, ...]
    excluded_ids: frozenset[int]
    feature_ids: list[int]
    gumbel: torch.Generator
    latents: torch.Tensor  # (images_per_step, C, h, w), fixed for the whole run
    noise_seeds: list[int]  # between-step noise when step_noise == "fixed"
    step: int = 0
    consecutive_hits: int = 0
    hits: int = 0  # steps whose every image was classified as the class
    hit_images: int = 0  # images classified as the class (what collect_hits counts)
    flagged: int = 0  # saved frames the safety checker blanked
    done: bool = False
    stopped_early: bool = False
    rows: list[dict[str, Any]] = field(default_factory=list)
    last_words: list[str] = field(default_factory=list)


def new_run_state(models: DexterModels, class_index: int, class_name: str, run: int,
                  excluded_words: Sequence[str] = (), feature_ids: Sequence[int] | None = None) -> RunState:
    """A fresh run: U(-1,1) soft prompt from (seed, class, run); the initial latents depend on the seed only."""
    cfg = models.config
    gen = torch.Generator("cpu").manual_seed(derive_seed(cfg.seed, class_index, run, 1))
    prompt = init_soft_prompt(cfg.soft_prompt_length, models.text.hidden_size, gen).to(models.device)
    prompt.requires_grad_(True)
    optimizer = torch.optim.AdamW([prompt], lr=cfg.lr, eps=cfg.adam_eps)
    seeds = [derive_seed(cfg.seed, j, 2) for j in range(cfg.images_per_step)]
    latents = initial_latents(seeds, models.latent_shape, models.device, models.sd.dtype)
    return RunState(
        class_index=class_index,
        class_name=class_name,
        run=run,
        soft_prompt=prompt,
        optimizer=optimizer,
        slots=new_slots(models.text.num_masks),
        excluded_words=tuple(excluded_words),
        excluded_ids=frozenset(models.token_ids(excluded_words)),
        feature_ids=list(feature_ids) if feature_ids is not None else models.feature_neurons(class_index),
        gumbel=torch.Generator("cpu").manual_seed(derive_seed(cfg.seed, class_index, run, 3)),
        latents=latents,
        noise_seeds=[derive_seed(cfg.seed, j, 4) for j in range(cfg.images_per_step)],
    )


def step_noise_seeds(cfg: DexterConfig, state: RunState) -> list[int]:
    """Seeds of the between-step noise of ``state``'s next step, one per image (see DexterConfig.step_noise).

    Derived from the run's own identity and step count only, never from its place in a batch.
    """
    if cfg.step_noise == "fixed":
        return list(state.noise_seeds)
    return [derive_seed(cfg.seed, state.class_index, state.run, state.step, j, 5) for j in range(cfg.images_per_step)]


@dataclass
class StepResult:
    """What one state did in one step (for outputs and progress)."""

    row: dict[str, Any]
    images: torch.Tensor  # (images_per_step, 3, H, W) detached, on the CPU, NOT safety-checked
    image_hits: list[bool]


def dexter_step(models: DexterModels, states: Sequence[RunState]) -> list[StepResult]:
    """Advance every state by one optimisation step with one forward/backward through the shared models."""
    cfg = models.config
    n = cfg.images_per_step
    b = len(states)
    prompts = torch.stack([s.soft_prompt for s in states])  # (B, P, H)
    logits = models.text.mask_logits(prompts)  # (B, M, V)
    onehots = gumbel_straight_through(logits, [s.gumbel for s in states], cfg.tau)
    predicted = onehots.argmax(-1).tolist()
    text_states = models.text.clip_states(onehots).repeat_interleave(n, dim=0)  # (B*n, 77, D)
    latents = torch.cat([s.latents for s in states])
    images = sample_images(
        text_states, latents, models.sd.scheduler, models.sd.unet, models.decoder, cfg.inference_steps,
        cfg.guidance_scale, models.uncond_states, [seed for s in states for seed in step_noise_seeds(cfg, s)],
        grad_steps=cfg.backprop_steps, pixel_noise=cfg.pixel_noise,
    )
    clf_dtype = models.classifier.head.weight.dtype
    class_logits, features = models.classifier(images.to(clf_dtype))
    class_index = torch.tensor([s.class_index for s in states], device=class_logits.device).repeat_interleave(n)
    k = models.num_features
    feature_ids = torch.tensor([s.feature_ids[:k] for s in states for _ in range(n)], dtype=torch.long,
                               device=features.device).view(b * n, k)
    nl = neuron_losses(class_logits, features, class_index, feature_ids)
    act = activation_loss(nl, cfg.mode).view(b, n).mean(1)  # (B,)
    agg = aggregated_mask_losses(nl.per_neuron(), models.references).view(b, n, -1).mean(1)  # (B, M)
    agg_values = agg.detach().cpu().tolist()

    mask_losses = []
    for i, s in enumerate(states):
        # Step t's mask loss uses the labels set after step t-1; this step's losses update them afterwards.
        mask_losses.append(mask_label_loss(logits[i], [slot.label for slot in s.slots]))
        update_slots(s.slots, predicted[i], agg_values[i], models.allowed, s.excluded_ids)
    mask_loss = torch.stack(mask_losses)
    total = (act + mask_loss.to(act.device)).sum()
    for s in states:
        s.optimizer.zero_grad(set_to_none=True)
    total.backward()
    for s in states:
        s.optimizer.step()

    probs = torch.softmax(class_logits.detach().float(), -1).gather(1, class_index.view(-1, 1)).view(b, n)
    hits = (class_logits.detach().argmax(-1) == class_index).view(b, n).cpu()
    images_cpu = images.detach().float().cpu().view(b, n, *images.shape[1:])
    results = []
    for i, s in enumerate(states):
        s.step += 1
        step_hit = bool(hits[i].all())
        s.hits += int(step_hit)
        s.hit_images += int(hits[i].sum())
        s.consecutive_hits = s.consecutive_hits + 1 if step_hit else 0
        s.last_words = [models.tokens[t] for t in predicted[i]]
        labels = [models.tokens[sl.label] if sl.label is not None else "" for sl in s.slots]
        row = {
            "step": s.step,
            "loss": float(act[i].detach() + mask_loss[i].detach()),
            "activation_loss": float(act[i].detach()),
            "mask_loss": float(mask_loss[i].detach()),
            "class_loss": float(nl.class_loss.detach().view(b, n)[i].mean()),
            "class_prob": float(probs[i].mean()),
            "hit": int(step_hit),
            "words": " ".join(s.last_words),
            "labels": " ".join(lab or "-" for lab in labels),
            "mask_losses": " ".join(f"{v:.6g}" for v in agg_values[i]),
        }
        s.rows.append(row)
        # Early stop also waits until every mask has a pseudo-label: a run that stopped on filtered words
        # ('.', '[UNK]') would end without a keyword. (The released code starts from random labels, so its
        # early stop always has one.)
        labelled = all(sl.label is not None for sl in s.slots)
        stop_early = (cfg.early_stop > 0 and s.consecutive_hits >= cfg.early_stop and s.step >= cfg.min_steps
                      and labelled)
        # The bias-report stop: enough images classified as the class to write a report from.
        collected = cfg.collect_hits > 0 and s.hit_images >= cfg.collect_hits and s.step >= cfg.min_steps
        stop_early = stop_early or collected
        if stop_early or s.step >= cfg.steps:
            s.done, s.stopped_early = True, stop_early
        results.append(StepResult(row, images_cpu[i], [bool(h) for h in hits[i]]))
    return results


def run_words(models: DexterModels, state: RunState) -> list[str | None]:
    """The run's pseudo-labels as words (None for a mask that never got one)."""
    return [models.tokens[sl.label] if sl.label is not None else None for sl in state.slots]


__all__ = ["DexterModels", "RunState", "StepResult", "derive_seed", "dexter_step", "new_run_state", "run_words",
           "step_noise_seeds"]
