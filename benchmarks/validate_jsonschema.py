"""Which JSON Schema validator for aperion-bus-validate: cost per event and cost to compile.

Candidates: the hand-written subset the plugin had up to 0.1 (its ``_jsonschema.py``, read
from git at commit ``SUBSET_COMMIT``: needs the repository's history), ``jsonschema`` (a
validator class built once, as the plugin caches it), ``fastjsonschema`` (compiled to Python
code) and ``jsonschema-rs`` (Rust).

Two schemas: ``SIMPLE`` (only keywords the old subset knew: every candidate runs it) and
``FULL`` (Draft 2020-12: ``$ref`` into ``$defs``, ``oneOf``, ``format``,
``exclusiveMinimum``, ``prefixItems``, ``dependentRequired``): a candidate that cannot run
it correctly is marked so.
Per event: a valid payload (the common case: is it valid?) and an invalid one (every problem
listed, as the plugin reports them). Compile: building the validator from the dict.

Run: ``uv run --all-packages --all-groups python benchmarks/validate_jsonschema.py``
(``--quick`` for fewer rounds).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from _harness import interleaved, table

QUICK = "--quick" in sys.argv
NUMBER = 2_000 if QUICK else 20_000
ROUNDS = 5 if QUICK else 11

SIMPLE: dict[str, Any] = {
    "type": "object",
    "required": ["user", "age"],
    "properties": {
        "user": {"type": "string", "minLength": 1, "maxLength": 64},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"type": "string"}},
        "role": {"enum": ["admin", "user"]},
    },
    "additionalProperties": False,
}
SIMPLE_OK = {"user": "al", "age": 30, "tags": ["a", "b"], "role": "user"}
SIMPLE_BAD = {"user": "", "age": -1, "tags": ["a", 2], "role": "root", "x": 1}

FULL: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$defs": {
        "money": {
            "type": "object",
            "required": ["amount", "currency"],
            "properties": {
                "amount": {"type": "number", "exclusiveMinimum": 0},
                "currency": {"enum": ["EUR", "USD"]},
            },
        }
    },
    "type": "object",
    "required": ["order_id", "email", "total", "payment"],
    "dependentRequired": {"coupon": ["campaign"]},
    "properties": {
        "order_id": {"type": "string", "format": "uuid"},
        "email": {"type": "string", "format": "email"},
        "placed_at": {"type": "string", "format": "date-time"},
        "total": {"$ref": "#/$defs/money"},
        "point": {
            "type": "array",
            "prefixItems": [{"type": "number"}, {"type": "number"}],
            "items": False,
        },
        "payment": {
            "oneOf": [
                {"type": "object", "required": ["card"], "properties": {"card": {"const": True}}},
                {
                    "type": "object",
                    "required": ["iban"],
                    "properties": {"iban": {"type": "string"}},
                },
            ]
        },
    },
}
FULL_OK = {
    "order_id": "2f1b9a3e-6f0c-4a3b-9a51-0c1d2e3f4a5b",
    "email": "al@example.org",
    "placed_at": "2026-12-02T10:00:00Z",
    "total": {"amount": 12.5, "currency": "EUR"},
    "payment": {"card": True},
    "point": [1, 2.5],
}
FULL_BAD = {
    "order_id": "not-a-uuid",
    "email": "nobody",
    "total": {"amount": 0, "currency": "GBP"},
    "payment": {"card": True, "iban": "x"},
    "point": [1, 2, 3],
    "coupon": "X",
}


def candidates(schema: dict[str, Any]) -> dict[str, tuple[Callable[[], Any], Any]]:
    """name -> (compile function, validate(payload) -> list of problems)."""
    import fastjsonschema
    import jsonschema
    import jsonschema_rs

    out: dict[str, tuple[Callable[[], Any], Any]] = {}

    def js_compile() -> Any:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        return cls(schema, format_checker=cls.FORMAT_CHECKER)

    def js_check(v: Any) -> Callable[[Any], list[Any]]:
        return lambda p: [] if v.is_valid(p) else list(v.iter_errors(p))

    out["jsonschema"] = (js_compile, js_check)

    def rs_compile() -> Any:
        return jsonschema_rs.validator_for(schema, validate_formats=True)

    def rs_check(v: Any) -> Callable[[Any], list[Any]]:
        return lambda p: [] if v.is_valid(p) else list(v.iter_errors(p))

    out["jsonschema-rs"] = (rs_compile, rs_check)

    def fj_compile() -> Any:
        return fastjsonschema.compile(schema)

    def fj_check(v: Any) -> Callable[[Any], list[Any]]:
        def check(p: Any) -> list[Any]:
            try:
                v(p)
            except fastjsonschema.JsonSchemaException as exc:
                return [exc]  # the first problem only: it stops there
            return []

        return check

    out["fastjsonschema"] = (fj_compile, fj_check)

    subset = _old_subset()
    if "$schema" not in schema and subset is not None:
        out["subset (0.1)"] = (lambda: subset(schema), lambda v: v.errors)
    return out


#: the last commit with the hand-written subset
SUBSET_COMMIT = "06b62c6"
SUBSET_PATH = "plugins/validate/src/aperion_bus_validate/_jsonschema.py"


def _old_subset() -> Any:
    """The ``DictSchema`` class of the hand-written subset, or None without git history."""
    import subprocess
    import types
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        ["git", "show", f"{SUBSET_COMMIT}:{SUBSET_PATH}"],
        cwd=root, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        return None
    module = types.ModuleType("old_subset")
    exec(compile(proc.stdout, "old_subset.py", "exec"), module.__dict__)
    return module.DictSchema


def main() -> None:
    rows = []
    for label, schema, ok, bad in (
        ("simple", SIMPLE, SIMPLE_OK, SIMPLE_BAD),
        ("2020-12", FULL, FULL_OK, FULL_BAD),
    ):
        cands = candidates(schema)
        checks: dict[str, Callable[[Any], list[Any]]] = {}
        correct: dict[str, str] = {}
        for name, (compile_, make_check) in cands.items():
            try:
                check = make_check(compile_())
                found_ok, found_bad = check(ok), check(bad)
            except Exception as exc:  # cannot run this schema at all
                correct[name] = f"fails: {type(exc).__name__}"
                continue
            checks[name] = check
            correct[name] = (
                "yes" if not found_ok and found_bad else f"no (ok->{len(found_ok)} problems)"
            )
        compile_ns = interleaved(
            [(n, cands[n][0]) for n in checks], number=max(NUMBER // 50, 20), rounds=ROUNDS
        )
        ok_ns = interleaved(
            [(n, functools.partial(c, ok)) for n, c in checks.items()],
            number=NUMBER,
            rounds=ROUNDS,
        )
        bad_ns = interleaved(
            [(n, functools.partial(c, bad)) for n, c in checks.items()],
            number=NUMBER // 4,
            rounds=ROUNDS,
        )
        base = ok_ns.get("subset (0.1)") or min(ok_ns.values())
        for name in cands:
            if name not in checks:
                rows.append((label, name, correct[name], "-", "-", "-", "-"))
                continue
            rows.append(
                (
                    label,
                    name,
                    correct[name],
                    f"{ok_ns[name] / 1000:.2f}",
                    f"{ok_ns[name] / base:.2f}x",
                    f"{bad_ns[name] / 1000:.2f}",
                    f"{compile_ns[name] / 1000:.1f}",
                )
            )
    print(
        table(
            (
                "schema",
                "validator",
                "correct",
                "valid event µs",
                "vs fastest/subset",
                "invalid event µs",
                "compile µs",
            ),
            rows,
        )
    )


if __name__ == "__main__":
    main()
