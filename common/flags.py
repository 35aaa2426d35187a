"""Command-line flags declared once, on the fields of a configuration dataclass.

A program's configuration is a frozen dataclass whose fields carry their flag in
``metadata`` (:func:`flag`). From that one declaration come the argparse options of the
program (:func:`add_arguments`), the configuration from parsed arguments
(:func:`from_args`) and the argv that reproduces a configuration (:func:`to_argv`), so the
process that starts a program and the program itself cannot disagree about a flag's name,
type or default. ``from_args(parse(to_argv(c))) == c`` holds for every valid configuration
(tests check it for the controller and the gateway agent).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from typing import Any

_KEY = "edwc_flag"


@dataclasses.dataclass(frozen=True)
class Flag:
    option: str                                   # "--probe-interval"
    parse: Callable[[str], Any] | None = None     # text -> value; None: a boolean switch
    render: Callable[[Any], str] = str            # value -> text (the inverse of parse)
    help: str = ""
    metavar: str | None = None
    choices: tuple | None = None
    required: bool = False
    items: bool = False  # a mapping given as repeated ``--opt KEY=VALUE`` (VALUE in JSON)


def flag(option: str, parse: Callable[[str], Any] | None = None, *,
         render: Callable[[Any], str] = str, help: str = "", metavar: str | None = None,
         choices: tuple | None = None, required: bool = False,
         items: bool = False) -> dict:
    """Field metadata: ``field(default=1.0, metadata=flag("--interval", float, help=...))``."""
    return {_KEY: Flag(option, parse, render, help, metavar, choices, required, items)}


def _flags(cls: type) -> list[tuple[dataclasses.Field, Flag]]:
    return [(f, f.metadata[_KEY]) for f in dataclasses.fields(cls) if _KEY in f.metadata]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def parse_item(option: str, text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (KEY, VALUE parsed as JSON, else the string); KEY an identifier."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(
            f"{option} {text!r}: expected KEY=VALUE with a Python identifier as KEY")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_items(option: str, items: list[str]) -> dict[str, Any]:
    """Repeated ``KEY=VALUE`` options -> a dict (ValueError names the bad one)."""
    out: dict[str, Any] = {}
    for text in items:
        try:
            k, v = parse_item(option, text)
        except argparse.ArgumentTypeError as e:
            raise ValueError(str(e)) from None
        out[k] = v
    return out


def add_arguments(parser: argparse.ArgumentParser | Any, cls: type,
                  only: tuple[str, ...] | None = None) -> None:
    """Add one option per flagged field of ``cls`` (or only the fields named in ``only``)."""
    for f, fl in _flags(cls):
        if only is not None and f.name not in only:
            continue
        kw: dict[str, Any] = {"dest": f.name, "help": fl.help}
        if fl.metavar:
            kw["metavar"] = fl.metavar
        if fl.parse is None:
            kw["action"] = "store_true"
        elif fl.items:
            kw.update(action="append", default=[], type=lambda t, o=fl.option: parse_item(o, t))
        else:
            kw.update(type=fl.parse, default=_default(f), required=fl.required)
            if fl.choices:
                kw["choices"] = fl.choices
        parser.add_argument(fl.option, **kw)


def from_args(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """The configuration from parsed arguments (fields without a flag from ``extra``)."""
    values: dict[str, Any] = {}
    for f, fl in _flags(cls):
        if not hasattr(args, f.name):
            continue
        v = getattr(args, f.name)
        if fl.items:
            v = dict(v or [])
        values[f.name] = v
    return cls(**values, **extra)


def to_argv(config: Any) -> list[str]:
    """The options that reproduce ``config``: every flagged field that differs from its
    default (a default is the same on both sides, since both read this declaration)."""
    argv: list[str] = []
    for f, fl in _flags(type(config)):
        v = getattr(config, f.name)
        if v == _default(f) and not fl.required:
            continue
        if fl.parse is None:
            if v:
                argv.append(fl.option)
        elif fl.items:
            for k, item in v.items():
                argv += [fl.option, f"{k}={json.dumps(item)}"]
        elif v is not None:
            argv += [fl.option, fl.render(v)]
    return argv
