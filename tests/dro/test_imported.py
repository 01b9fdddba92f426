"""Bring your own classifier: a torchvision checkpoint or a Hugging Face model is audited instead of the one
``train_erm`` trains, through the pipeline's one classifier contract, and retraining starts from it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from common.classifier import ModelError, load_classifier, save_classifier
from dro.imported import ClassifierSource, import_classifier

IMAGENET = (torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))


def resnet18_checkpoint(path: Path, num_classes: int = 2, seed: int = 0) -> torch.nn.Module:
    """A resnet18 with random weights saved as a safetensors state dict (what a user fine-tuned elsewhere)."""
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    net = torchvision.models.resnet18(num_classes=num_classes).eval()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    return net


def tiny_hf_vit(folder: Path, labels: list[str]) -> torch.nn.Module:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, num_labels=len(labels), id2label=dict(enumerate(labels)),
                    label2id={n: i for i, n in enumerate(labels)})
    hf = ViTForImageClassification(cfg).eval()
    hf.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return hf


def test_torchvision_checkpoint_keeps_its_function_through_save_and_load(tmp_path):
    net = resnet18_checkpoint(tmp_path / "r18.safetensors")
    model = import_classifier(ClassifierSource("torchvision", "resnet18", str(tmp_path / "r18.safetensors")),
                              ("landbird", "waterbird"), 64)
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        expected = net((x - IMAGENET[0]) / IMAGENET[1])
        assert torch.allclose(model(x), expected, atol=1e-5)
        save_classifier(model, tmp_path / "erm")
        again = load_classifier(tmp_path / "erm")
        assert again.config.arch == "torchvision:resnet18" and again.class_names == ("landbird", "waterbird")
        assert torch.allclose(again(x), expected, atol=1e-5)


def test_hugging_face_model_is_reordered_to_the_dataset_classes(tmp_path):
    hf = tiny_hf_vit(tmp_path / "hf", ["square", "circle"])  # the model's order differs from the dataset's
    model = import_classifier(ClassifierSource("huggingface", str(tmp_path / "hf")), ("circle", "square"), 32)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = hf(pixel_values=(x - 0.5) / 0.5).logits[:, [1, 0]]
        assert torch.allclose(model(x), expected, atol=1e-5)
        save_classifier(model, tmp_path / "erm")
        assert torch.allclose(load_classifier(tmp_path / "erm")(x), expected, atol=1e-5)  # rebuilt offline from config


def test_dexter_sees_an_imported_classifier_like_a_trained_one(tmp_path):
    from dexter.classifiers import wrap_pipeline_classifier

    resnet18_checkpoint(tmp_path / "r18.safetensors")
    model = import_classifier(ClassifierSource("torchvision", "resnet18", str(tmp_path / "r18.safetensors")),
                              ("a", "b"), 32)
    clf = wrap_pipeline_classifier(model)
    logits, feats = clf(torch.rand(1, 3, 32, 32, requires_grad=True))
    assert logits.shape == (1, 2) and feats.shape == (1, 512) and clf.head_weight.shape == (2, 512)


@pytest.mark.parametrize("source, message", [
    (lambda d: ClassifierSource("torchvision", "resnet18", str(d / "r18x3.safetensors")), "has 3 outputs, but the dataset has 2"),
    (lambda d: ClassifierSource("torchvision", "resnet34", str(d / "r18.safetensors")), "does not fit torchvision resnet34"),
    (lambda d: ClassifierSource("torchvision", "resnet18", str(d / "missing.pt")), "not found"),
    (lambda d: ClassifierSource("torchvision", "resnet_18"), "unknown classifier 'resnet_18'"),
    (lambda d: ClassifierSource("huggingface", str(d / "nothing_here")), "cannot load Hugging Face image classifier"),
])
def test_bad_classifiers_are_one_line_errors(tmp_path, source, message):
    resnet18_checkpoint(tmp_path / "r18.safetensors")
    resnet18_checkpoint(tmp_path / "r18x3.safetensors", num_classes=3)
    with pytest.raises(ModelError) as e:
        import_classifier(source(tmp_path), ("a", "b"), 32)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_params_check_the_classifier_section():
    from stages.params import ParamsError, parse_params

    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["classifier"] = {"source": "torchvision"}
    with pytest.raises(ParamsError, match="classifier: source 'torchvision' needs name"):
        parse_params(raw)
    raw["classifier"] = {"source": "huggingface", "name": "x", "checkpoint": "y.pt"}
    with pytest.raises(ParamsError, match="set source: torchvision"):
        parse_params(raw)


@pytest.fixture
def project(tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from dro_world import make_world

    monkeypatch.chdir(tmp_path)
    make_world(Path("data/prepared"), sizes={"train": 60, "val": 20, "test": 40})
    net = resnet18_checkpoint(tmp_path / "mine.safetensors")
    Path("params.yaml").write_text(yaml.safe_dump({
        "dataset": "synthetic", "device": "cpu", "seeds": [0],
        "synthetic": {"preset": "small", "image_size": 16, "ablations": [],
                      "train": {"arch": "small_cnn", "image_size": 16, "batch_size": 32, "optimizer": "adam",
                                "lr": 0.003, "epochs": 1}},
        "classifier": {"source": "torchvision", "name": "resnet18", "checkpoint": "mine.safetensors"},
        "dro": {"methods": ["erm", "groupdro_oracle"]},
        "models": {"world": {"stable_diffusion": "x", "bert": "x", "clip": "x"}},
    }))
    return tmp_path, net


def test_train_erm_imports_instead_of_training_and_retraining_starts_from_it(project, capsys, monkeypatch):
    import dro.pipeline
    from stages import retrain, train_erm

    tmp, net = project
    train_erm.run([])
    err = capsys.readouterr().err
    assert "epoch " not in err and "not trained" in err
    erm = load_classifier(tmp / "outputs/erm")
    assert erm.config.arch == "torchvision:resnet18"
    assert torch.equal(erm.backbone.conv1.weight, net.conv1.weight)  # the user's weights, untouched
    assert json.loads((tmp / "metrics/erm.json").read_text())["imported"].startswith("torchvision resnet18")

    starts = []
    real_train = dro.pipeline.train

    def spy(model, *a, **k):
        starts.append(model.backbone.conv1.weight.detach().clone())
        return real_train(model, *a, **k)

    monkeypatch.setattr(dro.pipeline, "train", spy)
    retrain.run([])
    metrics = json.loads((tmp / "results/metrics.json").read_text())
    per_seed = json.loads((tmp / "results/per_seed.json").read_text())
    assert per_seed["erm"][0]["selection"] == "imported"  # the erm row is the user's model as it is
    assert len(starts) == 1 and torch.equal(starts[0], net.conv1.weight)  # the oracle row starts from it
    assert set(metrics["methods"]) == {"erm", "groupdro_oracle"}
