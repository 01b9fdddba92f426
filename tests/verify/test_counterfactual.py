"""Fresh-noise generation: seeded per image index, batched across prompts, cached, no gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from verify_fakes import world_generator, world_prober

from dexter.verify import Prober, diffusion_generator, image_seeds
from world.synthetic import SyntheticWorldConfig

CFG = SyntheticWorldConfig.from_preset("small")
P1, P2 = "a picture of a red square on water", "a picture of a red square on land"


def test_image_seeds_depend_on_index_only():
    assert image_seeds(0, 3) == image_seeds(0, 3)
    assert len({image_seeds(0, i) for i in range(100)}) == 100
    assert image_seeds(1, 3) != image_seeds(0, 3)
    assert image_seeds(0, 3)[0] != image_seeds(0, 3)[1]  # latent and between-step noise are separate streams


def test_prober_caches_per_prompt_and_batches_across_prompts():
    calls = []
    gen = world_generator(CFG)

    def counting(prompts, indices):
        calls.append(len(prompts))
        return gen(prompts, indices)

    prober = Prober(counting, world_prober(CFG)._classifier, 2, batch_size=5)
    first = prober.outcomes([P1, P2], 4)
    assert prober.images_generated == 8 and calls == [5, 3]
    again = prober.outcomes([P2, P1], 4)  # cached: nothing generated
    assert prober.images_generated == 8
    assert np.array_equal(first[P1].labels, again[P1].labels) and first[P1].probs.shape == (4, 2)
    more = prober.outcomes([P1], 6)  # only the two new images of P1
    assert prober.images_generated == 10 and np.array_equal(more[P1].labels[:4], first[P1].labels)


def test_answers_do_not_depend_on_batching_or_order():
    a = world_prober(CFG, {0: ("background", 0)}, batch_size=3)
    b = world_prober(CFG, {0: ("background", 0)}, batch_size=64)
    out_a = a.outcomes([P1, P2], 7)
    b.outcomes([P2], 3)
    out_b = b.outcomes([P1, P2], 7)
    for p in (P1, P2):
        assert np.array_equal(out_a[p].labels, out_b[p].labels)
    # kept images and regenerated ones are the same pixels
    assert all(np.array_equal(x, y) for x, y in zip(a.images(P1, [0, 1]), b.images(P1, [0, 1])))
    assert all(np.array_equal(x, y) for x, y in zip(a.images(P1, [5, 6]), b.images(P1, [5, 6])))


def test_bad_classifier_output_is_reported():
    prober = Prober(world_generator(CFG), lambda x: torch.zeros(len(x), 3), 2)
    with pytest.raises(ValueError, match="classifier returned"):
        prober.outcomes([P1], 2)


def test_diffusion_generator_with_tiny_sd(sd):
    gen = diffusion_generator(sd, seed=5, inference_steps=2)
    x = gen([P1, P2, P1], [0, 0, 1])
    assert x.shape == (3, 3, 16, 16) and not x.requires_grad
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    # image i of a prompt is the same whatever else is in the batch; images of different indices differ
    alone = gen([P1], [1])
    assert torch.allclose(alone[0], x[2], atol=1e-5)
    assert not torch.allclose(x[0], x[2], atol=1e-3)
    # another seed is another set of fresh noises
    assert not torch.allclose(diffusion_generator(sd, seed=6, inference_steps=2)([P1], [0])[0], x[0], atol=1e-3)


def test_diffusion_prober_end_to_end(sd):
    from tiny_models import make_tiny_classifier

    from dexter.classifiers import wrap_pipeline_classifier

    clf = wrap_pipeline_classifier(make_tiny_classifier(2))
    prober = Prober(diffusion_generator(sd, inference_steps=2), clf, 2, batch_size=4)
    out = prober.outcomes([P1, P2], 6)
    assert prober.images_generated == 12 and set(out) == {P1, P2}
    assert np.allclose(out[P1].probs.sum(1), 1, atol=1e-5)
    grid = prober.images(P2, [0, 1])
    assert grid[0].shape == (16, 16, 3) and grid[0].dtype == np.uint8
