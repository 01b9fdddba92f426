"""The original code's programmatic API (its README's two examples) on tiny models."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[2] / "dexter" / "README.md"


def _example(marker: str) -> str:
    """The python block of dexter/README.md that contains ``marker`` (the original README's examples)."""
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S) if marker in b]
    assert len(blocks) == 1, f"dexter/README.md has {len(blocks)} python blocks with {marker!r}"
    return blocks[0]


def _swap(code: str, swaps: dict[str, str]) -> str:
    for old, new in swaps.items():
        assert old in code, old
        code = code.replace(old, new)
    return code


def test_readme_prompt_optimisation_example(model_set, erm_dir, tmp_path, capsys):
    code = _swap(_example("from dexter import DEXTER"), {
        '"robust50"': repr(str(erm_dir)),
        "class_to_activate=291": "class_to_activate=1",
        "optim_steps=100)": f"optim_steps=2, sd={model_set['stable_diffusion']!r}, lora=None, "
                            f"bert={model_set['bert']!r}, outdir={str(tmp_path / 'out')!r})",
        'device="cuda"': 'device="cpu"',
    })
    exec(compile(code, "README example 1", "exec"), {})
    printed = capsys.readouterr().out
    run_dir = Path(printed.split("Saved to", 1)[1].strip())
    assert run_dir == tmp_path / "out" / "001_square"
    data = json.loads((run_dir / "keywords.json").read_text())
    assert data["mode"] == "multi" and data["runs"][0]["steps"] <= 2  # the original's default: multi_mask
    config = json.loads((run_dir / "run_0" / "config.json").read_text())
    assert config["steps"] == 2 and config["api"] == "dexter.DEXTER"


def test_readme_activation_score_example(model_set, erm_dir, capsys):
    code = _swap(_example("from dexter.metrics.activation_score import activation_score"), {
        '"robust50"': repr(str(erm_dir)),
        "class_to_activate=145": "class_to_activate=1",
        "n_images=100": "n_images=3",
        "transforms=tfms,": f"transforms=tfms, sd={model_set['stable_diffusion']!r}, lora=None,",
        'device="cuda"': 'device="cpu"',
    })
    scope: dict = {}
    exec(compile(code, "README example 2", "exec"), scope)
    assert "Activation score:" in capsys.readouterr().out
    assert scope["score"] in (0.0, 1 / 3, 2 / 3, 1.0) and isinstance(scope["mean_act"], float)
    assert scope["last_img"].size == (16, 16)


def test_activation_score_counts_what_the_classifier_says(model_set, tmp_path):
    import shutil

    import numpy as np
    from PIL import Image
    from tiny_models import add_tiny_safety_checker, make_tiny_classifier

    from dexter.classifiers import wrap_pipeline_classifier
    from dexter.metrics.activation_score import activation_score

    clf = wrap_pipeline_classifier(make_tiny_classifier(2))
    with torch.no_grad():
        clf.head.bias.copy_(torch.tensor([0.0, 100.0]))  # always class 1
    sd = model_set["stable_diffusion"]
    common = dict(prompt="a picture of a red circle.", n_images=3, batch_size=2, device="cpu", sd=sd, lora=None)
    score, last, mean_act = activation_score(clf, class_to_activate=1, save_images_to=str(tmp_path / "im"), **common)
    assert score == 1.0 and len(list((tmp_path / "im").glob("*.png"))) == 3
    assert np.asarray(last).max() > 0
    assert activation_score(clf, class_to_activate=0, **common)[0] == 0.0
    checked = tmp_path / "sd"
    shutil.copytree(sd, checked)
    add_tiny_safety_checker(checked, flag_all=True)
    common.update(sd=str(checked))
    _, last, _ = activation_score(clf, class_to_activate=1, save_images_to=str(tmp_path / "safe"), **common)
    assert np.asarray(last).max() == 0  # flagged -> blanked before it is returned ...
    assert all(np.asarray(Image.open(p)).max() == 0 for p in (tmp_path / "safe").glob("*.png"))  # ... or saved


def test_import_dexter_stays_light():
    out = subprocess.run([sys.executable, "-c", "import dexter, sys; print('torch' in sys.modules); "
                          "from dexter import RunConfig; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False"  # the original's names load on first use only
    with pytest.raises(AttributeError):
        import dexter

        dexter.no_such_name  # noqa: B018


def test_run_config_refuses_what_it_cannot_honour():
    from dexter import RunConfig
    from dexter.errors import DexterInputError

    with pytest.raises(DexterInputError, match="RunConfig.prefix"):
        RunConfig(prefix="a photo of")
    with pytest.raises(DexterInputError, match="mask_type"):
        RunConfig(mask_type="double_mask")
    with pytest.raises(DexterInputError, match="lr"):
        RunConfig(lr=-1)
    cfg = RunConfig(mask_type="single_mask", topk=4, bs=2, diff_steps=2, optim_steps=7)
    d = cfg.dexter_config()
    assert (d.mode, d.runs_per_class, d.images_per_step, d.inference_steps, d.steps, d.seed) == (
        "single", 4, 2, 2, 7, 0)
    assert "api_key" not in RunConfig(api_key="sk-secret").to_kwargs()
    assert "sk-secret" not in repr(RunConfig(api_key="sk-secret"))


def test_plain_torch_classifier_and_transforms():
    """A bare torchvision model + the original's transforms: split at the last linear layer, transforms first."""
    from torchvision.models import resnet18

    from dexter.classifiers import ResizeNormalize, as_feature_head_classifier

    torch.manual_seed(0)
    net = resnet18(num_classes=3).eval()
    tfms = ResizeNormalize(64)
    clf = as_feature_head_classifier(net, tfms)
    x = torch.rand(2, 3, 32, 32)
    logits, feats = clf(x)
    assert torch.allclose(logits, net(tfms(x)), atol=1e-5) and feats.shape == (2, 512)
    assert isinstance(net.fc, torch.nn.Linear)  # the user's model is not modified
