"""Time one DEXTER optimisation step and report peak memory.

Either real models by spec (``--sd/--lora/--bert``, hub ids or folders, or ``--model-set NAME`` from
params.yaml) or ``--random-real-size``: Stable Diffusion v1.4's UNet and VAE, CLIP ViT-L/14's text encoder
and BERT-base built from their configs with random weights (no download), with word-level tokenizers
of the real vocabulary sizes. The classifier is a torchvision ResNet-50 with random weights (or
``--classifier NAME`` with ImageNet weights when reachable).

    python bench/dexter_step.py --random-real-size --device cuda --dtype fp16 --resolution 512 --batch 4
    python bench/dexter_step.py --model-set world --device cpu --batch 2

Prints one JSON object: seconds per step (mean of ``--steps`` after ``--warmup``), peak memory, settings.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


TEMPLATE_WORDS = [".", "a", "with", "and", "of", "picture"]


def _letter_words(n: int) -> list[str]:
    """n distinct letter-only words whose merges never conflict (first letter a-m, then n-z): every word is one token."""
    first, rest = "abcdefghijklm", "nopqrstuvwxyz"
    out = []
    for length in itertools.count(2):
        for head in first:
            for tail in itertools.product(rest, repeat=length - 1):
                out.append(head + "".join(tail))
                if len(out) == n:
                    return out


def build_random_real_size(root: Path, dtype: torch.dtype, fast: bool = False, reduced: bool = False
                           ) -> dict[str, str]:
    """Save SD v1.4 / CLIP-L text / BERT-base architectures with random weights under ``root``.

    ``fast`` shrinks everything to a few layers (for testing this script, not for figures). ``reduced``
    keeps SD's block structure (4 UNet levels, 2 layers each, cross-attention in 3; 4 VAE levels) at a
    fifth (UNet) and a quarter (VAE) of the widths, 4-layer text encoders of width 256 and vocabularies of 1/8 the real sizes
    (3,815 BERT / 6,176 CLIP words): the CPU benchmark's size (``bench/compare.py``).
    """
    if reduced:
        return _build_reduced(root, dtype)
    from diffusers import AutoencoderKL, LCMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import BertConfig, BertForMaskedLM, CLIPTextConfig, CLIPTextModel

    from common.word_tokenizers import build_bert_word_tokenizer, build_clip_word_tokenizer

    words = _letter_words(200 if fast else 30_000)
    clip_tok = build_clip_word_tokenizer(words[: 100 if fast else 20_000] + TEMPLATE_WORDS)
    bert_tok = build_bert_word_tokenizer(words + TEMPLATE_WORDS, root / "bert")
    text_cfg = CLIPTextConfig(
        vocab_size=max(len(clip_tok), 49408 if not fast else 0), hidden_size=32 if fast else 768,
        intermediate_size=64 if fast else 3072, num_hidden_layers=1 if fast else 12,
        num_attention_heads=2 if fast else 12, max_position_embeddings=77, hidden_act="quick_gelu",
        bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id, pad_token_id=clip_tok.pad_token_id,
    )
    if fast:
        unet = UNet2DConditionModel(sample_size=8, block_out_channels=(16, 32), layers_per_block=1,
                                    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                    attention_head_dim=4, norm_num_groups=8)
        vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8, sample_size=16)
    else:  # Stable Diffusion v1.4's configs
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, sample_size=512,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    scheduler = LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                             set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=CLIPTextModel(text_cfg), tokenizer=clip_tok, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    if dtype != torch.float32:  # halves the files; loading passes dtype= again
        pipe.to(dtype=dtype)
    pipe.save_pretrained(root / "sd")
    bert_cfg = BertConfig(vocab_size=len(bert_tok)) if not fast else BertConfig(
        vocab_size=len(bert_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    BertForMaskedLM(bert_cfg).to(dtype).save_pretrained(root / "bert")
    return {"stable_diffusion": str(root / "sd"), "lcm_lora": None, "bert": str(root / "bert")}


REDUCED_TEXT = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4}


def _build_reduced(root: Path, dtype: torch.dtype) -> dict[str, str]:
    from diffusers import AutoencoderKL, LCMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import BertConfig, BertForMaskedLM, CLIPTextConfig, CLIPTextModel

    from dexter.word_tokenizers import build_bert_word_tokenizer, build_clip_word_tokenizer

    words = _letter_words(49408 // 8)
    clip_tok = build_clip_word_tokenizer(words + TEMPLATE_WORDS)
    bert_tok = build_bert_word_tokenizer(words[: 30522 // 8] + TEMPLATE_WORDS, root / "bert")
    text_cfg = CLIPTextConfig(vocab_size=len(clip_tok), max_position_embeddings=77, hidden_act="quick_gelu",
                              bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id,
                              pad_token_id=clip_tok.pad_token_id, **REDUCED_TEXT)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=16, block_out_channels=(64, 128, 256, 256), cross_attention_dim=256,
                                attention_head_dim=8)
    vae = AutoencoderKL(block_out_channels=(32, 64, 128, 128), layers_per_block=2, sample_size=128,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    scheduler = LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                             set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=CLIPTextModel(text_cfg), tokenizer=clip_tok, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.to(dtype=dtype)
    pipe.save_pretrained(root / "sd")
    BertForMaskedLM(BertConfig(vocab_size=len(bert_tok), **REDUCED_TEXT)).to(dtype).save_pretrained(root / "bert")
    return {"stable_diffusion": str(root / "sd"), "lcm_lora": None, "bert": str(root / "bert")}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--random-real-size", action="store_true")
    src.add_argument("--random-tiny", action="store_true", help="the same script on tiny models (for tests)")
    src.add_argument("--model-set", help="a models.<name> entry of params.yaml")
    src.add_argument("--sd", help="Stable Diffusion spec (with --bert, optional --lora)")
    ap.add_argument("--bert")
    ap.add_argument("--lora")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--classifier", default=None, help="torchvision name with ImageNet weights (default random resnet50)")
    ap.add_argument("--mode", choices=("single", "multi"), default="multi")
    ap.add_argument("--batch", type=int, default=1, help="independent optimisations per step (e.g. classes)")
    ap.add_argument("--images-per-step", type=int, default=1)
    ap.add_argument("--resolution", type=int, default=None)
    ap.add_argument("--inference-steps", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto", help="auto | fp32 | fp16 | bf16")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="UNet and VAE recompute activations")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)

    from dexter.classifiers import freeze_classifier, load_torchvision
    from dexter.loading import resolve_dtype
    from dexter.optimize import DexterConfig, dexter_step, new_run_state
    from dexter.pipeline import load_dexter_models, resolve_device

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    tmp = tempfile.TemporaryDirectory()
    t0 = time.perf_counter()
    if args.random_real_size or args.random_tiny:
        specs = build_random_real_size(Path(tmp.name), dtype, fast=args.random_tiny)
    elif args.model_set:
        from stages.params import load_params

        ms = load_params(args.params).models[args.model_set]
        specs = {"stable_diffusion": ms.stable_diffusion, "lcm_lora": ms.lcm_lora, "bert": ms.bert}
    else:
        if not args.bert:
            ap.error("--sd needs --bert")
        specs = {"stable_diffusion": args.sd, "lcm_lora": args.lora, "bert": args.bert}
    build_s = time.perf_counter() - t0

    if args.classifier:
        clf = load_torchvision(args.classifier)
    else:
        torch.manual_seed(0)
        clf = load_torchvision("resnet18" if args.random_tiny else "resnet50", pretrained=False)
    config = DexterConfig(mode=args.mode, images_per_step=args.images_per_step, resolution=args.resolution,
                          inference_steps=args.inference_steps, steps=10**9, early_stop=0)
    t0 = time.perf_counter()
    models = load_dexter_models(freeze_classifier(clf, device), config, sd=specs["stable_diffusion"],
                                bert=specs["bert"], lora=specs["lcm_lora"], device=device, dtype=dtype,
                                cache_dir=Path(tmp.name) / "cache", gradient_checkpointing=args.gradient_checkpointing)
    load_s = time.perf_counter() - t0
    num_classes = clf.num_classes
    states = [new_run_state(models, i % num_classes, f"c{i}", i // num_classes) for i in range(args.batch)]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        dexter_step(models, states)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        dexter_step(models, states)
        sync()
        times.append(time.perf_counter() - t)
    result = {
        "source": "random-real-size" if args.random_real_size else "random-tiny" if args.random_tiny else specs,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "mode": args.mode,
        "batch": args.batch,
        "images_per_step": args.images_per_step,
        "resolution": models.resolution,
        "inference_steps": args.inference_steps,
        "gradient_checkpointing": args.gradient_checkpointing,
        "seconds_per_step": sum(times) / len(times),
        "seconds_per_step_per_run": sum(times) / len(times) / args.batch,
        "step_times": times,
        "peak_memory_mb": peak_memory_mb(device),
        "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process max RSS",
        "build_s": build_s,
        "load_s": load_s,
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
