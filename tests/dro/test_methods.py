"""The method registry and each method's loss, weights and visible labels, on tiny data."""

import numpy as np
import pytest
import torch

from dro.dfr import DfrSettings, balanced_subset, fit_dfr_head, split_halves
from dro.group_dro import epoch_order
from dro.methods import METHODS, UnknownMethodError, get_method, labellings_needed
from dro.pipeline import (
    DroGrid,
    JttSettings,
    ModelSpec,
    inverse_frequency_weights,
    jtt_repeats,
    retrain,
    visible_groups,
)
from dro.report import build_metrics, table_markdown
from dro.train import SplitData, TrainConfig, train

SPEC = ModelSpec(arch="small_cnn", image_size=16)
QUIET = dict(log=lambda s: None)


def _cfg(epochs=1, **kw):
    return TrainConfig(method="erm", epochs=epochs, batch_size=64, lr=3e-3, optimizer="adam", seed=0, eta=0.1, **kw)


# --- registry -------------------------------------------------------------------------------------------


def test_unknown_method_is_a_one_line_error_listing_the_known_ones():
    with pytest.raises(UnknownMethodError) as e:
        get_method("dro_dexterr")
    msg = str(e.value)
    assert "\n" not in msg and "'dro_dexterr'" in msg and "jtt" in msg and "dfr_dexter" in msg


def test_params_reject_an_unknown_method_in_one_line():
    from stages.params import ParamsError, parse_params

    with pytest.raises(ParamsError, match=r"dro.methods: unknown method 'nope'; known: erm, ") as e:
        parse_params({"models": {"world": {"stable_diffusion": "x", "bert": "x", "clip": "x"}},
                      "dro": {"methods": ["erm", "nope"]}})
    assert "\n" not in str(e.value)


def test_every_registered_method_appears_in_the_table_with_what_it_used():
    block = {"worst_group_acc": 0.5, "avg_acc": 0.8, "avg_acc_plain": 0.8, "avg_acc_train_weighted": 0.7,
             "group_acc": {"g": 0.5}, "group_count": {"g": 1}, "avg_acc_convention": "train_weighted"}
    per_seed = {name: [dict(block, seed=0)] for name in METHODS}
    metrics = build_metrics("waterbirds", per_seed, [0], "full")
    table = table_markdown(metrics)
    for name, m in METHODS.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| {m.label} |"))
        assert m.discovery_data in row and m.training_data in row, row
        assert metrics["methods"][name]["uses"]["groups_for_selection"] == m.selection_groups
    header = table.splitlines()[2]
    for col in ("groups in training", "groups for selection", "data used for discovery",
                "average, train-weighted", "average, plain", "published worst-group (quoted)"):
        assert col in header
    assert "(quoted)" in table and "arXiv 2510.14741" in table and "sample std" in table
    dexter = next(line for line in table.splitlines() if line.startswith("| DEXTER + DRO |"))
    assert "| pseudo (dro_dexter) | pseudo |" in dexter and "70.0 ± 0.0 | 80.0 ± 0.0" in dexter


def test_data_free_rows_see_no_true_group_and_the_labellings_they_need():
    data_free = [n for n, m in METHODS.items() if m.pseudo_from in ("dro_dexter", "dro_classname", "dro_random")]
    assert {"dro_dexter", "dfr_dexter", "rw_dexter", "us_dexter"} <= set(data_free)
    for name in data_free:
        m = METHODS[name]
        assert "true" not in (m.train_groups, m.selection_groups), name
    assert labellings_needed(["erm", "dfr_dexter", "dro_b2t", "rw_dexter"]) == ["dro_dexter", "dro_b2t"]
    assert labellings_needed(["erm", "groupdro_oracle", "jtt"]) == []


# --- weights and samplers -------------------------------------------------------------------------------


def test_reweighting_weights_are_inverse_group_frequencies():
    g = np.array([0, 0, 0, 0, 0, 0, 1, 1, 3, 3])  # group 2 absent
    w = inverse_frequency_weights(g)
    assert np.allclose(w[g == 0], 10 / (3 * 6)) and np.allclose(w[g == 1], 10 / (3 * 2))
    assert np.allclose(w[g == 3], 10 / (3 * 2)) and np.isclose(w.mean(), 1.0)
    totals = [w[g == k].sum() for k in (0, 1, 3)]
    assert np.allclose(totals, totals[0])  # every present group carries the same total weight


def test_jtt_upweights_exactly_the_error_set():
    errors = np.array([False, True, False, True, False])
    r = jtt_repeats(errors, 7)
    assert r.tolist() == [1, 7, 1, 7, 1]
    order = epoch_order(5, 0, 1, repeats=r)
    assert len(order) == 17 and np.bincount(order, minlength=5).tolist() == [1, 7, 1, 7, 1]
    with pytest.raises(ValueError):
        jtt_repeats(errors, 0)


