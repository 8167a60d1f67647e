"""aperion_bus.settings: the one checker every plugin's settings go through."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aperion_bus import ConfigError
from aperion_bus._plugins import build_plugin
from aperion_bus.settings import Settings, check_keys, describe, known_keywords

S = Settings("demo")


def refused(call: Callable[[], object], key: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        call()
    msg = str(info.value)
    assert msg.startswith(f"plugin 'demo': setting '{key}' = {value}"), msg
    assert expected in msg, msg


def test_accepted_values_come_back_normalized() -> None:
    assert S.boolean("b", False) is False
    assert S.integer("i", 3, min=1, max=3) == 3
    assert S.optional_integer("i", None) is None
    assert S.number("n", 2, gt=0) == 2.0 and isinstance(S.number("n", 2), float)
    assert S.optional_number("n", None) is None
    assert S.string("s", "x") == "x"
    assert S.string("s", "", empty=True) == ""
    assert S.choice("c", "DROP", ("drop", "raise"), fold_case=True) == "drop"
    assert S.path("p", "logs/x.jsonl") == Path("logs/x.jsonl")
    assert S.strings("l", ("a", "b")) == ["a", "b"]
    assert S.numbers("l", [1, 2.5], gt=0) == [1.0, 2.5]
    assert S.table("t", {"a": 1}) == {"a": 1}
    assert S.instance("o", 3, int, "an int") == 3
    assert S.check("k", 5, True, "anything") == 5


@pytest.mark.parametrize(
    ("call", "key", "value", "expected"),
    [
        (lambda: S.boolean("flag", 1), "flag", "1", "expected true or false"),
        (lambda: S.boolean("flag", "yes"), "flag", "'yes'", "expected true or false"),
        (lambda: S.integer("n", True), "n", "True", "expected an int"),
        (lambda: S.integer("n", 1.5), "n", "1.5", "expected an int"),
        (lambda: S.integer("n", 0, min=1), "n", "0", "expected an int >= 1"),
        (lambda: S.integer("n", 9, min=1, max=8), "n", "9", "an int >= 1 and <= 8"),
        (lambda: S.optional_integer("n", "3", min=1), "n", "'3'", "an int >= 1 or none"),
        (lambda: S.number("t", "1", gt=0, unit="seconds"), "t", "'1'",
         "a number of seconds > 0"),
        (lambda: S.number("t", 0, gt=0), "t", "0", "a number > 0"),
        (lambda: S.number("t", float("nan")), "t", "nan", "a number"),
        (lambda: S.number("t", float("inf")), "t", "inf", "a number"),
        (lambda: S.number("t", 10**400), "t", "1000", "a number"),
        (lambda: S.number("t", -1, min=0), "t", "-1", "a number >= 0"),
        (lambda: S.optional_number("t", False), "t", "False", "a number or none"),
        (lambda: S.string("s", ""), "s", "''", "a non-empty string"),
        (lambda: S.string("s", 3), "s", "3", "a non-empty string"),
        (lambda: S.choice("c", "x", ("a", "b")), "c", "'x'", "one of 'a', 'b'"),
        (lambda: S.choice("c", 3, ("a",)), "c", "3", "one of 'a'"),
        (lambda: S.path("p", ""), "p", "''", "a file path"),
        (lambda: S.path("p", ".."), "p", "'..'", "a file path"),
        (lambda: S.path("p", 3), "p", "3", "a file path"),
        (lambda: S.strings("l", "ab"), "l", "'ab'", "a list of strings"),
        (lambda: S.strings("l", ["a", 1]), "l", "['a', 1]", "item 1; expected a list"),
        (lambda: S.strings("l", [], nonempty=True), "l", "[]", "(at least one)"),
        (lambda: S.strings("l", ["A"], check=str.islower, item="names"), "l", "['A']",
         "a list of names"),
        (lambda: S.numbers("b", "12"), "b", "'12'", "a list of numbers"),
        (lambda: S.numbers("b", [1, -1], gt=0), "b", "[1, -1]", "item -1; expected"),
        (lambda: S.numbers("b", [], nonempty=True), "b", "[]", "(at least one)"),
        (lambda: S.table("t", [1]), "t", "[1]", "a table"),
        (lambda: S.instance("o", "x", int, "an int object"), "o", "'x'", "an int object"),
        (lambda: S.check("k", 5, False, "something else"), "k", "5", "expected something else"),
    ],
)
def test_every_check_names_plugin_key_value_and_expectation(
    call: Callable[[], object], key: str, value: str, expected: str
) -> None:
    refused(call, key, value, expected)


def test_long_values_are_shortened_in_messages() -> None:
    text = describe("x" * 1000)
    assert len(text) == 80 and text.endswith("...")

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert describe(Unprintable()) == "<Unprintable object>"


def test_unknown_keys_list_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=re.escape(
        "plugin 'demo': unknown setting 'colour' = 'red'; expected one of: a, b"
    )):
        check_keys("demo", {"a": 1, "colour": "red"}, ["b", "a"])
    with pytest.raises(ConfigError, match="expected no settings at all"):
        S.unknown({"x": 1}, [])


def test_known_keywords() -> None:
    def f(a: int, *, b: int = 0) -> None: ...

    def g(**kw: Any) -> None: ...

    assert known_keywords(f) == ["a", "b"]
    assert known_keywords(g) is None


class Plain:
    def __init__(self, size: int = 1) -> None:
        if not isinstance(size, int):
            raise TypeError("size must be an int")
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size = size


class Broken:
    def __init__(self) -> None:
        raise OSError("disk on fire")


def test_build_plugin_turns_refused_settings_into_config_errors() -> None:
    # a plugin that does not use the checker still gives a ConfigError, never a TypeError
    with pytest.raises(ConfigError, match=r"plugin 'plain' refused its settings \{'size': 'x'\}"):
        build_plugin("plain", Plain, {"size": "x"})
    with pytest.raises(ConfigError, match="ValueError: size must be >= 0"):
        build_plugin("plain", Plain, {"size": -1})
    with pytest.raises(ConfigError, match="unknown setting 'sise' = 3; expected one of: size"):
        build_plugin("plain", Plain, {"sise": 3})
    with pytest.raises(ConfigError, match="settings = 3 is invalid; expected a table"):
        build_plugin("plain", Plain, 3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="takes no settings; got size = 1"):
        build_plugin("ready", object(), {"size": 1})
    with pytest.raises(ConfigError, match="invalid settings: missing a required argument"):
        build_plugin("needs", lambda x: x, {})


def test_a_factory_that_fails_otherwise_is_a_plugin_load_error() -> None:
    from aperion_bus import PluginLoadError

    with pytest.raises(PluginLoadError, match="plugin 'broken' failed to build: OSError"):
        build_plugin("broken", Broken, {})
