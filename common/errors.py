"""The one root of "your input is wrong".

Every exception that means bad user input (params, dataset files, model ids, a class index out of range,
a device this machine lacks) derives from :class:`UserInputError`, so a stage or the CLI prints ONE line
instead of a traceback (``stages.common.stage_main``) while real bugs still raise. Subclasses keep their
historical second base (``ValueError`` or ``RuntimeError``) so code catching those still does.
"""

from __future__ import annotations


class UserInputError(Exception):
    """Bad input; the message names the offending value and says what to do."""


__all__ = ["UserInputError"]
