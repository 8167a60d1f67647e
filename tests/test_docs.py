"""Every code example in docs/ runs.

Per page, in order: a fenced block whose info string has ``file=PATH`` is written to PATH
(relative to a fresh temporary working directory); every other ```python block is executed, all
blocks of one page sharing one namespace; in a ```console block every ``$ command`` line is run
with bash in that directory (the ``aperion-bus`` of this environment first on PATH): it must exit
0, or N when the line ends with ``# exit N``, and each line shown under it must appear in its
output (stdout and stderr; runs of blanks count as one), ``...`` standing for any text. Other
blocks (bash, text, toml without file=) are prose.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)


def blocks(page: Path) -> list[tuple[str, str, int]]:
    text = page.read_text()
    out = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        out.append((m.group(1).strip(), m.group(2), line))
    return out


ROOT = DOCS.parent
# docs/ pages, and the README of the project and of every distribution
MARKDOWN = [
    *sorted(DOCS.rglob("*.md")),
    ROOT / "README.md",
    *sorted(
        p
        for pattern in ("core/README.md", "plugins/*/README.md", "contrib/*/README.md")
        for p in ROOT.glob(pattern)
    ),
]
PAGES = [
    p
    for p in MARKDOWN
    if any(
        info.split()[0:1] in (["python"], ["console"]) or "file=" in info
        for info, _, _ in blocks(p)
    )
]
_EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")


def run_console(code: str, where: str, cwd: Path) -> None:
    """Run the ``$ `` lines of a console block; check exit statuses and the lines shown."""
    steps: list[tuple[str, list[str]]] = []
    for text in code.splitlines():
        if text.startswith("$ "):
            steps.append((text[2:], []))
        elif steps and text.strip():
            steps[-1][1].append(text)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("APERION_BUS_CONFIG", None)
    for command, shown in steps:
        m = _EXIT.search(command)
        expected = int(m.group(1)) if m else 0
        proc = subprocess.run(
            ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
        )
        output = re.sub(r"[ \t]+", " ", proc.stdout + proc.stderr)  # columns vary in width
        assert proc.returncode == expected, (
            f"{where}: `{command}` exited {proc.returncode}, not {expected}:\n{output}"
        )
        for line in shown:
            want = re.sub(r"[ \t]+", " ", line.strip())
            rx = ".*".join(re.escape(part.strip()) for part in want.split("..."))
            assert re.search(rx, output), f"{where}: `{command}` did not print {line!r}:\n{output}"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_doc_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("APERION_BUS_CONFIG", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    # a real module, so that annotations and pickling can find the page's classes
    name = "_".join(page.relative_to(ROOT).with_suffix("").parts).replace("-", "_")
    module = types.ModuleType(f"docs_{name}")
    namespace: dict[str, object] = module.__dict__
    modules_before = set(sys.modules)
    sys.modules[module.__name__] = module
    try:
        for info, code, line in blocks(page):
            words = info.split()
            target = next((w[5:] for w in words if w.startswith("file=")), None)
            if target is not None:
                path = tmp_path / target
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(code)
            elif words[:1] == ["console"]:
                run_console(code, f"{page.name}:{line}", tmp_path)
            elif words[:1] == ["python"]:
                try:
                    # dont_inherit: this file's `from __future__` must not leak into the examples
                    exec(compile(code, f"{page.name}:{line}", "exec", dont_inherit=True), namespace)
                except BaseException as exc:
                    raise AssertionError(
                        f"{page.name}, block at line {line} failed: {exc!r}"
                    ) from exc
    finally:
        bus = namespace.get("bus")
        shutdown = getattr(bus, "shutdown", None)
        if callable(shutdown):
            shutdown()
        sys.modules.pop(module.__name__, None)
        for name in set(sys.modules) - modules_before:
            mod = sys.modules.get(name)
            if mod is not None and str(getattr(mod, "__file__", "") or "").startswith(
                str(tmp_path)
            ):
                del sys.modules[name]
        os.chdir(tmp_path)
        from aperion_bus import refresh_entry_points

        refresh_entry_points()  # forget distributions a page installed


TOML_PAGES = [
    p for p in MARKDOWN if any(info.split()[0:1] == ["toml"] for info, _, _ in blocks(p))
]


@pytest.mark.parametrize("page", TOML_PAGES, ids=[str(p.relative_to(ROOT)) for p in TOML_PAGES])
def test_doc_toml_blocks_parse_and_configs_validate(page: Path) -> None:
    """Every ```toml block is valid TOML; a config file's is a valid aperion-bus config."""
    import tomllib

    from aperion_bus._plugins import _TOP_KEYS, parse_config

    for info, code, line in blocks(page):
        if info.split()[0:1] != ["toml"]:
            continue
        try:
            data = tomllib.loads(code)
        except tomllib.TOMLDecodeError as exc:
            raise AssertionError(f"{page.name}, toml block at line {line}: {exc}") from exc
        if "tool" in data and "aperion-bus" in data["tool"]:
            data = data["tool"]["aperion-bus"]
        if data and set(data) <= set(_TOP_KEYS):
            parse_config(data, f"{page.name}:{line}")


def test_hooks_page_documents_every_hook() -> None:
    from aperion_bus import HookSpecs

    text = (DOCS / "hooks.md").read_text()
    names = [n for n in vars(HookSpecs) if not n.startswith("_")]
    missing = [n for n in names if f"| `{n}` |" not in text]
    assert missing == [], f"docs/hooks.md has no row for {missing}"
