"""The world CLIP: a transformers ``CLIPModel`` (small ViT + small text transformer) and its processor.

Trained contrastively on world images and caption variants with a MULTI-POSITIVE loss: the world has
few distinct captions, so a batch holds many captions that are true of an image ("a picture of a
water." is true of every image on water); the usual one-positive CLIP loss would push those apart.
Each image's probability mass over the batch's captions must fall on the consistent ones, and each
caption's mass over images likewise. Zero-shot recognition then works from the single-word prompts
that DEXTER's labelling writes ("a picture of a water." vs "a picture of a land.").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from world.captions import consistency_matrix, random_caption, single_word_prompt
from world.synthetic import SyntheticWorldConfig, WorldSample

log = logging.getLogger(__name__)

# OpenAI CLIP's normalisation constants, kept so the processor looks like the real one.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def text_config(tokenizer, hidden: int = 64) -> dict:
    """The text tower's config (shared by the world CLIP and the generator's text encoder)."""
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        projection_dim=hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_clip(tokenizer, image_size: int = 32, hidden: int = 64, layers: int = 3, patch: int = 4):
    """A small CLIPModel whose text tower matches ``tokenizer`` (ids, BOS/EOS/PAD, 77 positions)."""
    from transformers import CLIPConfig, CLIPModel

    vision = dict(
        image_size=image_size,
        patch_size=patch,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        projection_dim=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
    )
    config = CLIPConfig(text_config=text_config(tokenizer, hidden), vision_config=vision, projection_dim=hidden)
    return CLIPModel(config)


def build_processor(tokenizer, image_size: int = 32):
    """CLIPProcessor (image processor at the world's size + the word tokenizer), as the hub ships it."""
    from transformers import CLIPImageProcessor, CLIPProcessor

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W in [-1, 1] -> CLIP pixel values (what the processor gives for the same pixels)."""
    mean = torch.tensor(CLIP_MEAN, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=images.dtype).view(1, 3, 1, 1)
    return ((images + 1) / 2 - mean) / std


def image_embeddings(model, pixel_values: torch.Tensor) -> torch.Tensor:
    out = model.get_image_features(pixel_values=pixel_values).pooler_output
    return torch.nn.functional.normalize(out, dim=-1)


def text_embeddings(model, tokenizer, texts: Sequence[str]) -> torch.Tensor:
    batch = tokenizer(list(texts), padding=True, return_tensors="pt")
    out = model.get_text_features(input_ids=batch.input_ids, attention_mask=batch.attention_mask).pooler_output
    return torch.nn.functional.normalize(out, dim=-1)


def degrade(x: torch.Tensor, g: torch.Generator, share: float = 0.5) -> torch.Tensor:
    """Blur a random ``share`` of the images (Gaussian, sigma in [0.3, 1.2] px) and add a little noise."""
    n = x.shape[0]
    chosen = torch.rand(n, generator=g) < share
    sigma = 0.3 + 0.9 * torch.rand(n, generator=g)
    r = torch.arange(-2, 3, dtype=x.dtype)
    k1 = torch.exp(-(r[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)  # n x 5
    kernel = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(3, 0)[:, None]  # 3n x 1 x 5 x 5
    flat = x.reshape(1, 3 * n, *x.shape[2:])
    blurred = F.conv2d(F.pad(flat, (2, 2, 2, 2), mode="replicate"), kernel, groups=3 * n).reshape_as(x)
    blurred = blurred + 0.03 * torch.randn(x.shape, generator=g)
    return torch.where(chosen.view(-1, 1, 1, 1), blurred.clamp(-1, 1), x)


def prompt_classification_loss(
    model, tokenizer, cfg: SyntheticWorldConfig, samples: list[WorldSample], img: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of zero-shot classification with "a picture of a {word}." prompts, summed over
    shape, colour and background: exactly the task the labelling stage and the gates ask of CLIP."""
    labels = torch.tensor([(s.shape, s.color, s.background) for s in samples])
    total = img.new_zeros(())
    for k, bank in enumerate((cfg.shapes, cfg.colors, cfg.backgrounds)):
        txt = text_embeddings(model, tokenizer, [single_word_prompt(w) for w in bank])
        total = total + F.cross_entropy(scale * img @ txt.T, labels[:, k])
    return total


def _pretrain_vision(model, cfg, samples, images, steps: int, batch_size: int, lr: float, g) -> None:
    """Supervised warm start of the vision tower: linear attribute heads on its pooled output.

    The contrastive objective alone left shape at chance (a saddle, see ``train_clip``); this plain
    classification learns shape in about 200 steps and the contrastive phase then aligns text to it."""
    banks = (cfg.shapes, cfg.colors, cfg.backgrounds)
    sizes = [len(b) for b in banks]
    head = torch.nn.Linear(model.config.vision_config.hidden_size, sum(sizes))
    opt = torch.optim.AdamW([*model.vision_model.parameters(), *head.parameters()], lr=lr, weight_decay=0.01)
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(0, len(samples), (batch_size,), generator=g)
        pooled = model.vision_model(pixel_values=normalise(images[idx])).pooler_output
        labels = torch.tensor([(samples[i].shape, samples[i].color, samples[i].background) for i in idx.tolist()])
        loss = sum(F.cross_entropy(lg, labels[:, k]) for k, lg in enumerate(head(pooled).split(sizes, 1)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 50 == 0:
            log.info("clip vision warm start %d/%d loss %.4f (%.0fs)", step + 1, steps, float(loss.detach()),
                     time.time() - t0)


def probe_loss(probe: torch.nn.Linear, img: torch.Tensor, samples: list[WorldSample], sizes: list[int]) -> torch.Tensor:
    """Cross-entropy of linear attribute heads on (normalised) image embeddings, summed over attributes."""
    labels = torch.tensor([(s.shape, s.color, s.background) for s in samples])
    logits = probe(img * 10.0).split(sizes, dim=1)
    return sum(F.cross_entropy(lg, labels[:, k]) for k, lg in enumerate(logits))


def multi_positive_loss(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Symmetric -log P(consistent) for an images x captions logit matrix and boolean positive mask.

    Every row and column must have at least one positive (each caption describes its own image).
    """
    neg_inf = torch.finfo(logits.dtype).min
    pos_logits = logits.masked_fill(~positive, neg_inf)
    img = torch.logsumexp(logits, 1) - torch.logsumexp(pos_logits, 1)
    txt = torch.logsumexp(logits, 0) - torch.logsumexp(pos_logits, 0)
    return (img.mean() + txt.mean()) / 2


def train_clip(
    model,
    tokenizer,
    cfg: SyntheticWorldConfig,
    samples: list[WorldSample],
    images: torch.Tensor,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    augment: bool = True,
    prompt_weight: float = 1.0,
    probe_weight: float = 1.0,
    pretrain_steps: int = 0,
    log_every: int = 100,
    monitor: tuple[torch.Tensor, np.ndarray] | None = None,
) -> list[float]:
    """Train in place; ``images`` are [-1, 1] tensors of ``samples``. With ``augment``, half of
    each batch is blurred and noised (:func:`degrade`) so CLIP also recognises the softer images that
    come out of the generator's decoder. Returns per-step losses."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    model.train()
    banks = (cfg.shapes, cfg.colors, cfg.backgrounds)
    # Auxiliary linear heads on the image embedding (discarded after training). Without them the two
    # towers sit at a saddle: the image tower ignores shape because the shape prompts' text embeddings
    # are alike, and the text tower keeps them alike because images carry no shape. Shape stayed at
    # chance for 400+ steps; a plain classifier with the same ViT learns it in about 200.
    probe = torch.nn.Linear(model.config.projection_dim, sum(len(b) for b in banks))
    opt = torch.optim.AdamW([*model.parameters(), *probe.parameters()], lr=lr, weight_decay=0.01)
    # short warm-up, then constant: a ViT this small trained at 2e-3 with a one-cycle schedule never
    # learned shape (chance after 400 steps); at 1e-3 constant it learns it in about 200.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / 50))
    losses: list[float] = []
    t0 = time.time()
    if pretrain_steps:
        _pretrain_vision(model, cfg, samples, images, pretrain_steps, batch_size, lr, g)
    for step in range(steps):
        idx = torch.randint(0, len(samples), (batch_size,), generator=g)
        batch_samples = [samples[i] for i in idx.tolist()]
        x = images[idx]
        if augment:
            x = degrade(x, g)
        captions = [random_caption(cfg, s, rng) for s in batch_samples]
        positive = torch.from_numpy(consistency_matrix(batch_samples, captions))
        img = image_embeddings(model, normalise(x))
        txt = text_embeddings(model, tokenizer, [c.text for c in captions])
        scale = model.logit_scale.clamp(max=np.log(100.0)).exp()
        loss = multi_positive_loss(scale * img @ txt.T, positive)
        if prompt_weight:
            loss = loss + prompt_weight * prompt_classification_loss(model, tokenizer, cfg, batch_samples, img, scale)
        if probe_weight:
            loss = loss + probe_weight * probe_loss(probe, img, batch_samples, [len(b) for b in banks])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            acc = ""
            if monitor is not None:
                acc = str([round(float((zero_shot(model, tokenizer, monitor[0], bank) == monitor[1][:, k]).mean()), 3)
                           for k, bank in enumerate((cfg.shapes, cfg.colors, cfg.backgrounds))])
                model.train()
            log.info("clip step %d/%d loss %.4f zero-shot %s (%.0fs)", step + 1, steps,
                     np.mean(losses[-log_every:]), acc, time.time() - t0)
    model.eval()
    return losses


@torch.no_grad()
def zero_shot(model, tokenizer, images: torch.Tensor, words: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """Index into ``words`` of the best-matching prompt "a picture of a {word}." for each image.

    ``images``: N x 3 x H x W in [-1, 1]."""
    was_training = model.training
    model.eval()
    txt = text_embeddings(model, tokenizer, [single_word_prompt(w) for w in words])
    preds = []
    for i in range(0, images.shape[0], batch_size):
        img = image_embeddings(model, normalise(images[i : i + batch_size]))
        preds.append((img @ txt.T).argmax(1))
    model.train(was_training)
    return torch.cat(preds).numpy() if preds else np.zeros(0, dtype=np.int64)
