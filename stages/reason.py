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
import logging
import shutil
from pathlib import Path

from common.artifacts import KEYWORDS_FILE, class_dirs_with
from common.device import resolve_device
from stages.common import OUTPUTS_DIR, StageInputError, stage_main

log = logging.getLogger(__name__)

DEXTER_DIR = OUTPUTS_DIR / "dexter"
REASONING_DIR = OUTPUTS_DIR / "reasoning"
ERM_DIR = OUTPUTS_DIR / "erm"
def verify_settings(params):
    """The auditor's settings from the ``reasoning.verify`` section, by field name."""
    from dataclasses import fields

    from dexter.reasoning.audit import VerifySettings

    v = params.reasoning.verify
    return VerifySettings(**{f.name: getattr(v, f.name) for f in fields(VerifySettings)})


def build_prober(params, classifier_dir: Path):
    """The audited classifier answering images of DEXTER's generator (same steps, guidance, resolution, pixel
    noise, dtype)."""
    from common.classifier import load_classifier
    from dexter.classifiers import freeze_classifier, wrap_pipeline_classifier
    from dexter.loading import load_sd, resolve_dtype
    from dexter.verify import Prober, diffusion_generator

    section, models, v = params.dexter_settings, params.model_set, params.reasoning.verify
    device = resolve_device(params.device)
    clf = wrap_pipeline_classifier(load_classifier(classifier_dir))
    freeze_classifier(clf, device)
    sd = load_sd(models.stable_diffusion, models.lcm_lora, device=device, dtype=resolve_dtype(section.dtype, device))
    generate = diffusion_generator(sd, seed=v.seed, inference_steps=section.inference_steps,
                                   guidance_scale=section.guidance_scale, resolution=section.resolution,
                                   pixel_noise=section.pixel_noise)

    def classify(images):
        return clf(images.to(clf.head.weight.dtype))

    return Prober(generate, classify, clf.num_classes, batch_size=v.batch_size, judge=build_judge(params))


def judge_clip(params) -> str | None:
    v = params.reasoning.verify
    return (v.judge_clip or params.model_set.clip) if v.judge else None


def build_judge(params):
    """CLIP zero-shot judge of generated images (None when ``reasoning.verify.judge`` is off)."""
    from dexter.reasoning.offline import ClipEmbedder
    from dexter.verify.judge import ZeroShotJudge

    clip = judge_clip(params)
    if clip is None:
        return None
    embedder = ClipEmbedder(clip, device=str(resolve_device(params.device)), batch_size=params.reasoning.verify.batch_size)
    # the world's CLIP was trained on "a picture of a {word}."; real CLIP models read photos
    template = "a picture of a {}." if params.dataset == "synthetic" else "a photo of a {}."
    return ZeroShotJudge(embedder.embed_pixels, embedder.embed_texts, template)


def generator_fingerprint(params, classifier_dir: Path) -> dict:
    """What the verification's images and answers depend on beyond the reasoning params."""
    section, models = params.dexter_settings, params.model_set
    from common.fingerprint import tree_signature

    return {"stable_diffusion": models.stable_diffusion, "lcm_lora": models.lcm_lora,
            "inference_steps": section.inference_steps, "guidance_scale": section.guidance_scale,
            "resolution": section.resolution, "pixel_noise": section.pixel_noise, "dtype": section.dtype,
            "device": params.device,
            "classifier": tree_signature(classifier_dir, contents=True), "judge_clip": judge_clip(params)}


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
            from dexter.reasoning.world import synthetic_phrase_bank

            settings["phrases"] = synthetic_phrase_bank(params.synthetic.world_config())
        else:
            settings["bank"] = "general"
    else:
        settings["bank"] = r.phrase_bank
    return "offline", settings


def class_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise StageInputError(f"{root}: not found (run the DEXTER stage first)")
    # The explain stage writes one folder per class (older layouts nested them in a per-stage folder).
    dirs = class_dirs_with(root, KEYWORDS_FILE)
    if not dirs:
        raise StageInputError(f"{root}: no class folder with a keywords.json (run the DEXTER stage first)")
    return dirs


