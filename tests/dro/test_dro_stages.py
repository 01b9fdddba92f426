"""The three thin stages end to end in a scratch project: train_erm -> label -> retrain -> results/."""

import json
import sys
from pathlib import Path

import pytest
import yaml


def params_for(clip):
    return {
        "dataset": "synthetic", "device": "cpu", "seeds": [0, 1],
        "synthetic": {"image_size": 16, "train": {"arch": "small_cnn", "image_size": 16, "batch_size": 64,
                                                  "optimizer": "adam", "lr": 0.003, "epochs": 2}},
        "models": {"world": {"stable_diffusion": "x", "bert": "x", "clip": str(clip)}},
        "dro": {"eta": 0.1},
    }


@pytest.mark.slow
def test_stages_end_to_end(tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tiny_models import make_tiny_clip

    from dro_world import make_world

    monkeypatch.chdir(tmp_path)
    make_world(Path("data/prepared"), sizes={"train": 400, "val": 80, "test": 160})
    clip = make_tiny_clip(tmp_path / "clip", image_size=16)

    from stages import label, retrain, train_erm
    from stages.common import StageInputError

    Path("params.yaml").write_text(yaml.safe_dump(params_for(clip)))
    with pytest.raises(StageInputError, match="no attributes for class 0"):
        label.run([])
    for c, (name, words) in enumerate([("circle", ["water"]), ("square", ["land"])]):
        d = Path(f"outputs/reasoning/{c:03d}_{name}")
        d.mkdir(parents=True)
        (d / "attributes.json").write_text(json.dumps({"class_name": name, "attributes": words}))

    train_erm.run([])
    assert Path("outputs/erm/model.safetensors").exists() and Path("outputs/erm/config.json").exists()
    label.run([])
    quality = json.loads(Path("metrics/labelling.json").read_text())
    assert 0 <= quality["train"]["accuracy"] <= 1
    assert set(quality["train"]["per_class"]) == {"circle", "square"}
    retrain.run([])
    metrics = json.loads(Path("results/metrics.json").read_text())
    assert set(metrics["methods"]) == {"erm", "groupdro_oracle", "dro_dexter"}
    for m in metrics["methods"].values():
        assert 0 <= m["worst_group_acc"] <= m["avg_acc"] <= 1
        assert len(m["group_acc"]) == 4 and m["num_seeds"] == 2
    table = Path("results/table.md").read_text()
    assert "| DEXTER + DRO | no | no |" in table and "Convention:" in table
    bars = Path("results/group_acc.csv").read_text().splitlines()
    assert bars[0] == "bar,method,group,accuracy" and len(bars) == 1 + 3 * 4
    curves = Path("results/curves.csv").read_text().splitlines()
    assert curves[0].startswith("epoch,erm,groupdro_oracle,dro_dexter,") and len(curves) == 1 + 2
    erm = json.loads(Path("metrics/erm.json").read_text())
    assert erm["selection"] == "val_avg" and 0 <= erm["test_worst_group_acc"] <= erm["test_avg_acc"] <= 1
    # a rerun (a new invocation: every run is trained again) reproduces the metrics
    retrain.run([])
    assert json.loads(Path("results/metrics.json").read_text()) == metrics
