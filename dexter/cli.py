"""The ``dexter`` command: ``dexter explain`` (the original code's use) and ``dexter score``.

Start-up is lazy: torch, diffusers and transformers are imported only after the arguments are parsed, and
every check runs BEFORE Stable Diffusion and BERT are read, so a typo costs seconds, not minutes: values
(resolution, steps, lr, dtype, an empty prompt, ...) are refused while parsing, then the device, the
classifier name, checkpoint file, class index and model ids. Every such error is one line, exit status 2.

The original code's flag names are accepted as aliases (``--class_to_activate``, ``--optim_steps``,
``--mask_type multi_mask``, ``--vlm_id``, ``--llm_id``, ``--base_url``, ``--api_key``, ``--diff_steps``,
``--outdir``, ``--topk``, ``--bs``); given any of its reasoning flags, the reasoning runs (as it always did
there) unless ``--reasoning`` says otherwise.

Examples::

    dexter explain --classifier resnet50 --class-index 291 --mask-type multi --steps 5000 --out runs/
    dexter explain --classifier robust50 --checkpoint checkpoints/robust_resnet50.pth --class-index 291
    dexter explain --classifier resnet50 --class-index 291 --preset bias-report --device cuda
    dexter explain --classifier-dir outputs/erm --class-index 0 --sd data/world/sd --lora none --bert data/world/bert
    dexter score --classifier resnet50 --class-index 291 --prompt "a picture of a lion." --n 100
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.errors import UserInputError
from dexter.presets import PRESETS

DEFAULT_SD = "CompVis/stable-diffusion-v1-4"
DEFAULT_LORA = "latent-consistency/lcm-lora-sdv1-5"
DEFAULT_BERT = "google-bert/bert-base-uncased"
ROBUST50_CHECKPOINT = "checkpoints/robust_resnet50.pth"  # where the original code reads it


class CliError(UserInputError):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are ONE line (no usage block), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """--help shows the default of every option that takes a value (switches and required ones have none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.required or action.nargs == 0 or action.default is argparse.SUPPRESS
                or "%(default)" in text):
            return text
        return f"{text} (default: %(default)s)".strip()


# ---- argument types: bad values are refused while parsing, before anything is imported or loaded ----------

def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _float(low: float, strict: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be a number {'>' if strict else '>='} {low:g}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def _resolution(text: str) -> int:
    """Stable Diffusion's VAE downsamples by 8: the image side must be a positive multiple of 8."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1 or value % 8:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 8 (the VAE downsamples by 8), got {value}")
    return value


def _nonblank(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _mask_type(text: str) -> str:
    """'single'/'multi', or the original code's 'single_mask'/'multi_mask'."""
    value = {"single_mask": "single", "multi_mask": "multi"}.get(text, text)
    if value not in ("single", "multi"):
        raise argparse.ArgumentTypeError(f"expected single or multi (or single_mask / multi_mask), got {text!r}")
    return value


POSITIVE = _int_at_least(1)
NON_NEGATIVE = _int_at_least(0)
DTYPES = ("auto", "fp32", "fp16", "bf16")
# The original code's flags that mean "run the language-model reasoning" (it always did).
ORIGINAL_REASONING_FLAGS = ("--vlm_id", "--llm_id", "--api_key", "--base_url")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("classifier (one of --classifier or --classifier-dir)")
    g.add_argument("--classifier", help="torchvision model name (resnet50, vit_b_16, ...) or 'robust50'")
    g.add_argument("--checkpoint", help="weights for --classifier (state dict; robust ResNet-50 format accepted; "
                   f"robust50 reads {ROBUST50_CHECKPOINT} when not given)")
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="allow torch.load(weights_only=False) for a --checkpoint the safe loader refuses (e.g. "
                   "saved with dill); only for a file you trust: it can run code")
    g.add_argument("--preprocess", choices=("auto", "original", "torchvision"), default="auto",
                   help="classifier input: 'original' = the original code's setting (ImageNet V1 weights, "
                   "Resize(256) of the whole image, 224 for vit_b_16, no crop); 'torchvision' = the weights' own "
                   "recipe (DEFAULT weights, resize + centre crop); auto = original for robust50/resnet50/vit_b_16")
    g.add_argument("--classifier-dir", help="a classifier trained by this pipeline (common.classifier format)")
    g.add_argument("--class-names", help="text file, one class name per line (overrides the weights' names)")
    m = p.add_argument_group("generator models (hub id or local directory)")
    m.add_argument("--sd", default=DEFAULT_SD, help="Stable Diffusion v1.x")
    m.add_argument("--lora", default=DEFAULT_LORA, help="LCM-LoRA adapter, or 'none'")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 ...")
    p.add_argument("--dtype", default="auto", choices=DTYPES, help="auto = bf16 (else fp16) on CUDA, fp32 on CPU")
    p.add_argument("--seed", type=int, default=0, help="seeds prompts, latents and noise")
    p.add_argument("--inference-steps", "--diff_steps", type=POSITIVE, default=4, help="LCM sampling steps")
    p.add_argument("--guidance-scale", type=_float(0.0, strict=False), default=1.0,
                   help="classifier-free guidance; <= 1 = the conditional prediction only (LCM-LoRA's setting)")
    p.add_argument("--resolution", type=_resolution, default=None,
                   help="image side, a multiple of 8; None = the UNet's native size")
    p.add_argument("--pixel-noise", type=_float(0.0, strict=False), default=0.0,
                   help="Gaussian noise (std, images in [0, 1]) added to every generated image: the sensor noise "
                   "of the classifier's training images that the VAE decodes away (the synthetic world: 0.0235)")


