"""Shared HMAC keys from files (advertisement authentication): one reader for the
controller and the gateway agent, so both accept and refuse the same files."""

from __future__ import annotations


def read_key(path: str, option: str) -> bytes:
    """The key in ``path`` (raw bytes, trailing newline stripped); ValueError naming
    ``option`` when it cannot be read or is empty."""
    try:
        with open(path, "rb") as f:
            key = f.read().rstrip(b"\r\n")
    except OSError as e:
        raise ValueError(f"{option} {path}: cannot read ({e.strerror})") from None
    if not key:
        raise ValueError(f"{option} {path}: the key is empty; put a shared secret in it")
    return key
