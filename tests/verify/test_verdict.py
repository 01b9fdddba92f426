"""Planted effects: a classifier keyed on a pixel pattern is caught with the right attribute, others are not."""

from __future__ import annotations

from itertools import product

import pytest
from verify_fakes import WORLD_TEMPLATE, TableProber, world_prober, world_vocabulary

from dexter.reasoning.audit import world_design
from dexter.verify import design_from_template, verify_class
from world.synthetic import SyntheticWorldConfig, WorldSample, caption

CFG2 = SyntheticWorldConfig.from_preset("small")
CFG4 = SyntheticWorldConfig.from_preset("rich")


def designs(cfg, class_index, words):
    vocab = world_vocabulary(cfg)
    flip = [k for k in range(len(cfg.shapes)) if k != class_index]
    return [world_design(vocab, class_index, w, flip) for w in words]


def test_world_template_is_the_worlds_caption():
    for s, c, b in product(range(4), range(4), range(4)):
        text = WORLD_TEMPLATE.format(**{"class": CFG4.shapes[s], "color": CFG4.colors[c],
                                        "background": CFG4.backgrounds[b]})
        assert text == caption(CFG4, WorldSample(s, c, b, 0))


def test_background_keyed_classifier_is_caught_with_the_right_attribute():
    prober = world_prober(CFG2, {0: ("background", 0)})  # water outweighs the shape: squares on water are "circles"
    v = verify_class(prober, designs(CFG2, 0, ["water", "red", "land"]), 0, "circle", n_images=16)
    assert v.verdict == "biased" and v.verified == ["water"]
    water = v.effects_of("water")
    assert water["flip"].effect == pytest.approx(1.0) and water["flip"].passed and water["flip"].p_adjusted < 1e-6
    # every circle is a circle anyway: the drop test has no room for an effect (saturated), flip decides
    assert water["drop"].effect == 0 and water["drop"].saturated and not water["drop"].passed
    assert not any(e.significant for e in v.effects if e.attribute != "water")
    assert v.alternatives == {"water": ["land"]}
    assert v.decision("water") == "flip"
    # a classifier whose water signal does not outweigh the shape: no flip, circles saturated -> nothing to claim
    weak = verify_class(world_prober(CFG2, {0: ("background", 0)}, weight=0.5), designs(CFG2, 0, ["water"]), 0,
                        "circle", n_images=16)
    assert weak.verdict == "no_evidence"


def test_losing_to_another_class_shortcut_is_not_a_bias():
    """Squares on water are called circles (circle's shortcut), so squares "need" not-water. Against the pooled
    alternatives (water, snow, sand) land looks needed (+0.33); against snow or sand alone nothing changes, and
    the decision rests on the smallest effect."""
    prober = world_prober(CFG4, {0: ("background", 0)})
    v = verify_class(prober, designs(CFG4, 1, ["land"]), 1, "square", n_images=8)
    drop = v.effects_of("land")["drop"]
    assert drop.pooled_effect == pytest.approx(1 / 3) and drop.per_alternative["water"] == pytest.approx(1.0)
    assert drop.effect == 0 and drop.closest_alternative in ("snow", "sand") and not drop.passed
    assert v.verdict == "no_evidence"


def test_classifier_that_ignores_the_background_is_not_reported():
    prober = world_prober(CFG2, {})  # reads the shape only
    v = verify_class(prober, designs(CFG2, 0, ["water", "red"]), 0, "circle", n_images=16)
    assert v.verdict == "no_evidence" and v.verified == [] and v.alternatives == {}
    assert all(e.effect == 0 and not e.significant for e in v.effects)


def test_four_class_world_each_class_gets_its_own_shortcut_and_nothing_else():
    # circle <- water, square <- red; triangle and cross by shape only. Keywords mix true and false leads.
    prober = world_prober(CFG4, {0: ("background", 0), 1: ("color", 0)})
    keywords = {0: ["water", "yellow", "snow"], 1: ["red", "land", "water"], 2: ["sand", "purple"],
                3: ["water", "red", "white"]}
    verdicts = {c: verify_class(prober, designs(CFG4, c, kw), c, CFG4.shapes[c], n_images=8) for c, kw in keywords.items()}
    assert verdicts[0].verified == ["water"] and verdicts[1].verified == ["red"]
    assert verdicts[2].verdict == verdicts[3].verdict == "no_evidence"
    assert verdicts[0].alternatives == {"water": ["land", "snow", "sand"]}
    assert verdicts[1].alternatives == {"red": ["yellow", "purple", "white"]}
    # the prompt cache: every class reuses images, so the cost is bounded by the world's 64 prompts
    assert prober.images_generated <= 64 * 8
    assert verdicts[3].images_generated < verdicts[3].images_used


