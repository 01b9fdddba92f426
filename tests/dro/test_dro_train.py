"""Integration on a small synthetic world with a strong shortcut: ERM vs GroupDRO, resume after a kill,
and what each method is allowed to see."""

import numpy as np
import pytest
import torch

from common.classifier import build_classifier
from dro.data import GroupImageDataset
from dro.evaluate import evaluate_predictions
from dro.pipeline import ModelSpec, retrain
from dro.sources import image_source, predict
from dro.train import SplitData, TrainConfig, train

SPEC = ModelSpec(arch="small_cnn", image_size=16)


def _cfg(method, epochs=6, seed=0):
    return TrainConfig(method=method, epochs=epochs, batch_size=64, lr=3e-3, optimizer="adam", seed=seed,
                       eta=0.1, weight_decay=0.0)


def _fit(world, method, ckpt, epochs=6, seed=0, on_batch=None, session=None, log=lambda s: None):
    torch.manual_seed(seed)
    model = build_classifier("small_cnn", world["train"].info.class_names, 16, width=16)
    tr, va = world["train"], world["val"]
    see = method == "group_dro"
    result = train(model, SplitData(image_source(tr, 16), tr.y, tr.groups, 4),
                   SplitData(image_source(va, 16), va.y, va.groups if see else None, 4 if see else 0),
                   _cfg(method, epochs, seed), ckpt, log=log, on_batch=on_batch, session=session)
    return model, result


def _test_metrics(world, model):
    te = world["test"]
    pred = predict(model, image_source(te, 16), "cpu")
    names = [te.info.group_name(g) for g in range(4)]
    return evaluate_predictions(pred, te.y, te.groups, names, "plain")


@pytest.mark.slow
def test_erm_takes_the_shortcut_and_group_dro_fixes_it(small_world, tmp_path):
    erm, _ = _fit(small_world, "erm", tmp_path / "erm")
    dro, res = _fit(small_world, "group_dro", tmp_path / "dro")
    e, d = _test_metrics(small_world, erm), _test_metrics(small_world, dro)
    assert e["worst_group_acc"] < e["avg_acc"] - 0.25, e
    assert d["worst_group_acc"] > e["worst_group_acc"] + 0.25, (e, d)
    assert res.selection == "val_worst_group" and len(res.history) == 6
    q = res.history[-1]["q"]
    assert abs(sum(q) - 1) < 1e-5


class Killed(Exception):
    pass


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(small_world, tmp_path):
    ref, ref_res = _fit(small_world, "group_dro", tmp_path / "ref", epochs=4)

    def kill(epoch, step):
        if epoch == 3 and step == 5:  # mid-epoch, after two checkpoints
            raise Killed

    with pytest.raises(Killed):
        _fit(small_world, "group_dro", tmp_path / "run", epochs=4, on_batch=kill)
    model, res = _fit(small_world, "group_dro", tmp_path / "run", epochs=4)
    assert res.resumed_from == 2
    assert res.best_epoch == ref_res.best_epoch
    assert res.history == ref_res.history
    for (k, a), (_, b) in zip(ref.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), k
    # a finished run is trained again by a new invocation (what `dvc repro -f` asks for) ...
    again, res2 = _fit(small_world, "group_dro", tmp_path / "run", epochs=4)
    assert res2.resumed_from == 0 and torch.equal(again.head.weight, ref.head.weight)
    # ... and reused only by the rerun of an interrupted invocation that had finished it
    _fit(small_world, "group_dro", tmp_path / "run", epochs=4, session="s1")
    same, res3 = _fit(small_world, "group_dro", tmp_path / "run", epochs=4, session="s1")
    assert res3.resumed_from == 4 and torch.equal(same.head.weight, ref.head.weight)
    _, res4 = _fit(small_world, "group_dro", tmp_path / "run", epochs=4, session="s2")
    assert res4.resumed_from == 0


def test_checkpoint_whose_best_weights_belong_to_another_run_is_not_resumed(small_world, tmp_path):
    """``best.safetensors`` is what the run returns: one written by another run must not be taken for it."""
    import shutil

    def kill(epoch, step):
        if epoch == 2 and step == 0:
            raise Killed

    with pytest.raises(Killed):
        _fit(small_world, "erm", tmp_path / "run", epochs=2, on_batch=kill)
    _fit(small_world, "erm", tmp_path / "other", epochs=1, seed=1)
    shutil.copy(tmp_path / "other" / "best.safetensors", tmp_path / "run" / "best.safetensors")
    logs = []
    model, res = _fit(small_world, "erm", tmp_path / "run", epochs=2, log=logs.append)
    assert res.resumed_from == 0 and any("not this run's best epoch" in m for m in logs), logs
    ref, _ = _fit(small_world, "erm", tmp_path / "ref", epochs=2)
    assert torch.equal(model.head.weight, ref.head.weight)


