"""What every stage shares: one-line errors for bad input, device choice, and standard paths.

Stages are thin: validate params, call the library, write outputs. Anything that goes wrong because of
the user's input (params, dataset files, model ids) ends the stage with ONE line on stderr and exit
code 2, never a traceback; real bugs still raise.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from common.errors import UserInputError

PREPARED_DIR = Path("data/prepared")
OUTPUTS_DIR = Path("outputs")
RESULTS_DIR = Path("results")
METRICS_DIR = Path("metrics")


class StageInputError(UserInputError, RuntimeError):
    """Bad input detected by a stage itself (not by the params schema or a dataset loader)."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'your input is wrong': the project's one root, and a missing file."""
    return (UserInputError, FileNotFoundError)


def stage_main(fn: Callable[[], None]) -> Callable[[], None]:
    """Run a stage's main, turning user errors into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper() -> None:
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        show_progress_in_logs()
        try:
            fn()
        except user_errors() as e:
            print(f"error: {one_line(e)}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def one_line(e: BaseException) -> str:
    """The error's own message, also when a DataLoader worker raised it.

    torch re-raises a worker's exception as the same type whose message is the worker's whole traceback
    ("Caught DatasetError in DataLoader worker process 0. Original Traceback ..."); its last line is
    ``module.Type: message``, the message the user needs.
    """
    text = str(e)
    if "Original Traceback" in text and "DataLoader worker" in text:
        last = text.rstrip().splitlines()[-1]
        module = type(e).__module__
        prefix = f"{'' if module == 'builtins' else module + '.'}{type(e).__qualname__}: "
        text = last[len(prefix):] if last.startswith(prefix) else last
    return text


def show_progress_in_logs() -> None:
    """What a stage prints reaches a log as it happens: stdout line-buffered even when it is not a
    terminal (else block buffering holds every line until the stage ends), and the project's own
    ``logging`` messages (``common.*``, ``world.*``, ``dexter.*``, ``dro.*``: which class is being reasoned about, gate results) on
    stderr. In a log, the libraries' own bars (model loading, downloads) are switched off: they redraw with
    carriage returns, while the project's bars (``common.progress``) print plain lines. Idempotent."""
    import logging

    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)
    if not sys.stderr.isatty():  # read when tqdm / huggingface_hub are first imported, after this
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("common", "world", "dexter", "dro"):
        logger = logging.getLogger(name)
        if not any(getattr(h, "_stage_handler", False) for h in logger.handlers):
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            handler._stage_handler = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)


def stage_session(marker: Path) -> str:
    """An id of this invocation of a stage, kept in ``marker`` until :func:`end_stage_session`.

    A stage killed (or stopped by an error) leaves the marker, so its rerun gets the same id and may reuse
    the runs that invocation finished; a stage that completed removed it, so the next invocation (a
    changed dependency, ``dvc repro -f``) gets a new id and does the work again. Unfinished checkpoints of
    the same fingerprint resume in either case (``dro.train.train``).
    """
    from common.io import atomic_write_json

    try:
        return str(json.loads(Path(marker).read_text())["session"])
    except (OSError, ValueError, KeyError, TypeError):
        session = secrets.token_hex(8)
        atomic_write_json(marker, {"session": session})
        return session


def end_stage_session(marker: Path) -> None:
    """The stage completed: its next invocation starts a new session."""
    Path(marker).unlink(missing_ok=True)
