import math

import torch

from dexter.objective import (
    activation_loss,
    aggregated_mask_losses,
    mask_label_loss,
    mask_reference_neurons,
    neuron_losses,
)


def test_neuron_losses_on_hand_made_numbers():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    feats = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    nl = neuron_losses(logits, feats, torch.tensor([1, 0]), torch.tensor([[2, 0], [1, 1]]))
    assert torch.allclose(nl.class_loss, torch.tensor([-math.log(0.75), math.log(2.0)]))
    assert torch.equal(nl.feature_losses, torch.tensor([[-3.0, -1.0], [-5.0, -5.0]]))
    assert torch.allclose(activation_loss(nl, "single"), nl.class_loss)
    assert torch.allclose(activation_loss(nl, "multi"), nl.class_loss + torch.tensor([-4.0, -10.0]))


def test_reference_neurons_and_aggregation():
    assert mask_reference_neurons("single", 1, 0) == [[0]]
    ref = mask_reference_neurons("multi", 6, 5)
    assert ref == [[0], [1], [2], [3], [4], [5]]
    per_neuron = torch.tensor([[10.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    assert aggregated_mask_losses(per_neuron, ref).tolist() == [[10.0, 1.0, 2.0, 3.0, 4.0, 5.0]]
    assert mask_reference_neurons("multi", 3, 1) == [[0], [1], [0]]


def test_mask_label_loss_only_for_labelled_masks():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    assert mask_label_loss(logits, [None, None]).item() == 0.0
    assert math.isclose(mask_label_loss(logits, [None, 0]).item(), -math.log(0.75), rel_tol=1e-6)
    assert math.isclose(mask_label_loss(logits, [1, 0]).item(), math.log(2) - math.log(0.75), rel_tol=1e-6)
