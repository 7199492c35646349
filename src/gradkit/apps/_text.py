"""Small helpers for the words the command-line jobs print."""

from __future__ import annotations

__all__ = ["plural"]


def plural(n: int, word: str) -> str:
    """``"1 seed"``, ``"2 seeds"``.

    >>> plural(1, "epoch"), plural(40, "epoch")
    ('1 epoch', '40 epochs')
    """
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
