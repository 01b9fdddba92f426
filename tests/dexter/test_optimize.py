import csv
import json

import pytest
import torch

from dexter.errors import DexterInputError
from dexter.optimize import DexterConfig, dexter_step, explain_classes, new_run_state


def test_full_step_grads_only_the_soft_prompt(build_models):
    models = build_models(DexterConfig(mode="multi", num_feature_neurons=3))
    frozen = [models.text.bert, models.sd.text_encoder, models.sd.unet, models.sd.vae, models.classifier]
    states = [new_run_state(models, 0, "a", 0), new_run_state(models, 1, "b", 0)]
    before = [s.soft_prompt.detach().clone() for s in states]
    # Capture the gradient before the optimiser step clears nothing: hook the parameter.
    grads = {}
    for i, s in enumerate(states):
        s.soft_prompt.register_hook(lambda g, i=i: grads.setdefault(i, g.clone()))
    dexter_step(models, states)
    for i, s in enumerate(states):
        assert grads[i].abs().sum() > 0
        assert not torch.equal(before[i], s.soft_prompt.detach())
    for module in frozen:
        for name, p in module.named_parameters():
            assert not p.requires_grad and p.grad is None, name


def _run(models, tmp_path, name, classes=(0, 1)):
    out = tmp_path / name
    explain_classes(models, list(classes), out, progress=False)
    return out


def test_seeded_runs_are_reproducible(build_models, tmp_path):
    cfg = DexterConfig(steps=6, runs_per_class=2, early_stop=0, seed=3)
    a = _run(build_models(cfg), tmp_path, "a")
    b = _run(build_models(cfg), tmp_path, "b")
    for c in ("000_class0", "001_class1"):
        for r in (0, 1):
            assert (a / c / f"run_{r}/losses.csv").read_text() == (b / c / f"run_{r}/losses.csv").read_text()
        assert json.loads((a / c / "keywords.json").read_text()) == json.loads((b / c / "keywords.json").read_text())
    other = _run(build_models(DexterConfig(steps=6, runs_per_class=2, early_stop=0, seed=4)), tmp_path, "c")
    assert (a / "000_class0/run_0/losses.csv").read_text() != (other / "000_class0/run_0/losses.csv").read_text()


def test_batched_step_matches_single_runs(build_models):
    cfg = DexterConfig(steps=3, early_stop=0)
    models = build_models(cfg)
    together = [new_run_state(models, 0, "a", 0), new_run_state(models, 1, "b", 0)]
    alone = [new_run_state(models, 0, "a", 0)]
    for _ in range(3):
        rows_t = dexter_step(models, together)
        rows_a = dexter_step(models, alone)
        assert rows_t[0].row["words"] == rows_a[0].row["words"]
        assert rows_t[0].row["loss"] == pytest.approx(rows_a[0].row["loss"], rel=1e-4, abs=1e-5)
    assert torch.allclose(together[0].soft_prompt, alone[0].soft_prompt, atol=1e-5)


def test_outputs_names_exclusion_and_resume(build_models, tmp_path):
    cfg = DexterConfig(steps=5, runs_per_class=3, early_stop=2, images_per_step=2)
    models = build_models(cfg)
    out = _run(models, tmp_path, "out", classes=(1,))
    cdir = out / "001_class1"
    data = json.loads((cdir / "keywords.json").read_text())
    assert data["class_index"] == 1 and data["class_name"] == "class1" and data["mode"] == "single"
    assert [r["run"] for r in data["runs"]] == [0, 1, 2]
    assert set(data["runs"][0]) == {"run", "words", "prompt", "steps", "stopped_early", "hits", "hit_images",
                                    "frames_flagged"}
    words = [r["words"][0] for r in data["runs"] if r["words"]]
    assert len(words) == len(set(words)), "a later run reused an earlier run's word"
    assert data["keywords"] == words
    for r, run in enumerate(data["runs"]):
        rdir = cdir / f"run_{r}"
        config = json.loads((rdir / "config.json").read_text())
        assert config["run"] == r and config["excluded_words"] == [w for w in words[:r]]
        rows = list(csv.DictReader((rdir / "losses.csv").open()))
        assert len(rows) == run["steps"] and rows[0]["step"] == "1"
        assert (rdir / "prompt.txt").read_text().strip() == run["prompt"]
        hits = [int(row["step"]) for row in rows if row["hit"] == "1"]
        frames = sorted(p.name for p in (rdir / "frames").glob("*.png")) if hits else []
        assert all(f"step_{s:05d}_00.png" in frames for s in hits)
        if run["stopped_early"]:
            assert [row["hit"] for row in rows[-2:]] == ["1", "1"]
    stamp = (cdir / "keywords.json").stat().st_mtime_ns
    explain_classes(models, [1], out, progress=False)  # finished class: skipped, untouched
    assert (cdir / "keywords.json").stat().st_mtime_ns == stamp


