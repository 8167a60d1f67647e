"""Snapshot the public API of aperion-event-bus 1.2.1, as facts, into a JSON file.

Run it with any Python 3.11+::

    python tools/api_snapshot_121.py                    # writes the committed snapshot
    python tools/api_snapshot_121.py --python /tmp/v121/bin/python -o api.json

Without ``--python`` it makes a throw-away venv and installs
``aperion-event-bus[observability]==1.2.1`` from the registry into it (the extras, so that
``PrometheusMetrics`` and the OpenTelemetry branch exist). It then runs itself inside that
interpreter (``--describe``), imports every public module of 1.2.1 and records, for every
public name: its kind, the signature of every function, method and constructor (parameter
names, kinds, defaults; annotations are not recorded), coroutine functions, class members,
dataclass fields, enum members, the public attributes of a default-constructed instance and
their types, and the value of plain constants. No source text is copied.

``contrib/aperion-event-bus/tests/test_api_121.py`` imports this module (by path) to describe
the 2.0 facade the same way and compare it with the snapshot (:func:`compare`).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import enum
import importlib
import inspect
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "contrib" / "aperion-event-bus" / "tests" / "api_121.json"
REQUIREMENT = "aperion-event-bus[observability]==1.2.1"
PACKAGE = "aperion_event_bus"
#: 1.2.1's public modules (its wheel's files, minus the private ones: there are none)
MODULES = ["", ".bus", ".events", ".correlation", ".audit", ".validation", ".metrics",
           ".telemetry", ".dlq"]  # fmt: skip
#: protocol methods that are part of a class's public behaviour
PUBLIC_DUNDERS = ("__enter__", "__exit__", "__aenter__", "__aexit__", "__call__", "__iter__",
                  "__len__", "__getitem__", "__contains__")  # fmt: skip
#: members inherited from these modules are the language's, not the library's
_FOREIGN_MODULES = {"builtins", "enum", "abc", "typing"}
#: names 1.2.1 itself set to None when an optional dependency was missing (the snapshot is
#: made with every extra installed): None is 1.2.1's value without that extra
NONE_WITHOUT_EXTRA = {"aperion_event_bus.metrics.PrometheusMetrics"}

Json = dict[str, Any]


# ------------------------------------------------------------------------------------ describe
def type_name(tp: type) -> str:
    return f"{tp.__module__}.{tp.__qualname__}"


def encode_default(value: object) -> Json:
    """A parameter default as a comparable fact."""
    if value is inspect.Parameter.empty:
        return {"none": True}
    if type(value).__name__ in ("_HAS_DEFAULT_FACTORY_CLASS", "_Nothing"):
        return {"factory": True}  # a dataclass default_factory / an attrs Factory
    if isinstance(value, enum.Enum):
        return {"enum": type(value).__name__, "member": value.name, "value": value.value}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    return {"repr": repr(value), "type": type_name(type(value))}


def describe_params(sig: inspect.Signature, skip_first: bool) -> list[Json]:
    params = list(sig.parameters.values())
    if skip_first and params and params[0].kind is not inspect.Parameter.VAR_POSITIONAL:
        params = params[1:]
    out = []
    for p in params:
        item: Json = {"name": p.name, "kind": p.kind.name}
        if p.default is not inspect.Parameter.empty:
            item["default"] = encode_default(p.default)
        out.append(item)
    return out


def describe_callable(fn: Callable[..., Any], skip_first: bool) -> Json:
    if (
        inspect.isclass(fn)
        and issubclass(fn, BaseException)
        and (_defining_class(fn, "__init__") in (BaseException, Exception))
    ):
        # an exception class that keeps BaseException's constructor: Error(*args)
        return {"params": [{"name": "args", "kind": "VAR_POSITIONAL"}], "coroutine": False}
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return {"params": None, "coroutine": inspect.iscoroutinefunction(fn)}
    return {
        "params": describe_params(sig, skip_first),
        "coroutine": inspect.iscoroutinefunction(fn),
    }


def describe_value(value: object) -> Json:
    """A constant: its type, and its value when that is plain data."""
    out: Json = {"kind": "data", "type": type_name(type(value))}
    if isinstance(value, bool):
        return out  # flags like PROMETHEUS_AVAILABLE depend on what is installed
    if value is None or isinstance(value, (int, float, str)):
        out["value"] = value
    elif isinstance(value, re.Pattern):
        out["value"] = {"pattern": value.pattern, "flags": int(value.flags)}
    elif isinstance(value, (set, frozenset, list, tuple)):
        items = list(value)
        if all(isinstance(v, (str, int, float)) for v in items):
            out["value"] = sorted(items) if isinstance(value, (set, frozenset)) else items
        else:
            shapes = sorted({_shape(v) for v in items})
            out["items"] = shapes  # element shapes only (e.g. "tuple[str, str]")
    return out


def _shape(value: object) -> str:
    if isinstance(value, tuple):
        return "tuple[" + ", ".join(type(v).__name__ for v in value) + "]"
    return type(value).__name__


def _defining_class(cls: type, name: str) -> type | None:
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return None


def describe_member(cls: type, name: str) -> Json | None:
    owner = _defining_class(cls, name)
    if owner is None or owner is object or owner.__module__ in _FOREIGN_MODULES:
        return None
    raw = vars(owner)[name]
    if isinstance(raw, property):
        return {"kind": "property"}
    if isinstance(raw, classmethod):
        return {"kind": "classmethod", **describe_callable(getattr(cls, name), False)}
    if isinstance(raw, staticmethod):
        return {"kind": "staticmethod", **describe_callable(getattr(cls, name), False)}
    if inspect.isfunction(raw):
        return {"kind": "method", **describe_callable(raw, True)}
    if inspect.isdatadescriptor(raw):  # slots, attrs/dataclass slots fields
        return {"kind": "attribute"}
    if isinstance(raw, enum.Enum):
        return None  # recorded under "enum"
    return describe_value(raw)


def _field_names(cls: type) -> list[str]:
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls)]
    attrs_fields = getattr(cls, "__attrs_attrs__", None)
    if attrs_fields is not None:
        return [a.name for a in attrs_fields]
    return []


def default_instance(cls: type) -> Any:
    """``cls()`` when it can be built without arguments (and is not an exception), else None."""
    if issubclass(cls, BaseException) or issubclass(cls, enum.Enum) or inspect.isabstract(cls):
        return None
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return None
    if any(
        p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in sig.parameters.values()
    ):
        return None
    try:
        return cls()
    except Exception:
        return None


def close_instance(obj: object) -> None:
    shutdown = getattr(obj, "shutdown", None)
    if callable(shutdown):
        with contextlib.suppress(Exception):
            shutdown()


def instance_attributes(obj: object) -> Json:
    try:
        attrs_of = vars(obj)
    except TypeError:
        return {}
    return {k: type_name(type(v)) for k, v in sorted(attrs_of.items()) if not k.startswith("_")}


def describe_class(cls: type, with_instance: bool = True) -> Json:
    fields = _field_names(cls)
    out: Json = {
        "kind": "class",
        "exception": issubclass(cls, BaseException),
        "abstract": inspect.isabstract(cls),
        "init": describe_callable(cls, False)["params"],
    }
    if issubclass(cls, enum.Enum):
        out["enum"] = {m.name: m.value for m in cls}
    members: Json = {}
    for name in sorted(set(dir(cls))):
        if name.startswith("_") and name not in PUBLIC_DUNDERS:
            continue
        if name in fields:
            continue
        desc = describe_member(cls, name)
        if desc is not None:
            members[name] = desc
    out["members"] = members
    if fields:
        out["fields"] = fields
    if with_instance:
        obj = default_instance(cls)
        if obj is not None:
            out["instance"] = instance_attributes(obj)
            close_instance(obj)
    return out


def describe_object(obj: object, module_name: str) -> Json | None:
    if inspect.ismodule(obj) or isinstance(obj, (logging.Logger, typing.TypeVar)):
        return None
    if inspect.isclass(obj):
        return describe_class(obj)
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return {"kind": "function", **describe_callable(obj, False)}
    return describe_value(obj)


def module_top_level_names(module: Any) -> list[str]:
    """Names bound at the top level of the module's source (also inside if/try blocks)."""
    source = inspect.getsource(module)
    names: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.append(node.name)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        names.append(target.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.append(node.target.id)
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)

    visit(ast.parse(source).body)
    return names


