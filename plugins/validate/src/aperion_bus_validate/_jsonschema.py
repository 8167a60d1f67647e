"""A small, documented subset of JSON Schema for payloads given as dicts.

Keywords: ``type`` (a name or a list of names: object, array, string, integer, number,
boolean, null), ``required``, ``properties``, ``additionalProperties`` (bool or a schema),
``items``, ``enum``, ``minimum``/``maximum``, ``minLength``/``maxLength``, ``pattern``
(``re.search``), and the annotations ``title``, ``description``, ``$comment`` (ignored).
Anything else is refused when the schema is built, so a typo never passes silently.
Error messages never quote a string from the payload (it may hold personal data).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from aperion_bus import ConfigError

__all__ = ["DictSchema", "format_path"]

_TYPES: Final[dict[str, Callable[[object], bool]]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, (list, tuple)),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
_PY_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "object": (dict,),
    "array": (list, tuple),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}
_KEYWORDS: Final = (
    "type",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
)
_ANNOTATIONS: Final = ("title", "description", "$comment")
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def format_path(parent: str, key: object) -> str:
    """``$.age`` for an identifier key, ``$['first name']`` otherwise, ``$[3]`` for an index."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if isinstance(key, str) and _IDENT.fullmatch(key):
        return f"{parent}.{key}"
    return f"{parent}[{key!r}]"


