"""Tiny random models saved in the real formats, for tests.

Each ``make_tiny_*`` builds a model from a config with random weights (seeded), saves it with
``save_pretrained`` into a directory and returns that directory, so tests load it back through the SAME
``from_pretrained`` path a hub id takes. Sizes are a few thousand parameters: a whole DEXTER step on them
takes a fraction of a second on one CPU thread.

Default word list: the synthetic world's vocabulary plus '.', 'with' and 'and' (the words of DEXTER's
templates), so the tiny BERT and CLIP share every word and the BERT->CLIP map is non-trivial.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from common.word_tokenizers import build_bert_word_tokenizer, build_clip_word_tokenizer

TEXT_HIDDEN = 32


def default_words() -> list[str]:
    from world.synthetic import SyntheticWorldConfig

    return [*SyntheticWorldConfig().vocabulary, ".", "with", "and"]


def _words(words: Sequence[str] | None) -> list[str]:
    return list(words) if words is not None else default_words()


def _clip_text_config(tokenizer, hidden: int = TEXT_HIDDEN):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def make_tiny_clip(directory: str | Path, words: Sequence[str] | None = None, image_size: int = 32,
                   seed: int = 0) -> Path:
    """A CLIPModel + word-level CLIP tokenizer + CLIPImageProcessor; loads with CLIPModel/CLIPProcessor.from_pretrained."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPVisionConfig

    directory = Path(directory)
    tok = build_clip_word_tokenizer(_words(words))
    vision = CLIPVisionConfig(
        hidden_size=TEXT_HIDDEN, intermediate_size=2 * TEXT_HIDDEN, num_hidden_layers=2, num_attention_heads=2,
        image_size=image_size, patch_size=max(image_size // 4, 1),
    )
    config = CLIPConfig(text_config=_clip_text_config(tok).to_dict(), vision_config=vision.to_dict(),
                        projection_dim=16)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(directory)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        ),
        tokenizer=tok,
    )
    processor.save_pretrained(directory)
    return directory


def make_tiny_bert(directory: str | Path, words: Sequence[str] | None = None, seed: int = 0) -> Path:
    """A BertForMaskedLM (hidden 32, 2 layers) + word-level WordPiece tokenizer."""
    from transformers import BertConfig, BertForMaskedLM

    directory = Path(directory)
    tok = build_bert_word_tokenizer(_words(words), directory)
    config = BertConfig(
        vocab_size=len(tok), hidden_size=TEXT_HIDDEN, intermediate_size=2 * TEXT_HIDDEN, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    BertForMaskedLM(config).eval().save_pretrained(directory)
    return directory


def make_tiny_sd(directory: str | Path, words: Sequence[str] | None = None, image_size: int = 16,
                 prediction_type: str = "epsilon", seed: int = 0) -> Path:
    """A StableDiffusionPipeline folder (UNet, AutoencoderKL, CLIPTextModel, tokenizer, LCMScheduler; no safety checker).

    The VAE has two blocks (2x downsampling), so a 16 px image has 8x8x4 latents.
    """
    from diffusers import AutoencoderKL, LCMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    directory = Path(directory)
    tok = build_clip_word_tokenizer(_words(words))
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_clip_text_config(tok)).eval()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, sample_size=image_size,
    ).eval()
    unet = UNet2DConditionModel(
        sample_size=image_size // 2, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=4, norm_num_groups=8,
    ).eval()
    scheduler = LCMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type=prediction_type, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(directory)
    return directory


def make_tiny_lora(directory: str | Path, sd_dir: str | Path, rank: int = 2, seed: int = 0) -> Path:
    """A LoRA for the tiny SD UNet (attention projections), saved as ``pytorch_lora_weights.safetensors``.

    The B matrices are random (peft starts them at zero, which would make the adapter a no-op and a test
    of "the adapter is applied" unable to fail).
    """
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    directory = Path(directory)
    unet = UNet2DConditionModel.from_pretrained(sd_dir, subfolder="unet")
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    StableDiffusionPipeline.save_lora_weights(directory, unet_lora_layers=get_peft_model_state_dict(unet))
    return directory


