"""The project's shared base: what both sibling packages (``dexter``, the explanation core, and ``dro``,
the retraining) and the synthetic ``world`` need, so that neither has to import the other.

Nothing here imports ``dexter``, ``dro``, ``world`` or ``stages`` (tests/test_structure.py checks it):
atomic writes (:mod:`common.io`), progress bars (:mod:`common.progress`), the one user-input error root
(:mod:`common.errors`), fingerprints (:mod:`common.fingerprint`), device and dtype choice
(:mod:`common.device`), the classifier contract (:mod:`common.classifier`), the CLIP encoder with its
embedding cache (:mod:`common.clip`), word-level tokenizers (:mod:`common.word_tokenizers`) and the
files the stages hand each other (:mod:`common.artifacts`).
"""
