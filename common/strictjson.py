"""Strict JSON for input from outside the process (advertisements, state-API bodies).

UTF-8 only, no NaN or Infinity, no duplicate keys: the standard json module accepts the
last two silently, and a duplicate key lets two readers of one message disagree about it.
Every problem raises the caller's error type with a message that says what is wrong.
"""

from __future__ import annotations

import json
from typing import Any


class _Refused(Exception):
    """Raised inside the decoder's hooks (not a ValueError, so it is not mistaken for a
    syntax error of the json module)."""


def loads(data: bytes | str, error: type[Exception] = ValueError, where: str = "body"
          ) -> Any:
    """Decode ``data``; raise ``error("<where>: ...")`` on anything but strict JSON (a
    duplicate key's message starts with the key instead)."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise error(f"{where}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    else:
        text = data

    def no_constants(name: str) -> Any:
        raise _Refused(f"{where}: {name} is not allowed (numbers must be finite)")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for k, v in pairs:
            if k in obj:
                raise _Refused(f"{k}: duplicate JSON key")  # named by the key, at any depth
            obj[k] = v
        return obj

    try:
        return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constants)
    except _Refused as e:
        raise error(str(e)) from None
    except RecursionError:
        raise error(f"{where}: nested too deeply") from None
    except ValueError as e:
        raise error(f"{where}: not valid JSON ({str(e)[:80]})") from None
