"""Check the built wheels and sdists of every distribution before they are published.

    uv build --all-packages -o DIST && python tools/check_dists.py DIST [--no-import]

For each distribution of the workspace (core/, plugins/*, contrib/*) there must be exactly one
wheel and one sdist in DIST, at the pyproject's version, and:

- wheel: only the import package and the ``.dist-info`` directory at the top (no ``tests/``,
  no stray modules or data), no byte code, ``py.typed`` in the package, every file of the
  package's source tree present (modules and package data such as templates and static files;
  not byte code, caches or what ``.gitignore`` excludes, which builds leave out),
  ``.dist-info/licenses/LICENSE``, the pyproject's entry points;
- METADATA (wheel) and PKG-INFO (sdist): Metadata-Version >= 2.4, ``License-Expression: MIT``,
  ``License-File: LICENSE``, Author, Keywords, the classifiers, the five Project-URLs,
  Requires-Python, a Markdown description, and every requirement of the pyproject (siblings
  with their bounds);
- sdist: ``PKG-INFO``, ``pyproject.toml``, ``README.md``, ``LICENSE``, ``src/`` (every file of
  the package's source tree, as in the wheel) and ``tests/`` (so a packager can run them), the
  build tool's ``.gitignore``, nothing else;
- unless ``--no-import``: every wheel installed together into a new virtual environment (with
  the extras, and pytest for the pytest plugin), every module of every wheel imported there
  from the installed files.

Exits 1 listing every problem.
"""

from __future__ import annotations

import argparse
import configparser
import email.parser
import email.policy
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from email.message import Message
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parent))
from packaging.requirements import Requirement
from release import Dist, normalize, report, workspace

SDIST_TOP = {"PKG-INFO", "pyproject.toml", "README.md", "LICENSE", ".gitignore", "src", "tests"}
URL_LABELS = ("Homepage", "Documentation", "Repository", "Issues", "Changelog")


def stem(dist: Dist) -> str:
    """The file-name prefix of the distribution's wheel and sdist."""
    return f"{normalize(dist.name).replace('-', '_')}-{dist.version}"


def import_package(dist: Dist) -> str:
    found = [p.name for p in (dist.directory / "src").iterdir() if (p / "__init__.py").is_file()]
    if len(found) != 1:
        raise ValueError(f"{dist.name}: {len(found)} import packages in src/")
    return found[0]


def source_files(dist: Dist) -> set[str]:
    """The files of ``src/`` that must be in the wheel and the sdist, relative to ``src/``:
    modules, ``py.typed`` and package data (templates, static files, ...), as a build takes
    them: not byte code or caches, nor what ``.gitignore`` excludes (listed by git when the
    distribution is in a git work tree, else every file but byte code and caches)."""
    src = dist.directory / "src"
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
            cwd=src, capture_output=True, check=True,
        ).stdout.decode().split("\0")
        paths = [src / name for name in listed if name]
    except (OSError, subprocess.CalledProcessError):  # no git, or not a git work tree
        paths = list(src.rglob("*"))
    return {
        p.relative_to(src).as_posix()
        for p in paths
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    }


def parse_metadata(text: str) -> Message:
    return email.parser.Parser(policy=email.policy.compat32).parsestr(text)


