import json
import subprocess
import sys
import time

import pytest

from dexter.cli import main


@pytest.fixture(scope="module")
def erm_dir(tmp_path_factory):
    """A classifier in the pipeline's own format (dro.models), 2 classes."""
    import torch

    from dro.models import build_classifier, save_classifier

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("erm")
    save_classifier(build_classifier("small_cnn", ("circle", "square"), 16, width=4), d)
    return d


def _common(model_set, erm_dir):
    return ["--classifier-dir", str(erm_dir), "--sd", model_set["stable_diffusion"], "--lora",
            model_set["lcm_lora"], "--device", "cpu"]


def test_explain_runs_on_tiny_models(model_set, erm_dir, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["explain", *_common(model_set, erm_dir), "--bert", model_set["bert"], "--class-index", "0", "1",
               "--mask-type", "multi", "--num-feature-neurons", "2", "--steps", "3", "--runs", "2", "--seed", "1",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    for name in ("000_circle", "001_square"):
        data = json.loads((out / name / "keywords.json").read_text())
        assert data["mode"] == "multi" and len(data["runs"]) == 2
        result = json.loads((out / name / "run_0" / "result.json").read_text())
        assert len(result["mask_words"]) == 6 and result["words"] == [w for w in result["mask_words"] if w]
        config = json.loads((out / name / "run_1" / "config.json").read_text())
        assert config["stable_diffusion"] == model_set["stable_diffusion"] and config["seed"] == 1
    assert "class 0:" in capsys.readouterr().out


def test_score_runs_on_tiny_models(model_set, erm_dir, tmp_path):
    rc = main(["score", *_common(model_set, erm_dir), "--class-index", "1", "--prompt", "a picture of a square.",
               "--n", "5", "--batch-size", "2", "--out", str(tmp_path / "s.json")])
    assert rc == 0
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["n"] == 5 and 0 <= result["hits"] <= 5 and result["score"] == 20.0 * result["hits"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--class-index", "2"], "--class-index 2 out of range: the classifier has 2 classes"),
        (["--class-index", "0", "--bert", "nobody/no-such-bert"], "'nobody/no-such-bert'"),
    ],
)
def test_explain_fails_fast(model_set, erm_dir, tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    args = ["explain", *_common(model_set, erm_dir), "--out", str(tmp_path / "o"), *extra]
    if "--bert" not in extra:
        args += ["--bert", model_set["bert"]]
    import dexter.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_dexter_models", lambda *a, **k: pytest.fail("loaded big models"))
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unknown_classifier_fails_before_importing_models(tmp_path):
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "dexter.cli", "explain", "--classifier", "resnet5000", "--class-index", "0",
         "--sd", "nobody/sd", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert "unknown classifier 'resnet5000'" in proc.stderr
    assert "diffusers" not in proc.stderr and time.time() - start < 60


def test_cli_import_is_lazy():
    out = subprocess.run([sys.executable, "-c", "import dexter.cli, sys; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_reasoning_hook_offline(model_set, erm_dir, tmp_path):
    out = tmp_path / "out"
    rc = main(["explain", *_common(model_set, erm_dir), "--bert", model_set["bert"], "--class-index", "0",
               "--steps", "3", "--early-stop", "1", "--out", str(out), "--no-progress", "--reasoning", "offline",
               "--reasoning-clip", model_set["clip"]])
    assert rc == 0
    assert (out / "000_circle" / "reasoning").is_dir()
    assert any((out / "000_circle" / "reasoning").iterdir())
