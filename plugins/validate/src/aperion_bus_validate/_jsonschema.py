"""Payload schemas given as dicts: JSON Schema (Draft 2020-12 by default), checked with
jsonschema-rs.

jsonschema-rs was chosen by measurement (``benchmarks/validate_jsonschema.py``, numbers in
``docs/validate.md``): the only candidate with all of Draft 2020-12 that is also faster than
the hand-written subset it replaces. The schema is checked against its meta-schema and
compiled once; a payload costs one ``is_valid`` call, and only an invalid one is walked for
its errors. ``format`` is asserted (a format jsonschema-rs does not check is refused when the
schema is built, never silently ignored), ``$ref`` resolves inside the schema only (no
network). Keywords that are not JSON Schema's are refused too (a typo like ``minimun`` never
passes silently), except annotations prefixed with ``x-``.

Error messages name the path and the rule and never quote a value from the payload (it may
hold personal data): a value is described by its JSON type (and a string by its length).
jsonschema-rs is imported with the first dict schema, not with the plugin.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

from aperion_bus import ConfigError

if TYPE_CHECKING:
    import jsonschema_rs

__all__ = ["CHECKED_FORMATS", "DictSchema", "format_path"]

#: The ``format`` values that are checked (jsonschema-rs's format checkers); a schema using any
#: other format is refused when it is built.
CHECKED_FORMATS: Final = (
    "date",
    "date-time",
    "duration",
    "email",
    "hostname",
    "idn-email",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "iri",
    "iri-reference",
    "json-pointer",
    "regex",
    "relative-json-pointer",
    "time",
    "uri",
    "uri-reference",
    "uri-template",
    "uuid",
)

# Keywords of JSON Schema Draft 2020-12 (and of the older drafts a ``$schema`` may name), by the
# kind of value they take: a schema, a table of schemas, a list of schemas, or anything else.
_SCHEMA_VALUED: Final = frozenset({
    "additionalProperties", "additionalItems", "contains", "contentSchema", "else", "if",
    "items", "not", "propertyNames", "then", "unevaluatedItems", "unevaluatedProperties",
})
_SCHEMA_TABLES: Final = frozenset({
    "$defs", "definitions", "dependentSchemas", "patternProperties", "properties",
})
_SCHEMA_LISTS: Final = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_OTHER_KEYWORDS: Final = frozenset({
    "$anchor", "$comment", "$dynamicAnchor", "$dynamicRef", "$id", "$recursiveAnchor",
    "$recursiveRef", "$ref", "$schema", "$vocabulary", "const", "contentEncoding",
    "contentMediaType", "default", "dependencies", "dependentRequired", "deprecated",
    "description", "enum", "examples", "exclusiveMaximum", "exclusiveMinimum", "format",
    "maxContains", "maxItems", "maxLength", "maxProperties", "maximum", "minContains",
    "minItems", "minLength", "minProperties", "minimum", "multipleOf", "pattern", "readOnly",
    "required", "title", "type", "uniqueItems", "writeOnly",
})
_KNOWN: Final = _SCHEMA_VALUED | _SCHEMA_TABLES | _SCHEMA_LISTS | _OTHER_KEYWORDS
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JSON_TYPES: Final = ("null", "boolean", "integer", "number", "string", "array", "object")


def format_path(parent: str, key: object) -> str:
    """``$.age`` for an identifier key, ``$['first name']`` otherwise, ``$[3]`` for an index."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if isinstance(key, str) and _IDENT.fullmatch(key):
        return f"{parent}.{key}"
    return f"{parent}[{key!r}]"


def _join_path(base: str, parts: Sequence[object]) -> str:
    for part in parts:
        base = format_path(base, part)
    return base


