"""EventValidator (names, domains, payload schemas) and the ``validate`` plugin."""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs
from aperion_bus import HANDLER_ERROR_EVENT, Event, hookimpl
from aperion_bus.settings import Settings

from ._attrs_schema import AttrsSchema, make_converter
from ._jsonschema import DictSchema
from ._names import (
    _SEGMENT_RE,
    ValidationError,
    is_valid_event_type,
    validate_event_type,
)
from ._pydantic_schema import PydanticSchema, is_pydantic_model

__all__ = ["KERNEL_EVENT_TYPES", "EventValidator", "Schema", "ValidatePlugin"]

logger = logging.getLogger("aperion_bus.validate")

#: Event types the kernel emits itself: they always pass the name and domain checks (a
#: payload schema registered for them still applies).
KERNEL_EVENT_TYPES: Final = frozenset({HANDLER_ERROR_EVENT})
#: A payload schema: an attrs class, a pydantic v2 model, or a JSON Schema dict (see
#: ``docs/validate.md``).
Schema = type | Mapping[str, Any] | bool
_CACHE_MAX: Final = 4096
_BY_TYPE_MAX: Final = 1000
_OTHER: Final = "(other)"
_MAX_LISTED: Final = 20


_S: Final = Settings("validate")
_DOMAIN: Final = "domain names (a lowercase letter, then lowercase letters, digits or _)"
_KEY: Final = "event types or patterns as keys ('domain.action', 'prefix.*' or '*')"


def _check_bool(name: str, value: object) -> bool:
    return _S.boolean(name, value)


