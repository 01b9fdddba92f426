"""The three thin stages end to end in a scratch project: train_erm -> label -> retrain -> results/."""

import json
import sys
from pathlib import Path

import pytest
import yaml


def params_for(clip):
    return {
        "dataset": "synthetic", "device": "cpu", "seeds": [0, 1],
        "synthetic": {"preset": "small", "image_size": 16,
                      "train": {"arch": "small_cnn", "image_size": 16, "batch_size": 64, "optimizer": "adam",
                                "lr": 0.003, "epochs": 2}},
        "models": {"world": {"stable_diffusion": "x", "bert": "x", "clip": str(clip)}},
        "dro": {"eta": 0.1, "grid": {"adjustment": [0.0], "eta": [0.1]}, "dfr": {"n_fits": 2}},
    }


@pytest.mark.slow
def test_stages_end_to_end(tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dro_world import make_world
    from tiny_models import make_tiny_clip

    monkeypatch.chdir(tmp_path)
    make_world(Path("data/prepared"), sizes={"train": 400, "val": 80, "test": 160})
    clip = make_tiny_clip(tmp_path / "clip", image_size=16)

    from common.errors import UserInputError
    from stages import label, retrain, train_erm

    Path("params.yaml").write_text(yaml.safe_dump(params_for(clip)))
    with pytest.raises(UserInputError, match="no attributes for class 0"):
        label.run([])
    for c, (name, words) in enumerate([("circle", ["water"]), ("square", ["land"])]):
        d = Path(f"outputs/reasoning/{c:03d}_{name}")
        d.mkdir(parents=True)  # the reasoning output of before verdicts: no verdict, no alternatives
        (d / "attributes.json").write_text(json.dumps({"class_name": name, "attributes": words}))

    train_erm.run([])
    assert Path("outputs/erm/model.safetensors").exists() and Path("outputs/erm/config.json").exists()
    label.run([])
    quality = json.loads(Path("metrics/labelling.json").read_text())
    assert 0 <= quality["train"]["accuracy"] <= 1 and 0 <= quality["train"]["f1_conflicting_pooled"] <= 1
    assert set(quality["train"]["per_class"]) == {"circle", "square"}
    assert set(quality["ablations"]) == {"dro_classname", "dro_random"}
    for method in ("dro_classname", "dro_random"):
        assert Path(f"outputs/labels/pseudo_groups.{method}.csv").is_file()
        meta = json.loads(Path(f"outputs/labels/meta.{method}.json").read_text())
        assert meta["rule"] == {"circle": "alternatives", "square": "alternatives"}
    assert json.loads(Path("outputs/labels/meta.json").read_text())["rule"] == {"circle": "b2t", "square": "b2t"}
    assert set(quality["peers"]) == {"dro_b2t"} and Path("outputs/labels/pseudo_groups.dro_b2t.csv").is_file()
    b2t = json.loads(Path("outputs/labels/b2t.json").read_text())
    assert set(b2t["attributes"]) == {"circle", "square"} and "captioned_by" in b2t
    discovery = json.loads(Path("outputs/labels/discovery.json").read_text())
    assert discovery["shortcut_recall"] == 1.0 and discovery["attribute_precision"] == 1.0
    assert discovery["classes"]["circle"]["true_shortcut"] == "background=water"
    retrain.run([])
    metrics = json.loads(Path("results/metrics.json").read_text())
    from stages.params.dro import DEFAULT_METHODS

    methods = [*DEFAULT_METHODS, "dro_classname", "dro_random"]
    assert list(metrics["methods"]) == methods
    assert metrics["discovery"] == discovery
    for m in metrics["methods"].values():
        assert 0 <= m["worst_group_acc"] <= m["avg_acc"] <= 1
        assert len(m["group_acc"]) == 8 and m["num_seeds"] == 2  # every (shape, colour, background) cell
        assert m["worst_group_acc"] <= min(v for v in m["group_acc"].values() if v is not None) + 1e-9
    table = Path("results/table.md").read_text()
    assert "| DEXTER + DRO | train images + class labels | pseudo (dro_dexter) | pseudo |" in table
    assert "random words + DRO" in table and "Convention:" in table and "| JTT |" in table and "| DFR |" in table
    bars = Path("results/group_acc.csv").read_text().splitlines()
    assert bars[0] == "bar,method,group,accuracy" and len(bars) == 1 + len(methods) * 8
    curves = Path("results/curves.csv").read_text().splitlines()
    assert curves[0].startswith("epoch," + ",".join(methods) + ",")
    assert len(curves) == 1 + 2
    erm = json.loads(Path("metrics/erm.json").read_text())
    assert erm["selection"] == "val_avg" and 0 <= erm["test_worst_group_acc"] <= erm["test_avg_acc"] <= 1
    # ERM is trained once: the erm row of seed `seed` (0) is the audited model, evaluated the same way;
    # only the other seed trains an ERM model in the retrain stage.
    per_seed = json.loads(Path("results/per_seed.json").read_text())
    row0, row1 = per_seed["erm"]
    assert (row0["seed"], row0["model"]) == (0, "outputs/erm") and "model" not in row1
    assert (row0["worst_group_acc"], row0["avg_acc"]) == (erm["test_worst_group_acc"], erm["test_avg_acc"])
    assert row0["group_acc"] == erm["test_group_acc"] and row0["best_epoch"] == erm["best_epoch"]
    assert not Path("outputs/checkpoints/retrain/full/erm/seed0").exists()
    assert Path("outputs/checkpoints/retrain/full/erm/seed1/last.pt").exists()
    assert not Path("outputs/retrain/erm/seed0").exists() and Path("outputs/retrain/erm/seed1").is_dir()
    # a rerun (a new invocation: every run is trained again) reproduces the metrics
    retrain.run([])
    assert json.loads(Path("results/metrics.json").read_text()) == metrics


def test_erm_row_is_trained_when_the_audited_model_differs(tmp_path, small_world, capsys):
    """Another seed, other epochs or other data: the audited model is not the row's run, so no reuse."""
    from dataclasses import replace

    from dro.evaluate import convention_for
    from dro.pipeline import ModelSpec, reuse_erm, train_erm_classifier
    from dro.train import TrainConfig

    spec = ModelSpec(arch="small_cnn", image_size=16)
    cfg = TrainConfig(method="erm", epochs=1, batch_size=128, lr=0.003, seed=0, optimizer="adam")
    model, _ = train_erm_classifier(small_world, spec, cfg, tmp_path / "ckpt", tmp_path / "erm", "cpu", log=print)
    run = reuse_erm(tmp_path / "erm", small_world, spec, replace(cfg, eta=0.5, eval_batch_size=64),
                    convention_for("synthetic"), "cpu")  # settings ERM does not use do not matter
    assert run is not None and run.result.history and run.metrics["model"] == str(tmp_path / "erm")
    for other in (replace(cfg, seed=1), replace(cfg, epochs=2)):
        assert reuse_erm(tmp_path / "erm", small_world, spec, other, convention_for("synthetic"), "cpu") is None
    assert reuse_erm(tmp_path / "erm", small_world, replace(spec, image_size=32), cfg,
                     convention_for("synthetic"), "cpu") is None
    smaller = {**small_world, "train": small_world["val"]}
    assert reuse_erm(tmp_path / "erm", smaller, spec, cfg, convention_for("synthetic"), "cpu") is None
    out = capsys.readouterr().err  # the library logs (logging, to stderr as the stages configure it)
    assert "differs (train.seed)" in out and "differs (train.epochs)" in out and "model.image_size" in out
    assert "data.train" in out
    assert reuse_erm(tmp_path / "nothing", small_world, spec, cfg, convention_for("synthetic"), "cpu") is None
