"""The world models' learning-rate schedule works for every step count (``--vae-steps 20`` divided by zero)."""

from __future__ import annotations

import json

import pytest
import torch

from world.schedule import one_cycle


def _lrs(make, steps: int) -> list[float]:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = make(opt)
    out = []
    for _ in range(steps):
        opt.step()
        sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


@pytest.mark.parametrize("pct", [0.05, 0.1, 0.25, 0.5])
def test_every_step_count_runs(pct):
    for steps in range(0, 120):
        lrs = _lrs(lambda opt: one_cycle(opt, 1e-3, steps, pct), max(steps, 1))
        assert all(0 < lr <= 1e-3 + 1e-12 for lr in lrs[:-1]), (pct, steps)


@pytest.mark.parametrize("steps,pct", [(600, 0.05), (500, 0.1), (40, 0.05), (21, 0.05)])
def test_the_recipe_is_torch_one_cycle_where_torch_works(steps, pct):
    """The committed world models were trained with torch's schedule: it must be unchanged for them."""
    ours = _lrs(lambda opt: one_cycle(opt, 1e-3, steps, pct), steps)
    torchs = _lrs(lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps,
                                                                  pct_start=pct), steps)
    assert ours == torchs


def test_world_train_with_a_one_step_warm_up(tmp_path):
    """``python -m world train --vae-steps 20`` (and 10 BERT steps): a 1-step warm-up at 5 % / 10 %."""
    from world.__main__ import main

    torch.set_num_threads(1)
    rc = main(["train", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--phases", "vae,bert",
               "--vae-steps", "20", "--vae-batch", "4", "--bert-steps", "10", "--bert-batch", "4",
               "--train-images", "16", "--threads", "1"])
    assert rc == 0
    assert json.loads((tmp_path / "work" / "vae" / ".done").read_text())["final_mse"] > 0
    assert (tmp_path / "out" / "bert" / ".done").exists()


def test_clip_tune_continues_the_trained_clip_once(tmp_path):
    """``--clip-tune-steps``: the clip_tune phase continues out/clip and marks it; a rerun with the same
    setting does nothing, one with another setting is refused (the folder would not be what it says)."""
    from world.__main__ import main

    torch.set_num_threads(1)
    args = ["train", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--phases",
            "clip,clip_tune", "--clip-steps", "4", "--clip-batch", "4", "--clip-vision-warm-steps", "0",
            "--train-images", "16", "--threads", "1"]
    assert main([*args, "--clip-tune-steps", "0"]) == 0
    clip = tmp_path / "out" / "clip"
    assert not (clip / ".tuned").exists()
    before = (clip / "model.safetensors").read_bytes()
    assert main([*args, "--clip-tune-steps", "3"]) == 0
    assert json.loads((clip / ".tuned").read_text())["steps"] == 3
    tuned = (clip / "model.safetensors").read_bytes()
    assert tuned != before
    assert main([*args, "--clip-tune-steps", "3"]) == 0 and (clip / "model.safetensors").read_bytes() == tuned
    for other in ("5", "0"):
        with pytest.raises(ValueError, match="tuned with"):
            main([*args, "--clip-tune-steps", other])
