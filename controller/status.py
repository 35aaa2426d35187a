"""The status file: what the controller knows, for the builder, probes and tests to poll.

Written atomically (temporary file in the same directory, then rename), at most once per
``min_interval`` seconds, and only when something changed.
"""

from __future__ import annotations

import json
import os
import tempfile


def write_json_atomic(path: str, doc: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".status-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class StatusWriter:
    """Writes a new status when the state serial moved and ``min_interval`` has passed."""

    def __init__(self, path: str, min_interval: float = 0.2) -> None:
        self.path = path
        self.min_interval = min_interval
        self._written_serial: int | None = None
        self._written_at = float("-inf")

    def maybe_write(self, serial: int, now: float, make_doc, force: bool = False) -> bool:
        if not force:
            if serial == self._written_serial or now - self._written_at < self.min_interval:
                return False
        write_json_atomic(self.path, make_doc())
        self._written_serial = serial
        self._written_at = now
        return True
