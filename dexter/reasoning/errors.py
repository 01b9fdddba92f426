"""The one exception type of the reasoning module.

Everything that goes wrong because of the user's setup (endpoint unreachable, unknown model, rejected
key, missing DEXTER outputs, a language model that keeps answering with invalid JSON) is raised as
:class:`ReasoningError` with a message that names the thing to fix. It is a
:class:`~dexter.errors.DexterInputError`, so stages and the CLI print it as one line, not a traceback.
"""

from __future__ import annotations

from dexter.errors import DexterInputError


class ReasoningError(DexterInputError):
    """A reasoning step could not be completed; the message says what to fix."""
