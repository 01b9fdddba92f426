"""The training recipe of the world models: one frozen record, saved into the manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class WorldTrainSettings:
    """Everything that determines the trained artifacts (with the code and torch's CPU kernels).

    The defaults are the recipe of the committed ``data/world`` artifacts.
    """

    num_classes: int = 2
    image_size: int = 32
    seed: int = 0
    threads: int = 2
    train_images: int = 12000
    # VAE
    vae_steps: int = 600
    vae_batch: int = 32
    vae_lr: float = 2e-3
    # 4 latent channels (SD's) lose the corners of a 32 px square and the arms of a cross: CLIP recognised
    # the shape of 0.76 of the reconstructions of the 4-shape world; 8 channels keep it (the rich world's recipe)
    vae_latent_channels: int = 4
    # CLIP
    clip_steps: int = 300
    clip_batch: int = 64
    clip_lr: float = 1e-3
    clip_prompt_weight: float = 1.0
    clip_probe_weight: float = 1.0
    clip_vision_warm_steps: int = 300  # supervised warm start of the vision tower (see clip.train_clip)
    clip_tune_steps: int = 0  # then this many steps at clip_tune_lr (phase clip_tune; the rich world: 1000)
    clip_tune_lr: float = 3e-4
    # BERT
    bert_steps: int = 500
    bert_batch: int = 64
    bert_lr: float = 2e-3
    # generator (UNet)
    unet_steps: int = 2000
    unet_batch: int = 128
    unet_lr: float = 1e-3
    # cosine decay of the learning rate to 0 over the LAST this many of unet_steps (0: constant after warm-up).
    # A constant rate leaves the generator noisy from checkpoint to checkpoint (the rich world's in-training
    # shape faithfulness moved between 0.86 and 0.97 every 500 steps); annealing settles it. Steps before the
    # decay are identical to a constant-rate run's, so a constant run resumes into a decaying one exactly.
    unet_decay_steps: int = 0
    # then a second cosine cycle of this many steps from unet_tune_lr to 0 (the rich world: 2000 at 3e-4)
    unet_tune_steps: int = 0
    unet_tune_lr: float = 3e-4
    joint_text_encoder: bool = True  # train the generator's text encoder with the UNet (else: CLIP's, frozen)
    lcm_timestep_share: float = 0.75  # share of UNet training timesteps drawn from the 4-step LCM schedule
    sampling_steps: int = 4
    eval_every: int = 250  # UNet steps between faithfulness checks in the log (and checkpoints)

    def to_dict(self) -> dict:
        return asdict(self)
