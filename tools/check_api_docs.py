"""Check that the built docs site documents every public name of every distribution.

Usage: ``python tools/check_api_docs.py SITE_DIR`` after ``mkdocs build -d SITE_DIR``.
The public API of a distribution is the ``__all__`` of its import package (and of the public
submodules that docs/api/ names with ``::: module``); each name must be an object of the
site's ``objects.inv`` (the inventory mkdocstrings writes), i.e. rendered in the API
reference, and each public class and function must have a docstring of its own. Exits 1
listing every problem.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from release import report

ROOT = Path(__file__).resolve().parent.parent
DIRECTIVE = re.compile(r"^::: ([\w.]+)\s*$", re.M)


def inventory(site: Path) -> set[str]:
    """The object names in a Sphinx-format ``objects.inv`` (version 2)."""
    data = (site / "objects.inv").read_bytes()
    header_end = 0
    for _ in range(4):  # four header lines, then the zlib-compressed body
        header_end = data.index(b"\n", header_end) + 1
    body = zlib.decompress(data[header_end:]).decode()
    return {line.split(" ", 1)[0] for line in body.splitlines() if line.strip()}


def documented_modules() -> list[str]:
    """The modules the API reference pages render (``::: module`` lines in docs/api/)."""
    return [m for page in sorted((ROOT / "docs" / "api").glob("*.md"))
            for m in DIRECTIVE.findall(page.read_text())]


def import_packages() -> list[str]:
    """The import package of every distribution (core, plugins/*, contrib/*)."""
    out = []
    for src in sorted(ROOT.glob("*/src")) + sorted(ROOT.glob("*/*/src")):
        out += [p.name for p in src.iterdir() if (p / "__init__.py").is_file()]
    return out


def missing_names(site: Path) -> list[str]:
    names = inventory(site)
    modules = documented_modules()
    problems = [f"{pkg}: no API reference page (no '::: {pkg}' in docs/api/)"
                for pkg in import_packages() if pkg not in modules]
    for module in modules:
        public: list[str] | None = getattr(importlib.import_module(module), "__all__", None)
        if public is None:
            problems.append(f"{module}: no __all__")
            continue
        mod = importlib.import_module(module)
        for n in public:
            # __version__ is computed on first access (module __getattr__): no object to show
            if n == "__version__":
                continue
            if f"{module}.{n}" not in names:
                problems.append(f"{module}.{n}: not in the API reference")
            obj = getattr(mod, n)
            own = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
            if (inspect.isclass(obj) or inspect.isroutine(obj)) and not (own or "").strip():
                problems.append(f"{module}.{n}: no docstring")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_api_docs.py SITE_DIR", file=sys.stderr)
        return 2
    return report(
        "check_api_docs",
        missing_names(Path(argv[0])),
        f"every public name of {len(documented_modules())} modules documented",
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