def build_parser(explain_defaults: dict | None = None) -> argparse.ArgumentParser:
    """The ``dexter`` parser; ``explain_defaults`` replaces explain's defaults (a --preset's values)."""
    parser = _Parser(prog="dexter", description="Data-free explanations of image classifiers.",
                     formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", required=True)

    e = sub.add_parser("explain", help="optimise prompts that make the generator produce a class",
                       formatter_class=_Formatter,
                       description="Optimise prompts that make the generator produce a class. The original "
                       "code's flag names (--class_to_activate, --optim_steps, --mask_type multi_mask, "
                       "--vlm_id, --llm_id, --base_url, --api_key, --diff_steps, --outdir, --topk, --bs) are "
                       "accepted too.")
    _add_model_args(e)
    e.add_argument("--bert", default=DEFAULT_BERT, help="masked language model")
    e.add_argument("--class-index", "--class_to_activate", type=NON_NEGATIVE, nargs="+", required=True,
                   help="one or more classes (batched)")
    e.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="a setting of the paper; explicit flags override it. bias-report = " + ", ".join(
                       f"{k.replace('_', '-')} {v}" for k, v in PRESETS["bias-report"].items()))
    e.add_argument("--mask-type", "--mask_type", type=_mask_type, default="single",
                   help="single | multi (the original's single_mask | multi_mask)")
    e.add_argument("--steps", "--optim_steps", type=POSITIVE, default=1000, help="step budget per run")
    e.add_argument("--runs", "--topk", type=POSITIVE, default=1,
                   help="sequential runs per class, each excluding earlier words")
    e.add_argument("--lr", type=_float(0.0, strict=True), default=0.1, help="AdamW learning rate of the soft prompt")
    e.add_argument("--early-stop", type=NON_NEGATIVE, default=3, help="consecutive hits that end a run (0 = never)")
    e.add_argument("--collect-hits", type=NON_NEGATIVE, default=0,
                   help="end a run once this many images were classified as the class (0 = never)")
    e.add_argument("--min-steps", type=NON_NEGATIVE, default=0, help="no early stop before this step")
    e.add_argument("--images-per-step", "--bs", type=POSITIVE, default=1,
                   help="images per step per run (different initial latents)")
    e.add_argument("--step-noise", choices=("fresh", "fixed"), default="fresh",
                   help="noise between the LCM steps: fresh at every optimisation step (as the released code) "
                   "or one draw for the whole run")
    e.add_argument("--feature-neurons", help="comma-separated penultimate units; None = the class's top-k head weights")
    e.add_argument("--num-feature-neurons", type=POSITIVE, default=5,
                   help="multi mode: feature neurons per class (top head weights)")
    e.add_argument("--no-frames", action="store_true", help="do not save images classified as the class")
    e.add_argument("--no-safety-checker", action="store_true",
                   help="save frames without running the pipeline's safety checker over them")
    e.add_argument("--gradient-checkpointing", action="store_true", help="less GPU memory, ~1/3 more time")
    e.add_argument("--out", "--outdir", default="dexter_out", help="output folder")
    e.add_argument("--cache-dir", default=None, help="where the BERT->CLIP map is cached; None = <out>/.cache")
    r = e.add_argument_group("reasoning (after the runs: captions, bias report, attributes; dexter.reasoning)")
    r.add_argument("--reasoning", choices=("none", "offline", "openai"), default=None,
                   help="default: none, or openai when the original's --vlm_id/--llm_id/--base_url/--api_key "
                   "are given")
    r.add_argument("--reasoning-clip", default="openai/clip-vit-large-patch14", help="offline: CLIP id or folder")
    r.add_argument("--base-url", "--base_url", default=None,
                   help="openai: any OpenAI-compatible endpoint (Ollama, vLLM, ...)")
    r.add_argument("--vlm", "--vlm_id", default="gpt-4o-mini", help="openai: the model that captions frames")
    r.add_argument("--llm", "--llm_id", default="gpt-4o-mini", help="openai: the model that writes the report")
    r.add_argument("--api-key-env", default="OPENAI_API_KEY", help="openai: NAME of the variable holding the key")
    r.add_argument("--api_key", dest="api_key", default=None,
                   help="the original's flag: the key, put in $<--api-key-env> for this process only and never "
                   "written; prefer exporting the variable (a command line is visible to other users)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_config_args(e)
    if explain_defaults:
        e.set_defaults(**explain_defaults)

    s = sub.add_parser("score", help="activation score of a prompt (percent of N images classified as the class)",
                       formatter_class=_Formatter)
    _add_model_args(s)
    s.add_argument("--class-index", "--class_to_activate", type=NON_NEGATIVE, required=True,
                   help="the class whose share of the images is the score")
    s.add_argument("--prompt", type=_nonblank, required=True, help="the text prompt to score")
    s.add_argument("--n", "--n_images", type=POSITIVE, default=100, help="images to generate")
    s.add_argument("--batch-size", type=POSITIVE, default=8, help="images generated at once")
    s.add_argument("--out", default=None, help="write the result as JSON here")
    return parser


def _check_classifier_args(args: argparse.Namespace) -> None:
    if bool(args.classifier) == bool(args.classifier_dir):
        raise CliError("give exactly one of --classifier NAME or --classifier-dir DIR")
    if args.classifier == "robust50" and not args.checkpoint:
        if not Path(ROBUST50_CHECKPOINT).is_file():
            raise CliError(f"--classifier robust50 needs --checkpoint (the robust ResNet-50 .pth), or the file at "
                           f"{ROBUST50_CHECKPOINT} where the original code reads it")
        args.checkpoint = ROBUST50_CHECKPOINT
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise CliError(f"--checkpoint {args.checkpoint}: file not found")
    if args.classifier_dir and not Path(args.classifier_dir).is_dir():
        raise CliError(f"--classifier-dir {args.classifier_dir}: directory not found")
    if args.class_names and not Path(args.class_names).is_file():
        raise CliError(f"--class-names {args.class_names}: file not found")
    if args.classifier_dir and args.preprocess != "auto":
        raise CliError("--preprocess applies to --classifier; a --classifier-dir classifier has its own")
    if args.classifier:
        from dexter.classifiers import ClassifierError, check_torchvision_name, resolve_preprocess

        name = "resnet50" if args.classifier == "robust50" else args.classifier
        try:
            check_torchvision_name(name)
            resolve_preprocess(args.classifier, args.preprocess)
        except ClassifierError as err:
            raise CliError(str(err)) from None


def _check_device(args: argparse.Namespace):
    """The device, resolved now: a CUDA device on a machine without CUDA is an error before anything loads."""
    from common.device import DeviceError, resolve_device

    try:
        return resolve_device(args.device)
    except DeviceError as err:
        raise CliError(f"--{err}") from None


def _load_classifier(args: argparse.Namespace):
    from common.classifier import load_classifier  # the pipeline's own classifiers
    from dexter.classifiers import ClassifierError, load_robust_resnet50, load_torchvision, wrap_pipeline_classifier

    names = None
    if args.class_names:
        names = [line.strip() for line in Path(args.class_names).read_text().splitlines() if line.strip()]
    try:
        if args.classifier_dir:
            clf = wrap_pipeline_classifier(load_classifier(args.classifier_dir))
            if names:
                clf.class_names = names
            return clf
        if args.classifier == "robust50":
            return load_robust_resnet50(args.checkpoint, class_names=names, preprocess=args.preprocess,
                                        trust_checkpoint=args.trust_checkpoint)
        return load_torchvision(args.classifier, checkpoint=args.checkpoint, class_names=names,
                                preprocess=args.preprocess, trust_checkpoint=args.trust_checkpoint)
    except ClassifierError as err:  # checkpoint errors included (common.checkpoints.CheckpointError)
        raise CliError(str(err)) from None


def _check_classes(clf, indices: list[int]) -> None:
    for c in indices:
        if not 0 <= c < clf.num_classes:
            raise CliError(f"--class-index {c} out of range: the classifier has {clf.num_classes} classes")


def _lora(args: argparse.Namespace) -> str | None:
    return None if str(args.lora).lower() in ("none", "", "null") else args.lora


def _check_models(args: argparse.Namespace, bert: str | None) -> None:
    from dexter.loading import ModelLoadError, check_spec, check_tiny_vae

    try:
        check_spec(args.sd, "stable_diffusion")
        if _lora(args):
            check_spec(_lora(args), "lcm_lora")
        if bert:
            check_spec(bert, "bert")
        if getattr(args, "tiny_vae", None):
            check_tiny_vae(args.tiny_vae, args.sd)
    except ModelLoadError as err:
        raise CliError(str(err)) from None


# DexterConfig fields read from a differently named option (the original code's names, or a switch that
# turns a default-on setting off); every other field is the option ``--<field-with-dashes>`` (_add_config_args).
_CONFIG_OPTIONS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "mode": lambda a: a.mask_type, "runs_per_class": lambda a: a.runs,
    "safety_checker": lambda a: not a.no_safety_checker, "save_frames": lambda a: not a.no_frames,
}


