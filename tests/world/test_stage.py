import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_stage_fails_loudly_when_params_ask_for_an_uncovered_world(tmp_path, monkeypatch, capsys):
    from stages import world_gates

    world = tmp_path / "world"
    world.mkdir()
    (world / "world.json").write_text(json.dumps({"num_classes": 2, "image_size": 32, "shapes": ["circle", "square"],
                                                  "colors": ["red", "yellow"], "backgrounds": ["water", "land"]}))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synthetic"]["preset"] = None  # the default world (4 shapes), with the small world's models
    params["synthetic"]["models"] = "world"
    params.setdefault("world", {})["root"] = str(world)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(sys, "argv", ["world_gates", "--params", str(tmp_path / "params.yaml"),
                                      "--metrics", str(tmp_path / "m.json")])
    with pytest.raises(SystemExit) as e:
        world_gates.main()
    assert e.value.code == 2
    assert "synthetic.classes asks for ['triangle', 'cross']" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_prepare_refuses_values_the_world_models_never_saw(tmp_path, monkeypatch, capsys):
    from stages import prepare

    world = tmp_path / "world"
    (world / "clip").mkdir(parents=True)
    (world / "world.json").write_text(json.dumps({"num_classes": 2, "image_size": 32, "shapes": ["circle", "square"],
                                                  "colors": ["red", "yellow"], "backgrounds": ["water", "land"]}))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synthetic"].update(preset=None, classes=["circle", "square"], colors=["red", "purple"], backgrounds=["water", "land"],
                               shortcuts={"circle": None, "square": None}, models="mine")
    params["models"]["mine"] = {"stable_diffusion": str(world / "sd"), "bert": str(world / "bert"),
                                "clip": str(world / "clip")}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(sys, "argv", ["prepare", "--params", str(tmp_path / "params.yaml"),
                                      "--out", str(tmp_path / "prepared"), "--stats", str(tmp_path / "s.json")])
    with pytest.raises(SystemExit) as e:
        prepare.main()
    assert e.value.code == 2
    assert "synthetic.colors asks for ['purple']" in capsys.readouterr().err
    assert not (tmp_path / "prepared").exists()