def test_resume_reuses_completed_runs(build_models, tmp_path):
    models = build_models(DexterConfig(steps=3, runs_per_class=2, early_stop=0))
    out = _run(models, tmp_path, "o", classes=(0,))
    cdir = out / "000_class0"
    (cdir / "keywords.json").unlink()
    run1 = (cdir / "run_1/losses.csv").read_text()
    (cdir / "run_1/result.json").unlink()  # run 1 "crashed"
    stamp0 = (cdir / "run_0/result.json").stat().st_mtime_ns
    explain_classes(models, [0], out, progress=False)
    assert (cdir / "run_0/result.json").stat().st_mtime_ns == stamp0
    assert (cdir / "run_1/losses.csv").read_text() == run1
    assert (cdir / "keywords.json").exists()


def test_bad_class_index(build_models, tmp_path):
    with pytest.raises(DexterInputError, match="out of range"):
        explain_classes(build_models(DexterConfig(steps=1)), [5], tmp_path, progress=False)


def _always(class_index: int, num_classes: int = 2):
    """A classifier that predicts ``class_index`` for every image (huge bias)."""
    from tiny_models import make_tiny_classifier

    from dexter.classifiers import wrap_pipeline_classifier

    clf = wrap_pipeline_classifier(make_tiny_classifier(num_classes))
    with torch.no_grad():
        clf.head.bias.zero_()
        clf.head.bias[class_index] = 100.0
    return clf


def test_early_stop_and_min_steps(build_models):
    models = build_models(DexterConfig(steps=20, early_stop=3), classifier=_always(0))
    s = new_run_state(models, 0, "a", 0)
    while not s.done:
        dexter_step(models, [s])
    first_label = next(i for i, row in enumerate(s.rows, 1) if row["labels"] != "-")
    assert (s.step, s.stopped_early, s.hits) == (max(3, first_label), True, s.step)
    assert s.slots[0].label is not None
    models = build_models(DexterConfig(steps=20, early_stop=3, min_steps=6), classifier=_always(0))
    s = new_run_state(models, 0, "a", 0)
    while not s.done:
        dexter_step(models, [s])
    assert (s.step, s.stopped_early) == (6, True)
    never = build_models(DexterConfig(steps=4, early_stop=3), classifier=_always(1))
    s = new_run_state(never, 0, "a", 0)
    while not s.done:
        dexter_step(never, [s])
    assert (s.step, s.stopped_early, s.hits) == (4, False, 0)


def test_excluded_words_never_become_labels(build_models):
    models = build_models(DexterConfig(steps=8, early_stop=0))
    tokens = models.tokens
    keep = "water"
    excluded = [tokens[i] for i in models.allowed if tokens[i] != keep]
    s = new_run_state(models, 0, "a", 1, excluded_words=excluded)
    assert len(s.excluded_ids) == len(excluded)
    for _ in range(8):
        dexter_step(models, [s])
    labels = {slot.label for slot in s.slots}
    assert labels <= {None, tokens.index(keep)}
    for slot in s.slots:
        assert set(slot.history) <= {tokens.index(keep)}


def test_gradient_checkpointing_gives_the_same_gradient(model_set):
    from tiny_models import make_tiny_classifier

    from dexter.classifiers import wrap_pipeline_classifier
    from dexter.pipeline import load_dexter_models

    grads = []
    for checkpointing in (False, True):
        models = load_dexter_models(wrap_pipeline_classifier(make_tiny_classifier(2)), DexterConfig(),
                                    model_set["stable_diffusion"], model_set["bert"], None,
                                    gradient_checkpointing=checkpointing)
        assert models.sd.unet.is_gradient_checkpointing == checkpointing
        s = new_run_state(models, 0, "a", 0)
        s.soft_prompt.register_hook(lambda g: grads.append(g.clone()))
        dexter_step(models, [s])
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-7)


def test_no_early_stop_without_a_keyword(build_models):
    models = build_models(DexterConfig(steps=5, early_stop=2), classifier=_always(0))
    everything = [models.tokens[i] for i in models.allowed]
    s = new_run_state(models, 0, "a", 1, excluded_words=everything)
    while not s.done:
        dexter_step(models, [s])
    assert (s.step, s.hits, s.stopped_early) == (5, 5, False)
    assert s.slots[0].label is None


def _rigged_bert(model_set, word: str, bias: float = 12.0):
    """A fresh copy of the tiny BERT that predicts ``word`` at every mask (its output bias says so).

    12, not more: -log p(word) must stay above 0 in float32 for the mask loss to show.
    """
    from dexter.loading import load_bert

    model, tok = load_bert(model_set["bert"])
    with torch.no_grad():
        model.get_output_embeddings().bias[tok.convert_tokens_to_ids(word)] = bias
    return model, tok


