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
    assert set(data["runs"][0]) == {"run", "words", "prompt", "steps", "stopped_early", "hits"}
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
