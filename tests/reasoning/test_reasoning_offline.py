"""The offline backend: CLIP-retrieval captions and keyword/caption statistics, no language model."""

from __future__ import annotations

import json
import math
from itertools import product

import numpy as np
import pytest
from reasoning_fakes import solid, write_class_dir

from dexter.reasoning import REPORT_SECTIONS, ReasoningError, load_phrase_bank, make_backend, reason_about_class
from dexter.reasoning.schema import KeywordsFile, finalize_attributes
from dexter.reasoning.stats import binomial_upper_tail, caption_word_stats, keyword_support
from world.synthetic import SyntheticWorldConfig, WorldSample, caption

CFG = SyntheticWorldConfig.first(2)
BANK = [caption(CFG, WorldSample(s, c, b, 0)) for s, c, b in product(range(2), range(2), range(2))]


# -- statistics -----------------------------------------------------------------------------------
def test_binomial_upper_tail_matches_direct_sum():
    for n, p in [(10, 0.5), (7, 0.25), (30, 0.1)]:
        for k in range(n + 2):
            direct = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
            assert binomial_upper_tail(k, n, p) == pytest.approx(direct, abs=1e-12)


def test_over_represented_words_against_the_bank():
    # 9 of 10 circle captions on water; colours balanced; one stray square
    caps = [caption(CFG, WorldSample(0, i % 2, 0 if i < 9 else 1, 0)) for i in range(10)]
    caps[3] = caps[3].replace("circle", "square")
    stats = {s.word: s for s in caption_word_stats(caps, BANK)}
    assert stats["water"].over_represented and stats["water"].expected == 0.5 and stats["water"].share == 0.9
    assert stats["circle"].over_represented  # the class itself: excluded later, not here
    assert not stats["red"].over_represented and not stats["yellow"].over_represented
    assert not stats["land"].over_represented and not stats["square"].over_represented
    assert {"a", "picture", "of", "on"}.isdisjoint(stats)  # template words never reported
    ordered = [s.word for s in caption_word_stats(caps, BANK)]
    assert ordered.index("water") < ordered.index("red")


def test_a_few_lucky_frames_are_not_a_bias():
    caps = [BANK[0]] * 2  # 2 of 2 on water: lift 2 but p = 0.25
    stats = {s.word: s for s in caption_word_stats(caps, BANK)}
    assert stats["water"].lift == 2 and not stats["water"].over_represented


def test_keyword_support_ranks_by_runs_then_caption_evidence():
    meta = KeywordsFile.model_validate({
        "class_index": 0, "class_name": "circle", "keywords": ["red", "water", "lake"],
        "runs": [{"run": 0, "words": ["water"], "hits": 3}, {"run": 1, "words": ["red"], "hits": 9},
                 {"run": 2, "words": ["water"], "hits": 1}, {"run": 3, "words": ["lake"], "hits": 5}],
    })
    ranked = keyword_support(meta, ["a picture of a red circle on water", "a picture of a yellow circle on water"])
    assert [k.keyword for k in ranked] == ["water", "red", "lake"]
    assert (ranked[0].runs, ranked[0].hits, ranked[0].caption_share) == (2, 4, 1.0)
    assert ranked[1].caption_share == 0.5 and ranked[2].caption_share == 0.0


def test_finalize_drops_class_name_plural_and_duplicates():
    assert finalize_attributes(["Water", "circles", "water.", " sea ", "Circle", "sea"], "circle") == ["water", "sea"]
    assert finalize_attributes(["a", "b", "c"], "x", limit=2) == ["a", "b"]


def test_general_bank_ships_with_the_package(tmp_path):
    bank = load_phrase_bank("general")
    assert len(bank) > 50 and "a photo of the sea" in bank
    f = tmp_path / "bank.txt"
    f.write_text("# mine\nfoo on bar\nfoo on baz\nfoo on bar\n")
    assert load_phrase_bank(f) == ["foo on bar", "foo on baz"]
    with pytest.raises(ReasoningError, match="unknown phrase bank"):
        load_phrase_bank("no_such_bank")


