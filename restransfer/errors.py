"""User-facing errors: one paragraph that names the culprit and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class RestransferError(Exception):
    """Base class of every error meant for a user, not a developer.

    The CLI prints the message alone (no traceback) and exits with ``exit_code``.
    """

    exit_code = 1


class ConfigError(RestransferError, ValueError):
    """A recipe, an option or an argument has a bad value."""

    exit_code = 2


class OptionError(ConfigError):
    """One named option of a library function has a bad value.

    ``key`` is the option's name (``norm_groups``, ``input_shape``): a recipe maps it to its
    own key path (``model.norm_groups``, ``data.image_size``) so the same check reads right in
    both places.
    """

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class WeightsError(RestransferError, ValueError):
    """Weights cannot be loaded into a model without computing a different network."""


class DataError(RestransferError, ValueError):
    """Input data is missing, unreadable or unusable for training."""


class TrainingError(RestransferError):
    """Training stopped (non-finite loss, a lost worker); the run folder keeps the last good state."""


def did_you_mean(value: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" Did you mean 'x'?"`` for the nearest choices, or ``""``.

    Example:
        >>> did_you_mean("resnet05", ["resnet50", "resnet18"])
        " Did you mean 'resnet50'?"
    """
    matches = difflib.get_close_matches(str(value), [str(c) for c in choices], n=n, cutoff=0.6)
    if not matches:
        return ""
    return " Did you mean " + " or ".join(f"'{m}'" for m in matches) + "?"


def short_repr(value: Any, limit: int = 80, _depth: int = 0) -> str:
    """``repr(value)`` cut to ``limit`` characters, without formatting an unbounded value whole.

    Containers are summarised (a few items, three levels deep) before anything is formatted, so
    a huge, deeply nested or alias-expanded value costs no more than its first items.

    Example:
        >>> short_repr(list(range(1000)))
        '<list of 1000 items, starting [0, 1, 2]>'
    """
    if isinstance(value, (list, tuple, dict, set)):
        if _depth >= 3:
            return f"<{type(value).__name__} of {len(value)} items>"
        if isinstance(value, dict):
            parts = [f"{short_repr(k, limit, _depth + 1)}: {short_repr(v, limit, _depth + 1)}"
                     for k, v in list(value.items())[:8]]
        else:
            parts = [short_repr(item, limit, _depth + 1) for item in list(value)[:8]]
        if len(value) > 8:
            text = f"<{type(value).__name__} of {len(value)} items, starting [{', '.join(parts[:3])}]>"
        else:
            open_, close = {"list": "[]", "tuple": "()", "dict": "{}", "set": "{}"}.get(type(value).__name__, "[]")
            text = open_ + ", ".join(parts) + close
    elif isinstance(value, (str, bytes)) and len(value) > limit:
        text = repr(value[:limit])
    elif isinstance(value, int) and value.bit_length() > 128:  # repr of a 5,000-digit int raises
        text = f"<an integer of about {int(value.bit_length() * 0.30103) + 1:,} digits>"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clip(text: str, limit: int = 120) -> str:
    """``text`` cut to about ``limit`` characters, saying how long it was when cut (for echoing
    what a user typed: a 100 KB key is named by its start and length, not printed whole).

    Example:
        >>> clip("k" * 1000, 10)
        'kkkkkkkkkk... (1,000 characters)'
    """
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def as_sentence(text: object, limit: int = 300) -> str:
    """An error's text for the middle of a message: one line, at most ``limit`` characters, ending
    with exactly one period (Keras' messages end with their own; ``f"{error}."`` doubled it).

    Example:
        >>> as_sentence("Requested the deserialization of a `Lambda` layer.\\n\\nMore.")
        'Requested the deserialization of a `Lambda` layer. More.'
    """
    line = " ".join(str(text).split()) or "no details"
    if len(line) > limit:
        line = line[:limit - 3].rstrip() + "..."
    return line if line.endswith((".", "...", "!", "?")) else line + "."
