"""Payload schemas given as attrs classes, checked by structuring with cattrs.

cattrs is imported when the first attrs schema is registered, not with the plugin: a
validator that only has dict schemas never loads it (it costs about a fifth of the seven
plugins' start-up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import cattrs

__all__ = ["AttrsSchema"]


class _StrictTypeError(TypeError):
    """A primitive field got a value of another type (cattrs alone would convert it)."""


def _strict_hook(
    accepted: type | tuple[type, ...], expected: str, allow_bool: bool = False
) -> Any:
    def hook(value: object, _type: object) -> object:
        if (isinstance(value, bool) and not allow_bool) or not isinstance(value, accepted):
            raise _StrictTypeError(f"expected {expected}, got {type(value).__name__}")
        return value

    return hook


def _format(exc: BaseException, type_: type | None) -> str:
    from cattrs.errors import ForbiddenExtraKeysError
    from cattrs.v import format_exception

    if isinstance(exc, _StrictTypeError):
        return str(exc)
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, ForbiddenExtraKeysError):
        return f"extra fields not allowed: {', '.join(sorted(exc.extra_fields))}"
    if isinstance(exc, (TypeError, ValueError)):
        if type_ is not None:
            name = getattr(type_, "__name__", None) or repr(type_)
            return f"expected {name}"
        return f"{type(exc).__name__}: {exc}"  # e.g. an attrs validator of the class
    return format_exception(exc, type_)


def make_converter(forbid_extra_keys: bool) -> cattrs.Converter:
    """A converter that collects every error and does not coerce primitives.

    cattrs on its own turns ``"5"`` into ``5`` for an ``int`` field; a validator must not,
    so ``str``, ``int``, ``float`` and ``bool`` fields only accept their own type (an ``int``
    is accepted for a ``float``).
    """
    import cattrs

    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=forbid_extra_keys)
    conv.register_structure_hook(str, _strict_hook(str, "str"))
    conv.register_structure_hook(int, _strict_hook(int, "int"))
    conv.register_structure_hook(float, _strict_hook((int, float), "float"))
    conv.register_structure_hook(bool, _strict_hook(bool, "bool", allow_bool=True))
    return conv


class AttrsSchema:
    """Checks a payload by structuring it into ``cls``; :meth:`errors` lists every bad path."""

    __slots__ = ("cls", "converter")

    def __init__(self, cls: type, converter: cattrs.Converter) -> None:
        if not attrs.has(cls):
            raise TypeError(f"{cls!r} is not an attrs class")
        self.cls = cls
        self.converter = converter

    def errors(self, value: Any, path: str = "$") -> list[str]:
        """``["$.age: expected int, got str", "$.name: required field missing"]``; [] if valid."""
        try:
            self.converter.structure(value, self.cls)
        except Exception as exc:  # cattrs groups, or an attrs validator of the class
            import cattrs

            if isinstance(exc, (cattrs.ClassValidationError, cattrs.IterableValidationError)):
                lines = cattrs.transform_error(exc, path, _format)
            else:
                lines = [f"{type(exc).__name__}: {exc} @ {path}"]
            return [_path_first(line) for line in lines]
        return []


def _path_first(line: str) -> str:
    # cattrs says "what @ $.path"; we say "$.path: what" (like the dict schemas)
    what, sep, where = line.rpartition(" @ ")
    return f"{where}: {what}" if sep else line
