import math

import pytest

from dexter.pseudo_labels import MaskSlot, candidate_filter, is_punctuation, new_slots, update_slots


def test_first_update_from_infinity():
    slots = new_slots(2)
    assert slots[0].reference == math.inf and slots[0].label is None
    changed = update_slots(slots, [7, 9], [5.0, 3.0])
    assert changed == [True, True]
    assert (slots[0].label, slots[0].reference) == (7, 5.0)
    assert (slots[1].label, slots[1].reference) == (9, 3.0)


def test_history_mean_guards_against_one_lucky_step():
    slot = MaskSlot()
    update_slots([slot], [1], [2.0])  # word 1: mean 2 -> label 1, L = 2
    update_slots([slot], [5], [4.0])  # word 5: mean 4, not < 2
    update_slots([slot], [5], [3.0])  # word 5: mean 3.5
    assert slot.label == 1
    update_slots([slot], [5], [0.5])  # latest 0.5 < 2 but mean (4+3+0.5)/3 = 2.5 > 2: no change
    assert slot.label == 1 and slot.reference == 2.0
    update_slots([slot], [5], [-1.0])  # mean (6.5)/4 = 1.625 < 2
    assert slot.label == 5 and slot.reference == 1.625
    update_slots([slot], [1], [0.0])  # word 1 mean (2+0)/2 = 1.0 < 1.625 -> back to word 1
    assert slot.label == 1 and slot.reference == 1.0
    assert slot.history == {1: (2.0, 2), 5: (6.5, 4)}


def test_lucky_word_loses_its_place_to_a_better_average():
    """Word A once at 0.1 (lucky), then three times at 9.0; word B averages 2.0 -> B must become the label."""
    A, B = 1, 2
    slot = MaskSlot()
    update_slots([slot], [A], [0.1])
    assert (slot.label, slot.reference) == (A, 0.1)
    update_slots([slot], [B], [2.0])  # 2.0 > 0.1: A stays for now
    assert slot.label == A
    for _ in range(3):
        update_slots([slot], [A], [9.0])
    assert slot.label == A and slot.reference == pytest.approx((0.1 + 27.0) / 4)  # L_A moved up with A's history
    update_slots([slot], [B], [2.0])  # B's mean 2.0 < 6.775
    assert slot.label == B and slot.reference == pytest.approx(2.0)


def test_reference_follows_the_label_history_up_and_down():
    slot = MaskSlot()
    update_slots([slot], [3], [1.0])
    update_slots([slot], [3], [5.0])
    assert (slot.label, slot.reference) == (3, 3.0)  # the mean of the label's own history, not the minimum
    update_slots([slot], [4], [2.5])  # 2.5 < 3.0 -> word 4 takes over
    assert (slot.label, slot.reference) == (4, 2.5)
    update_slots([slot], [4], [0.5])
    assert slot.reference == 1.5
    update_slots([slot], [3], [-3.0])  # word 3: mean (1 + 5 - 3) / 3 = 1.0 < 1.5 -> back to word 3
    assert (slot.label, slot.reference) == (3, 1.0)


def test_lucky_first_word_in_a_longer_sequence():
    """A hand-made sequence: the label ends as the word with the best mean among those seen after the luck."""
    slot = MaskSlot()
    seq = [(7, 0.2), (8, 3.0), (7, 8.0), (7, 8.0), (8, 2.0), (9, 4.0), (8, 2.5)]
    labels = []
    for word, loss in seq:
        update_slots([slot], [word], [loss])
        labels.append(slot.label)
    # 7 (0.2) -> 7 mean 4.1, then 5.4 -> 8 (mean 2.5) takes over at step 5 -> 9 (4.0) cannot -> 8 stays (2.5)
    assert labels == [7, 7, 7, 7, 8, 8, 8]
    assert slot.reference == pytest.approx(2.5)


def test_filtered_and_excluded_words_leave_no_trace():
    slots = new_slots(1)
    update_slots(slots, [4], [1.0], allowed={1, 2, 3})
    update_slots(slots, [2], [1.0], allowed={1, 2, 3}, blocked={2})
    assert slots[0].label is None and slots[0].history == {}
    update_slots(slots, [3], [9.0], allowed={1, 2, 3}, blocked={2})
    assert slots[0].label == 3


def test_candidate_filter():
    tokens = ["[PAD]", "[CLS]", "[unused3]", "sea", "##s", ".", ",", "...", "lake", "<|endoftext|>", "x1", "'"]
    keep = candidate_filter(tokens, special={"[PAD]", "[CLS]"})
    assert [t for t, k in zip(tokens, keep) if k] == ["sea", "lake", "x1"]
    assert is_punctuation("--") and not is_punctuation("a.")