def check_metadata(dist: Dist, meta: Message, where: str) -> list[str]:
    p = dist.project
    problems = []

    def want(field: str, value: str) -> None:
        got = meta.get_all(field) or []
        if value not in got:
            problems.append(f"{where}: {field} is {got or 'missing'}, want {value!r}")

    version = tuple(int(x) for x in str(meta.get("Metadata-Version", "0")).split("."))
    if version < (2, 4):
        problems.append(f"{where}: Metadata-Version {meta.get('Metadata-Version')} (< 2.4)")
    want("Name", dist.name)
    want("Version", dist.version)
    want("License-Expression", "MIT")
    want("License-File", "LICENSE")
    want("Requires-Python", p["requires-python"])
    for author in p.get("authors", []):
        want("Author", author["name"])
    keywords = set(str(meta.get("Keywords", "")).split(","))
    if keywords != set(p.get("keywords", [])):
        problems.append(f"{where}: Keywords are {sorted(keywords)}, want {p.get('keywords')}")
    for c in p.get("classifiers", []):
        want("Classifier", c)
    for label in URL_LABELS:
        want("Project-URL", f"{label}, {p['urls'][label]}")
    if not str(meta.get("Description-Content-Type", "")).startswith("text/markdown"):
        problems.append(f"{where}: the description is not Markdown")
    if len(str(meta.get_payload() or "")) < 100:
        problems.append(f"{where}: no long description (the README)")
    requires = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    for req in p.get("dependencies", []):
        if Requirement(req) not in requires:
            problems.append(f"{where}: Requires-Dist {req!r} missing")
    for extra, reqs in p.get("optional-dependencies", {}).items():
        want("Provides-Extra", extra)
        for req in reqs:
            if Requirement(f"{req}; extra == '{extra}'") not in requires:
                problems.append(f"{where}: Requires-Dist {req!r} (extra {extra!r}) missing")
    return problems


def check_wheel(dist: Dist, path: Path) -> list[str]:
    name = path.name
    pkg = import_package(dist)
    info = f"{stem(dist)}.dist-info"
    problems = []
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        tops = {PurePosixPath(n).parts[0] for n in names}
        problems += [f"{name}: stray top-level entry {t!r}" for t in sorted(tops - {pkg, info})]
        problems += [
            f"{name}: {n}: byte code or cache" for n in names
            if n.endswith((".pyc", ".pyo")) or "__pycache__" in n
        ]
        problems += [f"{name}: {n}: tests in the wheel" for n in names
                     if "tests" in PurePosixPath(n).parts
                     or PurePosixPath(n).name.startswith(("test_", "conftest"))]
        have = {n for n in names if n.startswith(f"{pkg}/")}
        problems += [f"{name}: {m} missing" for m in sorted(source_files(dist) - have)]
        if f"{info}/licenses/LICENSE" not in names:
            problems.append(f"{name}: no {info}/licenses/LICENSE")
        elif zf.read(f"{info}/licenses/LICENSE") != (dist.directory / "LICENSE").read_bytes():
            problems.append(f"{name}: its LICENSE differs from {dist.directory.name}/LICENSE")
        meta = parse_metadata(zf.read(f"{info}/METADATA").decode())
        problems += check_metadata(dist, meta, name)
        eps = dict(dist.project.get("entry-points", {}))
        if "scripts" in dist.project:
            eps["console_scripts"] = dist.project["scripts"]
        ini = configparser.ConfigParser(delimiters=("=",), interpolation=None)
        ini.optionxform = str  # type: ignore[assignment,method-assign]  # names are case-sensitive
        if f"{info}/entry_points.txt" in names:
            ini.read_string(zf.read(f"{info}/entry_points.txt").decode())
        for group, items in eps.items():
            got = dict(ini[group]) if ini.has_section(group) else {}
            if got != dict(items):
                problems.append(f"{name}: entry points [{group}] are {got}, want {dict(items)}")
    return problems


def check_sdist(dist: Dist, path: Path) -> list[str]:
    name = path.name
    root = stem(dist)
    problems = []
    with tarfile.open(path) as tf:
        members = tf.getnames()
        outside = [m for m in members if PurePosixPath(m).parts[0] != root]
        problems += [f"{name}: {m} outside {root}/" for m in outside]
        rel = [PurePosixPath(*PurePosixPath(m).parts[1:]) for m in members if m not in outside]
        tops = {r.parts[0] for r in rel if r.parts}
        problems += [f"{name}: stray top-level entry {t!r}" for t in sorted(tops - SDIST_TOP)]
        problems += [f"{name}: no {t}" for t in ("PKG-INFO", "pyproject.toml", "README.md",
                                                  "LICENSE") if t not in tops]
        problems += [f"{name}: {r}: byte code or cache" for r in rel
                     if r.suffix in (".pyc", ".pyo") or "__pycache__" in r.parts]
        have = {PurePosixPath(*r.parts[1:]).as_posix() for r in rel if r.parts[:1] == ("src",)}
        problems += [f"{name}: src/{m} missing" for m in sorted(source_files(dist) - have)]
        pkg_info = tf.extractfile(f"{root}/PKG-INFO")
        if pkg_info is not None:
            problems += check_metadata(dist, parse_metadata(pkg_info.read().decode()), name)
    return problems