def _models_with_bert(sd, bert, config, tmp_path, classifier=None):
    from dexter.optimize import DexterModels
    from dexter.vocab_map import load_or_build_vocab_map

    clf = classifier or _always(0)
    clf.requires_grad_(False)
    vmap = load_or_build_vocab_map(bert[1], sd.tokenizer, tmp_path / "cache")
    return DexterModels(sd, bert[0], bert[1], clf, vmap, config, "cpu")


def test_step_loss_uses_the_labels_of_the_previous_step(sd, model_set, tmp_path):
    bert = _rigged_bert(model_set, "water")
    models = _models_with_bert(sd, bert, DexterConfig(steps=3, early_stop=0), tmp_path)
    s = new_run_state(models, 0, "a", 0)
    first = dexter_step(models, [s])[0].row
    assert first["labels"] == "water"  # set by step 1 ...
    assert first["mask_loss"] == 0.0  # ... but step 1's loss used the labels before it: none
    second = dexter_step(models, [s])[0].row
    assert second["words"] == "water" and second["mask_loss"] > 0.0


def test_words_without_a_clip_token_never_become_labels(sd, tmp_path):
    """'zebra' is in BERT's vocabulary but not in CLIP's: its translation row is zero, the image never sees it."""
    from tiny_models import default_words, make_tiny_bert

    from dexter.loading import load_bert

    bert_dir = make_tiny_bert(tmp_path / "bert", [*default_words(), "zebra"])
    model, tok = load_bert(str(bert_dir))
    zebra = tok.convert_tokens_to_ids("zebra")
    with torch.no_grad():
        model.get_output_embeddings().bias[zebra] = 1e4  # BERT predicts zebra at every mask
    models = _models_with_bert(sd, (model, tok), DexterConfig(steps=3, early_stop=0), tmp_path)
    assert zebra not in models.allowed
    assert tok.convert_tokens_to_ids("water") in models.allowed
    s = new_run_state(models, 0, "a", 0)
    for _ in range(3):
        row = dexter_step(models, [s])[0].row
        assert row["words"] == "zebra"
    assert s.slots[0].label is None and s.slots[0].history == {}


def _capture_noise_seeds(monkeypatch):
    import dexter.step as step  # where the batched step calls the sampler

    calls = []
    real = step.sample_images

    def spy(*args, **kwargs):
        calls.append(list(args[8]))
        return real(*args, **kwargs)

    monkeypatch.setattr(step, "sample_images", spy)
    return calls


def test_between_step_noise_is_fresh_each_step_by_default(build_models, monkeypatch):
    calls = _capture_noise_seeds(monkeypatch)
    models = build_models(DexterConfig(steps=3, early_stop=0, images_per_step=2))
    assert models.config.step_noise == "fresh"
    s = new_run_state(models, 0, "a", 0)
    latents = s.latents.clone()
    for _ in range(3):
        dexter_step(models, [s])
    assert len({tuple(c) for c in calls}) == 3, "the same between-step noise at every step"
    assert len(set(calls[0])) == 2  # and a different draw per image
    assert torch.equal(s.latents, latents)  # the initial latent stays fixed
    calls.clear()
    fixed = build_models(DexterConfig(steps=3, early_stop=0, step_noise="fixed"))
    s = new_run_state(fixed, 0, "a", 0)
    for _ in range(3):
        dexter_step(fixed, [s])
    assert calls[0] == calls[1] == calls[2]
    with pytest.raises(DexterInputError, match="step_noise"):
        DexterConfig(step_noise="sometimes")


def test_fresh_noise_is_reproducible_and_independent_of_the_batch(build_models, monkeypatch):
    calls = _capture_noise_seeds(monkeypatch)
    models = build_models(DexterConfig(steps=3, early_stop=0))
    alone = new_run_state(models, 1, "b", 0)
    together = [new_run_state(models, 0, "a", 0), new_run_state(models, 1, "b", 0)]
    for _ in range(2):
        a = dexter_step(models, [alone])[0]
        t = dexter_step(models, together)[1]
        assert calls[-2] == [calls[-1][1]]  # class 1's noise, alone and as the second of a batch
        assert a.row["words"] == t.row["words"]
        assert a.row["loss"] == pytest.approx(t.row["loss"], rel=1e-4, abs=1e-5)
    assert calls[-1][0] != calls[-1][1]  # classes (runs) draw different noise
    again = new_run_state(models, 1, "b", 0)
    calls.clear()
    dexter_step(models, [again])
    from dexter.optimize import step_noise_seeds

    assert step_noise_seeds(models.config, new_run_state(models, 1, "b", 0)) == calls[0]