def test_zeroed_best_weights_are_never_returned(small_world, tmp_path):
    """A finished run's ``best.safetensors`` replaced by zeros under the run's own stamp (same fingerprint and
    epoch in its metadata) is not this run's file: the rerun trains again instead of returning zeros."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    _fit(small_world, "erm", tmp_path / "run", epochs=2, session="s")
    best = tmp_path / "run" / "best.safetensors"
    with safe_open(best, framework="pt") as f:
        stamp = f.metadata()
    save_file({k: torch.zeros_like(v) for k, v in load_file(best).items()}, best, metadata=stamp)
    logs = []
    model, res = _fit(small_world, "erm", tmp_path / "run", epochs=2, session="s", log=logs.append)
    assert any("not this run's best epoch" in m for m in logs), logs
    assert model.head.weight.abs().sum() > 0
    ref, _ = _fit(small_world, "erm", tmp_path / "ref", epochs=2)
    assert torch.equal(model.head.weight, ref.head.weight)


def test_erm_identity_leaves_out_the_group_dro_settings(small_world):
    """Changing ``dro.*`` (eta, adjustment, ...) or the evaluation batch must not throw away an ERM
    checkpoint; for group DRO the loss settings are part of the run."""
    from dataclasses import replace

    import dro.train as T

    tr, va = small_world["train"], small_world["val"]
    model = build_classifier("small_cnn", tr.info.class_names, 16, width=4)
    data = (SplitData(image_source(tr, 16), tr.y, tr.groups, 4), SplitData(image_source(va, 16), va.y))
    erm, dro = _cfg("erm"), _cfg("group_dro")
    other = dict(eta=0.5, adjustment=1.0, normalize_loss=True, balanced_sampling=False, eval_batch_size=7)
    assert T.fingerprint(model, replace(erm, **other), *data) == T.fingerprint(model, erm, *data)
    assert T.fingerprint(model, replace(dro, eta=0.5), *data) != T.fingerprint(model, dro, *data)
    assert T.fingerprint(model, replace(erm, lr=0.5), *data) != T.fingerprint(model, erm, *data)


def test_fingerprint_covers_all_training_code_and_the_device(small_world, monkeypatch):
    from pathlib import Path

    import dro.train as T

    tr, va = small_world["train"], small_world["val"]
    args = (build_classifier("small_cnn", tr.info.class_names, 16, width=4), _cfg("erm"),
            SplitData(image_source(tr, 16), tr.y), SplitData(image_source(va, 16), va.y))
    base = T.fingerprint(*args)
    assert T.fingerprint(*args, device="meta") != base
    real = Path.read_bytes
    # forward pass and preprocessing, decoding, model selection, the synthetic world's renderer
    for module in ("common/classifier.py", "dro/data/base.py", "dro/evaluate.py", "world/synthetic.py"):
        monkeypatch.setattr(Path, "read_bytes", lambda self, m=module: real(self) + (
            b"#" if self.as_posix().endswith(m) else b""))
        assert T.fingerprint(*args) != base, module
    monkeypatch.setattr(Path, "read_bytes", real)
    assert T.fingerprint(*args) == base


def test_checkpoint_for_other_settings_is_not_resumed(small_world, tmp_path):
    _fit(small_world, "erm", tmp_path / "c", epochs=1)
    logs = []
    torch.manual_seed(0)
    model = build_classifier("small_cnn", small_world["train"].info.class_names, 16, width=16)
    tr, va = small_world["train"], small_world["val"]
    res = train(model, SplitData(image_source(tr, 16), tr.y), SplitData(image_source(va, 16), va.y),
                _cfg("erm", epochs=1, seed=1), tmp_path / "c", log=logs.append)
    assert res.resumed_from == 0 and any("ignoring checkpoint" in m for m in logs)


def _hide_attributes(ds: GroupImageDataset) -> GroupImageDataset:
    return GroupImageDataset(ds.info, ds.split, ds.y, np.full(len(ds), -1), pixels=ds.pixels, cells=ds.cells)


def test_dro_dexter_runs_without_any_true_group_and_oracle_refuses(small_world, tmp_path):
    """dro_dexter must not need a single true attribute of train/val; only test groups are used."""
    blind = {"train": _hide_attributes(small_world["train"]), "val": _hide_attributes(small_world["val"]),
             "test": small_world["test"]}
    pseudo = {s: 2 * blind[s].y + (np.arange(len(blind[s])) % 7 == 0) for s in ("train", "val")}
    run = retrain("dro_dexter", blind, SPEC, _cfg("group_dro", epochs=1), pseudo=pseudo, mode="full",
                  erm_model=None, ckpt_dir=tmp_path / "ck", cache_dir=tmp_path / "cache", model_out=None,
                  convention="plain", device=torch.device("cpu"), log=lambda s: None)
    assert run.metrics["selection_groups"] == "pseudo" and len(run.metrics["group_acc"]) == 8  # 2x2x2 cells
    with pytest.raises(ValueError, match="true group"):
        retrain("groupdro_oracle", blind, SPEC, _cfg("group_dro", epochs=1), pseudo=None, mode="full",
                erm_model=None, ckpt_dir=tmp_path / "ck2", cache_dir=tmp_path / "cache", model_out=None,
                convention="plain", device=torch.device("cpu"), log=lambda s: None)


@pytest.mark.slow
def test_last_layer_group_dro_on_cached_features(small_world, tmp_path):
    # A backbone whose features hold the shape as well as the background (trained where the shortcut is
    # weak): the head retrained on the strongly biased world can then follow either.
    from dro_world import make_world

    from dro.data import open_prepared

    mild = open_prepared(make_world(tmp_path / "mild", correlation=0.8))
    erm, _ = _fit(mild, "erm", tmp_path / "erm", epochs=6)
    logs = []
    cfg = TrainConfig(method="erm", epochs=30, batch_size=128, lr=1e-2, optimizer="adam", seed=0, eta=0.1)
    kw = dict(pseudo=None, mode="last_layer", erm_model=erm, cache_dir=tmp_path / "feats",
              convention="plain", device=torch.device("cpu"), log=logs.append)
    e = retrain("erm", small_world, SPEC, cfg, ckpt_dir=tmp_path / "a", model_out=None, **kw)
    d = retrain("groupdro_oracle", small_world, SPEC, cfg, ckpt_dir=tmp_path / "b", model_out=tmp_path / "m", **kw)
    assert any("features from cache" in m for m in logs)  # second method reuses the first's features
    assert d.metrics["worst_group_acc"] > e.metrics["worst_group_acc"] + 0.25, (e.metrics, d.metrics)
    from common.classifier import load_classifier
    m = load_classifier(tmp_path / "m")
    assert torch.equal(m.backbone[0].weight, erm.backbone[0].weight)  # backbone kept


_KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {here!r})
import torch
from dro.data import open_prepared
import test_dro_train as T

def kill(epoch, step):
    if epoch == 2 and step == 3:
        os.kill(os.getpid(), signal.SIGKILL)

T._fit(open_prepared({world!r}), "group_dro", {ckpt!r}, epochs=3, on_batch=kill)
"""


