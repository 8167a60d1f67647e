"""Release tool of the aperion-bus workspace: keeps versions, sibling bounds, publishing
metadata and the CHANGELOG in step.

    python tools/release.py check                 # CI: exit 1 listing every problem
    python tools/release.py bump NAME VERSION ...  # set versions, rewrite sibling bounds
    python tools/release.py cut [--date YYYY-MM-DD]  # [Unreleased] -> a release section

Rules it checks (``check``), for every distribution (core/, plugins/*, contrib/*):

- A dependency on a sibling distribution, in ``[project].dependencies`` or an extra, is
  bounded ``>=V,<NEXT`` where V is the sibling's current version and NEXT its next breaking
  release (``0.(minor+1)`` below 1.0, ``major+1`` from 1.0 on); ``bump`` rewrites them.
- Publishing metadata: the MIT ``license`` with its LICENSE file (holder "aperion-bus
  contributors"), authors, keywords, valid trove classifiers (Development Status, Intended
  Audience, an Operating System, Python 3.11/3.12/3.13, ``Typing :: Typed``; no ``License ::``
  classifier, which PyPI refuses beside a License-Expression), the five Project-URLs on the
  project's canonical repository and docs site.
- No test-only extra (``test``, ``tests``, ``testing``, ``dev``): tests use the ``test``
  dependency group. aperion-event-bus's ``dev`` is 1.2.1's extra, kept for compatibility.
- The README shown on the package index has no relative link (they break there), and every
  link into the docs site names a page that exists in docs/.
- CHANGELOG.md starts with ``## [Unreleased]``; release sections are
  ``## [NAME VERSION, ...] - YYYY-MM-DD`` followed by a ``Distributions: NAME VERSION, ...``
  paragraph, and an entry of a release section that names a distribution (``- NAME: ...``,
  ``- NAME (issue N): ...``) names one the release published; no distribution's version is
  below the last one released.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = "https://github.com/aperion-bus/aperion-bus"
DOCS_SITE = "https://aperion-bus.github.io/aperion-bus/"
URLS = {
    "Homepage": DOCS_SITE,
    "Documentation": None,  # the distribution's own page of the docs site
    "Repository": REPOSITORY,
    "Issues": f"{REPOSITORY}/issues",
    "Changelog": f"{REPOSITORY}/blob/main/CHANGELOG.md",
}
AUTHORS = [{"name": "aperion-bus contributors"}]
PYTHONS = ("3.11", "3.12", "3.13")
TEST_EXTRAS = {"test", "tests", "testing", "dev"}
# 1.2.1 shipped a [dev] extra; aperion-event-bus 2.0 keeps 1.2.1's extras (tests/api_121.json)
ALLOWED_EXTRAS = {("aperion-event-bus", "dev")}
KERNEL = "aperion-bus"

VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
REQUIREMENT = re.compile(r'"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]"]*\])?([^";]*)(;[^"]*)?"')
RELEASE_HEADING = re.compile(r"^## \[(?!Unreleased\])([^\]]+)\] - (\d{4}-\d{2}-\d{2})$", re.M)
DISTRIBUTIONS_LINE = re.compile(r"^Distributions: ([^\n]+(?:\n[^\n#]+)*)", re.M)
# the distribution an entry is about: its first word, as in "- aperion-bus-audit: ..."
ENTRY_NAME = re.compile(r"^- `?([A-Za-z0-9][A-Za-z0-9._-]*)`?[:( ]", re.M)
MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)[^)]*\)")


@dataclass
class Dist:
    name: str
    directory: Path
    version: str
    project: dict[str, Any]

    @property
    def pyproject(self) -> Path:
        return self.directory / "pyproject.toml"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def workspace(root: Path = ROOT) -> dict[str, Dist]:
    """Every distribution of the workspace by normalized name, kernel first."""
    out: dict[str, Dist] = {}
    for d in [root / "core", *sorted((root / "plugins").glob("*")),
              *sorted((root / "contrib").glob("*"))]:
        py = d / "pyproject.toml"
        if py.is_file():
            project = tomllib.loads(py.read_text())["project"]
            out[normalize(project["name"])] = Dist(project["name"], d, project["version"], project)
    return out


def parse_version(version: str) -> tuple[int, int, int]:
    m = VERSION.match(version)
    if m is None:
        raise ValueError(f"version {version!r} is not MAJOR.MINOR.PATCH")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def bound(version: str) -> str:
    """The specifier a sibling at ``version`` is required with: ``>=version,<next breaking``."""
    major, minor, _ = parse_version(version)
    upper = f"0.{minor + 1}" if major == 0 else str(major + 1)
    return f">={version},<{upper}"


def docs_page(dist: Dist) -> str:
    """The docs site page of a distribution (its Documentation URL)."""
    return str(dist.project.get("urls", {}).get("Documentation", ""))


# --- sibling bounds -------------------------------------------------------------------------


def _array_end(text: str, i: int) -> int:
    """The index just past the ``]`` closing the TOML array whose ``[`` ends before ``i``
    (brackets in strings, as in ``"pkg[extra]"``, and in comments are skipped)."""
    quote = False
    while i < len(text):
        ch = text[i]
        if quote:
            quote = ch != '"'
        elif ch == '"':
            quote = True
        elif ch == "#":
            i = text.find("\n", i)
            if i == -1:
                break
        elif ch == "]":
            return i + 1
        i += 1
    raise ValueError("unterminated dependencies array")


def _requirement_spans(text: str) -> list[tuple[int, int]]:
    """Where the published requirements are in a pyproject's text: the [project] table's
    ``dependencies = [...]`` array and the whole [project.optional-dependencies] table."""
    spans = []
    tables = [(m.start(), m.group(1)) for m in re.finditer(r"(?m)^\[([^\]]+)\]\s*$", text)]
    for i, (start, table) in enumerate(tables):
        end = tables[i + 1][0] if i + 1 < len(tables) else len(text)
        if table == "project":
            m = re.search(r"(?m)^dependencies\s*=\s*\[", text[start:end])
            if m:
                spans.append((start + m.start(), _array_end(text, start + m.end())))
        elif table == "project.optional-dependencies":
            spans.append((start, end))
    return spans


def rewrite_bounds(text: str, versions: dict[str, str]) -> str:
    """``text`` with every published requirement on a sibling (``versions``: normalized name
    to version) bounded as :func:`bound` says; extras and markers are kept."""

    def fix(m: re.Match[str]) -> str:
        name, extras, _spec, marker = m.groups()
        version = versions.get(normalize(name))
        if version is None:
            return m.group(0)
        return f'"{name}{extras or ""}{bound(version)}{marker or ""}"'

    out, last = [], 0
    for start, end in _requirement_spans(text):
        out += [text[last:start], REQUIREMENT.sub(fix, text[start:end])]
        last = end
    return "".join([*out, text[last:]])


def sibling_requirements(dist: Dist, known: dict[str, Dist]) -> list[tuple[str, str, str]]:
    """(where, sibling name, specifier) for each published requirement on a sibling."""
    reqs = [("dependencies", r) for r in dist.project.get("dependencies", [])]
    for extra, items in dist.project.get("optional-dependencies", {}).items():
        reqs += [(f"extra {extra!r}", r) for r in items]
    out = []
    for where, req in reqs:
        m = REQUIREMENT.fullmatch(f'"{req}"')
        if m and normalize(m.group(1)) in known:
            out.append((where, normalize(m.group(1)), m.group(3).replace(" ", "")))
    return out


# --- checks ---------------------------------------------------------------------------------


def check_bounds(known: dict[str, Dist]) -> list[str]:
    problems = []
    for dist in known.values():
        for where, sibling, spec in sibling_requirements(dist, known):
            want = bound(known[sibling].version)
            if spec != want:
                problems.append(
                    f"{dist.name}: {where} requires {sibling}{spec or ' (no bound)'}, but "
                    f"{sibling} is {known[sibling].version}: want {sibling}{want} "
                    "(tools/release.py bump rewrites it)"
                )
    return problems


def check_metadata(dist: Dist, classifiers: frozenset[str] | None) -> list[str]:
    p, name = dist.project, dist.name
    problems = []
    try:
        parse_version(dist.version)
    except ValueError as exc:
        problems.append(f"{name}: {exc}")
    if p.get("license") != "MIT":
        problems.append(f"{name}: license is {p.get('license')!r}, not 'MIT'")
    if p.get("license-files") != ["LICENSE"]:
        problems.append(f"{name}: license-files is {p.get('license-files')!r}, not ['LICENSE']")
    lic = dist.directory / "LICENSE"
    if not lic.is_file():
        problems.append(f"{name}: no LICENSE file in {dist.directory.relative_to(ROOT)}")
    else:
        text = lic.read_text()
        if not text.startswith("MIT License") or "aperion-bus contributors" not in text:
            problems.append(f"{name}: LICENSE is not the MIT license of aperion-bus contributors")
    if p.get("authors") != AUTHORS:
        problems.append(f"{name}: authors is {p.get('authors')!r}, not {AUTHORS!r}")
    if not p.get("keywords"):
        problems.append(f"{name}: no keywords")
    if p.get("requires-python") != ">=3.11":
        problems.append(f"{name}: requires-python is {p.get('requires-python')!r}, not '>=3.11'")
    cls = list(p.get("classifiers", []))
    if classifiers is not None:
        problems += [f"{name}: unknown classifier {c!r}" for c in cls if c not in classifiers]
    problems += [
        f"{name}: classifier {c!r}: PyPI refuses License classifiers beside License-Expression"
        for c in cls if c.startswith("License ::")
    ]
    wanted = ["Typing :: Typed", *(f"Programming Language :: Python :: {v}" for v in PYTHONS)]
    problems += [f"{name}: no classifier {c!r}" for c in wanted if c not in cls]
    for prefix in ("Development Status :: ", "Intended Audience :: ", "Operating System :: "):
        if not any(c.startswith(prefix) for c in cls):
            problems.append(f"{name}: no {prefix.strip(': ')} classifier")
    urls = p.get("urls", {})
    if set(urls) != set(URLS):
        problems.append(f"{name}: Project-URLs are {sorted(urls)}, not {sorted(URLS)}")
    for key, want in URLS.items():
        got = urls.get(key)
        if want is not None and got != want:
            problems.append(f"{name}: Project-URL {key} is {got!r}, not {want!r}")
    doc = urls.get("Documentation", "")
    if not doc.startswith(DOCS_SITE) or docs_source(doc) is None:
        problems.append(f"{name}: Project-URL Documentation {doc!r} is no page of {DOCS_SITE}")
    for extra in p.get("optional-dependencies", {}):
        if extra in TEST_EXTRAS and (name, extra) not in ALLOWED_EXTRAS:
            problems.append(
                f"{name}: extra {extra!r} looks test-only: use the `test` dependency group"
            )
    return problems


def docs_source(url: str) -> Path | None:
    """The docs/ page a URL of the docs site is built from (``None``: no such page)."""
    if not url.startswith(DOCS_SITE):
        return None
    path = url[len(DOCS_SITE):].split("#", 1)[0].strip("/")
    docs = ROOT / "docs"
    candidates = [docs / f"{path}.md", docs / path / "index.md"] if path else [docs / "index.md"]
    return next((c for c in candidates if c.is_file()), None)


def check_readme(dist: Dist) -> list[str]:
    readme = dist.directory / str(dist.project.get("readme", "README.md"))
    if not readme.is_file():
        return [f"{dist.name}: no README ({readme.relative_to(ROOT)})"]
    problems = []
    for target in MD_LINK.findall(readme.read_text()):
        if not re.match(r"https?://", target):
            problems.append(
                f"{dist.name}: README link {target!r} is relative (broken on a package index); "
                f"link to {DOCS_SITE} or {REPOSITORY}"
            )
        elif target.startswith(DOCS_SITE) and docs_source(target) is None:
            problems.append(f"{dist.name}: README link {target!r}: no such page in docs/")
    return problems


def released(changelog: str) -> list[tuple[str, dict[str, str]]]:
    """The release sections of a CHANGELOG, newest first: (date, {name: version})."""
    out = []
    starts = [m for m in RELEASE_HEADING.finditer(changelog)]
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(changelog)
        line = DISTRIBUTIONS_LINE.search(changelog, m.end(), end)
        versions: dict[str, str] = {}
        if line:
            for item in line.group(1).strip().rstrip(".").split(","):
                parts = item.strip().strip("`").split()
                if len(parts) == 2:
                    versions[normalize(parts[0])] = parts[1]
        out.append((m.group(2), versions))
    return out


def check_changelog(known: dict[str, Dist], changelog: str) -> list[str]:
    problems = []
    first = re.search(r"(?m)^## .*$", changelog)
    if first is None or first.group(0) != "## [Unreleased]":
        problems.append("CHANGELOG.md: the first section is not '## [Unreleased]'")
    sections = released(changelog)
    for m, (_date, versions) in zip(RELEASE_HEADING.finditer(changelog), sections, strict=True):
        end = changelog.find("\n## ", m.end())
        body = changelog[m.end(): end if end != -1 else None]
        if not DISTRIBUTIONS_LINE.search(body):
            problems.append(f"CHANGELOG.md: release {m.group(0)!r} has no 'Distributions:' list")
            continue
        for entry in ENTRY_NAME.findall(body):
            name = normalize(entry)
            if name in known and name not in versions:
                problems.append(
                    f"CHANGELOG.md: release {m.group(0)!r} has an entry about {known[name].name}, "
                    "which it did not release (new entries go under '## [Unreleased]')"
                )
    last: dict[str, str] = {}
    for _date, versions in reversed(sections):  # oldest first
        for name, version in versions.items():
            if name not in known:
                continue  # a distribution that was removed since
            if name in last and parse_version(version) <= parse_version(last[name]):
                problems.append(f"CHANGELOG.md: {name} {version} released after {last[name]}")
            last[name] = version
    for name, dist in known.items():
        if name in last and parse_version(dist.version) < parse_version(last[name]):
            problems.append(
                f"{dist.name}: version {dist.version} is below {last[name]}, already released"
            )
    return problems


def check(root: Path = ROOT) -> list[str]:
    known = workspace(root)
    try:
        from trove_classifiers import classifiers as trove

        valid: frozenset[str] | None = frozenset(trove)
    except ImportError:  # pragma: no cover - the `release` dependency group brings it
        valid = None
    problems = check_bounds(known)
    for dist in known.values():
        problems += check_metadata(dist, valid)
        problems += check_readme(dist)
    problems += check_changelog(known, (root / "CHANGELOG.md").read_text())
    return problems


# --- commands -------------------------------------------------------------------------------


def report(tool: str, problems: list[str], success: str) -> int:
    """Print each problem on stderr and a count (exit status 1), or ``success`` (0)."""
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"{tool}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{tool}: {success}")
    return 0



def bump(pairs: list[tuple[str, str]], root: Path = ROOT) -> list[str]:
    """Set each named distribution's version and rewrite every sibling bound; the changed
    files, relative to ``root``."""
    known = workspace(root)
    for name, version in pairs:
        parse_version(version)
        if normalize(name) not in known:
            raise SystemExit(f"release.py: error: no distribution {name!r} in the workspace")
    versions = {n: d.version for n, d in known.items()}
    versions.update({normalize(n): v for n, v in pairs})
    changed = []
    for name, dist in known.items():
        text = dist.pyproject.read_text()
        new = rewrite_bounds(text, versions)
        if versions[name] != dist.version:
            new, n = re.subn(r'(?m)^version = "[^"]*"$', f'version = "{versions[name]}"', new,
                             count=1)
            assert n == 1, dist.pyproject
        if new != text:
            dist.pyproject.write_text(new)
            changed.append(str(dist.pyproject.relative_to(root)))
    return changed


def release_heading(versions: dict[str, str], known: dict[str, Dist]) -> str:
    """The heading's names: every released distribution, those at the kernel's version folded
    into the kernel when it is released too."""
    names = [known[n].name for n in versions]
    kernel = versions.get(KERNEL)
    shown = [f"{known[n].name} {v}" for n, v in versions.items()
             if n == KERNEL or kernel is None or v != kernel]
    return ", ".join(shown) if shown else ", ".join(names)


def cut(date: str, root: Path = ROOT) -> str:
    """Turn the [Unreleased] section into a release of every distribution whose version was
    not released yet; returns the new heading."""
    known = workspace(root)
    path = root / "CHANGELOG.md"
    text = path.read_text()
    last: dict[str, str] = {}
    for _date, versions in released(text):
        for name, version in versions.items():
            last.setdefault(name, version)
    new = {n: d.version for n, d in known.items() if last.get(n) != d.version}
    if not new:
        raise SystemExit("release.py: error: every version is released already; bump first")
    head = "## [Unreleased]\n"
    at = text.find(head)
    if at == -1:
        raise SystemExit("release.py: error: CHANGELOG.md has no '## [Unreleased]' section")
    heading = f"## [{release_heading(new, known)}] - {date}"
    pairs = ", ".join(f"{known[n].name}\N{NO-BREAK SPACE}{v}" for n, v in new.items())
    listing = textwrap.fill(
        f"Distributions: {pairs}.", width=95, break_on_hyphens=False, break_long_words=False
    ).replace("\N{NO-BREAK SPACE}", " ")
    text = text[: at + len(head)] + f"\n{heading}\n\n{listing}\n" + text[at + len(head):]
    path.write_text(text)
    return heading


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="release.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="versions, bounds, metadata, READMEs, CHANGELOG (CI)")
    b = sub.add_parser("bump", help="set versions and rewrite the sibling bounds")
    b.add_argument("pairs", nargs="+", metavar="NAME VERSION")
    c = sub.add_parser("cut", help="turn [Unreleased] into a release section")
    c.add_argument("--date", default=_dt.date.today().isoformat())
    args = parser.parse_args(argv)
    if args.command == "check":
        return report("release.py", check(), f"{len(workspace())} distributions in step")
    if args.command == "bump":
        if len(args.pairs) % 2:
            parser.error("bump takes NAME VERSION pairs")
        pairs = list(zip(args.pairs[::2], args.pairs[1::2], strict=True))
        try:
            changed = bump(pairs)
        except ValueError as exc:
            parser.error(str(exc))
        print("\n".join(changed) if changed else "nothing to change")
        return 0
    print(cut(args.date))
    return 0


if __name__ == "__main__":
    sys.exit(main())