def test_reweighted_loss_is_the_weighted_mean(small_world, tmp_path):
    """One SGD step of the reweighted ERM equals one step on the explicitly weighted mean loss."""
    from dro.sources import TensorSource

    x = torch.randn(8, 3)
    y = np.array([0, 1] * 4)
    w = np.array([1, 1, 1, 1, 1, 1, 3, 3], dtype=float)
    w = w / w.mean()
    torch.manual_seed(0)
    head = torch.nn.Linear(3, 2)
    ref = torch.nn.Linear(3, 2)
    ref.load_state_dict(head.state_dict())
    cfg = TrainConfig(method="erm", epochs=1, batch_size=8, lr=0.1, optimizer="sgd", momentum=0.0, seed=0,
                      reweight=True)
    train(head, SplitData(TensorSource(x), y, weights=w), SplitData(TensorSource(x), y), cfg, tmp_path, **QUIET)
    order = epoch_order(8, 0, 1)
    loss = (torch.nn.functional.cross_entropy(ref(x[order]), torch.from_numpy(y[order]), reduction="none")
            * torch.from_numpy(w[order]).float()).mean()
    loss.backward()
    with torch.no_grad():
        expected = ref.weight - 0.1 * ref.weight.grad
    assert torch.allclose(head.weight, expected, atol=1e-6)


def test_upsampling_draws_groups_equally_whatever_the_loss():
    g = np.array([0] * 90 + [1] * 10)
    order = epoch_order(100, 0, 1, groups=g, balanced=True)
    share = (g[order] == 1).mean()
    assert 0.35 < share < 0.65  # ~ half the draws from the 10% group


# --- visible groups and selection -----------------------------------------------------------------------


def test_visible_groups_hand_out_only_what_the_method_may_see(small_world):
    pseudo = {s: 2 * small_world[s].y for s in ("train", "val")}
    g, n = visible_groups("pseudo", "val", small_world, pseudo, "dfr_dexter")
    assert g is pseudo["val"] and n == 4
    g, n = visible_groups("true", "val", small_world, None, "groupdro_oracle")
    assert np.array_equal(g, small_world["val"].groups)
    assert visible_groups("none", "val", small_world, None, "erm") == (None, 0)
    with pytest.raises(ValueError, match="needs pseudo-groups"):
        visible_groups("pseudo", "val", small_world, None, "rw_dexter")


def test_selection_uses_only_the_groups_the_method_may_see(small_world, tmp_path, monkeypatch):
    """A pseudo-group row selects on the validation worst-group of its PSEUDO-groups: the trainer gets them
    as validation groups, never the true ones; ERM-loss rows with pseudo-groups get them too."""
    import dro.pipeline as P

    seen = []
    real_train = P.train

    def spy(module, tr, va, cfg, *a, **kw):
        seen.append((cfg.method, cfg.sampler, cfg.reweight, tr.groups, va.groups, cfg.adjustment, cfg.eta))
        return real_train(module, tr, va, cfg, *a, **kw)

    monkeypatch.setattr(P, "train", spy)
    pseudo = {s: 2 * small_world[s].y + (np.arange(len(small_world[s])) % 5 == 0) for s in ("train", "val")}
    kw = dict(pseudo=pseudo, mode="full", erm_model=None, cache_dir=tmp_path / "c", model_out=None,
              convention="plain", device=torch.device("cpu"), **QUIET)
    grid = DroGrid(adjustment=(0.0, 1.0), eta=(0.1,))
    run = retrain("dro_dexter", small_world, SPEC, _cfg(), ckpt_dir=tmp_path / "a", grid=grid, **kw)
    assert [(s[5], s[6]) for s in seen] == [(0.0, 0.1), (1.0, 0.1)]  # the default point first
    for method, _, _, tg, vg, _, _ in seen:
        assert method == "group_dro" and tg is pseudo["train"] and vg is pseudo["val"]
    assert run.metrics["selection_groups"] == "pseudo" and len(run.metrics["grid"]) == 2
    best = max(run.metrics["grid"], key=lambda p: p["val_score"])
    assert run.metrics["selected"]["adjustment"] == best["adjustment"]
    seen.clear()
    retrain("rw_dexter", small_world, SPEC, _cfg(), ckpt_dir=tmp_path / "b", grid=grid, **kw)
    retrain("us_dexter", small_world, SPEC, _cfg(), ckpt_dir=tmp_path / "c", grid=grid, **kw)
    assert len(seen) == 2  # not tuned on the DRO grid
    (m1, s1, r1, tg1, vg1, *_), (m2, s2, r2, tg2, vg2, *_) = seen
    assert (m1, s1, r1) == ("erm", "default", True) and vg1 is pseudo["val"]
    assert (m2, s2, r2) == ("erm", "group_balanced", False) and tg2 is pseudo["train"] and vg2 is pseudo["val"]
    seen.clear()
    retrain("jtt", small_world, SPEC, _cfg(), ckpt_dir=tmp_path / "d", jtt=JttSettings(epochs=1, lambda_up=5), **kw)
    (ident, final) = seen
    assert ident[3] is None and ident[4] is None  # the identification model sees no group at all
    assert final[1] == "repeat" and final[3] is None and np.array_equal(final[4], small_world["val"].groups)


