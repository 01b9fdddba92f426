"""A re-creation of the ORIGINAL DEXTER code's optimisation step, for the side-by-side benchmark only.

Same architectures as the project's step (the models are passed in), the original's cost structure:

* CLIP text encoder three times, nothing cached: the prompt (with gradient), the same prompt again
  (its result unused) and the empty prompt;
* BERT forward on the template with the soft prompt;
* a DENSE BERT-vocabulary x CLIP-vocabulary translation matrix (30,522 x 49,408 at real size) marked
  trainable, so its gradient (a full dense matrix) is computed every step;
* the UNet at batch 2 for every sampler step (classifier-free guidance with scale 1.0: the unconditional
  half changes nothing);
* one VAE decode with gradient into the classifier, then, outside the gradient, two more decodes and two
  safety-checker passes (a CLIP vision tower). The original decodes once more when the class is hit: not
  counted here (it depends on the run), which favours the original.

It optimises one class at a time (no batching of classes). Not used by the pipeline.
"""

from __future__ import annotations

import torch
from torch import nn

from dexter.sampler import decode_latents, initial_latents, sample_images
from dexter.text import clip_text_forward, encode_prompts, gumbel_straight_through, init_soft_prompt


class _GuidedUNet(nn.Module):
    """The UNet as the original calls it: [uncond, cond] at batch 2, combined with guidance 1.0."""

    def __init__(self, unet: nn.Module, uncond: torch.Tensor) -> None:
        super().__init__()
        self.unet, self.uncond, self.config = unet, uncond, unet.config

    def forward(self, sample, t, encoder_hidden_states, return_dict=False, **kw):
        both = self.unet(torch.cat([sample, sample]), t,
                         encoder_hidden_states=torch.cat([self.uncond.expand_as(encoder_hidden_states),
                                                          encoder_hidden_states]), return_dict=False, **kw)[0]
        u, c = both.chunk(2)
        return (u + 1.0 * (c - u),)


class OriginalStep:
    """One class's optimisation with the original's per-step work; ``step()`` runs one step."""

    def __init__(self, models, safety_vision: nn.Module, safety_size: int = 224, seed: int = 0) -> None:
        self.models = models
        text = models.text
        self.vb, self.vc = text.vocab_size, models.sd.text_encoder.embeddings.token_embedding.weight.shape[0]
        self.translation = torch.zeros(self.vb, self.vc, device=models.device, requires_grad=True)
        self.safety, self.safety_size = safety_vision, safety_size
        gen = torch.Generator("cpu").manual_seed(seed)
        self.prompt = init_soft_prompt(1, text.hidden_size, gen).to(models.device).requires_grad_(True)
        self.optimizer = torch.optim.AdamW([self.prompt], lr=0.1, eps=1e-4)
        self.gumbel = torch.Generator("cpu").manual_seed(seed + 1)
        self.latents = initial_latents([seed], models.latent_shape, models.device, models.sd.dtype)

    def step(self) -> None:
        m, text = self.models, self.models.text
        te, tok = m.sd.text_encoder, m.sd.tokenizer
        logits = text.mask_logits(self.prompt[None])  # BERT
        onehots = gumbel_straight_through(logits, [self.gumbel], 1.0)  # (1, M, Vb)
        clip_onehots = onehots @ self.translation  # the dense trainable matrix: (1, M, Vc)
        words = clip_onehots @ te.embeddings.token_embedding.weight
        cond = clip_text_forward(te, text.splice(words))  # CLIP 1 (with gradient)
        with torch.no_grad():
            clip_text_forward(te, text.splice(words.detach()))  # CLIP 2: computed, result unused
            uncond = encode_prompts(te, tok, [""])  # CLIP 3: the empty prompt, every step
        unet = _GuidedUNet(m.sd.unet, uncond.to(cond.dtype))
        image = sample_images(cond, self.latents, m.sd.scheduler, unet, m.sd.vae, m.config.inference_steps)
        class_logits, _ = m.classifier(image.to(m.classifier.head.weight.dtype))
        loss = nn.functional.cross_entropy(class_logits, torch.zeros(1, dtype=torch.long, device=image.device))
        self.optimizer.zero_grad(set_to_none=True)
        self.translation.grad = None
        loss.backward()  # also fills translation.grad: Vb x Vc dense
        self.optimizer.step()
        with torch.no_grad():
            latents = self.latents  # the original decodes the final latents again for its outputs
            for _ in range(2):
                img = decode_latents(m.sd.vae, latents)
                small = nn.functional.interpolate(img.float(), size=(self.safety_size,) * 2, mode="bilinear")
                self.safety(pixel_values=small.to(next(self.safety.parameters()).dtype))


__all__ = ["OriginalStep"]
