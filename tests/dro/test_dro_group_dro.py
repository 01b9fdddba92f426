"""Group DRO weights and loss against values worked out by hand (docs/METHOD.md section 4)."""

import math

import numpy as np
import pytest
import torch

from dro.group_dro import ERMLoss, GroupDROLoss, epoch_order, group_mean_losses

COUNTS = [100, 25, 4]  # C / sqrt(n): C=2 -> 0.2, 0.4, 1.0
BATCH1 = (torch.tensor([1.0, 3.0, 2.0, 0.5]), torch.tensor([0, 0, 1, 1]))  # l = [2.0, 1.25, absent->0]
BATCH2 = (torch.tensor([0.4, 1.6, 3.0]), torch.tensor([2, 2, 0]))  # l = [3.0, absent->0, 1.0]


def _norm(v):
    s = sum(v)
    return [x / s for x in v]


def test_group_means_with_absent_group():
    l, n = group_mean_losses(*BATCH1, 3)
    assert l.tolist() == pytest.approx([2.0, 1.25, 0.0])
    assert n.tolist() == [2, 2, 0]


def test_plain_weights_and_loss_two_batches():
    loss = GroupDROLoss(COUNTS, eta=0.1)
    r1 = loss(*BATCH1)
    q1 = _norm([math.exp(0.1 * 2.0), math.exp(0.1 * 1.25), math.exp(0.0)])  # uniform start cancels
    assert loss.q.tolist() == pytest.approx(q1, rel=1e-6)
    assert float(r1) == pytest.approx(q1[0] * 2.0 + q1[1] * 1.25, rel=1e-6)
    r2 = loss(*BATCH2)
    q2 = _norm([q1[0] * math.exp(0.1 * 3.0), q1[1], q1[2] * math.exp(0.1 * 1.0)])
    assert loss.q.tolist() == pytest.approx(q2, rel=1e-6)
    assert float(r2) == pytest.approx(q2[0] * 3.0 + q2[2] * 1.0, rel=1e-6)


def test_adjustment_moves_q_but_not_the_robust_loss_terms():
    loss = GroupDROLoss(COUNTS, eta=0.1, adjustment=2.0)
    r1 = loss(*BATCH1)
    a = [2.0 + 0.2, 1.25 + 0.4, 0.0 + 1.0]
    q1 = _norm([math.exp(0.1 * x) for x in a])
    assert loss.q.tolist() == pytest.approx(q1, rel=1e-6)
    assert float(r1) == pytest.approx(q1[0] * 2.0 + q1[1] * 1.25, rel=1e-6)  # UNadjusted losses
    r2 = loss(*BATCH2)
    a2 = [3.0 + 0.2, 0.0 + 0.4, 1.0 + 1.0]
    q2 = _norm([q * math.exp(0.1 * x) for q, x in zip(q1, a2)])
    assert loss.q.tolist() == pytest.approx(q2, rel=1e-6)
    assert float(r2) == pytest.approx(q2[0] * 3.0 + q2[2] * 1.0, rel=1e-6)


def test_adjustment_and_normalisation():
    loss = GroupDROLoss(COUNTS, eta=0.5, adjustment=2.0, normalize_loss=True)
    r1 = loss(*BATCH1)
    a = [2.2, 1.65, 1.0]
    a = [x / sum(a) for x in a]
    q1 = _norm([math.exp(0.5 * x) for x in a])
    assert loss.q.tolist() == pytest.approx(q1, rel=1e-6)
    assert float(r1) == pytest.approx(q1[0] * 2.0 + q1[1] * 1.25, rel=1e-6)


def test_normalisation_without_adjustment():
    loss = GroupDROLoss(COUNTS, eta=1.0, normalize_loss=True)
    loss(*BATCH1)
    a = [2.0 / 3.25, 1.25 / 3.25, 0.0]
    assert loss.q.tolist() == pytest.approx(_norm([math.exp(x) for x in a]), rel=1e-6)


def test_gradient_flows_through_unadjusted_group_losses():
    x = torch.tensor([1.0, 3.0, 2.0, 0.5], requires_grad=True)
    loss = GroupDROLoss(COUNTS, eta=0.1, adjustment=2.0)
    loss(x, BATCH1[1]).backward()
    q = loss.q.tolist()
    assert x.grad.tolist() == pytest.approx([q[0] / 2, q[0] / 2, q[1] / 2, q[1] / 2], rel=1e-6)


def test_state_roundtrip_continues_identically():
    a = GroupDROLoss(COUNTS, eta=0.1, adjustment=1.0)
    a(*BATCH1)
    b = GroupDROLoss(COUNTS, eta=0.1, adjustment=1.0)
    b.load_state_dict(a.state_dict())
    assert float(a(*BATCH2)) == float(b(*BATCH2))
    assert torch.equal(a.q, b.q)


def test_erm_is_plain_mean_and_bad_inputs_fail():
    assert float(ERMLoss()(*BATCH1)) == pytest.approx(6.5 / 4)
    with pytest.raises(ValueError):
        GroupDROLoss(COUNTS)(torch.tensor([1.0]), torch.tensor([3]))
    with pytest.raises(ValueError):
        GroupDROLoss(COUNTS, eta=0.0)


def test_balanced_order_equalises_groups_and_is_reproducible():
    groups = np.array([0] * 950 + [1] * 50)
    o1 = epoch_order(1000, seed=3, epoch=2, groups=groups, balanced=True)
    o2 = epoch_order(1000, seed=3, epoch=2, groups=groups, balanced=True)
    assert np.array_equal(o1, o2)
    assert not np.array_equal(o1, epoch_order(1000, seed=3, epoch=3, groups=groups, balanced=True))
    frac_minority = (groups[o1] == 1).mean()
    assert 0.44 < frac_minority < 0.56
    perm = epoch_order(1000, seed=3, epoch=2)
    assert sorted(perm.tolist()) == list(range(1000))