# --- DFR ------------------------------------------------------------------------------------------------


def test_dfr_halves_and_balanced_subsets():
    g = np.array([0] * 40 + [1] * 10 + [2] * 7)
    a, b = split_halves(g, 0)
    assert not set(a) & set(b) and len(a) + len(b) == len(g)
    for k, n in ((0, 40), (1, 10), (2, 7)):
        assert (g[a] == k).sum() == (n + 1) // 2 and (g[b] == k).sum() == n // 2
    sub = balanced_subset(g[a], np.random.default_rng(0))
    assert np.bincount(g[a][sub]).tolist() == [4, 4, 4]


def test_dfr_trains_only_the_last_layer_on_a_balanced_half(small_world, tmp_path, monkeypatch):
    import copy

    import dro.dfr as D
    from common.classifier import build_classifier

    fits = []
    real = D._fit_average

    def spy(x, y, groups, c, n_fits, seed, num_classes):
        fits.append(groups.copy())
        return real(x, y, groups, c, n_fits, seed, num_classes)

    monkeypatch.setattr(D, "_fit_average", spy)
    torch.manual_seed(0)
    erm = build_classifier("small_cnn", small_world["train"].info.class_names, 16, width=16)
    before = copy.deepcopy(erm.state_dict())
    run = retrain("dfr_oracle", small_world, SPEC, _cfg(), pseudo=None, mode="full", erm_model=erm,
                  ckpt_dir=tmp_path / "a", cache_dir=tmp_path / "c", model_out=tmp_path / "m",
                  convention="plain", device=torch.device("cpu"), dfr=DfrSettings(c_grid=(1.0, 0.1), n_fits=2),
                  **QUIET)
    assert all(torch.equal(before[k], v) for k, v in erm.state_dict().items())  # the ERM model is untouched
    from common.classifier import load_classifier

    out = load_classifier(tmp_path / "m")
    for k, v in out.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(v, before[k]), k  # backbone kept
    assert not torch.equal(out.head.weight, before["head.weight"])  # the head is new
    val_groups = small_world["val"].groups
    a, b = split_halves(val_groups, 0)
    assert len(fits) == 2 and all(np.array_equal(f, val_groups[a]) for f in fits)  # fitted on half A only
    rec = run.metrics["dfr"]
    assert rec["half_a"] == len(a) and rec["half_b"] == len(b) and rec["c"] in (1.0, 0.1)
    assert run.metrics["selection_groups"] == "true"


def test_dfr_head_folds_the_standardisation():
    rng = np.random.default_rng(0)
    n = 200
    y = rng.integers(0, 2, n)
    groups = 2 * y + (rng.random(n) < 0.3)
    feats = torch.from_numpy(rng.normal(size=(n, 5)) + 3 * y[:, None] * np.eye(5)[0]).float() * 10 + 4
    head, rec = fit_dfr_head(feats, y, groups, 4, 2, 0, DfrSettings(c_grid=(1.0,), n_fits=3), log=lambda s: None)
    acc = (head(feats).argmax(1).numpy() == y).mean()
    assert acc > 0.9 and rec["c"] == 1.0


def test_dfr_head_fits_more_than_two_classes():
    """The rich world has 4 classes: liblinear refuses 3+ (scikit-learn >= 1.8), so DFR fits one vs rest."""
    rng = np.random.default_rng(1)
    n = 600
    y = rng.integers(0, 4, n)
    groups = 2 * y + (rng.random(n) < 0.3)
    feats = torch.from_numpy(rng.normal(size=(n, 6)) + 3 * np.eye(6)[y]).float()
    head, _ = fit_dfr_head(feats, y, groups, 8, 4, 0, DfrSettings(c_grid=(1.0, 0.1), n_fits=2), log=lambda s: None)
    assert head.weight.shape == (4, 6)
    assert (head(feats).argmax(1).numpy() == y).mean() > 0.85
