"""End to end on YOUR data and YOUR classifier: the real ``dvc repro`` of every stage, with ``dataset: folder``
(a tiny CSV-described image folder, tests/data/folderfixture.py) and ``classifier: torchvision resnet18`` from a
checkpoint file (random weights saved as safetensors), which is audited instead of a trained one.

The images are the small synthetic world's pictures, written as PNG files in a nested layout, so the world's
committed models (``data/world``: SD, BERT, CLIP) can explain and label them offline; nothing else of the
world is used (no world gates, no world vocabulary, no ablation rows: the folder kind is not the world).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from tests.data.folderfixture import folder_params, make_folder_dataset
from tests.test_pipeline_e2e import REPO, WORLD, copy_pipeline, init_dvc, run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (WORLD / "sd").is_dir(), reason="world models not trained yet (data/world)"),
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    import torch
    import torchvision
    from safetensors.torch import save_file

    from world.synthetic import SyntheticWorldConfig

    ws = tmp_path_factory.mktemp("folder_pipeline")
    copy_pipeline(ws)
    make_folder_dataset(ws / "data" / "mine", {"train": 64, "val": 16, "test": 32})
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=2)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, ws / "mine_resnet18.safetensors")
    small = SyntheticWorldConfig.from_preset("small")
    (ws / "bank.txt").write_text("\n".join(f"a picture of a {c} {s} on {b}" for s in small.classes
                                           for c in small.colors for b in small.backgrounds) + "\n")

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["dataset"] = "folder"
    params["folder"] = folder_params("data/mine")
    params["classifier"] = {"source": "torchvision", "name": "resnet18", "checkpoint": "mine_resnet18.safetensors",
                            "pretrained": False, "image_size": 32}
    params["seeds"] = [0]
    params["dexter"].update(runs_per_class=1, steps=4, min_steps=0, early_stop=0)
    params["reasoning"]["phrase_bank"] = "bank.txt"
    params["labelling"]["templates"] = "world"  # the tiny world CLIP knows only the world's words
    init_dvc(ws, params)
    return ws


@pytest.fixture(scope="module")
def repro(workspace):
    return run([sys.executable, "-m", "dvc", "repro"], workspace)


def test_folder_dataset_is_prepared_from_the_csv(workspace, repro):
    data = json.loads((workspace / "metrics/data.json").read_text())
    assert data["dataset"] == "folder"
    assert {s: v["size"] for s, v in data["splits"].items()} == {"train": 64, "val": 16, "test": 32}
    assert json.loads((workspace / "metrics/world.json").read_text())["skipped"].startswith("dataset is folder")


def test_the_checkpoint_is_audited_not_a_trained_model(workspace, repro):
    from safetensors.torch import load_file

    erm = json.loads((workspace / "outputs/erm/config.json").read_text())
    assert erm["arch"] == "torchvision:resnet18" and erm["class_names"] == ["circle", "square"]
    mine = load_file(workspace / "mine_resnet18.safetensors")
    audited = load_file(workspace / "outputs/erm/model.safetensors")
    assert (audited["backbone.conv1.weight"] == mine["conv1.weight"]).all()
    assert (audited["head.weight"] == mine["fc.weight"]).all()
    assert "imported" in json.loads((workspace / "metrics/erm.json").read_text())
    assert set(json.loads((workspace / "results/keywords.json").read_text())) == {"circle", "square"}


def test_every_row_is_evaluated_on_the_csv_attributes(workspace, repro):
    metrics = json.loads((workspace / "results/metrics.json").read_text())
    wanted = yaml.safe_load((workspace / "params.yaml").read_text())["dro"]["methods"]
    assert list(metrics["methods"]) == wanted and "dro_classname" not in wanted  # every row; no world ablations
    for m in metrics["methods"].values():
        assert 0.0 <= m["worst_group_acc"] <= m["avg_acc"] <= 1.0
        assert all(g.split("|")[1].startswith("color+background=") for g in m["group_acc"])
    per_seed = json.loads((workspace / "results/per_seed.json").read_text())
    assert per_seed["erm"][0]["selection"] == "imported"
    assert "Folder dataset" in (workspace / "results/table.md").read_text()
    page = (workspace / "results/report.html").read_text(encoding="utf-8")
    assert page.count('class="bar"') == 2 * len(wanted) and 'class="heat"' in page  # worst-group and average
    assert "| method |" not in page and "![" not in page  # the Markdown is rendered, not shown as source
    assert page.count("<img ") >= 1 and page.count('src="data:image/png;base64,') == page.count("<img ")