def test_an_interaction_in_one_context_is_not_a_shortcut():
    """As measured on the small world's classifier: red squares on water are often called circles (0.4), yellow
    ones never, and circles are circles only on water. On a world with four backgrounds the interaction shows in
    one context of four: "red" raises circle's flip rate significantly, but by less than min_effect; "water" makes
    circles circles in every context (drop)."""
    rates = {}
    for s, c, b in product(range(4), range(4), range(4)):
        shape, colour, bg = CFG4.shapes[s], CFG4.colors[c], CFG4.backgrounds[b]
        if shape == "circle":
            r = 1.0 if bg == "water" else 0.0
        else:
            r = 0.4 if (colour == "red" and bg == "water") else 0.0
        rates[caption(CFG4, WorldSample(s, c, b, 0))] = {0: r, 1: 1 - r}
    prober = TableProber(rates, 4)
    circle = verify_class(prober, designs(CFG4, 0, ["water", "red"]), 0, "circle", n_images=40)
    red = circle.effects_of("red")["flip"]
    assert red.significant and red.effect == pytest.approx(0.1) and not red.passed  # real, measured, but small
    assert circle.verified == ["water"] and circle.decision("water") == "drop"


def test_small_effects_are_not_large_enough():
    rates = {}
    for c, s, b in product(CFG2.colors, CFG2.shapes, CFG2.backgrounds):
        base = 0.9 if s == "circle" else 0.1
        rates[caption(CFG2, WorldSample(CFG2.shapes.index(s), CFG2.colors.index(c), CFG2.backgrounds.index(b), 0))] = {
            0: base + (0.05 if b == "water" else 0.0)}
    prober = TableProber(rates, 2)
    d = designs(CFG2, 0, ["water"])
    v = verify_class(prober, d, 0, "circle", n_images=2000, min_effect=0.1)
    assert all(e.significant for e in v.effects) and v.verdict == "no_evidence"  # significant, but 0.05 < 0.1
    assert verify_class(prober, d, 0, "circle", n_images=2000, min_effect=0.04).verified == ["water"]


def test_design_from_template_rows_and_errors():
    d = design_from_template(attribute="water", kind="background", alternatives=["land", "water", "snow"],
                             template="a photo of a {class} on {value}", slot="value",
                             class_names=["circle", "square", "cross"], class_index=0)
    assert d.alternatives == ("land", "snow")
    assert [r.with_prompt for r in d.flip] == ["a photo of a square on water", "a photo of a cross on water"]
    assert d.drop[0].without_prompts == ("a photo of a circle on land", "a photo of a circle on snow")
    with pytest.raises(ValueError, match="no alternative"):
        design_from_template(attribute="water", kind="k", alternatives=["water"], template="{class} {value}",
                             slot="value", class_names=["a", "b"], class_index=0)
    with pytest.raises(ValueError, match="lacks the slot"):
        design_from_template(attribute="water", kind="k", alternatives=["land"], template="a {class}",
                             slot="value", class_names=["a", "b"], class_index=0)
    with pytest.raises(ValueError, match="alpha"):
        verify_class(TableProber({}, 2), [], 0, "a", n_images=4, alpha=1.5)