def _add_config_args(p: argparse.ArgumentParser) -> None:
    """An option for each DexterConfig field that has no hand-written one, typed and defaulted by the
    config itself, so the CLI can reach every setting params.yaml can (adam_eps, max_batch, tau, ...)."""
    from dataclasses import fields

    from dexter.config import DexterConfig

    have = {a.dest for a in p._actions} | set(_CONFIG_OPTIONS)
    g = p.add_argument_group("further DEXTER settings (dexter.config.DexterConfig; params.yaml's dexter section)")
    for f in fields(DexterConfig):
        if f.name in have:
            continue
        kind = {"int": int, "float": float, "bool": None}.get(str(f.type).split(" | ")[0], str)
        if kind is None:
            g.add_argument(f"--{f.name.replace('_', '-')}", type=lambda t: t.lower() in ("1", "true", "yes"),
                           default=f.default, help=f"dexter.{f.name}")
        else:
            g.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default, help=f"dexter.{f.name}")


def _explain_config(args: argparse.Namespace, feature_ids: list[int] | None):
    from dataclasses import fields

    from dexter.config import DexterConfig
    from dexter.errors import DexterInputError

    values = {f.name: _CONFIG_OPTIONS[f.name](args) if f.name in _CONFIG_OPTIONS else getattr(args, f.name)
              for f in fields(DexterConfig)}
    if feature_ids:
        values["num_feature_neurons"] = len(feature_ids)
    try:
        return DexterConfig(**values)
    except DexterInputError as err:
        raise CliError(str(err)) from None


