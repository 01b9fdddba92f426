import importlib.util
from pathlib import Path

import pytest


@pytest.mark.slow
def test_bench_times_a_step_on_tiny_models(tmp_path):
    path = Path(__file__).resolve().parents[2] / "bench" / "dexter_step.py"
    spec = importlib.util.spec_from_file_location("dexter_step_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--random-tiny", "--batch", "2", "--steps", "1", "--warmup", "1", "--mode", "single",
                         "--out", str(tmp_path / "b.json")])
    assert result["batch"] == 2 and result["seconds_per_step"] > 0 and result["peak_memory_mb"] > 0
    assert (tmp_path / "b.json").exists()


def test_letter_words_are_single_tokens_and_distinct():
    path = Path(__file__).resolve().parents[2] / "bench" / "dexter_step.py"
    spec = importlib.util.spec_from_file_location("dexter_step_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    words = bench._letter_words(3000)
    assert len(set(words)) == 3000

    from common.word_tokenizers import build_clip_word_tokenizer

    build_clip_word_tokenizer(words)  # raises unless every word is one token


def _bench_module(name):
    path = Path(__file__).resolve().parents[2] / "bench" / f"{name}.py"
    import sys

    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(f"{name}_bench", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def test_original_step_recreation_does_the_originals_work(build_models, monkeypatch):
    """The dense translation matrix gets a full gradient; the text encoder runs 3x, the UNet 4x at batch 2,
    the VAE decodes 3x, the safety tower 2x."""
    import torch

    from dexter.optimize import DexterConfig

    models = build_models(DexterConfig(steps=2))
    calls = {"text": 0, "unet": [], "decode": 0, "safety": 0}
    te, unet, vae = models.sd.text_encoder, models.sd.unet, models.sd.vae
    monkeypatch.setattr(te.encoder, "forward", _counting(te.encoder.forward, calls, "text"))
    monkeypatch.setattr(unet, "forward", _counting(unet.forward, calls, "unet", batch=True))
    monkeypatch.setattr(vae, "decode", _counting(vae.decode, calls, "decode"))
    original = _bench_module("original_step")
    safety = torch.nn.Identity()
    safety.forward = _counting(lambda pixel_values: pixel_values, calls, "safety")
    safety.register_parameter("p", torch.nn.Parameter(torch.zeros(1)))
    step = original.OriginalStep(models, safety, safety_size=8)
    step.step()
    assert calls["text"] == 3 and calls["unet"] == [2] * 4 and calls["decode"] == 3 and calls["safety"] == 2
    assert step.translation.grad is not None and step.translation.grad.shape == (step.vb, step.vc)


def _counting(fn, calls, key, batch=False):
    def wrapped(*args, **kwargs):
        if batch:
            calls[key].append(args[0].shape[0])
        else:
            calls[key] += 1
        return fn(*args, **kwargs)

    return wrapped


@pytest.mark.slow
def test_compare_writes_results(tmp_path):
    compare = _bench_module("compare")
    results = compare.main(["--size", "tiny", "--batches", "1", "2", "--steps", "1", "--out", str(tmp_path / "R.md")])
    assert [(r["which"], r["batch"]) for r in results] == [("original", 1), ("project", 1), ("project", 2)]
    text = (tmp_path / "R.md").read_text()
    assert "| original (re-created) | 1 |" in text and "No GPU was available" in text


def test_compare_keeps_the_sections_measured_by_other_scripts(tmp_path):
    """bench/compare.py rewrites its table but keeps what follows the marker (bench/method_flags.py's figures)."""
    from types import SimpleNamespace

    compare = _bench_module("compare")
    out = tmp_path / "R.md"
    out.write_text(f"old table\n\n{compare.KEEP_MARKER}\n\n## Flags\nkept figures\n")
    row = {"resolution": 64, "dtype": "float32", "device": "cpu", "device_name": "x", "threads": 1,
           "peak_memory_mb": 1.0}
    results = [{**row, "which": "original", "batch": 1, "seconds_per_step": 2.0},
               {**row, "which": "project", "batch": 1, "seconds_per_step": 1.0}]
    compare.write_results(out, results, SimpleNamespace(size="tiny", steps=1, warmup=0, steps_per_class=10), "cmd")
    text = out.read_text()
    assert "old table" not in text and "| project | 1 |" in text
    assert text.endswith(f"{compare.KEEP_MARKER}\n\n## Flags\nkept figures\n")
