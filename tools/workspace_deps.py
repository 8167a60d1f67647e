"""Print the workspace member directories a distribution depends on (transitively), for
tools/test_isolated.sh: uv pip cannot resolve workspace sources by itself."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def members() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for d in [
        ROOT / "core",
        *sorted((ROOT / "plugins").glob("*")),
        *sorted((ROOT / "contrib").glob("*")),
    ]:
        py = d / "pyproject.toml"
        if py.is_file():
            name = tomllib.loads(py.read_text())["project"]["name"]
            out[name.lower().replace("_", "-")] = d
    return out


def requirement_names(d: Path, *, test_group: bool = False) -> list[str]:
    """[project].dependencies, and with ``test_group`` the `test` dependency group too."""
    data = tomllib.loads((d / "pyproject.toml").read_text())
    reqs = list(data["project"].get("dependencies", []))
    if test_group:
        reqs += [r for r in data.get("dependency-groups", {}).get("test", []) if isinstance(r, str)]
    return [re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs]


def main() -> None:
    target = (ROOT / sys.argv[1]).resolve()
    known = members()
    seen: set[Path] = set()
    todo = [target]
    while todo:
        d = todo.pop()
        # the target's test group too (tests may use other plugins); uv pip would look the
        # workspace members up on the index otherwise
        for name in requirement_names(d, test_group=d == target):
            dep = known.get(name)
            if dep is not None and dep not in seen and dep != target and dep.name != "core":
                seen.add(dep)
                todo.append(dep)
    print(" ".join(str(p.relative_to(ROOT)) for p in sorted(seen)))


if __name__ == "__main__":
    main()