def _check_domains(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    domains = _S.strings(
        "allowed_domains", value, nonempty=True, item=_DOMAIN,
        check=lambda d: _SEGMENT_RE.fullmatch(d) is not None,
    )
    return frozenset(domains)


def _check_schema_key(key: object) -> str:
    ok = isinstance(key, str) and (
        key == "*"
        or is_valid_event_type(key)
        or (
            key.endswith(".*")
            and all(_SEGMENT_RE.fullmatch(s) for s in key[:-2].split("."))
        )
    )
    if not ok:
        raise _S.error("schemas", key, _KEY)
    assert isinstance(key, str)
    return key


def _candidates(event_type: str) -> list[str]:
    """Schema keys that match ``event_type``, most specific first."""
    out = [event_type]
    end = event_type.rfind(".")
    while end > 0:
        out.append(event_type[:end] + ".*")
        end = event_type.rfind(".", 0, end)
    out.append("*")
    return out


class EventValidator:
    """Checks event types (``{domain}.{action}``), their domains and their payloads.

    ``strict``: :meth:`validate` raises :class:`ValidationError` for an invalid event (True),
    or logs a warning on logger ``aperion_bus.validate``, counts it and returns False.
    ``allowed_domains``: the domains accepted (None: every domain); the kernel's own
    ``system.handler_error`` always passes. ``schemas``: ``{event type or pattern: schema}``,
    a schema being an attrs class (checked with cattrs), a pydantic v2 model or a JSON Schema
    dict (Draft 2020-12 unless its ``$schema`` says otherwise); the most
    specific key applies (exact, then the longest ``prefix.*``, then ``*``).
    ``forbid_extra_keys``: attrs-class schemas refuse payload keys that are not fields.
    Bad arguments raise :class:`aperion_bus.ConfigError` (a ``ValueError``).
    """

    def __init__(
        self,
        strict: bool = True,
        allowed_domains: Iterable[str] | None = None,
        schemas: Mapping[str, Schema] | None = None,
        *,
        forbid_extra_keys: bool = False,
    ) -> None:
        self.strict = _check_bool("strict", strict)
        self.allowed_domains = _check_domains(allowed_domains)
        self.forbid_extra_keys = _check_bool("forbid_extra_keys", forbid_extra_keys)
        if schemas is None:
            schemas = {}
        if not isinstance(schemas, Mapping):
            raise _S.error("schemas", schemas, f"a table of schemas with {_KEY}")
        converter = None
        self._schemas: dict[str, DictSchema | AttrsSchema | PydanticSchema] = {}
        for key, schema in schemas.items():
            key = _check_schema_key(key)
            where = f"plugin 'validate': setting 'schemas.{key}'"
            if isinstance(schema, type) and attrs.has(schema):
                if converter is None:
                    converter = make_converter(self.forbid_extra_keys)
                self._schemas[key] = AttrsSchema(schema, converter)
            elif is_pydantic_model(schema):
                assert isinstance(schema, type)
                self._schemas[key] = PydanticSchema(schema)
            elif isinstance(schema, Mapping | bool):
                self._schemas[key] = DictSchema(schema, where)
            else:
                raise _S.error(
                    f"schemas.{key}", schema,
                    "an attrs class, a pydantic model or a JSON Schema table",
                )
        # event types known to have a valid name and domain -> their schema (or None)
        self._known: dict[str, DictSchema | AttrsSchema | PydanticSchema | None] = {}
        self._lock = threading.Lock()
        self._rejected = 0
        self._warnings = 0
        self._by_type: collections.Counter[str] = collections.Counter()

    def __repr__(self) -> str:
        domains = None if self.allowed_domains is None else sorted(self.allowed_domains)
        return (
            f"<EventValidator strict={self.strict} allowed_domains={domains} "
            f"schemas={sorted(self._schemas)}>"
        )

    @property
    def schema_keys(self) -> list[str]:
        """The event types and patterns that have a payload schema."""
        return list(self._schemas)

    # ------------------------------------------------------------------ checking
    def _schema_for(self, event_type: str) -> DictSchema | AttrsSchema | PydanticSchema | None:
        schemas = self._schemas
        if not schemas:
            return None
        for key in _candidates(event_type):
            found = schemas.get(key)
            if found is not None:
                return found
        return None

    def _name_error(self, event_type: object) -> ValidationError | None:
        if event_type in KERNEL_EVENT_TYPES:
            return None
        try:
            validate_event_type(event_type)
        except ValidationError as exc:
            return exc
        assert isinstance(event_type, str)
        domains = self.allowed_domains
        if domains is not None:
            domain = event_type.partition(".")[0]
            if domain not in domains:
                return ValidationError(
                    f"event type {event_type!r}: domain {domain!r} is not allowed; allowed "
                    f"domains: {', '.join(sorted(domains))}",
                    event_type=event_type,
                    kind="domain",
                )
        return None

    def check(self, event_type: object, payload: object = None) -> ValidationError | None:
        """The :class:`ValidationError` for this event, or None if it is valid. Never raises
        for an invalid event, and counts nothing."""
        try:
            schema = self._known[event_type]  # type: ignore[index]
        except (KeyError, TypeError):
            error = self._name_error(event_type)
            if error is not None:
                return error
            assert isinstance(event_type, str)
            schema = self._schema_for(event_type)
            known = self._known
            if len(known) >= _CACHE_MAX:
                known.clear()
            known[event_type] = schema
        if schema is None:
            return None
        assert isinstance(event_type, str)
        problems = schema.errors({} if payload is None else payload)
        if not problems:
            return None
        listed = "; ".join(problems[:_MAX_LISTED])
        if len(problems) > _MAX_LISTED:
            listed += f"; and {len(problems) - _MAX_LISTED} more"
        return ValidationError(
            f"invalid payload for event type {event_type!r}: {listed}",
            event_type=event_type,
            kind="payload",
            errors=problems,
        )

    def validate(self, event_type: object, payload: object = None) -> bool:
        """True if valid. Otherwise count it, then raise :class:`ValidationError` (strict) or
        log a warning and return False (not strict)."""
        error = self.check(event_type, payload)
        if error is None:
            return True
        self._record(error)
        if self.strict:
            raise error
        logger.warning("%s (strict = false: the event goes through)", error)
        return False

    def validate_event(self, event: Event) -> bool:
        """:meth:`validate` for an :class:`aperion_bus.Event`."""
        return self.validate(event.event_type, event.payload)

    def _record(self, error: ValidationError) -> None:
        key = error.event_type if isinstance(error.event_type, str) else repr(error.event_type)
        with self._lock:
            if self.strict:
                self._rejected += 1
            else:
                self._warnings += 1
            by_type = self._by_type
            if key not in by_type and len(by_type) >= _BY_TYPE_MAX:
                key = _OTHER
            by_type[key] += 1

    def stats(self) -> dict[str, Any]:
        """``{"rejected": n, "warnings": n, "by_event_type": {type: n}}``: invalid events seen
        (rejected when strict, let through with a warning otherwise), by event type."""
        with self._lock:
            return {
                "strict": self.strict,
                "rejected": self._rejected,
                "warnings": self._warnings,
                "by_event_type": dict(self._by_type),
            }


class ValidatePlugin:
    """The ``validate`` plugin: runs an :class:`EventValidator` on every emitted event.

    Takes the validator's settings (``strict``, ``allowed_domains``, ``schemas``,
    ``forbid_extra_keys``), or a ready ``validator``. Its ``on_emit`` runs first (tryfirst):
    an invalid event raises :class:`ValidationError` from ``emit`` and is not dispatched
    (strict), or goes through with a warning (not strict).
    """

    plugin_name = "validate"

    def __init__(
        self,
        strict: bool = True,
        allowed_domains: Iterable[str] | None = None,
        schemas: Mapping[str, Schema] | None = None,
        forbid_extra_keys: bool = False,
        *,
        validator: EventValidator | None = None,
    ) -> None:
        if validator is not None:
            _S.instance(
                "validator", validator, EventValidator, "an EventValidator (Python only) or none"
            )
            if (
                strict is not True
                or allowed_domains is not None
                or schemas is not None
                or forbid_extra_keys
            ):
                raise _S.error(
                    "validator", validator, "either a validator or its settings (strict, "
                    "allowed_domains, schemas, forbid_extra_keys), not both"
                )
            self.validator = validator
        else:
            self.validator = EventValidator(
                strict, allowed_domains, schemas, forbid_extra_keys=forbid_extra_keys
            )

    def __repr__(self) -> str:
        return f"<ValidatePlugin {self.validator!r}>"

    @hookimpl(tryfirst=True)
    def on_emit(self, event: Event) -> None:
        self.validator.validate(event.event_type, event.payload)

    @hookimpl
    def on_stats(self) -> dict[str, Any]:
        return {"validate": self.validator.stats()}
