"""A griffe extension for the docs site (loaded by mkdocs.yml): the docstrings' Sphinx roles
(``:class:`Event```, ``:meth:`EventBus.emit```, ``:func:`~pkg.mod.name```) become links to
the API reference when they name a public object (an ``__all__`` name of a documented module,
or a member of such a class), and code otherwise (private constants, the standard library),
instead of raw reStructuredText. A link whose target is not on the site fails the strict build:
a stale name in a docstring is found."""

from __future__ import annotations

import importlib
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

import griffe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_api_docs import documented_modules

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|exc|mod|obj|const):`(~?)([\w.]+)(\(\))?`")


@cache
def public_paths() -> frozenset[str]:
    """Every path under which a public object is known: ``module.name`` for each ``__all__``
    name of a documented module, and the defining path of classes and functions."""
    out = set()
    for module in documented_modules():
        mod = importlib.import_module(module)
        out.add(module)
        for name in getattr(mod, "__all__", []):
            out.add(f"{module}.{name}")
            obj = getattr(mod, name, None)
            where, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
            if callable(obj) and isinstance(where, str) and isinstance(qualname, str):
                out.add(f"{where}.{qualname}")
    return frozenset(out)


def resolve(obj: griffe.Object, target: str) -> str | None:
    """The path ``target`` names from ``obj``'s scope, or None."""
    head, _, rest = target.partition(".")
    if head in {m.split(".")[0] for m in public_paths()}:
        return target
    try:
        path = obj.resolve(head)
    except griffe.NameResolutionError:
        return None
    return f"{path}.{rest}" if rest else path


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring once the object tree is complete."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self.on_object(obj=pkg)  # griffe calls on_object for members, not the package itself

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return

        def replace(m: re.Match[str]) -> str:
            short, target, call = m.groups()
            shown = (target.rsplit(".", 1)[-1] if short else target) + (call or "")
            path = resolve(obj, target)
            public = public_paths()
            if path is not None and (path in public or path.rsplit(".", 1)[0] in public):
                return f"[`{shown}`][{path}]"
            return f"`{shown}`"

        obj.docstring.value = ROLE.sub(replace, obj.docstring.value)
