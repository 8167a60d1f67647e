"""Payload schemas given as pydantic v2 models (the optional ``[pydantic]`` extra).

pydantic is never imported by this module: a class is recognised as a model only when
pydantic is already loaded (the program that defined the model imported it).
"""

from __future__ import annotations

import sys
from typing import Any

from ._jsonschema import format_path

__all__ = ["PydanticSchema", "is_pydantic_model"]


def is_pydantic_model(schema: object) -> bool:
    """True for a subclass of ``pydantic.BaseModel`` (v2)."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None or not isinstance(schema, type):
        return False
    base = getattr(pydantic, "BaseModel", None)
    return base is not None and issubclass(schema, base) and schema is not base


class PydanticSchema:
    """Checks a payload with ``model.model_validate``; :meth:`errors` lists every bad path.

    The model's own configuration applies (``strict``, ``extra="forbid"``, its validators).
    Messages are pydantic's ``msg`` (which states the rule, not the input) with the path.
    """

    __slots__ = ("model",)

    def __init__(self, model: type) -> None:
        if not is_pydantic_model(model):
            raise TypeError(f"{model!r} is not a pydantic model")
        self.model: Any = model

    def errors(self, value: Any, path: str = "$") -> list[str]:
        """``["$.age: Input should be greater than or equal to 0"]``; [] if valid."""
        import pydantic

        try:
            self.model.model_validate(value)
        except pydantic.ValidationError as exc:
            out = []
            for err in exc.errors(include_url=False, include_context=False, include_input=False):
                where = path
                for part in err["loc"]:
                    where = format_path(where, part)
                out.append(f"{where}: {err['msg']}")
            return out
        return []
