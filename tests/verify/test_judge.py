"""The CLIP judge: images that do not show their prompt are set aside, so a generator's weakness is not a bias."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from verify_fakes import PixelClassifier, background_rgb, colour_rgb, world_generator, world_vocabulary

from dexter.reasoning.audit import world_design
from dexter.verify import Prober, verify_class
from dexter.verify.judge import Claim, ZeroShotJudge
from world.synthetic import SyntheticWorldConfig

CFG = SyntheticWorldConfig.from_preset("rich")


def one_hot_judge(cfg: SyntheticWorldConfig) -> ZeroShotJudge:
    """A perfect judge: image -> one-hot (shape, colour, background) read from the pixels; word -> its slot."""
    words = [*cfg.shapes, *cfg.colors, *cfg.backgrounds]
    bg, fg = background_rgb(cfg), colour_rgb(cfg)

    def embed_images(x: torch.Tensor) -> np.ndarray:
        shape = (x[:, 0, -1, -1] * (len(cfg.shapes) - 1)).round().long()
        back = torch.cdist(x[:, :, :3, :3].mean((2, 3)), bg).argmin(1)
        centre = x[:, :, x.shape[2] // 2, x.shape[3] // 2]
        colour = torch.cdist(centre, fg).argmin(1)
        out = np.zeros((len(x), len(words)), np.float32)
        for i, (s, c, b) in enumerate(zip(shape.tolist(), colour.tolist(), back.tolist())):
            out[i, [s, len(cfg.shapes) + c, len(cfg.shapes) + len(cfg.colors) + b]] = 1
        return out

    def embed_texts(texts):
        return np.stack([np.eye(len(words), dtype=np.float32)[words.index(t.split()[-1].rstrip("."))] for t in texts])

    return ZeroShotJudge(embed_images, embed_texts, "a picture of a {}.")


def clumsy_generator(cfg: SyntheticWorldConfig):
    """Draws every other "red circle" as a red square (a generator weak on one value, as seen on real worlds)."""
    render = world_generator(cfg)

    def generate(prompts, indices):
        fixed = [p.replace("circle", "square") if ("red circle" in p and i % 2) else p for p, i in zip(prompts, indices)]
        return render(fixed, indices)

    return generate


def audit_circle(judge):
    prober = Prober(clumsy_generator(CFG), PixelClassifier(CFG, {}), len(CFG.shapes), batch_size=64, judge=judge)
    flip = [1, 2, 3]
    design = world_design(world_vocabulary(CFG), 0, "yellow", flip)
    return verify_class(prober, [design], 0, "circle", n_images=16)


def test_without_a_judge_a_clumsy_generator_looks_like_a_colour_shortcut():
    v = audit_circle(None)
    drop = v.effects_of("yellow")["drop"]
    assert drop.closest_alternative != "red" and drop.per_alternative["red"] == pytest.approx(0.5)
    assert drop.effect == 0  # against purple and white nothing changes: the smallest effect already saves it ...
    assert drop.pooled_effect == pytest.approx(0.5 / 3)  # ... which a pooled test would have called a shortcut


def test_the_judge_sets_aside_what_the_generator_got_wrong():
    v = audit_circle(one_hot_judge(CFG))
    drop = v.effects_of("yellow")["drop"]
    assert drop.set_aside_without == 4 * 16 // 2  # half the red circles of every colour context's row: 4 x 8
    assert drop.per_alternative["red"] == 0 and drop.pooled_effect == 0 and v.verdict == "no_evidence"
    assert drop.n_with == 4 * 16  # nothing set aside where the generator was right


def test_claims_are_checked_against_their_candidates():
    judge = ZeroShotJudge(lambda x: x, lambda t: np.eye(3, dtype=np.float32)[[["a", "b", "c"].index(w.split()[-1]) for w in t]],
                          "{}")
    emb = np.eye(3, dtype=np.float32)[[0, 1, 2]]
    assert judge.agrees(emb[:2], [Claim("a", ("a", "b"))]).tolist() == [True, False]
    assert judge.agrees(emb, [Claim("c", ("a", "b", "c"))]).tolist() == [False, False, True]
    assert judge.agrees(emb, [Claim("a", ("a", "b", "c")), Claim("b", ("a", "b", "c"))]).tolist() == [False] * 3
    assert judge.agrees(emb, []).all()
    with pytest.raises(ValueError, match="not among"):
        Claim("d", ("a", "b"))
    with pytest.raises(ValueError, match="slot"):
        ZeroShotJudge(lambda x: x, lambda t: t, "no slot")
