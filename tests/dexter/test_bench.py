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
