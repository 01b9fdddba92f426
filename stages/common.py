"""What every stage shares: one-line errors for bad input, device choice, and standard paths.

Stages are thin: validate params, call the library, write outputs. Anything that goes wrong because of
the user's input (params, dataset files, model ids) ends the stage with ONE line on stderr and exit
code 2, never a traceback; real bugs still raise.

One logging style: every stage module and the libraries log through ``logging`` (a module logger,
``log = logging.getLogger(__name__)``; the ``dro`` functions that report progress take ``log=log.info``),
and :func:`configure_logging`, called once by :func:`stage_main`, sends the project's loggers to stderr as
plain lines (``%(message)s``), which ``dvc repro`` shows on the console as the stage runs. stdout is left to
what a command prints as its result (the DEXTER CLI's keywords, the acceptance table).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from common.errors import UserInputError

PREPARED_DIR = Path("data/prepared")
# The project's packages (their module loggers' roots), and "__main__": the logger of a stage run as
# ``python -m stages.<name>`` (as dvc.yaml runs it), whose ``logging.getLogger(__name__)`` is "__main__".
LOGGERS = ("common", "world", "dexter", "dro", "stages", "__main__")
LOG_FORMAT = "%(message)s"  # plain lines: what a stage says, as a user reads it in dvc's output
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
        configure_logging()
        try:
            fn()
        except user_errors() as e:
            logging.getLogger("stages").error("error: %s", one_line(e))
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


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record is written, not when the handler was made (a stream
    replaced later, by a test's capture or a reconfiguration, still gets the lines)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging() -> None:
    """The one logging configuration of the stages (see the module docstring): the project's loggers
    (:data:`LOGGERS`) at INFO level to stderr, one plain line per message. Idempotent."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
            handler = _StderrHandler()
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)


def show_progress_in_logs() -> None:
    """What a stage says reaches a log as it happens: stdout line-buffered even when it is not a terminal
    (else block buffering holds every printed line until the stage ends). In a log, the libraries' own bars
    (model loading, downloads) are switched off: they redraw with carriage returns, while the project's bars
    (``common.progress``) print plain lines. Idempotent."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)
    if not sys.stderr.isatty():  # read when tqdm / huggingface_hub are first imported, after this
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


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
