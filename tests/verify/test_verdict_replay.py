"""bench/verdict_replay.py replays the verdicts of every attribute value from a dump of answers."""

from __future__ import annotations

import importlib.util
from itertools import product
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("verdict_replay", REPO / "bench" / "verdict_replay.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_replay_names_the_planted_shortcut_and_rules_can_be_switched(tmp_path, capsys):
    from world.synthetic import SyntheticWorldConfig, WorldSample, caption

    cfg = SyntheticWorldConfig.from_preset("rich")
    prompts, labels = [], []
    for s, c, b in product(range(4), range(4), range(4)):
        prompts.append(caption(cfg, WorldSample(s, c, b, 0)))
        # circles are circles on water only, and everything on water is a circle; the rest by shape
        own = 0 if cfg.backgrounds[b] == "water" else (1 if s == 0 else s)
        labels.append(np.full(16, own))
    labels = np.stack(labels)
    np.savez(tmp_path / "answers.npz", prompts=np.array(prompts), labels=labels, probs=np.eye(4)[labels])
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["reasoning"]["verify"]["judge"] = False
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    replay = _script()
    replay.main(["replay", str(tmp_path / "answers.npz"), "--params", str(tmp_path / "params.yaml")])
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "verified ['water']" in lines["circle"] and "water +1.00*/+1.00*" in lines["circle"]
    assert all("verified []" in lines[name] for name in ("square", "triangle", "cross"))
    with pytest.raises(SystemExit, match="no reasoning.verify setting"):
        replay.main(["replay", str(tmp_path / "answers.npz"), "--params", str(tmp_path / "params.yaml"),
                     "--set", "bogus=1"])