def test_the_shift_of_an_unbiased_classifier_is_not_a_shortcut():
    """Measured on the no-shortcut world's classifier (correlation 0.5): it calls most generated circles "square",
    a little more on land (98%) than on water (86%), and every square a square. Generated circles are outside what
    it learnt (it never calls more than 14% of them circles, under any background), so the flip test for square
    has no row to read; with the domain check off, the flip effect is significant but +0.12, under min_effect,
    however many images are generated."""
    called_square = {("circle", 0, "land"): 32, ("circle", 1, "land"): 31, ("circle", 0, "water"): 28,
                     ("circle", 1, "water"): 27, **{("square", c, b): 32 for c in range(2) for b in ("land", "water")}}
    rates = {caption(CFG2, WorldSample(CFG2.shapes.index(s), c, CFG2.backgrounds.index(b), 0)): {1: k / 32}
             for (s, c, b), k in called_square.items()}  # 63/64 vs 55/64 as measured
    v = verify_class(TableProber(rates, 2), designs(CFG2, 1, ["land"]), 1, "square", n_images=32)
    flip, drop = v.effects_of("land")["flip"], v.effects_of("land")["drop"]
    assert not flip.testable and flip.rows_out_of_domain == ("circle (red)", "circle (yellow)")
    assert drop.saturated and v.verdict == "no_evidence" and v.decision("land") == "not verified"
    unchecked = verify_class(TableProber(rates, 2), designs(CFG2, 1, ["land"]), 1, "square", n_images=32,
                             min_recognition=0.0)
    flip = unchecked.effects_of("land")["flip"]
    assert flip.significant and flip.effect == pytest.approx(0.125) and unchecked.verdict == "no_evidence"
    big = verify_class(TableProber(rates, 2), designs(CFG2, 1, ["land"]), 1, "square", n_images=3200,
                       min_recognition=0.0)
    assert big.effects_of("land")["flip"].ci_low > 0.1 and big.verdict == "no_evidence"


def test_contents_the_classifier_never_recognises_are_not_read():
    """A classifier that calls every generated circle a square, more so on land: no circle row is read."""
    rates = {caption(CFG2, WorldSample(s, c, b, 0)): {1: 1.0 if (s == 1 or b == 1) else 0.7}
             for s, c, b in product(range(2), range(2), range(2))}
    v = verify_class(TableProber(rates, 2), designs(CFG2, 1, ["land"]), 1, "square", n_images=32)
    assert v.verdict == "no_evidence" and not v.effects_of("land")["flip"].testable
    assert verify_class(TableProber(rates, 2), designs(CFG2, 1, ["land"]), 1, "square", n_images=32,
                        min_recognition=0.0).verified == ["land"]  # +0.3 without the check


def test_decisions_say_which_tests_decided():
    prober = world_prober(CFG2, {0: ("background", 0)})
    v = verify_class(prober, designs(CFG2, 0, ["water"]), 0, "circle", n_images=16)
    assert v.decision("water") == "flip"
    assert v.as_dict()["decisions"] == {"water": "flip"}
    both = world_prober(CFG2, {0: ("background", 0), 1: ("background", 1)})  # each class keys on its background
    assert verify_class(both, designs(CFG2, 0, ["water"]), 0, "circle", n_images=16).decision("water") == "flip and drop"


def test_unreadable_contents_make_no_evidence_inconclusive():
    """The small world's generated circles are out of the classifier's domain: "no evidence" must say so."""
    from dexter.reasoning.summary import verdict_sentence

    rates = {caption(CFG2, WorldSample(s, c, b, 0)): {0: 0.1 if s == 0 else 0.0} for s, c, b in product(range(2), repeat=3)}
    v = verify_class(TableProber(rates, 2), designs(CFG2, 0, ["water"]), 0, "circle", n_images=32)
    assert v.verdict == "no_evidence" and not v.conclusive
    assert v.unreadable == ["circle (red)", "circle (yellow)"]
    d = v.as_dict()
    assert d["conclusive"] is False and "inconclusive" in verdict_sentence(d) and "circle (red)" in verdict_sentence(d)
    readable = {p: {0: 1.0 if s == 0 else 0.0} for p, s in zip(rates, [s for s, c, b in product(range(2), repeat=3)])}
    ok = verify_class(TableProber(readable, 2), designs(CFG2, 0, ["water"]), 0, "circle", n_images=32)
    assert ok.verdict == "no_evidence" and ok.conclusive and "inconclusive" not in verdict_sentence(ok.as_dict())


def _rich_rates(called) -> dict[str, dict[int, float]]:
    """Prompt -> class shares of the rich world, from ``called(shape, colour, background) -> {class: share}``."""
    return {caption(CFG4, WorldSample(s, c, b, 0)): called(CFG4.shapes[s], CFG4.colors[c], CFG4.backgrounds[b])
            for s, c, b in product(range(4), range(4), range(4))}


