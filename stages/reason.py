"""Stage ``reason``: verified verdicts, captions, a bias report and pseudo-slice attributes per DEXTER class.

Reads ``outputs/dexter/<class folder>/`` (keywords.json), the audited classifier (``outputs/erm``) and the
dataset's generator (the same Stable Diffusion setup as DEXTER). Per class it generates fresh-noise images
of each run's final prompt (activation scores, the frames that get captioned), tests every keyword that
names an attribute with counterfactual prompts (``reasoning.verify``), and writes
``outputs/reasoning/<same folder>/{captions.json, report.md, attributes.json, verification.json, effects.png,
counterfactuals.png, as_dexter_prompts.txt, as_captions.txt, frames/}``, plus ``summary.json`` (every class's
attributes, for the labelling stage) and ``verification.json`` (every class's verdict, effects and cost).

Resumable: a class whose inputs and reasoning params have not changed since it was finished
(``.done.json`` stamp) is skipped, and with the openai backend every answer already paid for comes
from the on-disk cache. The API key is read from the environment variable named by
``reasoning.api_key_env`` and is written nowhere.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import shutil
from pathlib import Path

from stages.common import OUTPUTS_DIR, StageInputError, resolve_device, stage_main

DEXTER_DIR = OUTPUTS_DIR / "dexter"
REASONING_DIR = OUTPUTS_DIR / "reasoning"
ERM_DIR = OUTPUTS_DIR / "erm"
STAMP = ".done.json"
# One image description of the synthetic world with its attribute slots (dro.data.synthetic.caption's words;
# a test checks that the two agree on every sample).
WORLD_TEMPLATE = "a picture of a {color} {class} on {background}"


def synthetic_world(section):
    """The synthetic world's config from the validated ``synthetic`` section."""
    return section.world_config()


def synthetic_phrase_bank(section) -> list[str]:
    """Every caption the synthetic world can produce, built by the world's own caption function."""
    from itertools import product

    from dro.data.synthetic import WorldSample, caption

    cfg = synthetic_world(section)
    return [caption(cfg, WorldSample(s, c, b, 0))
            for s, c, b in product(range(len(cfg.shapes)), range(len(cfg.colors)), range(len(cfg.backgrounds)))]


def world_vocabulary(section, class_names: list[str]):
    """The synthetic world's attribute kinds and values, as plain lists for dexter.reasoning."""
    from dexter.reasoning.audit import Vocabulary

    cfg = synthetic_world(section)
    if list(cfg.shapes) != list(class_names):
        raise StageInputError(f"the classifier's classes {class_names} are not the synthetic world's {list(cfg.shapes)}"
                              " (retrain the ERM model after changing synthetic.*)")
    return Vocabulary(tuple(cfg.shapes), {"color": tuple(cfg.colors), "background": tuple(cfg.backgrounds)},
                      WORLD_TEMPLATE)


def classifier_class_names(classifier_dir: Path) -> list[str]:
    """Class names from a dro.models classifier folder (cheap: its config only)."""
    config = classifier_dir / "config.json"
    if not config.is_file():
        raise StageInputError(f"no classifier at {classifier_dir} (run the train_erm stage first)")
    try:
        names = json.loads(config.read_text())["class_names"]
    except (ValueError, KeyError, TypeError):
        raise StageInputError(f"{config}: no class_names list") from None
    return [str(n) for n in names]


def verify_settings(params):
    from dexter.reasoning.audit import VerifySettings

    v = params.reasoning.verify
    return VerifySettings(n_images=v.n_images, alpha=v.alpha, min_effect=v.min_effect,
                          min_effect_alone=v.min_effect_alone,
                          activation_images=v.activation_images, caption_frames=v.caption_frames,
                          max_flip_classes=v.max_flip_classes, max_alternatives=v.max_alternatives)


def build_prober(params, classifier_dir: Path):
    """The audited classifier answering images of DEXTER's generator (same steps, guidance, resolution, dtype)."""
    from dexter.classifiers import freeze_classifier, wrap_pipeline_classifier
    from dexter.loading import load_sd, resolve_dtype
    from dexter.verify import Prober, diffusion_generator
    from dro.models import ModelError, load_classifier

    section, models, v = params.dexter_settings, params.model_set, params.reasoning.verify
    device = resolve_device(params.device)
    try:
        clf = wrap_pipeline_classifier(load_classifier(classifier_dir))
    except ModelError as e:
        raise StageInputError(str(e)) from None
    freeze_classifier(clf, device)
    sd = load_sd(models.stable_diffusion, models.lcm_lora, device=device, dtype=resolve_dtype(section.dtype, device))
    generate = diffusion_generator(sd, seed=v.seed, inference_steps=section.inference_steps,
                                   guidance_scale=section.guidance_scale, resolution=section.resolution)

    def classify(images):
        return clf(images.to(clf.head.weight.dtype))

    return Prober(generate, classify, clf.num_classes, batch_size=v.batch_size)