def run(params, dexter_dir: Path = DEXTER_DIR, out_dir: Path = REASONING_DIR, classifier_dir: Path = ERM_DIR,
        prober=None) -> dict:
    """Reason about every class folder; returns the summary it writes.

    ``prober`` (a :class:`dexter.verify.Prober`) replaces the classifier + generator built from params
    (tests pass one that renders images without a diffusion model).
    """
    from common.artifacts import ATTRIBUTES_FILE, VERIFICATION_FILE, read_attributes, read_verification
    from common.classifier import read_class_names
    from common.io import atomic_write_json
    from dexter.reasoning import make_backend, reason_about_class
    from dexter.reasoning.audit import Auditor
    from dexter.reasoning.stamps import STAMP, is_done, stamp_for
    from dexter.reasoning.world import world_vocabulary

    dirs = class_dirs(dexter_dir)
    class_names = read_class_names(classifier_dir)
    vocabulary = world_vocabulary(params.synthetic.world_config(), class_names) if params.is_world else None
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
            log.info(f"{d.name}: done before, skipped")
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
                log.info(f"{class_dir.name}: UNVERIFIED proposal {a.verdict} {a.attributes} "
                         f"(reasoning.verify.enabled is false); {len(result.captions)} captions")
                continue
            v = read_verification(dest / VERIFICATION_FILE)
            effects = ", ".join(f"{e['attribute']} {e['kind']} {e['effect']:+.2f} (p_holm {e['p_adjusted']:.2g})"
                                for e in v["effects"]) or "nothing tested"
            log.info(f"{class_dir.name}: {v['verdict']} {v['verified']}; {effects}; not tested {v['skipped']}; "
                     f"{v['cost_total']['images_generated']} images, {v['cost_total']['seconds']:.1f} s; "
                     f"{len(result.captions)} captions")
    finally:
        backend.close()

    names = {d.name for d in dirs}
    for stale in out_dir.iterdir():  # classes DEXTER no longer produced (only folders this stage stamped)
        if stale.is_dir() and stale.name not in names and (stale / STAMP).is_file():
            shutil.rmtree(stale)
    summary = {"backend": kind, "classes": {}}
    verification = {"settings": params.reasoning.verify.model_dump(), "classes": {}}
    for d in dirs:
        attrs = read_attributes(out_dir / d.name / ATTRIBUTES_FILE).raw  # checked, then reported as written
        summary["classes"][d.name] = {"class_name": attrs["class_name"], "attributes": attrs["attributes"],
                                      "verdict": attrs["verdict"], "alternatives": attrs["alternatives"],
                                      "written_by": attrs["written_by"]}
        if not params.reasoning.verify.enabled:
            continue  # nothing was measured (a file left by an earlier, verified run is stale)
        v = read_verification(out_dir / d.name / VERIFICATION_FILE)
        verification["classes"][d.name] = {k: v[k] for k in ("class_index", "class_name", "verdict", "conclusive",
                                                             "unreadable_contents", "verified",
                                                             "decisions", "alternatives", "tested", "skipped", "effects", "cost",
                                                             "cost_total", "activation")}
    verification["biased_classes"] = sorted(v["class_name"] for v in verification["classes"].values()
                                            if v["verdict"] == "biased")
    verification["inconclusive_classes"] = sorted(v["class_name"] for v in verification["classes"].values()
                                                  if not v["conclusive"])
    atomic_write_json(out_dir / "summary.json", summary)
    atomic_write_json(out_dir / "verification.json", verification)
    return summary


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--dexter-dir", type=Path, default=DEXTER_DIR)
    parser.add_argument("--out", type=Path, default=REASONING_DIR)
    parser.add_argument("--classifier", type=Path, default=ERM_DIR, help="a common.classifier classifier folder")
    args = parser.parse_args()

    from stages.params import load_params

    run(load_params(args.params), args.dexter_dir, args.out, args.classifier)


if __name__ == "__main__":
    main()