def type_name(value: object) -> str:
    """The JSON type of a Python value (``integer`` for an int, ``boolean`` for a bool)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _described(value: object) -> str:
    """A value for a message without its content: its JSON type (a string: and its length)."""
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    name = type_name(value)
    if name == "null":
        return "null"
    article = "an" if name[0] in "aeiou" else "a"
    return f"{article} {name}"


def _check_keywords(schema: object, path: str, bad: list[str]) -> None:
    """Collect ``path: keyword`` for every key of ``schema`` that is not a JSON Schema
    keyword (nor an ``x-`` annotation), walking into the subschemas."""
    if not isinstance(schema, Mapping):
        return  # true/false schemas, and wrong values the meta-schema check reports
    for key, value in schema.items():
        if not isinstance(key, str) or (key not in _KNOWN and not key.startswith("x-")):
            hint = difflib.get_close_matches(str(key), _KNOWN, n=1)
            bad.append(
                f"at {path}: unknown keyword {key!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
            )
        elif key in _SCHEMA_VALUED:
            if isinstance(value, list):  # draft 7 "items": [schemas]
                for i, item in enumerate(value):
                    _check_keywords(item, f"{path}.{key}[{i}]", bad)
            else:
                _check_keywords(value, f"{path}.{key}", bad)
        elif key in _SCHEMA_TABLES and isinstance(value, Mapping):
            for name, sub in value.items():
                _check_keywords(sub, format_path(f"{path}.{key}", name), bad)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            for i, sub in enumerate(value):
                _check_keywords(sub, f"{path}.{key}[{i}]", bad)


def _first_non_json(value: object, path: str) -> str | None:
    """The path and type of the first value jsonschema-rs cannot read (or None)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _first_non_json(item, format_path(path, i))
            if found is not None:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: keys must be strings, got a key of type {type(key).__name__}"
            found = _first_non_json(item, format_path(path, key))
            if found is not None:
                return found
        return None
    return f"{path}: expected a JSON value, got {type(value).__name__}"


class DictSchema:
    """A compiled JSON Schema; :meth:`errors` lists every problem of a value, path first.

    ``where`` names the schema in messages (``plugin 'validate': setting 'schemas.x'``).
    A schema that is not valid JSON Schema raises :class:`aperion_bus.ConfigError`.
    """

    __slots__ = ("_validator", "schema")

    def __init__(self, schema: object, where: str = "schema", path: str = "$") -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"{where} {msg}")

        if not isinstance(schema, (Mapping, bool)):
            raise bad(f"at {path}: a schema must be a dict, got {type(schema).__name__}")
        unknown: list[str] = []
        _check_keywords(schema, path, unknown)
        if unknown:
            raise bad(
                "; ".join(unknown)
                + " (JSON Schema keywords only; name your own annotations 'x-...')"
            )
        import jsonschema_rs

        self.schema = schema
        try:
            self._validator: jsonschema_rs.Validator = jsonschema_rs.validator_for(
                _plain(schema),  # type: ignore[arg-type]  # a dict or a bool, checked above
                validate_formats=True,
                ignore_unknown_formats=False,
                offline=True,
            )
        except jsonschema_rs.ValidationError as exc:
            where_in = _join_path(path, exc.instance_path)
            message = exc.message.partition("\n")[0]
            if message.startswith("Unknown format") and isinstance(exc.instance, str):
                message = (
                    f"unknown format {exc.instance!r}; the formats checked are: "
                    f"{', '.join(CHECKED_FORMATS)}"
                )
            elif exc.instance_path and exc.instance_path[-1] == "type":
                message = (
                    f"'type' must be one of {', '.join(_JSON_TYPES)} or a list of them, "
                    f"got {exc.instance!r}"
                )
            raise bad(f"at {where_in}: not a valid JSON Schema: {message}") from None

    def errors(self, value: Any, path: str = "$") -> list[str]:
        """Every problem of ``value``, as ``"<path>: <what is expected>"``; [] if valid."""
        validator = self._validator
        try:
            if validator.is_valid(value):
                return []
            found = list(validator.iter_errors(value))
        except ValueError:  # a value that is not JSON data (a datetime, an int key, ...)
            problem = _first_non_json(value, path)
            return [problem if problem is not None else f"{path}: expected JSON data"]
        out: list[str] = []
        for error in found:
            out.extend(_messages(error, self.schema, path))
        return out


def _plain(schema: object) -> object:
    """``schema`` with every mapping a dict and every sequence a list (what the Rust side
    reads; a TOML table or a ``MappingProxyType`` is not a dict)."""
    if isinstance(schema, Mapping):
        return {k: _plain(v) for k, v in schema.items()}
    if isinstance(schema, (list, tuple)):
        return [_plain(v) for v in schema]
    return schema