class TinyClassifier(nn.Module):
    """A small CNN on [0,1] images with a ``preprocess`` / ``backbone`` / ``head`` / ``class_names`` interface.

    The same interface the pipeline's own classifiers (common.classifier) expose, so DEXTER wraps it with
    ``FeatureHeadClassifier`` exactly as the stage does.
    """

    def __init__(self, num_classes: int = 2, width: int = 8, image_size: int = 16,
                 class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        self.image_size = image_size
        self.class_names = list(class_names) if class_names else [f"class{i}" for i in range(num_classes)]
        self.backbone = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def preprocess(self, x01: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(x01, size=(self.image_size, self.image_size), mode="bilinear",
                                      align_corners=False)
        return (x - 0.5) / 0.5

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.preprocess(x01)))


def make_tiny_classifier(num_classes: int = 2, seed: int = 0, **kwargs) -> TinyClassifier:
    torch.manual_seed(seed)
    return TinyClassifier(num_classes=num_classes, **kwargs).eval()


def make_tiny_model_set(directory: str | Path, words: Sequence[str] | None = None, lora: bool = False,
                        image_size: int = 16) -> dict[str, str | None]:
    """All three text/image models in one folder, as a ModelSet-like dict (stable_diffusion, lcm_lora, bert, clip)."""
    directory = Path(directory)
    sd = make_tiny_sd(directory / "sd", words, image_size=image_size)
    return {
        "stable_diffusion": str(sd),
        "lcm_lora": str(make_tiny_lora(directory / "lora", sd)) if lora else None,
        "bert": str(make_tiny_bert(directory / "bert", words)),
        "clip": str(make_tiny_clip(directory / "clip", words)),
    }


def add_tiny_safety_checker(sd_dir: str | Path, flag_all: bool = True, image_size: int = 32, seed: int = 0) -> Path:
    """Put a tiny ``StableDiffusionSafetyChecker`` (+ CLIP image processor) into a pipeline folder, as SD v1.4 ships.

    ``flag_all``: concept thresholds far below any cosine similarity, so every image is flagged (a checker
    that never fires could not show that flagged frames are blanked); otherwise thresholds above 1, so none is.
    """
    import json

    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPTextConfig, CLIPVisionConfig

    sd_dir = Path(sd_dir)
    vision = CLIPVisionConfig(hidden_size=TEXT_HIDDEN, intermediate_size=2 * TEXT_HIDDEN, num_hidden_layers=1,
                              num_attention_heads=2, image_size=image_size, patch_size=max(image_size // 4, 1))
    text = CLIPTextConfig(hidden_size=TEXT_HIDDEN, intermediate_size=2 * TEXT_HIDDEN, num_hidden_layers=1,
                          num_attention_heads=2, vocab_size=64, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)
    torch.manual_seed(seed)
    checker = StableDiffusionSafetyChecker(config).eval()
    with torch.no_grad():
        checker.concept_embeds.normal_()
        checker.special_care_embeds.normal_()
        checker.concept_embeds_weights.fill_(-10.0 if flag_all else 10.0)
        checker.special_care_embeds_weights.fill_(10.0)
    checker.save_pretrained(sd_dir / "safety_checker")
    CLIPImageProcessor(size={"shortest_edge": image_size},
                       crop_size={"height": image_size, "width": image_size}).save_pretrained(
        sd_dir / "feature_extractor")
    index_path = sd_dir / "model_index.json"
    index = json.loads(index_path.read_text())
    index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]
    index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
    index["requires_safety_checker"] = True
    index_path.write_text(json.dumps(index, indent=2))
    return sd_dir


def letter_words(n: int) -> list[str]:
    """n distinct letter-only words that are each ONE token of a word-level CLIP tokenizer.

    The first letter is from a-m, the rest from n-z: no word's first merge can fire inside another word, so
    the merge chains never conflict (see common.word_tokenizers). For tokenizers of the real vocabulary sizes.
    """
    import itertools

    first, rest = "abcdefghijklm", "nopqrstuvwxyz"
    out: list[str] = []
    for length in itertools.count(2):
        for head in first:
            for tail in itertools.product(rest, repeat=length - 1):
                out.append(head + "".join(tail))
                if len(out) == n:
                    return out
    return out