def public_names(module: Any) -> list[str]:
    """The module's ``__all__`` plus the public names its own source binds; names bound to
    modules, or to classes and functions of other packages, are imports, not its API."""
    declared = list(getattr(module, "__all__", []))
    names = set(declared)
    for name in module_top_level_names(module):
        if name.startswith("_") or name == "__all__" or not hasattr(module, name):
            continue
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            continue
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and not obj.__module__.startswith(
            PACKAGE
        ):
            continue
        names.add(name)
    return sorted(names)


def extras() -> dict[str, list[str]]:
    """1.2.1's extras, from its METADATA: ``{extra: [requirement, ...]}``."""
    from importlib.metadata import requires

    out: dict[str, list[str]] = {}
    for req in requires("aperion-event-bus") or []:
        spec, _, marker = req.partition(";")
        m = re.search(r"extra\s*==\s*[\"']([^\"']+)[\"']", marker)
        if m:
            out.setdefault(m.group(1), []).append(spec.strip())
    return {k: sorted(v) for k, v in sorted(out.items())}


def requirement_name(req: str) -> str:
    """The normalized distribution name of a requirement string (``Foo_Bar[x]>=1`` -> foo-bar)."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    assert m is not None, req
    return re.sub(r"[-_.]+", "-", m.group(1)).lower()


def snapshot() -> Json:
    from importlib.metadata import version

    modules: Json = {}
    for suffix in MODULES:
        name = PACKAGE + suffix
        module = importlib.import_module(name)
        entry: Json = {"names": {}}
        if hasattr(module, "__all__"):
            entry["all"] = sorted(module.__all__)
        for attr in public_names(module):
            desc = describe_object(getattr(module, attr), name)
            if desc is not None:
                entry["names"][attr] = desc
        modules[name] = entry
    return {
        "about": (
            "Public API of aperion-event-bus 1.2.1 (facts only: names, kinds, parameters, "
            "defaults, members, instance attribute types). Made by tools/api_snapshot_121.py."
        ),
        "requirement": REQUIREMENT,
        "version": version("aperion-event-bus"),
        "extras": extras(),
        "python": ".".join(map(str, sys.version_info[:2])),
        "modules": modules,
    }


# ------------------------------------------------------------------------------------ compare
def _default_eq(expected: Json, got: Json) -> bool:
    if expected == {"factory": True} and got == {"value": None}:
        return True  # a fresh object per call either way (the ``x=None`` idiom)
    if "enum" in expected:
        return all(got.get(k) == expected[k] for k in ("member", "value"))
    return expected == got


def compare_params(where: str, expected: list[Json] | None, got: list[Json] | None) -> list[str]:
    """Differences between two parameter lists: every expected parameter must be there with
    the same position (if positional), kind and default; extra parameters must be optional."""
    if expected is None:
        return []
    if got is None:
        return [f"{where}: signature not introspectable"]
    out: list[str] = []
    by_name = {p["name"]: (i, p) for i, p in enumerate(got)}
    for i, e in enumerate(expected):
        name = e["name"]
        if name not in by_name:
            if e["kind"] in ("VAR_POSITIONAL", "VAR_KEYWORD"):
                if not any(p["kind"] == e["kind"] for p in got):
                    out.append(
                        f"{where}: missing *{'*' if e['kind'] == 'VAR_KEYWORD' else ''}{name}"
                    )
                continue
            out.append(f"{where}: missing parameter {name!r}")
            continue
        j, g = by_name[name]
        if g["kind"] != e["kind"]:
            out.append(f"{where}: parameter {name!r} is {g['kind']}, 1.2.1: {e['kind']}")
        if e["kind"] in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD") and i != j:
            out.append(f"{where}: parameter {name!r} at position {j}, 1.2.1: {i}")
        if ("default" in e) != ("default" in g):
            out.append(
                f"{where}: parameter {name!r} "
                + ("has no default" if "default" in e else "has a default")
                + (f", 1.2.1: {e['default']}" if "default" in e else ", 1.2.1: required")
            )
        elif "default" in e and not _default_eq(e["default"], g["default"]):
            out.append(f"{where}: parameter {name!r} default {g['default']}, 1.2.1: {e['default']}")
    names = {e["name"] for e in expected}
    for g in got:
        if g["name"] in names or g["kind"] in ("VAR_POSITIONAL", "VAR_KEYWORD"):
            continue
        if "default" not in g:
            out.append(f"{where}: extra required parameter {g['name']!r}")
    return out


def _type_ok(expected: str, value_type: type) -> bool:
    if expected == "builtins.int" and value_type is float:
        return True  # 1.2.1 initialised float attributes with 0
    module, _, qualname = expected.rpartition(".")
    for klass in value_type.__mro__:
        if klass.__qualname__.rpartition(".")[2] != qualname.rpartition(".")[2]:
            continue
        if module.startswith(PACKAGE) or klass.__module__ == module:
            return True
    return False


def compare_value(where: str, expected: Json, value: object) -> list[str]:
    out: list[str] = []
    if not _type_ok(expected["type"], type(value)):
        out.append(f"{where}: type {type_name(type(value))}, 1.2.1: {expected['type']}")
        return out
    got = describe_value(value)
    for key in ("value", "items"):
        if key in expected and got.get(key) != expected[key]:
            out.append(f"{where}: {key} {got.get(key)!r}, 1.2.1: {expected[key]!r}")
    return out


def compare_class(where: str, expected: Json, cls: type) -> list[str]:
    got = describe_class(cls, with_instance=False)
    out: list[str] = []
    if got["exception"] != expected["exception"]:
        out.append(f"{where}: exception class: {got['exception']}, 1.2.1: {expected['exception']}")
    out += compare_params(f"{where}()", expected["init"], got["init"])
    if "enum" in expected:
        members = got.get("enum") or {}
        for m, v in expected["enum"].items():
            if members.get(m) != v:
                out.append(f"{where}.{m}: {members.get(m)!r}, 1.2.1: {v!r}")
    fields = set(_field_names(cls)) | {p["name"] for p in got["init"] or []}
    for f in expected.get("fields", []):
        if f not in fields and not hasattr(cls, f):
            out.append(f"{where}.{f}: missing field")
    for name, e in expected["members"].items():
        m = f"{where}.{name}"
        g = got["members"].get(name)
        if g is None:
            if name in fields or (e["kind"] == "attribute" and hasattr(cls, name)):
                continue
            out.append(f"{m}: missing")
            continue
        if e["kind"] != g["kind"] and not {e["kind"], g["kind"]} <= {"property", "attribute"}:
            out.append(f"{m}: is a {g['kind']}, 1.2.1: {e['kind']}")
            continue
        if e["kind"] in ("method", "classmethod", "staticmethod"):
            if e["coroutine"] != g["coroutine"]:
                out.append(f"{m}: coroutine function: {g['coroutine']}, 1.2.1: {e['coroutine']}")
            out += compare_params(f"{m}()", e["params"], g["params"])
        elif e["kind"] == "data":
            out += compare_value(m, e, getattr(cls, name))
    if "instance" in expected:
        obj = default_instance(cls)
        if obj is None:
            out.append(f"{where}(): cannot be built without arguments, as in 1.2.1")
        else:
            try:
                for attr, tname in expected["instance"].items():
                    if not hasattr(obj, attr):
                        out.append(f"{where}().{attr}: missing instance attribute")
                    elif not _type_ok(tname, type(getattr(obj, attr))):
                        out.append(
                            f"{where}().{attr}: type "
                            f"{type_name(type(getattr(obj, attr)))}, 1.2.1: {tname}"
                        )
            finally:
                close_instance(obj)
    return out


def compare(snap: Json) -> list[str]:
    """Every incompatibility of the installed ``aperion_event_bus`` with the snapshot."""
    out: list[str] = []
    seen: set[int] = set()  # a class or function re-exported by several modules: compare once
    for mod_name, entry in snap["modules"].items():
        try:
            module = importlib.import_module(mod_name)
        except ImportError as exc:
            out.append(f"{mod_name}: cannot import ({exc})")
            continue
        if "all" in entry:
            missing = sorted(set(entry["all"]) - set(getattr(module, "__all__", [])))
            if missing:
                out.append(f"{mod_name}.__all__: missing {missing}")
        for name, e in entry["names"].items():
            where = f"{mod_name}.{name}"
            if not hasattr(module, name):
                out.append(f"{where}: missing")
                continue
            obj = getattr(module, name)
            if obj is None and where in NONE_WITHOUT_EXTRA:
                continue
            if e["kind"] in ("class", "function"):
                if id(obj) in seen:
                    continue
                seen.add(id(obj))
            if e["kind"] == "class":
                if not inspect.isclass(obj):
                    out.append(f"{where}: not a class")
                    continue
                out += compare_class(where, e, obj)
            elif e["kind"] == "function":
                if not callable(obj) or inspect.isclass(obj):
                    out.append(f"{where}: not a function")
                    continue
                g = describe_callable(obj, False)
                if e["coroutine"] != g["coroutine"]:
                    out.append(
                        f"{where}: coroutine function: {g['coroutine']}, 1.2.1: {e['coroutine']}"
                    )
                out += compare_params(f"{where}()", e["params"], g["params"])
            elif e["type"] in ("types.UnionType", "typing._UnionGenericAlias"):
                pass  # a type alias (EventHandler): any alias will do
            else:
                out += compare_value(where, e, obj)
    return out


# ------------------------------------------------------------------------------------ main
def make_venv() -> str:
    venv = Path(tempfile.mkdtemp(prefix="aperion-event-bus-121-"))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    subprocess.run([str(py), "-m", "pip", "install", "-q", REQUIREMENT], check=True)
    return str(py)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", help="an interpreter with aperion-event-bus 1.2.1 installed")
    parser.add_argument("-o", "--output", default=str(DEFAULT_OUT), help="the JSON file")
    parser.add_argument("--describe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.describe:  # inside the 1.2.1 interpreter
        json.dump(snapshot(), sys.stdout, indent=1, sort_keys=True)
        return 0
    python = args.python or make_venv()
    out = subprocess.run(
        [python, str(Path(__file__).resolve()), "--describe"],
        check=True, capture_output=True, text=True, cwd=tempfile.gettempdir(),
    )  # fmt: skip
    data = json.loads(out.stdout)
    if data["version"] != "1.2.1":
        print(f"expected aperion-event-bus 1.2.1, found {data['version']}", file=sys.stderr)
        return 1
    Path(args.output).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