def _schema_at(root: object, pointer: Sequence[object]) -> object:
    node: Any = root
    for part in pointer:
        if not isinstance(node, Mapping | list):
            return None
        try:
            node = cast(Any, node)[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _messages(error: jsonschema_rs.ValidationError, root: object, base: str) -> list[str]:
    """What ``error`` means, without the payload's values: one line or more."""
    import jsonschema_rs

    kind = error.kind
    K = jsonschema_rs.ValidationErrorKind
    path = _join_path(base, error.instance_path)
    value = error.instance
    keyword = str(error.schema_path[-1]) if error.schema_path else "schema"

    def one(text: str) -> list[str]:
        return [f"{path}: {text}"]

    if isinstance(kind, K.Type):
        declared = _schema_at(root, error.schema_path)  # the schema's order, not sorted
        expected = " or ".join(declared if isinstance(declared, list) else kind.types)
        return one(f"expected {expected}, got {type_name(value)}")
    if isinstance(kind, K.Required):
        return [f"{format_path(path, kind.property)}: required property missing"]
    if isinstance(kind, (K.AdditionalProperties, K.UnevaluatedProperties)):
        parent = _schema_at(root, error.schema_path[:-1])
        props = parent.get("properties") if isinstance(parent, Mapping) else None
        allowed = ", ".join(props) if isinstance(props, Mapping) and props else "none"
        return [
            f"{format_path(path, key)}: property not allowed (allowed: {allowed})"
            for key in kind.unexpected
        ]
    if isinstance(kind, K.Enum):
        options = kind.options if isinstance(kind.options, list) else [kind.options]
        allowed = ", ".join(repr(o) for o in options)
        return one(f"expected one of {allowed}, got {_described(value)}")
    if isinstance(kind, K.Constant):
        return one(f"expected {kind.expected_value!r}, got {_described(value)}")
    bounds = {
        K.Minimum: ">=", K.Maximum: "<=", K.ExclusiveMinimum: ">", K.ExclusiveMaximum: "<",
    }
    for cls, op in bounds.items():
        if isinstance(kind, cls):
            return one(f"expected {op} {kind.as_dict()['limit']}")
    if isinstance(kind, K.MultipleOf):
        return one(f"expected a multiple of {kind.multiple_of}")
    if isinstance(kind, (K.MinLength, K.MaxLength)):
        least = isinstance(kind, K.MinLength)
        n = len(value) if isinstance(value, str) else 0
        return one(f"expected at {'least' if least else 'most'} {kind.limit} characters, got {n}")
    if isinstance(kind, (K.MinItems, K.MaxItems)):
        least = isinstance(kind, K.MinItems)
        n = len(value) if isinstance(value, (list, tuple)) else 0
        return one(f"expected at {'least' if least else 'most'} {kind.limit} items, got {n}")
    if isinstance(kind, (K.MinProperties, K.MaxProperties)):
        least = isinstance(kind, K.MinProperties)
        n = len(value) if isinstance(value, dict) else 0
        return one(
            f"expected at {'least' if least else 'most'} {kind.limit} properties, got {n}"
        )
    if isinstance(kind, K.Pattern):
        return one(f"expected a string matching {kind.pattern!r}")
    if isinstance(kind, K.Format):
        return one(f"expected a valid {kind.format!r} string")
    if isinstance(kind, K.AdditionalItems):
        n = len(value) if isinstance(value, (list, tuple)) else 0
        return one(f"expected at most {kind.limit} items, got {n}")
    if isinstance(kind, K.UniqueItems):
        return one("expected unique items")
    if isinstance(kind, K.FalseSchema):
        return one(f"no value allowed here (schema 'false' at {keyword!r})")
    if isinstance(kind, K.Not):
        return one("must not match the 'not' schema")
    if isinstance(kind, (K.AnyOf, K.OneOfNotValid)):
        which = "at least one" if isinstance(kind, K.AnyOf) else "exactly one"
        branches = kind.context
        reasons = []
        for i, branch in enumerate(branches, 1):
            first = _messages(branch[0], root, base)[0] if branch else "matched"
            reasons.append(f"{i}: {first}")
        return one(
            f"expected {which} of the {len(branches)} {keyword!r} schemas to match, none did "
            f"({'; '.join(reasons)})"
        )
    if isinstance(kind, K.OneOfMultipleValid):
        return one(f"expected exactly one of the {keyword!r} schemas to match, several did")
    if isinstance(kind, K.PropertyNames):
        return one("a property name does not match 'propertyNames'")
    if isinstance(kind, K.Contains):
        return one("expected an item matching 'contains'")
    return one(f"fails the {keyword!r} rule")