def _shown(value: object) -> str:
    """A value for a message: numbers, booleans and None as they are, anything else by type."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return f"a {type(value).__name__}"


def _same(a: object, b: object) -> bool:
    # enum membership without True == 1 and 1 == 1.0 surprises across types
    return a == b and (isinstance(a, bool) == isinstance(b, bool))


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not (
        isinstance(v, float) and math.isnan(v)
    )


class DictSchema:
    """A compiled dict schema; :meth:`errors` lists every problem of a value, path first."""

    __slots__ = (
        "_bool_ok",
        "_checks_value",
        "_py_types",
        "_suffixes",
        "additional",
        "enum",
        "items",
        "max_length",
        "maximum",
        "min_length",
        "minimum",
        "pattern",
        "properties",
        "required",
        "types",
    )

    def __init__(self, schema: object, where: str = "schema", path: str = "$") -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"{where} at {path}: {msg}")

        if not isinstance(schema, Mapping):
            raise bad(f"a schema must be a dict, got {type(schema).__name__}")
        unknown = [k for k in schema if k not in _KEYWORDS and k not in _ANNOTATIONS]
        if unknown:
            raise bad(
                f"unknown keyword(s) {', '.join(map(repr, unknown))}; supported: "
                f"{', '.join(_KEYWORDS)} (and the annotations {', '.join(_ANNOTATIONS)})"
            )
        raw_type = schema.get("type")
        types: tuple[str, ...] | None = None
        if raw_type is not None:
            names = [raw_type] if isinstance(raw_type, str) else raw_type
            if not isinstance(names, list) or not names or not all(
                isinstance(n, str) and n in _TYPES for n in names
            ):
                raise bad(
                    f"'type' must be one of {', '.join(_TYPES)} or a list of them, "
                    f"got {raw_type!r}"
                )
            types = tuple(names)
        self.types = types
        # isinstance() over Python types, with bool (an int subclass) only where "boolean" is
        self._py_types: tuple[type, ...] | None = None
        self._bool_ok = True
        if types is not None:
            self._py_types = tuple(t for n in types for t in _PY_TYPES[n])
            self._bool_ok = "boolean" in types

        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise bad(f"'required' must be a list of property names, got {required!r}")
        self.required: tuple[str, ...] = tuple(required)

        props = schema.get("properties", {})
        if not isinstance(props, Mapping):
            raise bad(f"'properties' must be a dict of schemas, got {type(props).__name__}")
        self.properties: dict[str, DictSchema] = {
            str(k): DictSchema(v, where, format_path(f"{path}.properties", k))
            for k, v in props.items()
        }

        additional = schema.get("additionalProperties", True)
        self.additional: bool | DictSchema
        if isinstance(additional, bool):
            self.additional = additional
        else:
            self.additional = DictSchema(additional, where, f"{path}.additionalProperties")

        items = schema.get("items")
        self.items = None if items is None else DictSchema(items, where, f"{path}.items")

        enum = schema.get("enum")
        if enum is not None and (not isinstance(enum, list) or not enum):
            raise bad(f"'enum' must be a non-empty list of values, got {enum!r}")
        self.enum: tuple[object, ...] | None = None if enum is None else tuple(enum)

        for key in ("minimum", "maximum"):
            v = schema.get(key)
            if v is not None and not _is_number(v):
                raise bad(f"{key!r} must be a number, got {v!r}")
        self.minimum: float | None = schema.get("minimum")
        self.maximum: float | None = schema.get("maximum")

        for key in ("minLength", "maxLength"):
            v = schema.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise bad(f"{key!r} must be an int >= 0, got {v!r}")
        self.min_length: int | None = schema.get("minLength")
        self.max_length: int | None = schema.get("maxLength")

        pattern = schema.get("pattern")
        self.pattern: re.Pattern[str] | None = None
        self._suffixes = {k: format_path("", k) for k in self.properties}
        self._checks_value = any(
            v is not None
            for v in (
                self.enum, self.minimum, self.maximum, self.min_length, self.max_length, pattern,
            )
        ) or bool(self.required or self.properties or self.additional is not True or items)
        if pattern is not None:
            if not isinstance(pattern, str):
                raise bad(f"'pattern' must be a regular expression string, got {pattern!r}")
            try:
                self.pattern = re.compile(pattern)
            except re.error as exc:
                raise bad(
                    f"'pattern' {pattern!r} is not a valid regular expression: {exc}"
                ) from None

    def errors(self, value: Any, path: str = "$") -> list[str]:
        """Every problem of ``value``, as ``"<path>: <what is expected>"``; [] if valid."""
        out: list[str] = []
        self._check(value, path, out)
        return out

    def _check(self, value: Any, path: str, out: list[str]) -> None:
        py_types = self._py_types
        if py_types is not None and not (
            isinstance(value, py_types) and (self._bool_ok or not isinstance(value, bool))
        ):
            assert self.types is not None
            expected = " or ".join(self.types)
            out.append(f"{path}: expected {expected}, got {_type_name(value)}")
            return  # the other keywords would only repeat the problem
        if not self._checks_value:
            return
        if self.enum is not None and not any(_same(value, e) for e in self.enum):
            allowed = ", ".join(repr(e) for e in self.enum)
            out.append(f"{path}: expected one of {allowed}, got {_shown(value)}")
        if _is_number(value):
            if self.minimum is not None and value < self.minimum:
                out.append(f"{path}: expected >= {self.minimum}, got {value!r}")
            if self.maximum is not None and value > self.maximum:
                out.append(f"{path}: expected <= {self.maximum}, got {value!r}")
        elif isinstance(value, str):
            n = len(value)
            if self.min_length is not None and n < self.min_length:
                out.append(f"{path}: expected at least {self.min_length} characters, got {n}")
            if self.max_length is not None and n > self.max_length:
                out.append(f"{path}: expected at most {self.max_length} characters, got {n}")
            if self.pattern is not None and self.pattern.search(value) is None:
                out.append(f"{path}: expected a string matching {self.pattern.pattern!r}")
        elif isinstance(value, dict):
            for key in self.required:
                if key not in value:
                    out.append(f"{format_path(path, key)}: required property missing")
            props = self.properties
            additional = self.additional
            if additional is True:
                suffixes = self._suffixes
                for key, prop in props.items():
                    if key in value:
                        prop._check(value[key], path + suffixes[key], out)
                return
            for key, item in value.items():
                found = props.get(key) if isinstance(key, str) else None
                if found is not None:
                    found._check(item, path + self._suffixes[key], out)
                elif additional is False:
                    allowed_keys = ", ".join(props) or "none"
                    out.append(
                        f"{format_path(path, key)}: property not allowed "
                        f"(allowed: {allowed_keys})"
                    )
                elif isinstance(additional, DictSchema):
                    additional._check(item, format_path(path, key), out)
        elif isinstance(value, (list, tuple)) and self.items is not None:
            for i, item in enumerate(value):
                self.items._check(item, format_path(path, i), out)


def _type_name(value: object) -> str:
    for name, test in _TYPES.items():
        if name != "number" and test(value):
            return name
    if isinstance(value, float):
        return "number"
    return type(value).__name__
