"""Prototypes, assignment and labelling quality on crafted embeddings; the real CLIP loading path on a tiny CLIP."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.clip import ClipEncoder, ClipError, cached_image_embeddings
from dro.labelling_quality import aligned_values_by_lift, labelling_quality, true_conflicting
from dro.slices import (
    ClassSlices,
    LabellingError,
    assign_slices,
    assign_with_alternatives,
    class_prototypes,
    pseudo_group_names,
    read_attributes,
)
from dro.templates import IMAGENET_TEMPLATES, compose, default_templates

# Each keyword has a direction; templates add a template-specific offset so averaging matters.
KW = {"water": [1.0, 0.0, 0.0], "sea": [1.0, 1.0, 0.0], "land": [0.0, 0.0, 1.0], "woods": [0.0, 1.0, 1.0]}
TPL = {"a picture of a {}.": [0.0, 0.0, 0.5], "a picture of a {}": [0.5, 0.0, 0.0]}


def fake_encode(texts):
    """Text -> keyword vector * 2 + template offset (not unit length, so normalisation is tested)."""
    out = []
    for t in texts:
        kw = next(k for k in KW if f" {k}" in t)
        tpl = "a picture of a {}." if t.endswith(".") else "a picture of a {}"
        out.append([2 * a + b for a, b in zip(KW[kw], TPL[tpl])])
    return torch.tensor(out)


def unit(v):
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def test_templates_are_complete():
    assert len(IMAGENET_TEMPLATES) == 80 and len(set(IMAGENET_TEMPLATES)) == 80
    assert all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES)
    assert len(default_templates("waterbirds")[1]) == 7 and default_templates("celeba")[1] == ("{}", "{} celebrity")
    assert default_templates("waterbirds")[0] == IMAGENET_TEMPLATES
    assert compose("sea", ["a photo of a {}."], ["{}", "bird on {}"]) == ["a photo of a sea.", "a photo of a bird on sea."]
    with pytest.raises(ValueError):
        compose("sea", ["no slot"], ["{}"])


def test_prototypes_are_normalised_mean_of_normalised_embeddings():
    protos = class_prototypes(fake_encode, [["water", "sea"], ["land", "woods"]], list(TPL), ["{}"])
    for c, words in enumerate([["water", "sea"], ["land", "woods"]]):
        vecs = [unit([2 * a + b for a, b in zip(KW[w], TPL[t])]) for w in words for t in TPL]
        assert protos[c].numpy() == pytest.approx(unit(np.mean(vecs, 0)), abs=1e-6)
    with pytest.raises(LabellingError):
        class_prototypes(fake_encode, [["water"], []], list(TPL), ["{}"])


def test_assignment_two_classes():
    protos = torch.tensor(np.array([unit([1, 0, 0]), unit([0, 0, 1])]), dtype=torch.float32)
    img = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.0, 0.9], [0.2, 0.0, 1.0], [1.0, 0.3, 0.0]])
    y = np.array([0, 0, 1, 1])
    a = assign_slices(img, y, protos, temperature=0.02)
    assert a.conflicting.tolist() == [False, True, False, True]
    assert a.pseudo_groups.tolist() == [0, 1, 2, 3]
    v = unit(img[1].numpy())
    s = [v @ protos[0].numpy() / 0.02, v @ protos[1].numpy() / 0.02]
    assert a.probs[1, 0] == pytest.approx(math.exp(s[0]) / (math.exp(s[0]) + math.exp(s[1])), rel=1e-5)


def test_assignment_more_classes_compares_against_all_others():
    protos = torch.eye(3)
    img = torch.tensor([[1.0, 0.2, 0.9], [0.3, 0.2, 1.0], [0.0, 1.0, 0.1]])
    a = assign_slices(img, np.array([2, 0, 1]), protos)
    assert a.conflicting.tolist() == [True, True, False]  # argmax 0 != 2; argmax 2 != 0; argmax 1 == 1
    assert a.pseudo_groups.tolist() == [5, 1, 2]
    assert pseudo_group_names(["a", "b"]) == ["a|aligned", "a|conflicting", "b|aligned", "b|conflicting"]


def test_quality_against_true_minority():
    train_y, train_a = np.array([0, 0, 0, 1, 1, 1, 1]), np.array([0, 0, 1, 1, 1, 0, -1])
    aligned = aligned_values_by_lift(train_y, train_a, 2, 2)
    assert aligned == ((0,), (1,))
    y, a = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0, 0])
    truth = true_conflicting(y, a, aligned)
    assert truth.tolist() == [False, True, True, False, True, True]
    pred = np.array([False, True, False, False, True, False])
    q = labelling_quality(pred, truth, y, np.ones(6, bool), ["a", "b"])
    assert q["accuracy"] == pytest.approx(4 / 6)
    assert q["per_class"]["a"]["f1_conflicting"] == pytest.approx(2 * 1 * 0.5 / 1.5)  # P=1, R=1/2
    assert q["per_class"]["b"]["f1_conflicting"] == pytest.approx(2 / 3)
    assert q["f1_conflicting_pooled"] == pytest.approx(2 * 1 * 0.5 / 1.5)  # B2T's pooled F1: P=2/2, R=2/4


def test_aligned_value_is_by_lift_not_by_majority():
    """CelebA-like: female is the majority of BOTH classes, but non-blond is aligned with male (more
    common there than overall) and blond with female. The majority rule called non-blond female aligned."""
    # class 0 non-blond: 55 female / 45 male; class 1 blond: 94 female / 6 male
    y = np.array([0] * 100 + [1] * 100)
    a = np.array([0] * 55 + [1] * 45 + [0] * 94 + [1] * 6)  # 0 female, 1 male
    aligned = aligned_values_by_lift(y, a, 2, 2)
    assert aligned == ((1,), (0,))
    conflicting = true_conflicting(y, a, aligned)
    assert conflicting[:55].all() and not conflicting[55:100].any()  # non-blond women conflict
    assert not conflicting[100:194].any() and conflicting[194:].all()  # blond men conflict


def test_class_with_no_over_represented_value_has_no_conflicting_image():
    y, a = np.array([0, 0, 1, 1, 1, 1]), np.array([0, 1, 0, 1, 0, 1])
    aligned = aligned_values_by_lift(y, a, 2, 2)
    assert aligned == ((), ())
    assert not true_conflicting(y, a, aligned).any()


# A world of four directions: water, land (backgrounds), red, yellow (colours).
AXES = {"water": 0, "land": 1, "red": 2, "yellow": 3}


def axis_prototype(phrases):
    v = torch.zeros(4)
    for p in phrases:
        v[AXES[p]] += 1
    return v / v.norm()


IMGS = torch.tensor([
    [1.0, 0.0, 1.0, 0.0],  # water, red
    [0.0, 1.0, 1.0, 0.0],  # land, red
    [0.0, 1.0, 0.0, 1.0],  # land, yellow
    [1.0, 0.0, 0.0, 1.0],  # water, yellow
])


def test_biased_class_carries_its_attribute_against_the_alternatives():
    circle = ClassSlices("circle", ("water",), {"water": ("land",)}, "biased")
    square = ClassSlices("square", ("red",), {"red": ("yellow",)}, "biased")
    y = np.array([0, 0, 1, 1])
    a = assign_with_alternatives(IMGS, y, [circle, square], axis_prototype)
    assert a.conflicting.tolist() == [False, True, True, True]  # a circle on land; yellow squares
    assert a.pseudo_groups.tolist() == [0, 1, 3, 3]
    assert a.p_aligned[0] > 0.99 and (a.p_aligned[1:] < 0.01).all()
    squares = assign_with_alternatives(IMGS, np.ones(4, int), [circle, square], axis_prototype)
    assert squares.conflicting.tolist() == [False, False, True, True]  # red squares are aligned, wherever


def test_any_verified_attribute_makes_an_image_aligned():
    circle = ClassSlices("circle", ("water", "red"), {"water": ("land",), "red": ("yellow",)}, "biased")
    a = assign_with_alternatives(IMGS, np.zeros(4, int), [circle, ClassSlices("square", ())], axis_prototype)
    assert a.conflicting.tolist() == [False, False, True, False]  # only land + yellow carries neither


def test_unbiased_class_conflicts_when_it_carries_another_class_attribute():
    circle = ClassSlices("circle", ("water",), {"water": ("land",)}, "biased")
    cross = ClassSlices("cross", (), {}, "no_evidence")
    a = assign_with_alternatives(IMGS, np.ones(4, int), [circle, cross], axis_prototype)
    assert a.conflicting.tolist() == [True, False, False, True]  # crosses on water look like circles
    assert a.pseudo_groups.tolist() == [3, 2, 2, 3]
    nobody = assign_with_alternatives(IMGS, np.ones(4, int), [ClassSlices("a", ()), cross], axis_prototype)
    assert not nobody.conflicting.any()  # no bias anywhere: one group per class


def test_without_alternatives_the_b2t_rule_is_unchanged():
    """Older reasoning output (no alternatives): the class-prototype argmax, exactly as assign_slices."""
    slices = [ClassSlices("circle", ("water",)), ClassSlices("square", ("land",))]
    y = np.array([0, 0, 1, 1])
    a = assign_with_alternatives(IMGS, y, slices, axis_prototype)
    ref = assign_slices(IMGS, y, torch.stack([axis_prototype(["water"]), axis_prototype(["land"])]))
    assert a.conflicting.tolist() == ref.conflicting.tolist() == [False, True, False, True]


def test_unbiased_class_cannot_use_attributes_without_alternatives(capsys):
    logs = []
    slices = [ClassSlices("circle", ("water",)), ClassSlices("cross", (), {}, "no_evidence")]
    a = assign_with_alternatives(IMGS, np.array([1, 1, 0, 0]), slices, axis_prototype, log=logs.append)
    assert not a.conflicting[:2].any() and any("cross" in m and "no alternatives" in m for m in logs)


def _write(root, c, name, **d):
    (root / f"{c:03d}_{name}").mkdir(exist_ok=True)
    (root / f"{c:03d}_{name}" / "attributes.json").write_text(json.dumps({"class_name": name, **d}))


def test_read_attributes(tmp_path):
    _write(tmp_path, 0, "circle", attributes=["water", " "])
    with pytest.raises(LabellingError, match="class 1"):
        read_attributes(tmp_path, ["circle", "square"])
    _write(tmp_path, 1, "square", attributes=["land"])
    got = read_attributes(tmp_path, ["circle", "square"])
    assert [s.attributes for s in got] == [("water",), ("land",)]
    assert all(s.verdict is None and not s.alternatives and s.biased for s in got)
    _write(tmp_path, 1, "square", attributes=[])
    with pytest.raises(LabellingError, match="'attributes' is empty"):  # no verdict: attributes required
        read_attributes(tmp_path, ["circle", "square"])


def test_read_attributes_with_verdicts_and_alternatives(tmp_path):
    _write(tmp_path, 0, "circle", attributes=["water"], verdict="biased",
           alternatives={"water": ["land", " snow ", "water", "land"]})
    _write(tmp_path, 1, "cross", attributes=[], verdict="no_evidence", alternatives={})
    circle, cross = read_attributes(tmp_path, ["circle", "cross"])
    assert circle.alternatives == {"water": ("land", "snow")} and circle.has_alternatives
    assert not cross.biased and cross.verdict == "no_evidence"
    _write(tmp_path, 1, "cross", attributes=["red"], verdict="no_evidence")
    with pytest.raises(LabellingError, match="no_evidence but 'attributes' is not empty"):
        read_attributes(tmp_path, ["circle", "cross"])
    _write(tmp_path, 1, "cross", attributes=[], verdict="maybe")
    with pytest.raises(LabellingError, match="verdict must be"):
        read_attributes(tmp_path, ["circle", "cross"])


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tiny_models import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "clip", image_size=16)


def test_tiny_clip_through_from_pretrained_and_cache(tiny_clip, tmp_path, small_world):
    from transformers import CLIPModel, CLIPProcessor

    enc = ClipEncoder.from_pretrained(str(tiny_clip))
    texts = ["a picture of a water.", "a picture of a red circle on land"]
    got = enc.encode_text(texts)
    model, proc = CLIPModel.from_pretrained(tiny_clip), CLIPProcessor.from_pretrained(tiny_clip)
    with torch.no_grad():
        ref = model.get_text_features(**proc.tokenizer(texts, padding=True, return_tensors="pt")).pooler_output
    assert torch.allclose(got, ref / ref.norm(dim=-1, keepdim=True), atol=1e-6)
    ds = small_world["train"]
    emb = cached_image_embeddings(enc, ds, tmp_path, batch_size=64, log=lambda s: None)
    assert emb.shape == (len(ds), 16) and torch.allclose(emb.norm(dim=1), torch.ones(len(ds)), atol=1e-5)
    enc.encode_images = lambda *a, **k: (_ for _ in ()).throw(AssertionError("cache missed"))
    assert torch.equal(cached_image_embeddings(enc, ds, tmp_path, log=lambda s: None), emb)
    with pytest.raises(ClipError):
        ClipEncoder.from_pretrained(str(tmp_path / "missing"))