def generator_fingerprint(params, classifier_dir: Path) -> dict:
    """What the verification's images and answers depend on beyond the reasoning params."""
    section, models = params.dexter_settings, params.model_set
    h = hashlib.sha256()
    for path in sorted(p for p in classifier_dir.rglob("*") if p.is_file()):
        h.update(path.name.encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return {"stable_diffusion": models.stable_diffusion, "lcm_lora": models.lcm_lora,
            "inference_steps": section.inference_steps, "guidance_scale": section.guidance_scale,
            "resolution": section.resolution, "dtype": section.dtype, "device": params.device,
            "classifier": h.hexdigest()}


def backend_settings(params) -> tuple[str, dict]:
    """(kind, keyword arguments of make_backend) from the validated params."""
    r = params.reasoning
    if r.backend == "openai":
        return "openai", dict(
            base_url=r.base_url, vlm=r.vlm, llm=r.llm, api_key_env=r.api_key_env, temperature=r.temperature,
            top_p=r.top_p, timeout_s=r.timeout_s, max_retries=r.max_retries, concurrency=r.concurrency,
            cache_dir=r.cache_dir, prompts=r.prompts.model_dump(), json_mode=r.json_mode,
            json_retries=r.json_retries, max_attributes=r.max_attributes,
        )
    settings = dict(clip=r.clip or params.model_set.clip, device=str(resolve_device(params.device)),
                    batch_size=r.batch_size, min_lift=r.min_lift, alpha=r.alpha, max_attributes=r.max_attributes)
    if r.phrase_bank == "auto":
        if params.is_world:
            settings["phrases"] = synthetic_phrase_bank(params.synthetic)
        else:
            settings["bank"] = "general"
    else:
        settings["bank"] = r.phrase_bank
    return "offline", settings


def class_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise StageInputError(f"{root}: not found (run the DEXTER stage first)")
    # The explain stages write one folder per class, possibly inside a per-stage folder (explain@<c>).
    dirs = sorted(p.parent for p in root.glob("**/keywords.json"))
    if not dirs:
        raise StageInputError(f"{root}: no class folder with a keywords.json (run the DEXTER stage first)")
    return dirs


def stamp_for(class_dir: Path, reasoning_params: dict) -> str:
    from dexter.reasoning.inputs import load_class_inputs

    h = hashlib.sha256(load_class_inputs(class_dir).fingerprint().encode())
    h.update(json.dumps(reasoning_params, sort_keys=True).encode())
    h.update(_code_fingerprint().encode())  # new reasoning code must not be answered from an old stamp
    return h.hexdigest()


@functools.cache
def _code_fingerprint() -> str:
    """Hash of the reasoning and verification code (with prompts and phrase banks) and of the generator's."""
    import dexter.reasoning

    root = Path(dexter.reasoning.__file__).parent.parent
    files = [*(root / "reasoning").rglob("*"), *(root / "verify").rglob("*"),
             *(root / f for f in ("sampler.py", "text.py", "activation_score.py", "loading.py"))]
    h = hashlib.sha256()
    for path in sorted(p for p in files if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def is_done(dest: Path, stamp: str) -> bool:
    from dexter.reasoning import ATTRIBUTES_FILE, CAPTIONS_FILE, REPORT_FILE
    from dexter.reasoning.core import VERIFICATION_FILE

    try:
        done = json.loads((dest / STAMP).read_text())["stamp"] == stamp
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return done and all((dest / f).is_file() for f in (CAPTIONS_FILE, REPORT_FILE, VERIFICATION_FILE, ATTRIBUTES_FILE))


def run(params, dexter_dir: Path = DEXTER_DIR, out_dir: Path = REASONING_DIR, classifier_dir: Path = ERM_DIR,
        prober=None) -> dict:
    """Reason about every class folder; returns the summary it writes.

    ``prober`` (a :class:`dexter.verify.Prober`) replaces the classifier + generator built from params
    (tests pass one that renders images without a diffusion model).
    """
    from dexter.reasoning import ATTRIBUTES_FILE, ReasoningError, make_backend, reason_about_class
    from dexter.reasoning.audit import Auditor
    from dexter.reasoning.core import VERIFICATION_FILE
    from dro.io import atomic_write_json

    dirs = class_dirs(dexter_dir)
    class_names = classifier_class_names(classifier_dir)
    vocabulary = world_vocabulary(params.synthetic, class_names) if params.is_world else None
    settings = verify_settings(params)
    reasoning_params = params.reasoning.model_dump()
    reasoning_params["_generator"] = generator_fingerprint(params, classifier_dir)
    reasoning_params["_vocabulary"] = None if vocabulary is None else [vocabulary.template,
                                                                       dict(vocabulary.attribute_values)]
    kind, settings_b = backend_settings(params)
    if kind == "offline":  # which CLIP and bank decide the captions, so they belong in the stamp
        reasoning_params["_offline"] = {k: v for k, v in settings_b.items() if k in ("clip", "phrases", "bank")}
    todo = [d for d in dirs if not is_done(out_dir / d.name, stamp_for(d, reasoning_params))]
    for d in dirs:
        if d not in todo:
            print(f"{d.name}: done before, skipped")
    try:
        backend = make_backend(kind, **settings_b)  # cheap, and says at once when a key or setting is wrong
        try:
            verify = params.reasoning.verify.enabled
            if todo and verify and prober is None:
                prober = build_prober(params, classifier_dir)  # only when a class needs it: loading costs
            auditor = Auditor(prober, class_names, settings, vocabulary) if todo and verify else None
            for class_dir in todo:
                dest = out_dir / class_dir.name
                result = reason_about_class(class_dir, dest, backend, auditor)
                atomic_write_json(dest / STAMP, {"stamp": stamp_for(class_dir, reasoning_params)})
                if auditor is None:
                    a = result.attributes
                    print(f"{class_dir.name}: UNVERIFIED proposal {a.verdict} {a.attributes} "
                          f"(reasoning.verify.enabled is false); {len(result.captions)} captions")
                    continue
                v = json.loads((dest / VERIFICATION_FILE).read_text())
                effects = ", ".join(f"{e['attribute']} {e['kind']} {e['effect']:+.2f} (p_holm {e['p_adjusted']:.2g})"
                                    for e in v["effects"]) or "nothing tested"
                print(f"{class_dir.name}: {v['verdict']} {v['verified']}; {effects}; not tested {v['skipped']}; "
                      f"{v['cost_total']['images_generated']} images, {v['cost_total']['seconds']:.1f} s; "
                      f"{len(result.captions)} captions")
        finally:
            backend.close()
    except ReasoningError as e:  # also inconsistent inputs found by the auditor (class names)
        raise StageInputError(str(e)) from None

    names = {d.name for d in dirs}
    for stale in out_dir.iterdir():  # classes DEXTER no longer produced (only folders this stage stamped)
        if stale.is_dir() and stale.name not in names and (stale / STAMP).is_file():
            shutil.rmtree(stale)
    summary = {"backend": kind, "classes": {}}
    verification = {"settings": params.reasoning.verify.model_dump(), "classes": {}}
    for d in dirs:
        attrs = json.loads((out_dir / d.name / ATTRIBUTES_FILE).read_text())
        summary["classes"][d.name] = {"class_name": attrs["class_name"], "attributes": attrs["attributes"],
                                      "verdict": attrs["verdict"], "alternatives": attrs["alternatives"],
                                      "written_by": attrs["written_by"]}
        if not params.reasoning.verify.enabled:
            continue  # nothing was measured (a file left by an earlier, verified run is stale)
        v = json.loads((out_dir / d.name / VERIFICATION_FILE).read_text())
        verification["classes"][d.name] = {k: v[k] for k in ("class_index", "class_name", "verdict", "verified",
                                                             "decisions", "alternatives", "tested", "skipped", "effects", "cost",
                                                             "cost_total", "activation")}
    verification["biased_classes"] = sorted(v["class_name"] for v in verification["classes"].values()
                                            if v["verdict"] == "biased")
    atomic_write_json(out_dir / "summary.json", summary)
    atomic_write_json(out_dir / "verification.json", verification)
    return summary


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--dexter-dir", type=Path, default=DEXTER_DIR)
    parser.add_argument("--out", type=Path, default=REASONING_DIR)
    parser.add_argument("--classifier", type=Path, default=ERM_DIR, help="a dro.models classifier folder")
    args = parser.parse_args()

    from stages.params import load_params

    run(load_params(args.params), args.dexter_dir, args.out, args.classifier)


if __name__ == "__main__":
    main()
