"""The ``dexter`` command: ``dexter explain`` (the original code's use) and ``dexter score``.

Start-up is lazy: torch, diffusers and transformers are imported only after the arguments are parsed, and
every cheap check (classifier name, checkpoint file, class index, model ids) runs BEFORE Stable Diffusion
and BERT are read, so a typo costs seconds, not minutes.

Examples::

    dexter explain --classifier resnet50 --class-index 291 --mask-type multi --steps 5000 --out runs/
    dexter explain --classifier robust50 --checkpoint checkpoints/robust_resnet50.pth --class-index 291
    dexter explain --classifier-dir outputs/erm --sd data/world/sd --lora none --bert data/world/bert
    dexter score --classifier resnet50 --class-index 291 --prompt "a picture of a lion." --n 100
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_SD = "CompVis/stable-diffusion-v1-4"
DEFAULT_LORA = "latent-consistency/lcm-lora-sdv1-5"
DEFAULT_BERT = "google-bert/bert-base-uncased"


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("classifier (one of --classifier or --classifier-dir)")
    g.add_argument("--classifier", help="torchvision model name (resnet50, vit_b_16, ...) or 'robust50'")
    g.add_argument("--checkpoint", help="weights for --classifier (state dict; robust ResNet-50 format accepted)")
    g.add_argument("--classifier-dir", help="a classifier trained by this pipeline (dro.models format)")
    g.add_argument("--class-names", help="text file, one class name per line (overrides the weights' names)")
    m = p.add_argument_group("generator models (hub id or local directory)")
    m.add_argument("--sd", default=DEFAULT_SD, help=f"Stable Diffusion v1.x (default {DEFAULT_SD})")
    m.add_argument("--lora", default=DEFAULT_LORA, help=f"LCM-LoRA adapter, or 'none' (default {DEFAULT_LORA})")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 ...")
    p.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--inference-steps", type=int, default=4)
    p.add_argument("--guidance-scale", type=float, default=1.0)
    p.add_argument("--resolution", type=int, default=None, help="image side (default: the UNet's native size)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dexter", description="Data-free explanations of image classifiers.")
    sub = parser.add_subparsers(dest="command", required=True)

    e = sub.add_parser("explain", help="optimise prompts that make the generator produce a class")
    _add_model_args(e)
    e.add_argument("--bert", default=DEFAULT_BERT, help=f"masked language model (default {DEFAULT_BERT})")
    e.add_argument("--class-index", type=int, nargs="+", required=True, help="one or more classes (batched)")
    e.add_argument("--mask-type", choices=("single", "multi"), default="single")
    e.add_argument("--steps", type=int, default=1000, help="step budget per run")
    e.add_argument("--runs", type=int, default=1, help="sequential runs per class, each excluding earlier words")
    e.add_argument("--lr", type=float, default=0.1)
    e.add_argument("--early-stop", type=int, default=3, help="consecutive hits that end a run (0 = never)")
    e.add_argument("--min-steps", type=int, default=0)
    e.add_argument("--images-per-step", type=int, default=1)
    e.add_argument("--feature-neurons", help="comma-separated penultimate units (default: top-5 head weights)")
    e.add_argument("--num-feature-neurons", type=int, default=5)
    e.add_argument("--no-frames", action="store_true", help="do not save images classified as the class")
    e.add_argument("--gradient-checkpointing", action="store_true", help="less GPU memory, ~1/3 more time")
    e.add_argument("--out", default="dexter_out", help="output folder")
    e.add_argument("--cache-dir", default=None, help="where the BERT->CLIP map is cached (default <out>/.cache)")
    r = e.add_argument_group("reasoning (after the runs: captions, bias report, attributes; dexter.reasoning)")
    r.add_argument("--reasoning", choices=("none", "offline", "openai"), default="none")
    r.add_argument("--reasoning-clip", default="openai/clip-vit-large-patch14", help="offline: CLIP id or folder")
    r.add_argument("--base-url", default=None, help="openai: any OpenAI-compatible endpoint (Ollama, vLLM, ...)")
    r.add_argument("--vlm", default="gpt-4o-mini")
    r.add_argument("--llm", default="gpt-4o-mini")
    r.add_argument("--api-key-env", default="OPENAI_API_KEY", help="openai: NAME of the variable holding the key")
    e.add_argument("--no-progress", action="store_true")

    s = sub.add_parser("score", help="activation score of a prompt (percent of N images classified as the class)")
    _add_model_args(s)
    s.add_argument("--class-index", type=int, required=True)
    s.add_argument("--prompt", required=True)
    s.add_argument("--n", type=int, default=100)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--out", default=None, help="write the result as JSON here")
    return parser


def _check_classifier_args(args: argparse.Namespace) -> None:
    if bool(args.classifier) == bool(args.classifier_dir):
        raise CliError("give exactly one of --classifier NAME or --classifier-dir DIR")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise CliError(f"--checkpoint {args.checkpoint}: file not found")
    if args.classifier_dir and not Path(args.classifier_dir).is_dir():
        raise CliError(f"--classifier-dir {args.classifier_dir}: directory not found")
    if args.class_names and not Path(args.class_names).is_file():
        raise CliError(f"--class-names {args.class_names}: file not found")
    if args.classifier:
        from dexter.classifiers import ClassifierError, check_torchvision_name

        if args.classifier == "robust50" and not args.checkpoint:
            raise CliError("--classifier robust50 needs --checkpoint (the robust ResNet-50 .pth)")
        try:
            check_torchvision_name("resnet50" if args.classifier == "robust50" else args.classifier)
        except ClassifierError as err:
            raise CliError(str(err)) from None


def _load_classifier(args: argparse.Namespace):
    from dexter.classifiers import ClassifierError, load_torchvision, wrap_pipeline_classifier

    names = None
    if args.class_names:
        names = [line.strip() for line in Path(args.class_names).read_text().splitlines() if line.strip()]
    try:
        if args.classifier_dir:
            from dro.models import ModelError, load_classifier  # the pipeline's own classifiers

            try:
                clf = wrap_pipeline_classifier(load_classifier(args.classifier_dir))
            except ModelError as err:
                raise CliError(str(err)) from None
            if names:
                clf.class_names = names
            return clf
        name = "resnet50" if args.classifier == "robust50" else args.classifier
        return load_torchvision(name, checkpoint=args.checkpoint, class_names=names)
    except ClassifierError as err:
        raise CliError(str(err)) from None


def _check_classes(clf, indices: list[int]) -> None:
    for c in indices:
        if not 0 <= c < clf.num_classes:
            raise CliError(f"--class-index {c} out of range: the classifier has {clf.num_classes} classes")


def _lora(args: argparse.Namespace) -> str | None:
    return None if str(args.lora).lower() in ("none", "", "null") else args.lora


def _check_models(args: argparse.Namespace, bert: str | None) -> None:
    from dexter.loading import ModelLoadError, check_spec

    try:
        check_spec(args.sd, "stable_diffusion")
        if _lora(args):
            check_spec(_lora(args), "lcm_lora")
        if bert:
            check_spec(bert, "bert")
    except ModelLoadError as err:
        raise CliError(str(err)) from None


def cmd_explain(args: argparse.Namespace) -> int:
    _check_classifier_args(args)
    if args.steps < 1 or args.runs < 1 or args.images_per_step < 1:
        raise CliError("--steps, --runs and --images-per-step must be at least 1")
    feature_ids = None
    if args.feature_neurons:
        try:
            feature_ids = [int(x) for x in args.feature_neurons.split(",") if x.strip()]
        except ValueError:
            raise CliError(f"--feature-neurons {args.feature_neurons!r}: expected comma-separated integers") from None
    _check_models(args, args.bert)
    clf = _load_classifier(args)
    _check_classes(clf, args.class_index)
    if feature_ids is not None:
        bad = [i for i in feature_ids if not 0 <= i < clf.head.in_features]
        if bad:
            raise CliError(f"--feature-neurons {bad} out of range [0, {clf.head.in_features})")

    from dexter.loading import ModelLoadError
    from dexter.optimize import DexterConfig
    from dexter.pipeline import explain, load_dexter_models

    config = DexterConfig(
        mode=args.mask_type, runs_per_class=args.runs, steps=args.steps, lr=args.lr, early_stop=args.early_stop,
        min_steps=args.min_steps, num_feature_neurons=len(feature_ids) if feature_ids else args.num_feature_neurons,
        images_per_step=args.images_per_step, inference_steps=args.inference_steps,
        guidance_scale=args.guidance_scale, resolution=args.resolution, seed=args.seed,
        save_frames=not args.no_frames,
    )
    out = Path(args.out)
    try:
        models = load_dexter_models(clf, config, sd=args.sd, bert=args.bert, lora=_lora(args), device=args.device,
                                    dtype=args.dtype, cache_dir=args.cache_dir or out / ".cache",
                                    gradient_checkpointing=args.gradient_checkpointing)
    except ModelLoadError as err:
        raise CliError(str(err)) from None
    run_info = {"classifier": args.classifier or args.classifier_dir, "checkpoint": args.checkpoint,
                "stable_diffusion": args.sd, "lcm_lora": _lora(args), "bert": args.bert}
    fids = {c: feature_ids for c in args.class_index} if feature_ids else None
    done = explain(models, out, args.class_index, feature_neurons=fids, run_info=run_info,
                   progress=not args.no_progress)
    for c, path in sorted(done.items()):
        print(f"class {c}: {', '.join(json.loads(path.read_text())['keywords']) or '(no keyword)'}  ({path})")

    # ---- REASONING HOOK -----------------------------------------------------------------------------------
    # --reasoning offline|openai hands each class folder to dexter.reasoning (captions + report + attributes),
    # written to <class folder>/reasoning/. The API key is read from $<--api-key-env> by the backend only.
    if args.reasoning != "none":
        from dexter.reasoning import make_backend, reason_about_class
        from dexter.reasoning.errors import ReasoningError

        try:
            _reason(args, models, out, done, make_backend, reason_about_class)
        except ReasoningError as err:
            raise CliError(f"reasoning: {err}") from None
    # --------------------------------------------------------------------------------------------------------
    return 0


def _reason(args: argparse.Namespace, models, out: Path, done: dict, make_backend, reason_about_class) -> None:
    """Build the reasoning backend the flags ask for and reason about every finished class."""
    if args.reasoning == "offline":
        backend = make_backend("offline", clip=args.reasoning_clip, device=str(models.device), bank="general")
    else:
        backend = make_backend("openai", base_url=args.base_url, vlm=args.vlm, llm=args.llm,
                               api_key_env=args.api_key_env, cache_dir=str(out / ".cache" / "reasoning"))
    for _, path in sorted(done.items()):
        reason_about_class(path.parent, path.parent / "reasoning", backend)


def cmd_score(args: argparse.Namespace) -> int:
    _check_classifier_args(args)
    if args.n < 1 or args.batch_size < 1:
        raise CliError("--n and --batch-size must be at least 1")
    _check_models(args, None)
    clf = _load_classifier(args)
    _check_classes(clf, [args.class_index])

    from dexter.activation_score import activation_score
    from dexter.classifiers import freeze_classifier
    from dexter.loading import ModelLoadError, load_sd, resolve_dtype
    from dexter.pipeline import resolve_device

    device = resolve_device(args.device)
    try:
        sd = load_sd(args.sd, _lora(args), device=device, dtype=resolve_dtype(args.dtype, device))
    except ModelLoadError as err:
        raise CliError(str(err)) from None
    freeze_classifier(clf, device)
    result = activation_score(sd, clf, args.prompt, args.class_index, n=args.n, seed=args.seed,
                              batch_size=args.batch_size, inference_steps=args.inference_steps,
                              guidance_scale=args.guidance_scale, resolution=args.resolution).as_dict()
    print(json.dumps(result, indent=2))
    if args.out:
        from dro.io import atomic_write_json

        atomic_write_json(args.out, result)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"explain": cmd_explain, "score": cmd_score}[args.command](args)
    except CliError as err:
        print(f"dexter: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
