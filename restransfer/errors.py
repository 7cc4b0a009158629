"""User-facing errors: one paragraph that names the culprit and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RestransferError(Exception):
    """Base class of every error meant for a user, not a developer.

    The CLI prints the message alone (no traceback) and exits with ``exit_code``.
    """

    exit_code = 1


class ConfigError(RestransferError, ValueError):
    """A recipe, an option or an argument has a bad value."""

    exit_code = 2


class WeightsError(RestransferError, ValueError):
    """Weights cannot be loaded into a model without computing a different network."""


class DataError(RestransferError, ValueError):
    """Input data is missing, unreadable or unusable for training."""


def did_you_mean(value: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" Did you mean 'x'?"`` for the nearest choices, or ``""``.

    Example:
        >>> did_you_mean("resnet05", ["resnet50", "resnet18"])
        " Did you mean 'resnet50'?"
    """
    matches = difflib.get_close_matches(str(value), list(choices), n=n, cutoff=0.6)
    if not matches:
        return ""
    return " Did you mean " + " or ".join(f"'{m}'" for m in matches) + "?"
