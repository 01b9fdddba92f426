"""The one exception type of the reasoning module.

Everything that goes wrong because of the user's setup (endpoint unreachable, unknown model, rejected
key, missing DEXTER outputs, a language model that keeps answering with invalid JSON) is raised as
:class:`ReasoningError` with a message that names the thing to fix, so a stage can print one line.
"""

from __future__ import annotations


class ReasoningError(RuntimeError):
    """A reasoning step could not be completed; the message says what to fix."""