@pytest.mark.slow
def test_sigkill_mid_epoch_then_rerun_matches_uninterrupted(small_world, small_world_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    script = _KILL_SCRIPT.format(here=str(Path(__file__).parent), world=str(small_world_dir),
                                 ckpt=str(tmp_path / "run"))
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    model, res = _fit(small_world, "group_dro", tmp_path / "run", epochs=3)
    ref, ref_res = _fit(small_world, "group_dro", tmp_path / "ref", epochs=3)
    assert res.resumed_from == 1 and res.history == ref_res.history
    for (k, a), (_, b) in zip(ref.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), k


class BackgroundEncoder:
    """A stand-in CLIP whose image embedding is the image border's mean colour (the background) and whose
    text embedding of a background word is that background's colour: a labeller that sees the shortcut."""

    name = "background-colour"
    COLOURS = {"water": (62.5, 117.5, 190.0), "land": (115.0, 115.0, 55.0)}

    def encode_text(self, texts):
        return torch.tensor([[c - 128.0 for c in next(v for k, v in self.COLOURS.items() if k in t)]
                             for t in texts])

    def encode_images(self, dataset, batch_size=256, num_workers=0, progress=None):
        px = torch.from_numpy(dataset.pixels).float()
        border = torch.cat([px[:, 0], px[:, -1], px[:, :, 0], px[:, :, -1]], dim=1).mean(1)
        emb = border - 128.0
        return emb / emb.norm(dim=1, keepdim=True)


@pytest.mark.slow
def test_labelling_then_dro_dexter_recovers_worst_group(small_world, tmp_path):
    from dro.pipeline import label_splits, load_pseudo_groups

    quality = label_splits(small_world, BackgroundEncoder(), [["water"], ["land"]], ["a picture of a {}."], ["{}"],
                           0.02, tmp_path / "cache", tmp_path / "labels", log=lambda s: None)
    assert quality["train"]["accuracy"] > 0.95
    assert all(c["f1_conflicting"] > 0.8 for c in quality["train"]["per_class"].values())
    pseudo = load_pseudo_groups(tmp_path / "labels", small_world)
    kw = dict(mode="full", erm_model=None, cache_dir=tmp_path / "c", model_out=None, convention="plain",
              device=torch.device("cpu"), log=lambda s: None)
    erm = retrain("erm", small_world, SPEC, _cfg("erm"), pseudo=None, ckpt_dir=tmp_path / "e", **kw)
    dex = retrain("dro_dexter", small_world, SPEC, _cfg("group_dro"), pseudo=pseudo, ckpt_dir=tmp_path / "d", **kw)
    assert dex.metrics["worst_group_acc"] > erm.metrics["worst_group_acc"] + 0.25, (erm.metrics, dex.metrics)
