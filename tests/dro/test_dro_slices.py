"""Prototypes, assignment and labelling quality on crafted embeddings; the real CLIP loading path on a tiny CLIP."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dro.slices import (ClipEncoder, LabellingError, assign_slices, cached_image_embeddings, class_prototypes,
                        labelling_quality, majority_attribute, pseudo_group_names, read_attributes,
                        true_conflicting)
from dro.templates import CLASS_TEMPLATES, IMAGENET_TEMPLATES, compose, default_templates

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
    assert len(CLASS_TEMPLATES["waterbirds"]) == 7 and CLASS_TEMPLATES["celeba"] == ("{}", "{} celebrity")
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
    maj = majority_attribute(train_y, train_a, 2)
    assert maj.tolist() == [0, 1]
    y, a = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0, 0])
    truth = true_conflicting(y, a, maj)
    assert truth.tolist() == [False, True, True, False, True, True]
    pred = np.array([False, True, False, False, True, False])
    q = labelling_quality(pred, truth, y, np.ones(6, bool), ["a", "b"])
    assert q["accuracy"] == pytest.approx(4 / 6)
    assert q["per_class"]["a"]["f1_conflicting"] == pytest.approx(2 * 1 * 0.5 / 1.5)  # P=1, R=1/2
    assert q["per_class"]["b"]["f1_conflicting"] == pytest.approx(2 / 3)


def test_read_attributes(tmp_path):
    (tmp_path / "000_circle").mkdir()
    (tmp_path / "000_circle" / "attributes.json").write_text(json.dumps({"class_name": "circle", "attributes": ["water", " "]}))
    with pytest.raises(LabellingError, match="class 1"):
        read_attributes(tmp_path, ["circle", "square"])
    (tmp_path / "001_square").mkdir()
    (tmp_path / "001_square" / "attributes.json").write_text(json.dumps({"class_name": "square", "attributes": ["land"]}))
    assert read_attributes(tmp_path, ["circle", "square"]) == [["water"], ["land"]]


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
    with pytest.raises(LabellingError):
        ClipEncoder.from_pretrained(str(tmp_path / "missing"))
