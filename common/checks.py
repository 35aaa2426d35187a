"""Validators for numbers from outside the program: files, messages, command lines.

One rule everywhere: a number is an int or float (never a bool), finite, and inside its
stated range; the message starts with the value's name and where it came from
("links[3].delay_ms: ..."), then says what is wrong, the range, and the fix.
Each caller passes its own error type (TopologyError, AdvertError, argparse's
ArgumentTypeError, ...) so that its users keep catching what they catch today.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

INF = math.inf


def _bounds(lo: float, hi: float, lo_open: bool) -> str:
    left = "(" if lo_open else "["
    right = "]" if math.isfinite(hi) else ")"
    return f"{left}{lo:g}, {hi:g}{right}"


def number(value: Any, what: str, lo: float = -INF, hi: float = INF, *,
           lo_open: bool = False, integer: bool = False, fix: str | None = None,
           error: Callable[[str], Exception] = ValueError) -> float:
    """``value`` as a float (an int when ``integer``), or ``error(message)``.

    ``what`` names the value and where it came from ("links[3].delay_ms",
    "--interval"); ``fix`` says what to do ("give the fibre length in km").
    """
    tail = f"; {fix}" if fix else ""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (integer and not isinstance(value, int)):
        raise error(f"{what}: must be {kind}, got {value!r}{tail}")
    try:
        v = float(value)
    except OverflowError:
        raise error(f"{what}: {value!r} is too large{tail}") from None
    if not math.isfinite(v):
        raise error(f"{what}: must be finite, got {v}{tail}")
    if v < lo or v > hi or (lo_open and v == lo):
        raise error(f"{what}: {value!r} is outside {_bounds(lo, hi, lo_open)}{tail}")
    return int(value) if integer else v


def number_text(text: str, what: str, lo: float = -INF, hi: float = INF, *,
                lo_open: bool = False, integer: bool = False, fix: str | None = None,
                error: Callable[[str], Exception] = ValueError) -> float:
    """The same rule for a command-line word."""
    try:
        value: Any = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise error(f"{what}: must be {kind}, got {text!r}" + (f"; {fix}" if fix else "")) \
            from None
    return number(value, what, lo, hi, lo_open=lo_open, integer=integer, fix=fix,
                  error=error)


def argtype(lo: float = -INF, hi: float = INF, *, lo_open: bool = False,
            integer: bool = False, what: str = "value") -> Callable[[str], float]:
    """An argparse ``type=`` that applies the rule (argparse adds the option's name)."""
    import argparse

    def parse(text: str) -> float:
        return number_text(text, what, lo, hi, lo_open=lo_open, integer=integer,
                           error=argparse.ArgumentTypeError)
    parse.__name__ = "integer" if integer else "number"
    return parse