def test_an_attribute_that_blurs_every_shape_is_contradicted_not_a_shortcut():
    """As measured on the rich world's shortcut-reliant classifier: white objects are hard to see, so white
    shapes fall to the fallback class "cross" (flip passes) while white crosses LOSE "cross" (drop below zero).
    A cue for cross would raise both; the veto says "contradicted" and the class stays unbiased."""
    def called(shape, colour, bg):
        if shape == "cross":
            return {3: 0.75, 1: 0.25} if colour == "white" else {3: 1.0}
        own = CFG4.shapes.index(shape)
        return {own: 0.625, 3: 0.375} if colour == "white" else {own: 1.0}

    d = designs(CFG4, 3, ["white"])
    v = verify_class(TableProber(_rich_rates(called), 4), d, 3, "cross", n_images=32)
    white = v.effects_of("white")
    assert white["flip"].passed and white["flip"].effect == pytest.approx(0.375)
    assert white["drop"].effect == pytest.approx(-0.25) and white["drop"].ci_high < 0
    assert v.contradicted_by("white") == ["drop"] and v.decision("white") == "flip, contradicted by drop"
    assert v.verdict == "no_evidence" and v.verified == [] and v.as_dict()["decisions"] == {"white": v.decision("white")}
    unvetoed = verify_class(TableProber(_rich_rates(called), 4), d, 3, "cross", n_images=32, veto_contradicted=False)
    assert unvetoed.verified == ["white"] and unvetoed.decision("white") == "flip"  # the claim the veto removes


def test_another_class_cue_is_contradicted_and_the_true_cue_is_kept():
    """Snow is triangle's cue: other shapes on snow are called triangle, so square's flip test for snow is far
    below zero, while squares on snow keep "square" a little more often than elsewhere (drop +0.19). Red, the
    true cue of square, passes both tests and is kept even though snow and red are tested together."""
    def called(shape, colour, bg):
        own = CFG4.shapes.index(shape)
        if shape == "square":
            return {1: 1.0} if colour == "red" or bg == "snow" else {1: 0.75, 0: 0.25}
        if bg == "snow":
            return {2: 1.0}
        return {1: 0.5, own: 0.5} if colour == "red" else ({own: 0.8, 1: 0.2} if shape != "triangle" else {own: 1.0})

    v = verify_class(TableProber(_rich_rates(called), 4), designs(CFG4, 1, ["red", "snow"]), 1, "square", n_images=32)
    snow = v.effects_of("snow")
    assert snow["drop"].passed and snow["drop"].effect == pytest.approx(0.1875)
    assert snow["flip"].ci_high < 0 and v.contradicted_by("snow") == ["flip"]
    assert v.verified == ["red"] and v.decision("red") == "flip and drop" and v.contradicted_by("red") == []


def test_the_report_says_why_a_passed_test_was_not_a_verdict():
    from dexter.reasoning.summary import verdict_sentence, verification_section

    def called(shape, colour, bg):
        own = CFG4.shapes.index(shape)
        if shape == "cross":
            return {3: 0.75, 1: 0.25} if colour == "white" else {3: 1.0}
        return {own: 0.625, 3: 0.375} if colour == "white" else {own: 1.0}

    d = verify_class(TableProber(_rich_rates(called), 4), designs(CFG4, 3, ["white"]), 3, "cross", n_images=32).as_dict()
    sentence = verdict_sentence(d)
    assert sentence.startswith("**No evidence of a shortcut.** No tested keyword is verified for \"cross\"")
    assert "white (flip: passed; drop: against the class (interval below zero) -> contradicted)" in sentence
    section = verification_section(d)
    assert "no (contradicted)" in section and "interval lies below zero" in section


def test_where_unrecognised_shapes_fall_is_not_a_flip():
    """As measured on the rich world's shortcut-reliant classifier: a circle off water and a triangle off snow
    are not recognised, and land is where they fall to "cross" (on sand they fall to "square"). Read on every
    row, land "flips" them into the unbiased cross (+0.67). The flip comparison with sand reads only rows the
    classifier recognises on sand (the squares, never called cross): no effect, no claim."""
    def called(shape, colour, bg):
        own = CFG4.shapes.index(shape)
        if shape in ("square", "cross") or (shape, bg) in (("circle", "water"), ("triangle", "snow")):
            return {own: 1.0}
        return {3: 1.0} if bg == "land" else {1: 1.0}

    v = verify_class(TableProber(_rich_rates(called), 4), designs(CFG4, 3, ["land"]), 3, "cross", n_images=32)
    flip = v.effects_of("land")["flip"]
    assert flip.per_alternative == pytest.approx({"water": 0.5, "snow": 0.5, "sand": 0.0})
    assert flip.closest_alternative == "sand" and flip.n_with == 4 * 32  # the four red/yellow/... square rows
    assert v.verdict == "no_evidence" and v.conclusive
    # the defect this guards: the old domain (recognised under SOME value) read the fallen circles and triangles
    assert flip.pooled_effect > 0.5


