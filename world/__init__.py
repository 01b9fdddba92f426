"""The synthetic world: its renderer and captions (:mod:`world.synthetic`, :mod:`world.captions`), the small
world models trained on it (CLIP, BERT, VAE, generator) and their quality gates.

Shared by the explanation core (``dexter``) and the retraining (``dro``); imports neither of them, only
``common``. Command line: ``python -m world train|gates``.
"""