# -- the backend with an exact embedder: the shortcut is DERIVED from the frames --------------------
class IndexEmbedder:
    """Image i encodes bank phrase i in its red channel; the right phrase is always retrieved."""

    def __init__(self, bank):
        self.bank = bank

    def embed_texts(self, texts):
        return np.eye(len(self.bank))[[self.bank.index(t) for t in texts]]

    def embed_images(self, paths):
        from PIL import Image

        idx = [int(np.asarray(Image.open(p))[0, 0, 0]) // 20 for p in paths]
        return np.eye(len(self.bank))[idx]


def encoded(phrase_index: int) -> np.ndarray:
    return np.full((8, 8, 3), phrase_index * 20, dtype=np.uint8)


def phrase_index(shape: int, color: int, background: int) -> int:
    return BANK.index(caption(CFG, WorldSample(shape, color, background, 0)))


def test_offline_derives_the_shortcut_from_frames(tmp_path):
    # class circle: 11 of 12 frames on water, colour balanced; DEXTER keywords are noisy
    frames = [encoded(phrase_index(0, i % 2, 0 if i < 11 else 1)) for i in range(12)]
    class_dir = write_class_dir(tmp_path / "dexter", 0, "circle", ["circle", "of", "yellow"],
                                [frames[:6], frames[6:], []])
    b = make_backend("offline", phrases=BANK, embedder=IndexEmbedder(BANK))
    result = reason_about_class(class_dir, tmp_path / "out", b)

    captions = json.loads((tmp_path / "out" / "captions.json").read_text())
    assert sum("on water" in c for c in captions.values()) == 11
    attrs = json.loads((tmp_path / "out" / "attributes.json").read_text())
    # keywords first ("circle" is the class, "of" a stop word), then the over-represented caption word
    assert attrs["attributes"] == ["yellow", "water"]
    assert attrs["keywords"] == ["circle", "of", "yellow"]
    assert "no language model" in attrs["written_by"] and "no language model" in attrs["rationale"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "written by the offline backend: no language model" in report
    for s in REPORT_SECTIONS:
        assert f"## {s}" in report
    over = report.split("## Over-represented elements")[1].split("## Bias hypothesis")[0]
    assert "**water**" in over and "red" not in over and "yellow" not in over
    assert "Likely biased" in report and '"water"' in report.split("## Bias hypothesis")[1]
    assert result.attributes.attributes == attrs["attributes"]


def test_offline_puts_corroborated_keywords_first_and_drops_contradicted_ones(tmp_path):
    frames = [encoded(phrase_index(0, i % 2, 0 if i < 11 else 1)) for i in range(12)]
    class_dir = write_class_dir(tmp_path / "dexter", 0, "circle", ["land", "yellow", "water", "lake"],
                                [frames[:4], frames[4:8], frames[8:], [], []],
                                run_words=[["land"], ["yellow"], ["land"], ["water"], ["lake"]])
    b = make_backend("offline", phrases=BANK, embedder=IndexEmbedder(BANK))
    result = reason_about_class(class_dir, tmp_path / "out", b)
    # land: most runs, but 1 of 12 frames vs 50% expected -> contradicted; water: corroborated -> the attribute;
    # yellow (a keyword the frames do not show more than chance) and lake (the bank cannot say it) are not
    # corroborated, so they are reported but not used as attributes
    assert result.attributes.attributes == ["water"]
    assert "contradicted by the frames" in result.report and "Left out" in result.attributes.rationale
    assert "same word(s): water" in result.report


def test_offline_without_a_shortcut_says_so(tmp_path):
    frames = [encoded(phrase_index(1, i % 2, (i // 2) % 2)) for i in range(12)]  # balanced backgrounds
    class_dir = write_class_dir(tmp_path / "dexter", 1, "square", ["square"], [frames])
    b = make_backend("offline", phrases=BANK, embedder=IndexEmbedder(BANK))
    result = reason_about_class(class_dir, tmp_path / "out", b)
    assert result.attributes.attributes == []
    assert "No evidence of bias" in result.report


def test_offline_weak_evidence_is_offered_and_labelled_weak(tmp_path):
    # 8 of 12 on water: lift 1.33 but p = 0.19, not significant; the only keyword is the class name
    frames = [encoded(phrase_index(1, i % 2, 0 if i < 8 else 1)) for i in range(12)]
    class_dir = write_class_dir(tmp_path / "dexter", 1, "square", ["square"], [frames])
    b = make_backend("offline", phrases=BANK, embedder=IndexEmbedder(BANK))
    result = reason_about_class(class_dir, tmp_path / "out", b)
    assert result.attributes.attributes == ["water"]
    assert "WEAK EVIDENCE" in result.attributes.rationale
    over = result.report.split("## Over-represented elements")[1].split("## Bias hypothesis")[0]
    assert "water" not in over and "the class itself" in over


def test_offline_class_without_frames(tmp_path):
    class_dir = write_class_dir(tmp_path / "dexter", 0, "circle", ["water", "sea"], [[], []])
    b = make_backend("offline", phrases=BANK, embedder=IndexEmbedder(BANK))
    result = reason_about_class(class_dir, tmp_path / "out", b)
    assert result.captions == {} and result.attributes.attributes == ["water", "sea"]
    assert "Possibly biased" in result.report


def test_bad_inputs_are_clear_errors(tmp_path):
    b = make_backend("offline", phrases=BANK, embedder=IndexEmbedder(BANK))
    with pytest.raises(ReasoningError, match="keywords.json: not found"):
        reason_about_class(tmp_path / "nothing", tmp_path / "out", b)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "keywords.json").write_text('{"class_index": 0}')
    with pytest.raises(ReasoningError, match="class_name"):
        reason_about_class(tmp_path / "bad", tmp_path / "out", b)
    with pytest.raises(ReasoningError, match="needs a CLIP"):
        make_backend("offline", phrases=BANK)
    with pytest.raises(ReasoningError, match=r"needs a backend object.*make_backend\('offline'"):
        reason_about_class(tmp_path / "nothing", tmp_path / "out", "offline")
    with pytest.raises(ReasoningError, match="unknown reasoning backend"):
        make_backend("magic")
    with pytest.raises(ReasoningError, match="offline backend.*unexpected keyword"):
        make_backend("offline", phrases=BANK, embedder=IndexEmbedder(BANK), colour="red")


# -- the real CLIP path, with a tiny random CLIP loaded through from_pretrained ---------------------
def test_offline_with_tiny_clip_end_to_end(tiny_clip, tmp_path):
    # random weights: which phrase wins is arbitrary, so only keyword "harbor" (not sayable by the bank,
    # hence never contradicted by the captions) has a known fate
    class_dir = write_class_dir(tmp_path / "dexter", 0, "circle", ["harbor", "circle"],
                                [[solid((40, 80, 170), seed=i) for i in range(4)], [solid((90, 130, 50), seed=7)]])
    b = make_backend("offline", clip=str(tiny_clip), phrases=BANK, device="cpu", batch_size=2)
    result = reason_about_class(class_dir, tmp_path / "out", b)
    b.close()
    captions = json.loads((tmp_path / "out" / "captions.json").read_text())
    assert len(captions) == 5 and set(captions.values()) <= set(BANK)
    attrs = json.loads((tmp_path / "out" / "attributes.json").read_text())
    assert "harbor" in attrs["attributes"] and "circle" not in attrs["attributes"]
    caption_words = {w for c in captions.values() for w in c.split()}
    assert set(attrs["attributes"]) <= caption_words | {"harbor"}
    assert "no language model" in attrs["written_by"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert all(f"## {s}" in report for s in REPORT_SECTIONS) and "no language model" in report
    assert result.captions == captions


def test_tiny_clip_retrieval_is_nearest_neighbour(tiny_clip, tmp_path):
    from dexter.reasoning.offline import ClipEmbedder

    emb = ClipEmbedder(tiny_clip, batch_size=3)
    texts = emb.embed_texts(BANK)
    assert texts.shape[0] == len(BANK) and np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.png"
        from PIL import Image

        Image.fromarray(solid((30 * i, 200 - 30 * i, 90), seed=i)).save(p)
        paths.append(p)
    images = emb.embed_images(paths)
    b = make_backend("offline", phrases=BANK, embedder=emb)
    assert b.caption("circle", paths) == [BANK[j] for j in (images @ texts.T).argmax(1)]


def test_missing_clip_is_a_clear_error(tmp_path):
    b = make_backend("offline", clip=str(tmp_path / "no_clip"), phrases=BANK)
    class_dir = write_class_dir(tmp_path / "dexter", 0, "circle", ["water"], [[solid((1, 2, 3))]])
    with pytest.raises(ReasoningError, match="cannot load CLIP"):
        reason_about_class(class_dir, tmp_path / "out", b)
