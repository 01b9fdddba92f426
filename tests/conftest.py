"""Shared test set-up: everything offline, small and deterministic."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")


def pytest_configure(config):
    """The stages' one logging configuration (stages.common.configure_logging, done by stage_main), also for
    tests that call a stage's ``run`` directly: what a stage says reaches stderr as it does on the console."""
    from stages.common import configure_logging

    configure_logging()