def check_imports(dists: list[Dist], wheels: list[Path]) -> list[str]:
    """Install every wheel (with every extra but 1.2.1's [dev]) into a new virtual environment
    and import each module of each wheel there."""
    modules = sorted(
        n[:-3].replace("/", ".").removesuffix(".__init__")
        for w in wheels
        for n in zipfile.ZipFile(w).namelist()
        if n.endswith(".py") and ".dist-info/" not in n
    )
    reqs = []
    for dist, wheel in zip(dists, wheels, strict=True):
        extras = [e for e in dist.project.get("optional-dependencies", {}) if e != "dev"]
        reqs.append(f"{dist.name}[{','.join(extras)}] @ {wheel.resolve().as_uri()}"
                    if extras else str(wheel.resolve()))
    with tempfile.TemporaryDirectory(prefix="check-dists-") as tmp:
        env = Path(tmp) / "venv"
        subprocess.run(["uv", "venv", "-q", "--python", sys.executable, str(env)], check=True)
        python = env / ("Scripts" if os.name == "nt" else "bin") / "python"
        # pytest: the kernel's pytest plugin module imports it (pytest loads that module)
        subprocess.run(["uv", "pip", "install", "-q", "-p", str(python), *reqs, "pytest"],
                       check=True)
        script = (
            "import importlib, sys, sysconfig\n"
            "site = sysconfig.get_paths()['purelib']\n"
            "bad = []\n"
            "for name in sys.argv[1:]:\n"
            "    try:\n"
            "        mod = importlib.import_module(name)\n"
            "    except Exception as exc:\n"
            "        bad.append(f'{name}: import failed: {exc!r}')\n"
            "        continue\n"
            "    if not str(getattr(mod, '__file__', '')).startswith(site):\n"
            "        bad.append(f'{name}: imported from {mod.__file__}, not the wheel')\n"
            "print('\\n'.join(bad))\n"
        )
        out = subprocess.run([str(python), "-I", "-c", script, *modules], capture_output=True,
                             text=True, cwd=tmp, check=False)
        if out.returncode != 0:
            return [f"import check failed: {out.stderr.strip()}"]
        problems = [line for line in out.stdout.splitlines() if line]
    print(f"check_dists: {len(modules)} modules imported from {len(wheels)} installed wheels")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check_dists.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("dist_dir", type=Path)
    parser.add_argument("--no-import", action="store_true", help="skip the install and import")
    args = parser.parse_args(argv)
    problems: list[str] = []
    dists, wheels = [], []
    for dist in workspace().values():
        found = {kind: sorted(args.dist_dir.glob(f"{stem(dist)}{suffix}"))
                 for kind, suffix in (("wheel", "-*.whl"), ("sdist", ".tar.gz"))}
        for kind, paths in found.items():
            if len(paths) != 1:
                problems.append(f"{dist.name} {dist.version}: {len(paths)} {kind}s in "
                                f"{args.dist_dir}")
        if len(found["wheel"]) == 1:
            problems += check_wheel(dist, found["wheel"][0])
            dists.append(dist)
            wheels.append(found["wheel"][0])
        if len(found["sdist"]) == 1:
            problems += check_sdist(dist, found["sdist"][0])
    if not args.no_import and wheels:
        problems += check_imports(dists, wheels)
    return report("check_dists", problems, f"{len(wheels)} wheels and sdists complete")


if __name__ == "__main__":
    sys.exit(main())