def cmd_explain(args: argparse.Namespace) -> int:
    _check_classifier_args(args)
    feature_ids = None
    if args.feature_neurons:
        try:
            feature_ids = [int(x) for x in args.feature_neurons.split(",") if x.strip()]
        except ValueError:
            raise CliError(f"--feature-neurons {args.feature_neurons!r}: expected comma-separated integers") from None
    config = _explain_config(args, feature_ids)
    if args.reasoning == "openai" and args.api_key:
        os.environ[args.api_key_env] = args.api_key  # this process only; the backend reads it from there
    device = _check_device(args)
    _check_models(args, args.bert)
    clf = _load_classifier(args)
    _check_classes(clf, args.class_index)
    if feature_ids is not None:
        bad = [i for i in feature_ids if not 0 <= i < clf.head.in_features]
        if bad:
            raise CliError(f"--feature-neurons {bad} out of range [0, {clf.head.in_features})")

    from dexter.loading import ModelLoadError
    from dexter.pipeline import explain, load_dexter_models

    out = Path(args.out)
    try:
        models = load_dexter_models(clf, config, sd=args.sd, bert=args.bert, lora=_lora(args), device=device,
                                    dtype=args.dtype, cache_dir=args.cache_dir or out / ".cache",
                                    gradient_checkpointing=args.gradient_checkpointing)
    except ModelLoadError as err:
        raise CliError(str(err)) from None
    run_info = {"classifier": args.classifier or args.classifier_dir, "checkpoint": args.checkpoint,
                "stable_diffusion": args.sd, "lcm_lora": _lora(args), "bert": args.bert}
    fids = {c: feature_ids for c in args.class_index} if feature_ids else None
    done = explain(models, out, args.class_index, feature_neurons=fids, run_info=run_info,
                   progress=not args.no_progress)
    from common.artifacts import read_keywords

    for c, path in sorted(done.items()):
        print(f"class {c}: {', '.join(read_keywords(path).keywords) or '(no keyword)'}  ({path})")

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
    device = _check_device(args)
    _check_models(args, None)
    clf = _load_classifier(args)
    _check_classes(clf, [args.class_index])

    from dexter.activation_score import activation_score
    from dexter.classifiers import freeze_classifier
    from dexter.loading import ModelLoadError, load_sd, resolve_dtype

    try:
        sd = load_sd(args.sd, _lora(args), device=device, dtype=resolve_dtype(args.dtype, device))
    except ModelLoadError as err:
        raise CliError(str(err)) from None
    freeze_classifier(clf, device)
    result = activation_score(sd, clf, args.prompt, args.class_index, n=args.n, seed=args.seed,
                              batch_size=args.batch_size, inference_steps=args.inference_steps,
                              guidance_scale=args.guidance_scale, resolution=args.resolution,
                              pixel_noise=args.pixel_noise).as_dict()
    result["classifier_input"] = clf.info
    print(json.dumps(result, indent=2))
    if args.out:
        from common.io import atomic_write_json

        atomic_write_json(args.out, result)
    return 0


def _preset_defaults(argv: list[str]) -> dict:
    """The explain defaults of ``--preset NAME`` (flag names), so that explicit flags still override them."""
    name = None
    for i, arg in enumerate(argv):
        if arg == "--preset" and i + 1 < len(argv):
            name = argv[i + 1]
        elif arg.startswith("--preset="):
            name = arg.split("=", 1)[1]
    if name not in PRESETS:
        return {}  # an unknown name is reported by the parser's choices
    to_flag = {"mode": "mask_type"}
    return {to_flag.get(k, k): v for k, v in PRESETS[name].items()}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse with a --preset's defaults and the original code's implied reasoning applied."""
    preset = _preset_defaults(argv) if argv and argv[0] == "explain" else {}
    args = build_parser(preset).parse_args(argv)
    if args.command == "explain" and args.reasoning is None:
        original = any(a.split("=", 1)[0] in ORIGINAL_REASONING_FLAGS for a in argv)
        args.reasoning = "openai" if original else "none"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return {"explain": cmd_explain, "score": cmd_score}[args.command](args)
    except CliError as err:
        print(f"dexter: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
