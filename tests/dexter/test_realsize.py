"""Smoke test at REAL size: `dexter explain` on Stable Diffusion v1.4 / CLIP ViT-L/14 text / BERT-base shapes.

The architectures are built from configs written here (the published sizes), with random weights, and saved in
the hub formats; word-level tokenizers of the real vocabulary sizes stand in for the real ones (BERT 30,522
entries; CLIP's embedding table 49,408 rows, about 18,000 words shared with BERT, as in the real pair). The
real entry point (`dexter.cli.main(["explain", ...])`) then runs 2 multi-word steps at the smallest resolution
(8 px: a 1x1 latent) with a random-weight torchvision ResNet-50 checkpoint and a random LCM-style LoRA.
What it guards: shapes, dtypes and code paths that tiny models do not exercise (e.g. the UNet's four levels,
CLIP-L's width, BERT's vocabulary, the LoRA fused into a real UNet).

Building 1.2 billion random parameters is the slow part: the UNet is created on the meta device and filled
from a shared pool of random numbers, and everything is saved in fp16 (loading casts back to fp32).
Measured on a 2-core CPU (1 thread, a training running beside it): 85-100 s (build 34-51 s, explain about 47 s),
6.3-6.7 GB peak resident memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

TEMPLATE_WORDS = ["a", "picture", "of", "with", "and"]
BERT_VOCAB = 30522
CLIP_VOCAB = 49408
SHARED_WORDS = 18000


def _fill_from_pool(module: torch.nn.Module, seed: int = 0) -> None:
    """Random-looking weights fast: slices of one pool of U(-1, 1) numbers, scaled by 1/sqrt(fan-in)."""
    gen = torch.Generator().manual_seed(seed)
    pool = torch.rand(1 << 25, generator=gen) * 2 - 1  # > the largest UNet weight (29.5 M)
    offset = 0
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0 if name.endswith("weight") else 0.0)  # norms: identity; biases: zero
                continue
            n = p.numel()
            start = offset % (pool.numel() - n)
            p.copy_(pool[start:start + n].view_as(p) * (1.0 / p[0].numel()) ** 0.5)
            offset += 7919 * 1024 + n


def build_real_size_models(root: Path) -> dict[str, str]:
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from tiny_models import letter_words
    from torchvision.models import resnet50
    from transformers import BertConfig, BertForMaskedLM, CLIPTextConfig, CLIPTextModel

    from common.word_tokenizers import build_bert_word_tokenizer, build_clip_word_tokenizer

    # Tokenizers: BERT 30,522 entries (5 specials, '.', ',', 2 '##' pieces, the words); CLIP words = the
    # first 18,000 BERT words + words BERT lacks, so that some BERT words have no CLIP token.
    n_bert_words = BERT_VOCAB - 5 - 2 - 2
    words = letter_words(n_bert_words + 24000)
    bert_words = TEMPLATE_WORDS + words[: n_bert_words - len(TEMPLATE_WORDS)]
    bert_tok = build_bert_word_tokenizer(bert_words, root / "bert")
    assert len(bert_tok) == BERT_VOCAB
    clip_words = [".", *TEMPLATE_WORDS, *bert_words[len(TEMPLATE_WORDS): SHARED_WORDS], *words[n_bert_words:]]
    clip_tok = build_clip_word_tokenizer(clip_words)
    assert len(clip_tok) <= CLIP_VOCAB

    # BERT-base (google-bert/bert-base-uncased's config)
    bert = BertForMaskedLM(BertConfig(vocab_size=BERT_VOCAB, hidden_size=768, num_hidden_layers=12,
                                      num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512,
                                      type_vocab_size=2, pad_token_id=bert_tok.pad_token_id))
    bert.to(torch.float16).save_pretrained(root / "bert")
    del bert

    # CLIP ViT-L/14 text encoder (the one Stable Diffusion v1 uses)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=CLIP_VOCAB, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
        bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id, pad_token_id=clip_tok.pad_token_id,
    ))
    # Stable Diffusion v1.4's UNet and VAE
    with torch.device("meta"):
        unet = UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
        )
    unet = unet.to_empty(device="cpu")
    _fill_from_pool(unet)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                        layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512, scaling_factor=0.18215)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1)  # SD v1.4 ships PNDM
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=clip_tok, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.to(dtype=torch.float16)
    pipe.save_pretrained(root / "sd")

    # An LCM-LoRA-like adapter (attention projections, rank 4), random B so that it changes the UNet
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen).to(p.dtype) * 0.01)
    StableDiffusionPipeline.save_lora_weights(root / "lora", unet_lora_layers=get_peft_model_state_dict(unet))
    del pipe, unet, vae, text_encoder

    torch.manual_seed(0)
    torch.save(resnet50().state_dict(), root / "resnet50.pth")
    return {"sd": str(root / "sd"), "lora": str(root / "lora"), "bert": str(root / "bert"),
            "checkpoint": str(root / "resnet50.pth")}


@pytest.mark.slow
@pytest.mark.realsize
def test_explain_at_real_size(tmp_path):
    import shutil
    import sys
    import time

    from dexter.cli import main

    start = time.perf_counter()
    specs = build_real_size_models(tmp_path / "models")
    built = time.perf_counter() - start
    out = tmp_path / "out"
    try:
        _run_and_check(main, specs, out)
    finally:
        shutil.rmtree(tmp_path / "models", ignore_errors=True)  # 2.4 GB: not left for pytest's tmp rotation
    print(f"real-size smoke: build {built:.0f} s, explain {time.perf_counter() - start - built:.0f} s",
          file=sys.stderr)


def _run_and_check(main, specs: dict, out: Path) -> None:
    rc = main(["explain", "--classifier", "resnet50", "--checkpoint", specs["checkpoint"], "--sd", specs["sd"],
               "--lora", specs["lora"], "--bert", specs["bert"], "--class-index", "3", "--mask-type", "multi",
               "--steps", "2", "--early-stop", "0", "--resolution", "8", "--device", "cpu", "--out", str(out),
               "--no-progress"])
    assert rc == 0
    run = out / "003_tiger_shark" / "run_0"
    rows = (run / "losses.csv").read_text().splitlines()
    assert len(rows) == 3  # header + 2 steps
    config = json.loads((run / "config.json").read_text())
    assert config["resolution"] == 8 and config["classifier_input"]["preprocess"] == "original"
    assert config["lora"] == specs["lora"] and config["step_noise"] == "fresh"
    result = json.loads((run / "result.json").read_text())
    assert len(result["mask_words"]) == 6 and result["steps"] == 2
    from transformers import CLIPTokenizer

    clip_vocab = CLIPTokenizer.from_pretrained(Path(specs["sd"]) / "tokenizer").get_vocab()
    assert all(w + "</w>" in clip_vocab for w in result["words"])  # no keyword the image cannot see
