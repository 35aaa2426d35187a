"""Typed records that read and write JSON objects: the machinery under
experiments.framework.result (the run result) and experiments.framework.scenario.

A `Record` subclass is a dataclass whose fields are the keys of one JSON object, with their
types: ``str``, ``int``, ``float``, ``bool``, ``Any``, ``X | None``, ``list[X]``,
``dict[str, X]`` and other Records. Reading (`Record.from_dict`) checks every value against
its field's type:

- a missing key takes the field's default and stays missing when written back, unless the
  field was set since: a recorded file round-trips key for key;
- an unknown key is kept as it is (``extra``) and written back; keys are written back in
  the order they were read;
- NaN and infinities in a float field read as None (not measured);
- a value of the wrong type is NOT used: the field keeps its default (a list item or a dict
  entry of the wrong type becomes None where the item type allows it, else it is left out)
  and the problem is recorded, naming the key path (``metrics.per_hub: expected an object,
  got list``). With ``problems=None`` the first problem raises ResultFormatError instead.

An ``int`` field takes integers only; a ``float`` field takes integers too and keeps them as
they are (so ``350`` is written back as ``350``). Booleans are never numbers.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, ClassVar, Union

SPECIAL = ("extra", "absent", "order")  # Record's own fields, not JSON keys


class ResultFormatError(ValueError):
    """A value in a run result that does not have its documented type."""


_BAD = object()  # a value that cannot be used for its type


def _type_name(v: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(v), type(v).__name__)


def _expected(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list"
    if origin is dict or tp is dict:
        return "an object"
    if isinstance(tp, type) and issubclass(tp, Record):
        return "an object"
    if origin in (Union, types.UnionType):
        return " or ".join(_expected(a) for a in typing.get_args(tp) if a is not type(None))
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list"}.get(tp, str(tp))


def _optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def _shape_fits(tp: Any, value: Any) -> bool:
    """Whether `value` is of `tp`'s JSON kind (not looking inside lists and objects)."""
    origin = typing.get_origin(tp) or tp
    if tp is Any:
        return True
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, (list, tuple))
    if origin is dict or (isinstance(tp, type) and issubclass(tp, Record)):
        return isinstance(value, dict)
    return isinstance(value, origin)


def _load(tp: Any, value: Any, where: str, problems: list[str]) -> Any:
    """`value` read as `tp`, or _BAD (the problem is recorded)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        for arg in (a for a in typing.get_args(tp) if a is not type(None)):
            if _shape_fits(arg, value):
                return _load(arg, value, where, problems)
        problems.append(f"{where}: expected {_expected(tp)}, got {_type_name(value)}")
        return _BAD
    ok: Any = _BAD
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            ok = value if math.isfinite(value) else None
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            ok = value
    elif tp in (str, bool):
        if isinstance(value, tp):
            ok = value
    elif tp is dict or tp is list:
        if isinstance(value, tp):
            ok = value
    elif origin is list:
        if isinstance(value, (list, tuple)):
            (item,) = typing.get_args(tp)
            ok = []
            for i, v in enumerate(value):
                got = _load(item, v, f"{where}[{i}]", problems)
                if got is _BAD:
                    if not _optional(item):
                        continue
                    got = None
                ok.append(got)
    elif origin is dict:
        if isinstance(value, dict):
            _key, item = typing.get_args(tp)
            ok = {}
            for k, v in value.items():
                got = _load(item, v, f"{where}.{k}", problems)
                if got is _BAD:
                    if not _optional(item):
                        continue
                    got = None
                ok[str(k)] = got
    elif isinstance(tp, type) and issubclass(tp, Record):
        if isinstance(value, dict):
            ok = tp._read(value, where, problems)
    else:  # pragma: no cover - a schema bug, not a data problem
        raise TypeError(f"{where}: unsupported field type {tp!r}")
    if ok is _BAD:
        problems.append(f"{where}: expected {_expected(tp)}, got {_type_name(value)}")
    return ok


def _dump(v: Any) -> Any:
    if isinstance(v, Record):
        return v.to_dict()
    if isinstance(v, (list, tuple)):
        return [_dump(x) for x in v]
    if isinstance(v, dict):
        return {k: _dump(x) for k, x in v.items()}
    return v


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


@dataclasses.dataclass
class Record:
    """One JSON object with typed fields; see the module docstring.

    ``extra``: keys the schema does not know, kept and written back. ``absent``: the keys a
    read object lacked (left out on writing while their field still holds its default).
    ``order``: the keys of a read object in their order, which writing keeps.
    A field with metadata ``{"omit_none": True}`` is left out of the output when None."""

    extra: dict = dataclasses.field(default_factory=dict, repr=False, kw_only=True)
    absent: frozenset = dataclasses.field(default=frozenset(), repr=False, compare=False,
                                          kw_only=True)
    order: tuple = dataclasses.field(default=(), repr=False, compare=False, kw_only=True)
    _hints: ClassVar[dict[type, dict[str, Any]]] = {}

    @classmethod
    def _fields(cls) -> list[tuple[dataclasses.Field, Any]]:
        hints = Record._hints.get(cls)
        if hints is None:
            hints = Record._hints[cls] = typing.get_type_hints(cls)
        return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.name not in SPECIAL]

    @classmethod
    def _read(cls, data: dict, where: str, problems: list[str]):
        values: dict[str, Any] = {}
        absent = []
        for f, tp in cls._fields():
            if f.name not in data:
                absent.append(f.name)
                continue
            got = _load(tp, data[f.name], f"{where}.{f.name}" if where else f.name, problems)
            if got is not _BAD:
                values[f.name] = got
        known = {f.name for f, _ in cls._fields()}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**values, extra=extra, absent=frozenset(absent), order=tuple(data))

    @classmethod
    def from_dict(cls, data: Any, problems: list[str] | None = None, where: str = ""):
        """Read a JSON object. `problems`: a list to record what could not be used in
        (the record is still returned); None: raise ResultFormatError on a problem."""
        found: list[str] = []
        if not isinstance(data, dict):
            found.append(f"{where or cls.__name__}: expected an object, got "
                         f"{_type_name(data)}")
            out = cls()
        else:
            out = cls._read(data, where, found)
        if problems is None and found:
            raise ResultFormatError("; ".join(found))
        if problems is not None:
            problems.extend(found)
        return out

    @classmethod
    def list_from(cls, items: Any, problems: list[str] | None = None, where: str = ""
                  ) -> list | None:
        """A JSON list of such objects (None for None); items that are not objects are left
        out and recorded, as by `from_dict`."""
        found: list[str] = []
        got = _load(list[cls] | None, items, where or cls.__name__, found)  # type: ignore
        if problems is None and found:
            raise ResultFormatError("; ".join(found))
        if problems is not None:
            problems.extend(found)
        return None if got is _BAD else got

    def to_dict(self) -> dict:
        """The JSON object: plain dicts, lists and values; the keys in field order, unknown
        ones after, except that a read object keeps its own order."""
        out: dict[str, Any] = {}
        for f, _tp in self._fields():
            v = getattr(self, f.name)
            if f.name in self.absent and v == _default(f):
                continue
            if v is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = _dump(v)
        for k, v in self.extra.items():
            out.setdefault(k, _dump(v))
        if self.order:
            out = {**{k: out[k] for k in self.order if k in out}, **out}
        return out
