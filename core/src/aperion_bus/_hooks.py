"""Hook plumbing: implementations looked up and adapted once per bus, then called in order.

The bus never goes through pluggy's dispatcher on the emit path: pluggy validates and orders
the implementations when a plugin registers, and :class:`HookSet` keeps them, per hook, as
positional callables in call order with the name of their plugin (for error messages). An
implementation that takes a subset of a spec's arguments is adapted once, here, by a
generated ``lambda`` that passes just those arguments: no argument list is built per call.

Two hooks, ``on_dispatch`` and ``on_handler``, follow pluggy's new-style wrappers: a
``wrapper=True`` implementation is a generator that yields once; ``yield`` returns the result
(or raises the exception that ended the call); a non-None return value replaces the result.
Plain implementations of those hooks are called after the call with the result.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Generator, Sequence
from typing import Any, Final

import pluggy

from ._hookspecs import HookSpecs

__all__ = ["Callers", "HookSet", "Started", "finish_wrappers", "start_wrappers"]

logger = logging.getLogger("aperion_bus")

Caller = Callable[..., Any]
#: (implementation, plugin name) pairs in call order
Callers = tuple[tuple[Caller, str], ...]
#: wrappers whose before-part ran: (generator, plugin name)
Started = list[tuple[Generator[None, Any, Any], str]]
#: called with (hook, plugin, exception) when an implementation fails
OnError = Callable[[str, str, BaseException], None]

_HOOKS: Final = (
    "add_cli_commands",
    "on_audit",
    "on_audit_flush",
    "on_closing",
    "on_dispatch",
    "on_drop",
    "on_emit",
    "on_enqueue",
    "on_handler",
    "on_handler_error",
    "on_scrub",
    "on_shutdown",
    "on_start",
    "on_stats",
)
#: hooks whose ``wrapper=True`` implementations wrap the call
WRAPPING: Final = ("on_dispatch", "on_handler")
#: arguments a wrapper does not get (the result arrives through ``yield``)
_RESULT_ARG: Final = {"on_dispatch": "result", "on_handler": "outcome"}


def _spec_args(name: str) -> tuple[str, ...]:
    params = list(inspect.signature(getattr(HookSpecs, name)).parameters)
    return tuple(params[1:])  # drop self


SPEC_ARGS: Final = {name: _spec_args(name) for name in _HOOKS}


def adapt(fn: Caller, argnames: Sequence[str], spec_args: Sequence[str]) -> Caller:
    """``fn`` (taking a subset of the spec's arguments, by name) as a positional callable
    taking all of them; ``fn`` itself when it takes them all, in order."""
    if tuple(argnames) == tuple(spec_args):
        return fn
    unknown = [n for n in argnames if n not in spec_args]
    if unknown:  # pluggy refuses these at registration; kept as a guard
        raise TypeError(f"unknown hook argument(s) {unknown}")
    params = ", ".join(f"a{i}" for i in range(len(spec_args)))
    args = ", ".join(f"a{spec_args.index(n)}" for n in argnames)
    call: Caller = eval(f"lambda {params}: fn({args})", {"fn": fn})
    return call


class HookSet:
    """Every hook's implementations, looked up once: ``hooks.on_emit`` is a tuple of
    ``(callable, plugin name)`` in call order. For ``on_dispatch`` and ``on_handler``,
    ``dispatch_wrappers``/``handler_wrappers`` hold the wrappers, the hook's own attribute
    the plain implementations."""

    __slots__ = (*_HOOKS, "dispatch_wrappers", "handler_wrappers")

    add_cli_commands: Callers
    on_audit: Callers
    on_audit_flush: Callers
    on_closing: Callers
    on_dispatch: Callers
    on_drop: Callers
    on_emit: Callers
    on_enqueue: Callers
    on_handler: Callers
    on_handler_error: Callers
    on_scrub: Callers
    on_shutdown: Callers
    on_start: Callers
    on_stats: Callers
    dispatch_wrappers: Callers
    handler_wrappers: Callers

    def __init__(self, pm: pluggy.PluginManager) -> None:
        for name in _HOOKS:
            spec = SPEC_ARGS[name]
            plain: list[tuple[Caller, str]] = []
            wrappers: list[tuple[Caller, str]] = []
            # pluggy lists implementations in reverse call order
            for impl in reversed(getattr(pm.hook, name).get_hookimpls()):
                if name in WRAPPING and (impl.wrapper or impl.hookwrapper):
                    args = tuple(a for a in spec if a != _RESULT_ARG[name])
                    wrappers.append((adapt(impl.function, impl.argnames, args), impl.plugin_name))
                else:
                    plain.append((adapt(impl.function, impl.argnames, spec), impl.plugin_name))
            setattr(self, name, tuple(plain))
            if name == "on_dispatch":
                self.dispatch_wrappers = tuple(wrappers)
            elif name == "on_handler":
                self.handler_wrappers = tuple(wrappers)


def start_wrappers(hook: str, wrappers: Callers, args: tuple[Any, ...], failed: OnError) -> Started:
    """Run the before-``yield`` part of each wrapper (outermost first)."""
    started: Started = []
    for caller, plugin in wrappers:
        try:
            gen = caller(*args)
            next(gen)
        except Exception as exc:
            failed(hook, plugin, exc)
            continue
        started.append((gen, plugin))
    return started


def finish_wrappers(
    hook: str, started: Started, value: Any, exc: BaseException | None, failed: OnError
) -> Any:
    """Resume the wrappers (innermost first) with ``value``, or throw ``exc`` into them.

    Returns the result, replaced by any wrapper that returned one of the same type. A wrapper
    that re-raises the thrown ``exc`` is fine; any other exception is isolated.
    """
    kind = type(value)
    for gen, plugin in reversed(started):
        try:
            if exc is None:
                gen.send(value)
            else:
                gen.throw(exc)
        except StopIteration as stop:
            replaced = stop.value
            if replaced is not None:
                if isinstance(replaced, kind):
                    value = replaced
                else:
                    failed(
                        hook,
                        plugin,
                        TypeError(
                            f"a {hook} wrapper must return None or a {kind.__name__}, "
                            f"got {type(replaced).__name__}"
                        ),
                    )
            continue
        except BaseException as err:
            if err is not exc:
                failed(hook, plugin, err)
            continue
        gen.close()
        failed(hook, plugin, RuntimeError(f"a {hook} wrapper yielded more than once"))
    return value


def call_each(hook: str, callers: Callers, args: tuple[Any, ...], failed: OnError) -> None:
    """Call every implementation of an observing hook, isolating their errors."""
    for caller, plugin in callers:
        try:
            caller(*args)
        except Exception as exc:
            failed(hook, plugin, exc)