def test_one_class_confusion_is_not_a_shortcut():
    """As measured on the rich world's shortcut-reliant classifier (on real test images too): purple crosses
    (there: on water) are called circles, no other purple shape is. Pooled over the flip rows that is +0.33 for
    "purple", significant; but it shows in one other class of three, so the flip does not pass."""
    def called(shape, colour, bg):
        own = CFG4.shapes.index(shape)
        return {0: 1.0} if (shape, colour) == ("cross", "purple") else {own: 1.0}

    d = designs(CFG4, 0, ["purple"])
    v = verify_class(TableProber(_rich_rates(called), 4), d, 0, "circle", n_images=32)
    flip = v.effects_of("purple")["flip"]
    assert flip.significant and flip.effect >= 0.15 and flip.classes_with_effect == 1 and flip.classes_needed == 2
    assert not flip.passed and v.verdict == "no_evidence"
    assert verify_class(TableProber(_rich_rates(called), 4), d, 0, "circle", n_images=32,
                        min_flip_classes=1).verified == ["purple"]  # the claim breadth removes
    # a cue that pulls every other class in passes
    broad = {p: ({0: 1.0} if " purple " in p else r) for p, r in _rich_rates(called).items()}
    assert verify_class(TableProber(broad, 4), d, 0, "circle", n_images=32).effects_of("purple")["flip"].passed
    with pytest.raises(ValueError, match="min_flip_classes"):
        verify_class(TableProber(broad, 4), d, 0, "circle", n_images=32, min_flip_classes=0)


def test_the_report_names_a_narrow_flip():
    from dexter.reasoning.summary import verification_section

    def called(shape, colour, bg):
        own = CFG4.shapes.index(shape)
        return {0: 1.0} if (shape, colour) == ("cross", "purple") else {own: 1.0}

    d = verify_class(TableProber(_rich_rates(called), 4), designs(CFG4, 0, ["purple"]), 0, "circle", n_images=32)
    section = verification_section(d.as_dict())
    assert "narrow (shows in 1 of the 2 classes needed)" in section and "content of 2 other classes" in section
    assert "purple (flip: narrow (shows in 1 of the 2 classes needed); drop: " in section.split("\n")[2]


def test_a_colour_that_makes_every_shape_visible_is_not_one_class_shortcut():
    """As measured on the rich world's classifier trained with NO shortcut: generated red shapes are recognised
    far more often than the other colours, in every class. Triangle's drop test for "red" is +0.5, significant;
    the other classes gain as much, so nothing is specific to triangle (visibility control)."""
    def called(shape, colour, bg, needs_red=("circle", "square", "triangle", "cross")):
        own = CFG4.shapes.index(shape)
        if colour == "red" or shape not in needs_red:
            return {own: 1.0}
        return {own: 0.5, (3 if own != 3 else 0): 0.5}  # the rest falls to cross (crosses to circle)

    d = designs(CFG4, 2, ["red"])
    v = verify_class(TableProber(_rich_rates(called), 4), d, 2, "triangle", n_images=32)
    drop = v.effects_of("red")["drop"]
    assert drop.significant and drop.effect == pytest.approx(0.5)
    assert drop.visibility == pytest.approx({"yellow": 0.5, "purple": 0.5, "white": 0.5})
    assert drop.specific_effect == pytest.approx(0.0) and not drop.passed and v.verdict == "no_evidence"
    assert verify_class(TableProber(_rich_rates(called), 4), d, 2, "triangle", n_images=32,
                        visibility_control=False).verified == ["red"]  # the claim the control removes
    # only triangles need red: the same drop is specific to triangle, and passes
    only = _rich_rates(lambda s, c, b: called(s, c, b, needs_red=("triangle",)))
    shortcut = verify_class(TableProber(only, 4), d, 2, "triangle", n_images=32).effects_of("red")["drop"]
    assert shortcut.specific_effect == pytest.approx(0.5) and shortcut.passed


