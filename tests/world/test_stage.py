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
    params["synthetic"]["num_classes"] = 3
    params.setdefault("world", {})["root"] = str(world)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(sys, "argv", ["world_gates", "--params", str(tmp_path / "params.yaml"),
                                      "--metrics", str(tmp_path / "m.json")])
    with pytest.raises(SystemExit) as e:
        world_gates.main()
    assert e.value.code == 2
    assert "cover only 2 classes" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()
