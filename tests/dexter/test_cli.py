import json
import subprocess
import sys
import time

import pytest

from dexter.cli import main


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


BAD_INPUTS = [
    (["explain", "--resolution", "60"], "--resolution: must be a positive multiple of 8"),
    (["explain", "--resolution", "0"], "--resolution: must be a positive multiple of 8"),
    (["explain", "--inference-steps", "0"], "--inference-steps/--diff_steps: must be at least 1"),
    (["explain", "--dtype", "int8"], "--dtype: invalid choice: 'int8'"),
    (["explain", "--lr", "-1"], "--lr: must be a number > 0"),
    (["explain", "--steps", "0"], "--steps/--optim_steps: must be at least 1"),
    (["explain", "--mask-type", "both"], "expected single or multi"),
    (["explain", "--step-noise", "sometimes"], "--step-noise: invalid choice"),
    (["score", "--prompt", ""], "--prompt: must not be empty"),
    (["score", "--prompt", "   "], "--prompt: must not be empty"),
    (["score", "--prompt", "a cat", "--n", "0"], "--n/--n_images: must be at least 1"),
]


@pytest.mark.parametrize("extra, message", BAD_INPUTS)
def test_bad_values_are_one_line_errors_before_anything_loads(model_set, erm_dir, tmp_path, capsys, monkeypatch,
                                                               extra, message):
    import dexter.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_dexter_models", lambda *a, **k: pytest.fail("loaded big models"))
    command, rest = extra[0], extra[1:]
    args = [command, *_common(model_set, erm_dir), "--class-index", "0", *rest]
    if command == "score" and "--prompt" not in rest:
        args += ["--prompt", "a cat"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_cuda_on_a_machine_without_it_is_one_line(model_set, erm_dir, tmp_path, capsys, monkeypatch):
    import torch

    import dexter.pipeline as pipeline

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(pipeline, "load_dexter_models", lambda *a, **k: pytest.fail("loaded big models"))
    common = [a if a != "cpu" else "cuda" for a in _common(model_set, erm_dir)]
    assert main(["explain", *common, "--bert", model_set["bert"], "--class-index", "0", "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device is available" in err and err.count("\n") == 1
    assert main(["score", *common, "--class-index", "0", "--prompt", "a cat"]) == 2
    assert main(["explain", *_common(model_set, erm_dir)[:-1], "bogus", "--class-index", "0"]) == 2
    assert "is not a device name" in capsys.readouterr().err


def test_help_shows_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # no line breaks inside the defaults
    for command in ("explain", "score"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for shown in ("--steps STEPS, --optim_steps STEPS step budget per run (default: 1000)", "(default: 0.1)",
                  "(default: fresh)", "(default: 100)", "(default: CompVis/stable-diffusion-v1-4)",
                  "--seed SEED seeds prompts, latents and noise (default: 0)"):
        assert shown in out, shown


def test_original_flag_names_are_aliases():
    from dexter.cli import parse_args

    # The original README's command (its key passed on the command line, as there).
    args = parse_args(["explain", "--class_to_activate", "291", "--classifier", "robust50", "--optim_steps", "1000",
                       "--vlm_id", "gpt-4o", "--llm_id", "gpt-4o", "--api_key", "sk-x",
                       "--base_url", "https://api.openai.com/v1", "--mask_type", "single_mask"])
    assert (args.class_index, args.classifier, args.steps, args.vlm, args.llm) == ([291], "robust50", 1000,
                                                                                  "gpt-4o", "gpt-4o")
    assert (args.base_url, args.api_key, args.reasoning, args.mask_type) == ("https://api.openai.com/v1", "sk-x",
                                                                             "openai", "single")
    args = parse_args(["explain", "--class_to_activate", "1", "--mask_type", "multi_mask", "--diff_steps", "2",
                       "--outdir", "o", "--topk", "3", "--bs", "2"])
    assert (args.mask_type, args.inference_steps, args.out, args.runs, args.images_per_step, args.reasoning) == (
        "multi", 2, "o", 3, 2, "none")


def test_every_dexter_setting_is_reachable_from_the_cli():
    """The CLI reads the library's config type: every DexterConfig field has an option (the ones params.yaml
    could set and the CLI could not: adam_eps, max_batch, tau, template, soft_prompt_length), with the
    config's default."""
    from dataclasses import fields

    from dexter.cli import _explain_config, parse_args
    from dexter.config import DexterConfig

    config = _explain_config(parse_args(["explain", "--class-index", "1", "--adam-eps", "1e-6", "--max-batch", "2",
                                         "--tau", "0.5", "--template", "a photo of a [MASK].",
                                         "--soft-prompt-length", "3"]), None)
    assert (config.adam_eps, config.max_batch, config.tau, config.template, config.soft_prompt_length) == (
        1e-6, 2, 0.5, "a photo of a [MASK].", 3)
    default = _explain_config(parse_args(["explain", "--class-index", "1"]), None)
    differ = {f.name for f in fields(DexterConfig) if getattr(default, f.name) != f.default}
    assert differ == {"runs_per_class"}, differ  # --runs keeps the original code's --topk default of 1


def test_bias_report_preset_and_overrides():
    from dexter.cli import parse_args

    args = parse_args(["explain", "--class-index", "1", "--preset", "bias-report"])
    assert (args.mask_type, args.steps, args.collect_hits, args.early_stop) == ("multi", 5000, 50, 0)
    args = parse_args(["explain", "--class-index", "1", "--preset=bias-report", "--steps", "7"])
    assert (args.steps, args.collect_hits) == (7, 50)
    assert parse_args(["explain", "--class-index", "1"]).collect_hits == 0


def test_explain_with_the_original_flags_on_tiny_models(model_set, erm_dir, tmp_path):
    out = tmp_path / "out"
    rc = main(["explain", *_common(model_set, erm_dir), "--bert", model_set["bert"], "--class_to_activate", "1",
               "--mask_type", "multi_mask", "--optim_steps", "2", "--outdir", str(out), "--no-progress",
               "--preset", "bias-report", "--collect-hits", "1"])
    assert rc == 0
    result = json.loads((out / "001_square" / "run_0" / "result.json").read_text())
    assert len(result["mask_words"]) == 6 and result["steps"] <= 2
    config = json.loads((out / "001_square" / "run_0" / "config.json").read_text())
    assert (config["collect_hits"], config["early_stop"], config["step_noise"]) == (1, 0, "fresh")
    assert config["safety_checker"] == "none shipped"


def _readme_commands():
    """Every ``dexter <command> ...`` line of the fenced bash blocks in README.md and dexter/README.md."""
    import re
    import shlex
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    found = []
    for doc in (root / "README.md", root / "dexter" / "README.md"):
        for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", doc.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                tokens = shlex.split(line, comments=True)
                if len(tokens) >= 2 and tokens[0] == "dexter":
                    found.append((doc.name, tokens[1:]))
    return found


def test_every_dexter_command_in_the_readmes_exists_and_parses(capsys):
    import re

    from dexter.cli import parse_args

    commands = _readme_commands()
    assert len(commands) >= 6 and {c[1][0] for c in commands} == {"explain", "score"}
    helps = {}
    for command in ("explain", "score"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        helps[command] = set(re.findall(r"--[A-Za-z0-9_-]+", capsys.readouterr().out))
    for doc, tokens in commands:
        for flag in (t.split("=", 1)[0] for t in tokens if t.startswith("--")):
            assert flag in helps[tokens[0]], f"{doc}: dexter {tokens[0]} has no {flag}"
        parse_args(tokens)  # raises SystemExit on anything the parser refuses
