"""The DEXTER core's user-input errors.

Everything that means "your input is wrong" (a model id that cannot be loaded, an unknown classifier, a
class index out of range, a vocabulary that cannot be tokenised) derives from :class:`DexterInputError`,
so callers (the CLI, DVC stages) can print one line instead of a traceback while real bugs still raise.
"""

from __future__ import annotations

from common.errors import UserInputError


class DexterInputError(UserInputError, ValueError):
    """Bad input to the DEXTER core; the message names the offending value."""


__all__ = ["DexterInputError"]
