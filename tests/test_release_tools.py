"""The release tools (tools/release.py, tools/check_dists.py, tools/check_api_docs.py): the
workspace is in step, and each check fails, naming the problem, when something drifts."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"


def load(name: str) -> ModuleType:
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))  # check_dists imports release
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


release = load("release")
check_dists = load("check_dists")
check_api_docs = load("check_api_docs")

CORE = """\
[project]
name = "aperion-bus"
version = "0.1.0"
requires-python = ">=3.11"
license = "MIT"
dependencies = ["pluggy>=1.5"]
"""

PLUGIN = """\
[project]
name = "aperion-bus-x"
version = "0.1.0"
keywords = ["aperion-bus"]
# the kernel, bounded
dependencies = [
    "aperion-bus",  # a comment with [brackets]
    "attrs>=23.1",
]

[project.optional-dependencies]
all = ["aperion-bus[extra]>=0.0.1 ; python_version >= '3.11'"]

[project.entry-points."aperion_bus.plugins"]
x = "aperion_bus_x:Plugin"

[dependency-groups]
test = ["pytest>=8", "aperion-bus"]
"""


def make_workspace(tmp: Path) -> Path:
    (tmp / "core").mkdir()
    (tmp / "core" / "pyproject.toml").write_text(CORE)
    (tmp / "plugins" / "x").mkdir(parents=True)
    (tmp / "plugins" / "x" / "pyproject.toml").write_text(PLUGIN)
    (tmp / "contrib").mkdir()
    (tmp / "CHANGELOG.md").write_text("# Changelog\n\n## [Unreleased]\n\n### Added\n- x\n")
    return tmp


def test_the_workspace_is_in_step() -> None:
    """What CI checks: bounds, metadata, README links, CHANGELOG (tools/release.py check)."""
    assert release.check() == []


@pytest.mark.parametrize(
    ("version", "spec"),
    [("0.1.0", ">=0.1.0,<0.2"), ("0.9.3", ">=0.9.3,<0.10"), ("2.0.0", ">=2.0.0,<3")],
)
def test_bound_is_the_version_up_to_the_next_breaking_release(version: str, spec: str) -> None:
    assert release.bound(version) == spec


def test_bound_refuses_a_version_that_is_not_major_minor_patch() -> None:
    with pytest.raises(ValueError, match=r"version '1\.0' is not MAJOR\.MINOR\.PATCH"):
        release.bound("1.0")


def test_rewrite_bounds_touches_only_published_requirements() -> None:
    out = release.rewrite_bounds(PLUGIN, {"aperion-bus": "0.2.0"})
    assert '"aperion-bus>=0.2.0,<0.3",  # a comment with [brackets]' in out
    assert "\"aperion-bus[extra]>=0.2.0,<0.3; python_version >= '3.11'\"" in out
    assert '"attrs>=23.1"' in out
    assert 'name = "aperion-bus-x"' in out and 'keywords = ["aperion-bus"]' in out
    assert 'test = ["pytest>=8", "aperion-bus"]' in out  # dependency groups are not published


def test_bump_sets_the_version_and_every_sibling_bound(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    known = release.workspace(root)
    assert any("no bound" in p for p in release.check_bounds(known))

    changed = release.bump([("aperion-bus", "0.2.0")], root)

    assert changed == ["core/pyproject.toml", "plugins/x/pyproject.toml"]
    known = release.workspace(root)
    assert known["aperion-bus"].version == "0.2.0"
    assert known["aperion-bus-x"].project["dependencies"][0] == "aperion-bus>=0.2.0,<0.3"
    assert release.check_bounds(known) == []
    assert release.bump([("aperion-bus", "0.2.0")], root) == []  # idempotent


def test_bump_refuses_an_unknown_distribution(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    with pytest.raises(SystemExit, match="no distribution 'aperion-bus-nope'"):
        release.bump([("aperion-bus-nope", "1.0.0")], root)


def test_check_bounds_names_a_stale_bound(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    release.bump([("aperion-bus", "0.1.0")], root)
    core = root / "core" / "pyproject.toml"
    core.write_text(core.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    problems = release.check_bounds(release.workspace(root))
    assert problems[0] == (
        "aperion-bus-x: dependencies requires aperion-bus>=0.1.0,<0.2, but aperion-bus is "
        "0.2.0: want aperion-bus>=0.2.0,<0.3 (tools/release.py bump rewrites it)"
    )


def test_cut_makes_a_release_section_of_the_versions_not_released(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    heading = release.cut("2026-12-03", root)
    assert heading == "## [aperion-bus 0.1.0] - 2026-12-03"  # x at the kernel's version: folded
    text = (root / "CHANGELOG.md").read_text()
    assert text.startswith(
        "# Changelog\n\n## [Unreleased]\n\n## [aperion-bus 0.1.0] - 2026-12-03\n\n"
        "Distributions: aperion-bus 0.1.0, aperion-bus-x 0.1.0.\n\n### Added\n- x\n"
    )
    known = release.workspace(root)
    assert release.check_changelog(known, text) == []
    with pytest.raises(SystemExit, match="bump first"):
        release.cut("2026-12-04", root)

    release.bump([("aperion-bus-x", "0.1.1")], root)
    assert release.cut("2026-12-05", root) == "## [aperion-bus-x 0.1.1] - 2026-12-05"


def test_check_changelog_names_each_problem(tmp_path: Path) -> None:
    known = release.workspace(make_workspace(tmp_path))
    text = (
        "# Changelog\n\n## [aperion-bus 0.1.0] - 2026-12-03\n\nDistributions: aperion-bus 0.1.0.\n"
        "## [aperion-bus 0.0.9] - 2026-12-01\n\nno list\n"
        "## [aperion-bus 0.2.0] - 2026-11-01\n\nDistributions: aperion-bus 0.2.0.\n"
    )
    assert release.check_changelog(known, text) == [
        "CHANGELOG.md: the first section is not '## [Unreleased]'",
        "CHANGELOG.md: release '## [aperion-bus 0.0.9] - 2026-12-01' has no 'Distributions:' list",
        "CHANGELOG.md: aperion-bus 0.1.0 released after 0.2.0",
    ]
    newer = (
        "## [Unreleased]\n\n## [aperion-bus 0.2.0] - 2026-12-03\n\n"
        "Distributions: aperion-bus 0.2.0.\n"
    )
    assert release.check_changelog(known, newer) == [
        "aperion-bus: version 0.1.0 is below 0.2.0, already released"
    ]
    # an entry about a distribution the release did not publish (it landed in the wrong section)
    misplaced = (
        "## [Unreleased]\n\n## [aperion-bus 0.1.0] - 2026-12-03\n\n"
        "Distributions: aperion-bus 0.1.0.\n\n### Added\n- aperion-bus: fine\n"
        "- aperion-bus-x (issue 3): new\n- The kernel: fine\n- aperion-bus-gone: removed since\n"
    )
    assert release.check_changelog(known, misplaced) == [
        "CHANGELOG.md: release '## [aperion-bus 0.1.0] - 2026-12-03' has an entry about "
        "aperion-bus-x, which it did not release (new entries go under '## [Unreleased]')"
    ]
    fixed = misplaced.replace("aperion-bus 0.1.0.", "aperion-bus 0.1.0, aperion-bus-x 0.1.0.")
    assert release.check_changelog(known, fixed) == []


def test_check_readme_refuses_relative_links_and_missing_docs_pages(tmp_path: Path) -> None:
    d = tmp_path / "x"
    d.mkdir()
    (d / "README.md").write_text(
        "[core](../../core) [ok](https://aperion-bus.github.io/aperion-bus/audit/) "
        "[gone](https://aperion-bus.github.io/aperion-bus/nope/) [gh](https://github.com/x)\n"
    )
    dist = release.Dist("aperion-bus-x", d, "0.1.0", {"readme": "README.md"})
    problems = release.check_readme(dist)
    assert len(problems) == 2
    assert "README link '../../core' is relative" in problems[0]
    assert "'https://aperion-bus.github.io/aperion-bus/nope/': no such page" in problems[1]


def test_check_metadata_names_what_is_missing() -> None:
    known = release.workspace()
    dist = known["aperion-bus-dlq"]
    broken = dict(dist.project)
    broken["classifiers"] = [*broken["classifiers"], "License :: OSI Approved :: MIT License",
                             "Typing :: Typo"]
    broken["urls"] = {**broken["urls"], "Repository": "https://example.org/elsewhere"}
    broken["optional-dependencies"] = {"test": ["pytest"]}
    del broken["keywords"]
    problems = release.check_metadata(
        release.Dist(dist.name, dist.directory, dist.version, broken),
        frozenset(dist.project["classifiers"]) | {"License :: OSI Approved :: MIT License"},
    )
    assert problems == [
        "aperion-bus-dlq: no keywords",
        "aperion-bus-dlq: unknown classifier 'Typing :: Typo'",
        "aperion-bus-dlq: classifier 'License :: OSI Approved :: MIT License': PyPI refuses "
        "License classifiers beside License-Expression",
        "aperion-bus-dlq: Project-URL Repository is 'https://example.org/elsewhere', not "
        "'https://github.com/aperion-bus/aperion-bus'",
        "aperion-bus-dlq: extra 'test' looks test-only: use the `test` dependency group",
    ]


# --- tools/check_dists.py -------------------------------------------------------------------


def build_clean(dist: Any, tmp_path: Path) -> tuple[Path, Path]:
    """The wheel and sdist of ``dist``, built into ``tmp_path/dist``; check_dists passes them."""
    out = tmp_path / "dist"
    subprocess.run(["uv", "build", "-q", "-o", str(out), str(dist.directory)], check=True)
    wheel = next(out.glob("*.whl"))
    sdist = next(out.glob("*.tar.gz"))
    assert check_dists.check_wheel(dist, wheel) == []
    assert check_dists.check_sdist(dist, sdist) == []
    return wheel, sdist


@pytest.mark.slow
def test_check_dists_passes_a_built_distribution_and_names_each_defect(tmp_path: Path) -> None:
    dist = release.workspace()["aperion-bus-backpressure"]
    wheel, _sdist = build_clean(dist, tmp_path)

    # the same wheel with a test module, without its LICENSE and with its version changed
    bad = tmp_path / wheel.name
    info = f"{check_dists.stem(dist)}.dist-info"
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == f"{info}/licenses/LICENSE":
                continue
            if item == f"{info}/METADATA":
                data = data.replace(b"Version: 0.1.0", b"Version: 0.1.1")
            dst.writestr(item, data)
        dst.writestr("tests/test_x.py", "")
        dst.writestr("aperion_bus_backpressure/__pycache__/x.cpython-311.pyc", b"")
    name = wheel.name
    assert check_dists.check_wheel(dist, bad) == [
        f"{name}: stray top-level entry 'tests'",
        f"{name}: aperion_bus_backpressure/__pycache__/x.cpython-311.pyc: byte code or cache",
        f"{name}: tests/test_x.py: tests in the wheel",
        f"{name}: no {info}/licenses/LICENSE",
        f"{name}: Version is ['0.1.1'], want '0.1.0'",
    ]


@pytest.mark.slow
def test_check_dists_wants_the_package_data_in_the_wheel_and_the_sdist(tmp_path: Path) -> None:
    """The inspector's templates and static files are part of its package: a wheel or an
    sdist without one of them is refused, naming it."""
    dist = release.workspace()["aperion-bus-inspector"]
    files = check_dists.source_files(dist)
    data = {f"aperion_bus_inspector/{name}" for name in ("templates/base.html",
                                                          "static/inspector.js")}
    assert data <= files and "aperion_bus_inspector/_app.py" in files
    wheel, sdist = build_clean(dist, tmp_path)

    bad_wheel = tmp_path / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(bad_wheel, "w") as dst:
        for item in src.namelist():
            if item not in data:
                dst.writestr(item, src.read(item))
    assert check_dists.check_wheel(dist, bad_wheel) == [
        f"{wheel.name}: {name} missing" for name in sorted(data)
    ]
    bad_sdist = tmp_path / sdist.name
    with tarfile.open(sdist) as src, tarfile.open(bad_sdist, "w:gz") as dst:
        for member in src.getmembers():
            if not member.name.endswith("/templates/base.html"):
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    assert check_dists.check_sdist(dist, bad_sdist) == [
        f"{sdist.name}: src/aperion_bus_inspector/templates/base.html missing"
    ]


def test_source_files_outside_git_are_every_file_but_byte_code(tmp_path: Path) -> None:
    """Without git (an unpacked sdist), every file of src/ is wanted but caches and byte code."""
    pkg = tmp_path / "src" / "aperion_bus_fake"
    for name in ("__init__.py", "py.typed", "templates/page.html", "__pycache__/x.cpython-311.pyc",
                 "stale.pyc"):
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text("")
    fake = release.Dist("aperion-bus-fake", tmp_path, "0.1.0", {})
    assert check_dists.source_files(fake) == {
        "aperion_bus_fake/__init__.py",
        "aperion_bus_fake/py.typed",
        "aperion_bus_fake/templates/page.html",
    }


def test_check_dists_imports_every_module_from_the_installed_wheel(tmp_path: Path) -> None:
    """A wheel that lacks a module its package imports fails the import check."""
    if shutil.which("uv") is None:
        pytest.skip("uv is not on PATH")
    src = tmp_path / "src" / "aperion_bus_fake"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text("from . import _gone\n")
    wheel = tmp_path / "aperion_bus_fake-0.1.0-py3-none-any.whl"
    info = "aperion_bus_fake-0.1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("aperion_bus_fake/__init__.py", "from . import _gone\n")
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.4\nName: aperion-bus-fake\n"
                                        "Version: 0.1.0\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: "
                                     "true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    fake = release.Dist("aperion-bus-fake", tmp_path, "0.1.0", {})
    problems = check_dists.check_imports([fake], [wheel])
    assert len(problems) == 1
    assert problems[0].startswith("aperion_bus_fake: import failed: ImportError(")


# --- tools/check_api_docs.py ----------------------------------------------------------------


def write_inventory(site: Path, names: list[str]) -> None:
    body = "".join(f"{n} py:class 1 api/#$ -\n" for n in names).encode()
    header = (b"# Sphinx inventory version 2\n# Project: x\n# Version: 0\n"
              b"# The remainder of this file is compressed using zlib.\n")
    site.mkdir(parents=True, exist_ok=True)
    (site / "objects.inv").write_bytes(header + zlib.compress(body))


def test_check_api_docs_names_every_public_name_missing_from_the_site(tmp_path: Path) -> None:
    import aperion_bus_asgi

    write_inventory(tmp_path, ["aperion_bus_asgi.CorrelationMiddleware"])
    problems = check_api_docs.missing_names(tmp_path)
    assert "aperion_bus_asgi.REQUEST_EVENT: not in the API reference" in problems
    assert "aperion_bus_asgi.CorrelationMiddleware: not in the API reference" not in problems
    assert len([p for p in problems if p.startswith("aperion_bus_asgi.")]) == len(
        aperion_bus_asgi.__all__
    ) - 1

    every = [f"{m}.{n}" for m in check_api_docs.documented_modules()
             for n in __import__(m, fromlist=["__all__"]).__all__]
    write_inventory(tmp_path, every)
    assert check_api_docs.missing_names(tmp_path) == []


# --- tools/griffe_sphinx_roles.py -----------------------------------------------------------


def test_docstring_roles_become_links_to_public_objects_and_code_otherwise() -> None:
    import griffe

    roles = load("griffe_sphinx_roles")
    pkg = griffe.load(
        "aperion_bus",
        extensions=griffe.load_extensions(roles.SphinxRoles),
        search_paths=[str(ROOT / "core" / "src")],
    )
    on_drop = pkg["HookSpecs"].members["on_drop"].docstring.value
    assert "[`DeliveryFailed`][aperion_bus._errors.DeliveryFailed]" in on_drop
    assert "[`EventBus.report_drop`][aperion_bus._bus.EventBus.report_drop]" in on_drop
    assert ":class:" not in on_drop and ":meth:" not in on_drop
    # a constant of a private module is not on the site: code, not a link that would break
    assert "at most `MAX_PAYLOAD_DEPTH` (200)" in pkg["Event"].docstring.value