def test_the_report_names_a_drop_that_is_not_specific():
    from dexter.reasoning.summary import verification_section

    def called(shape, colour, bg):
        own = CFG4.shapes.index(shape)
        return {own: 1.0} if colour == "red" else {own: 0.5, (3 if own != 3 else 0): 0.5}

    d = verify_class(TableProber(_rich_rates(called), 4), designs(CFG4, 2, ["red"]), 2, "triangle", n_images=32)
    section = verification_section(d.as_dict())
    assert "not specific (beyond every class's gain in recognition: +0.00)" in section
    assert "what the attribute does to the other classes' own recognition" in section


def test_a_drop_carried_by_one_cell_is_not_a_shortcut():
    """As measured on the rich world with circle's shortcut at 0.8: circles are circles on water, and
    generated purple circles are circles on sand too, no other colour there. Circle's drop for "purple" is
    carried by that one cell (+0.50 over the two backgrounds where circles are read, significant); it shows in
    one context of four, so it does not pass. "water" shows in three colours of four (not against sand for
    purple circles) and passes."""
    def called(shape, colour, bg):
        own = CFG4.shapes.index(shape)
        if shape != "circle":
            return {own: 1.0}
        return {0: 1.0} if bg == "water" or (colour, bg) == ("purple", "sand") else {1: 1.0}

    d = designs(CFG4, 0, ["purple", "water"])
    v = verify_class(TableProber(_rich_rates(called), 4), d, 0, "circle", n_images=32)
    purple = v.effects_of("purple")["drop"]
    assert purple.significant and purple.effect == pytest.approx(0.5)
    assert (purple.contexts_with_effect, purple.contexts_needed) == (1, 2) and not purple.passed
    water = v.effects_of("water")["drop"]
    assert water.passed and (water.contexts_with_effect, water.contexts_needed) == (3, 2)
    assert v.verified == ["water"]
    assert verify_class(TableProber(_rich_rates(called), 4), d, 0, "circle", n_images=32,
                        min_drop_contexts=1).verified == ["purple", "water"]  # the claim context breadth removes
    from dexter.reasoning.summary import verification_section
    assert "narrow (shows in 1 of the 2 contexts needed)" in verification_section(v.as_dict())


def test_a_flip_carried_by_one_colour_is_not_a_shortcut():
    """As measured on the rich world's classifier trained with NO shortcut: generated yellow squares, triangles
    and crosses on sand are called circles (0.50-0.88), no other colour on sand is. Circle's flip for "sand"
    shows in three other classes, so class breadth passes it; it shows in one colour of four, so it does not
    pass. A classifier that calls every shape on sand a circle (a cue of circle) keeps its claim."""
    def one_colour(shape, colour, bg):
        own = CFG4.shapes.index(shape)
        return {0: 0.75, own: 0.25} if (colour, bg) == ("yellow", "sand") and own != 0 else {own: 1.0}

    d = designs(CFG4, 0, ["sand"])
    v = verify_class(TableProber(_rich_rates(one_colour), 4), d, 0, "circle", n_images=32)
    flip = v.effects_of("sand")["flip"]
    assert flip.significant and flip.classes_with_effect == 3
    assert (flip.contexts_with_effect, flip.contexts_needed) == (1, 2) and not flip.passed
    assert v.verdict == "no_evidence"
    assert verify_class(TableProber(_rich_rates(one_colour), 4), d, 0, "circle", n_images=32,
                        min_flip_contexts=1).verified == ["sand"]  # the claim context breadth removes
    from dexter.reasoning.summary import verification_section
    assert "narrow (shows in 1 of the 2 contexts needed)" in verification_section(v.as_dict())

    def every_colour(shape, colour, bg):
        own = CFG4.shapes.index(shape)
        return {0: 0.75, own: 0.25} if bg == "sand" and own != 0 else {own: 1.0}

    cue = verify_class(TableProber(_rich_rates(every_colour), 4), d, 0, "circle", n_images=32)
    assert cue.verified == ["sand"] and cue.effects_of("sand")["flip"].contexts_with_effect == 4