def test_collect_hits_stops_a_run_once_enough_images_were_classified(build_models, tmp_path):
    models = build_models(DexterConfig(steps=20, early_stop=0, collect_hits=3), classifier=_always(0))
    s = new_run_state(models, 0, "a", 0)
    while not s.done:
        dexter_step(models, [s])
    assert (s.step, s.hit_images, s.stopped_early) == (3, 3, True)
    models = build_models(DexterConfig(steps=20, early_stop=0, collect_hits=3, images_per_step=2),
                          classifier=_always(0))
    out = _run(models, tmp_path, "o", classes=(0,))
    result = json.loads((out / "000_class0/run_0/result.json").read_text())
    assert (result["steps"], result["hit_images"], result["stopped_early"]) == (2, 4, True)
    assert len(list((out / "000_class0/run_0/frames").glob("*.png"))) == 4
    never = build_models(DexterConfig(steps=4, early_stop=0, collect_hits=3), classifier=_always(1))
    s = new_run_state(never, 0, "a", 0)
    while not s.done:
        dexter_step(never, [s])
    assert (s.step, s.hit_images, s.stopped_early) == (4, 0, False)


def test_bias_report_preset():
    cfg = DexterConfig.preset("bias-report")
    assert (cfg.mode, cfg.steps, cfg.collect_hits, cfg.early_stop) == ("multi", 5000, 50, 0)
    assert DexterConfig.preset("bias-report", steps=7).steps == 7
    with pytest.raises(DexterInputError, match="unknown preset"):
        DexterConfig.preset("nope")


@pytest.mark.parametrize("field, value", [("lr", -1.0), ("lr", 0.0), ("inference_steps", 0), ("resolution", 0),
                                          ("collect_hits", -1), ("tau", float("nan"))])
def test_config_rejects_impossible_values(field, value):
    with pytest.raises(DexterInputError, match=field):
        DexterConfig(**{field: value})


def _frames(run_dir):
    import numpy as np
    from PIL import Image

    return [np.asarray(Image.open(p)) for p in sorted((run_dir / "frames").glob("*.png"))]


def test_safety_checker_blanks_and_counts_saved_frames(model_set, tmp_path):
    import shutil

    from tiny_models import add_tiny_safety_checker

    from dexter.pipeline import load_dexter_models

    sd_dir = tmp_path / "sd"
    shutil.copytree(model_set["stable_diffusion"], sd_dir)
    add_tiny_safety_checker(sd_dir, flag_all=True)
    cfg = DexterConfig(steps=3, early_stop=0, runs_per_class=1)
    models = load_dexter_models(_always(0), cfg, str(sd_dir), model_set["bert"], cache_dir=tmp_path / "c")
    assert models.safety is not None
    out = _run(models, tmp_path, "on", classes=(0,))
    frames = _frames(out / "000_class0/run_0")
    assert len(frames) == 3 and all(f.max() == 0 for f in frames)  # every frame flagged -> black
    assert json.loads((out / "000_class0/run_0/result.json").read_text())["frames_flagged"] == 3
    assert json.loads((out / "000_class0/keywords.json").read_text())["frames_flagged"] == 3
    assert json.loads((out / "000_class0/run_0/config.json").read_text())["safety_checker"] == "on"

    off_cfg = DexterConfig(steps=3, early_stop=0, runs_per_class=1, safety_checker=False)
    off = load_dexter_models(_always(0), off_cfg, str(sd_dir),
                             model_set["bert"], cache_dir=tmp_path / "c")
    assert off.safety is None
    out = _run(off, tmp_path, "off", classes=(0,))
    assert any(f.max() > 0 for f in _frames(out / "000_class0/run_0"))
    assert json.loads((out / "000_class0/run_0/result.json").read_text())["frames_flagged"] == 0
    assert json.loads((out / "000_class0/run_0/config.json").read_text())["safety_checker"] == "off"


def test_missing_safety_checker_is_said_once(model_set, tmp_path, caplog):
    import logging

    import dexter.safety as safety

    safety._SAID_MISSING.discard(model_set["stable_diffusion"])
    with caplog.at_level(logging.WARNING, logger="dexter.safety"):
        assert safety.load_safety_filter(model_set["stable_diffusion"]) is None
        assert safety.load_safety_filter(model_set["stable_diffusion"]) is None
    said = [r for r in caplog.records if "no safety checker" in r.getMessage()]
    assert len(said) == 1


def test_safety_filter_is_never_in_the_gradient_loop(build_models, monkeypatch):
    models = build_models(DexterConfig(steps=2, early_stop=0), classifier=_always(0))
    models.safety = lambda images: pytest.fail("safety checker ran inside dexter_step")
    s = new_run_state(models, 0, "a", 0)
    dexter_step(models, [s])
