"""Text templates for zero-shot slice labelling (docs/METHOD.md section 3).

A text for CLIP is ``template.format(class_template.format(keyword))``. B2T (followed by DEXTER) uses
the 80 CLIP ImageNet templates with per-dataset class templates. The synthetic world's CLIP only knows
the words of its captions (``a picture of a <color> <shape> on <background>``) plus '.', 'with', 'and',
so its templates stay inside that vocabulary.
"""

from __future__ import annotations

# The 80 prompt templates of CLIP's ImageNet zero-shot notebook (Radford et al., 2021).
IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)

# Inside the synthetic world's caption vocabulary.
WORLD_TEMPLATES: tuple[str, ...] = ("a picture of a {}.", "a picture of a {}")

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {"imagenet": IMAGENET_TEMPLATES, "world": WORLD_TEMPLATES}


def default_templates(dataset: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(templates, class templates) of a dataset's registry entry (``dro.data.registry``): world templates
    for the synthetic world, else the CLIP ImageNet ones; B2T's class templates."""
    from dro.data.registry import dataset_kind

    kind = dataset_kind(dataset)
    return TEMPLATE_SETS[kind.templates], kind.class_templates


def compose(keyword: str, templates: tuple[str, ...] | list[str],
            class_templates: tuple[str, ...] | list[str]) -> list[str]:
    """Every ``template(class_template(keyword))``."""
    for t in (*templates, *class_templates):
        if t.count("{}") != 1:
            raise ValueError(f"template {t!r} must contain exactly one '{{}}'")
    return [t.format(ct.format(keyword)) for ct in class_templates for t in templates]
