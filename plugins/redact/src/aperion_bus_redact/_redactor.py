"""The :class:`Redactor`: sensitive keys plus free-text detectors, on deep copies."""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import re
import sys
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import Any, Final
from uuid import UUID

from ._detectors import BUILTIN_DETECTORS, Detector, Span
from ._keys import KeyMatcher, str_list

__all__ = [
    "BUILTIN_NAMES",
    "DEFAULT_MAX_STRING_LENGTH",
    "KEY_PLACEHOLDER",
    "LENGTH_PLACEHOLDER",
    "PLACEHOLDER_PRESETS",
    "Redactor",
]

#: What replaces the value of a sensitive key, whatever its type.
KEY_PLACEHOLDER: Final = "[REDACTED]"
#: What replaces containers nested deeper than ``max_depth``.
DEPTH_PLACEHOLDER: Final = "[REDACTED_TOO_DEEP]"
#: What replaces a whole string longer than ``max_string_length`` (it is not scanned).
LENGTH_PLACEHOLDER: Final = "[REDACTED_TOO_LONG]"
#: The default ``max_string_length``: 64 KiB of characters.
DEFAULT_MAX_STRING_LENGTH: Final = 64 * 1024

_DIGIT_BYTES: Final = b"0123456789"
# Runs of digits and the separators numbers are written with, each starting and ending with a
# digit: a phone number, a card, an SSN, an IPv4 address lies within one (Detector.min_run).
# Linear: a run is scanned forward once and back once (to its last digit), and the next search
# starts after it.
_RUNS: Final = re.compile(r"[0-9][0-9 ./()+\-]*[0-9]|[0-9]").findall
# Whole strings that cannot hold anything sensitive: ISO timestamps, UUIDs, hex digests and
# short numbers (one anchored match instead of running the digit detectors).
_BORING: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?"
    r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-f]{40}|[0-9a-f]{64}|-?[0-9]{1,9}(?:\.[0-9]{1,9})?"
).fullmatch
_RUN_KNOWN: Final = 1 << 13
_SCALARS: Final = frozenset({int, float, bool, type(None)})
#: Strings longer than this are never remembered as clean (bounds the cache's memory).
_CLEAN_MAX_LEN: Final = 512
#: The names of the built-in detectors (what ``disabled`` may list).
BUILTIN_NAMES: Final = tuple(d.name for d in BUILTIN_DETECTORS)
_BUILTIN_NAMES: Final = BUILTIN_NAMES

#: Named sets of placeholders for the built-in detectors (``Redactor(placeholders=...)``).
#: ``"1.x"``: the placeholders aperion-event-bus 1.2.1 wrote, for log pipelines that match
#: them (detectors not listed keep their own).
PLACEHOLDER_PRESETS: Final[Mapping[str, Mapping[str, str]]] = {
    "1.x": {
        "card": "[REDACTED_CC]",
        "ipv4": "[REDACTED_IP]",
        "ipv6": "[REDACTED_IP]",
        "google_api_key": "[REDACTED_GCP_KEY]",
        "openai_key": "[REDACTED_KEY]",
        "url_credentials": "[REDACTED]:[REDACTED]",
    },
}

PatternSpec = tuple[str, str] | Detector | Mapping[str, Any]
#: The detectors a class of strings may hold, each with its gates.
_Prefilter = Callable[[str], "re.Match[str] | None"] | None
_Plan = tuple[tuple[Detector, tuple[str, ...], tuple[str, ...], _Prefilter], ...]


class Redactor:
    """Redacts PII and secrets from payloads (deep copies) and from free text.

    ``enabled``: False makes :meth:`redact` and :meth:`redact_text` return their input.
    ``patterns``: extra detectors, each a :class:`Detector`, a ``(regex, placeholder)`` pair
    or a mapping ``{"name", "pattern", "placeholder", "group"}``; they run after the built-in
    ones (unlike aperion-event-bus 1.2.1, where ``patterns`` replaced the defaults: use
    ``builtins=False`` for that). ``placeholders``: what the built-in detectors write, as a
    mapping ``{detector name: placeholder}`` or the name of a preset of
    :data:`PLACEHOLDER_PRESETS` (``"1.x"``: aperion-event-bus 1.2.1's ``[REDACTED_CC]``,
    ``[REDACTED_IP]`` ...); unnamed detectors keep their own. ``redact_keys``: the
    sensitive keys, replacing the defaults (and the default "contains password/secret/…"
    rules); ``extra_keys``: keys added to them.
    ``allow``: exact strings never redacted; ``allow_patterns``: regexes, a match found by a
    detector that one of them fully matches is kept. ``disabled``: names of built-in
    detectors to turn off. ``max_depth``: containers nested deeper are replaced by
    ``[REDACTED_TOO_DEEP]`` (fail closed rather than recurse without end); at most
    ``sys.getrecursionlimit() // 4``. ``cache_size``: how many strings found clean (nothing
    redacted in them) are remembered, so that a value repeated from record to record (a status,
    a SKU, a user agent) is scanned once; 0 turns the cache off. Only strings of at most 512
    characters in which nothing was redacted are kept, the very strings the audit log holds in
    clear; a string with a redaction is scanned again every time. The cache is emptied when full.
    ``max_string_length``: the redaction budget. A string longer than this many characters
    (default 65,536) is not scanned: it is replaced whole by ``[REDACTED_TOO_LONG]`` and
    counted as ``too_long`` (fail closed: nothing of it gets through, and one huge value costs
    no more than a length check). It applies to every string the detectors would scan: values,
    text made from bytes, reprs and :meth:`redact_text`.
    """

    def __init__(
        self,
        enabled: bool = True,
        patterns: Iterable[PatternSpec] | None = None,
        redact_keys: Iterable[str] | None = None,
        *,
        extra_keys: Iterable[str] = (),
        allow: Iterable[str] = (),
        allow_patterns: Iterable[str | re.Pattern[str]] = (),
        disabled: Iterable[str] = (),
        builtins: bool = True,
        placeholders: str | Mapping[str, str] | None = None,
        max_depth: int = 64,
        cache_size: int = 4096,
        max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
    ) -> None:
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be True or False, got {enabled!r}")
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
            raise ValueError(f"max_depth must be an int >= 1, got {max_depth!r}")
        depth_cap = sys.getrecursionlimit() // 4
        if max_depth > depth_cap:
            raise ValueError(
                f"max_depth must be <= {depth_cap} (sys.getrecursionlimit() // 4: deeper "
                f"redaction would run out of stack), got {max_depth}"
            )
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size must be an int >= 0, got {cache_size!r}")
        if (
            isinstance(max_string_length, bool)
            or not isinstance(max_string_length, int)
            or max_string_length < 1
        ):
            raise ValueError(
                "max_string_length must be an int >= 1 (a number of characters; default "
                f"{DEFAULT_MAX_STRING_LENGTH}), got {max_string_length!r}"
            )
        self.max_string_length = max_string_length
        self.enabled = enabled
        self.max_depth = max_depth
        self.cache_size = cache_size
        # Strings known to need no redaction. Never holds a string in which something was
        # redacted; set operations are atomic, so threads share it without a lock.
        self._clean: set[str] = set()
        self.keys = KeyMatcher(redact_keys, extra_keys)
        disabled_set = set(str_list(disabled, "disabled"))
        unknown = sorted(disabled_set - set(_BUILTIN_NAMES))
        if unknown:
            raise ValueError(
                f"disabled: unknown detector(s) {', '.join(unknown)}; "
                f"built-in detectors are {', '.join(_BUILTIN_NAMES)}"
            )
        renamed = _placeholders(placeholders)
        detectors: list[Detector] = []
        builtin_ids = {id(d) for d in BUILTIN_DETECTORS}
        if builtins:
            for d in BUILTIN_DETECTORS:
                if d.name in disabled_set:
                    continue
                placeholder = renamed.get(d.name)
                if placeholder is not None and placeholder != d.placeholder:
                    d = copy.copy(d)  # the shared built-in is never changed
                    d.placeholder = placeholder
                    builtin_ids.add(id(d))
                detectors.append(d)
        for i, spec in enumerate(patterns or ()):
            detectors.append(_make_detector(spec, i))
        self.detectors: tuple[Detector, ...] = tuple(detectors)
        self._allow = frozenset(str_list(allow, "allow"))
        allow_rx: list[re.Pattern[str]] = []
        for p in allow_patterns:
            if isinstance(p, re.Pattern):
                allow_rx.append(p)
            elif isinstance(p, str):
                try:
                    allow_rx.append(re.compile(p))
                except re.error as exc:
                    raise ValueError(f"allow_patterns: invalid regex {p!r}: {exc}") from None
            else:
                raise TypeError(f"allow_patterns must hold strings, got {type(p).__name__}")
        self._allow_rx = tuple(allow_rx)
        self._has_allow = bool(self._allow or self._allow_rx)
        # Each detector's required characters as bit masks over the features of a string
        # (has a digit, has "@", ":", "=", "_", "-", "."); the detectors a feature set allows
        # are computed once per feature set and cached (at most 128 of them).
        self._requires = tuple(
            (d, tuple(_mask(chars) for chars in d.requires)) for d in self.detectors
        )
        self._plans: dict[int, _Plan] = {}
        # Digit counts that matter (a card has >= 13 digits, an SSN 9 ...): the plan also
        # depends on which of these levels a string's digit count reaches, and likewise for
        # its length and, only when a detector of the plan sets ``min_run``, for the length of
        # its longest number-like run (a card needs 13 characters, an SSN 11 ...): the classes
        # whose plan depends on it are in ``_run_classes``. ``_digit_key[n]`` is the index of
        # the level n digits reach, shifted into place in the class (the last entry serves
        # every larger count); the same for the others. Class bits: 0-7 features, 8-12 run
        # level, 13 run level known, 14-18 digit level, 19- length level.
        self._levels = sorted({0, 1, *(d.min_digits for d in self.detectors)})
        self._run_levels = sorted({0, *(d.min_run for d in self.detectors)})
        self._len_levels = sorted({0, *(d.min_len for d in self.detectors)})
        if len(self._run_levels) > 32 or len(self._levels) > 32:
            raise ValueError("detectors: at most 31 distinct min_run and min_digits values")
        self._digit_cap = self._levels[-1]
        self._digit_key = _level_keys(self._levels, 14)
        self._run_cap = self._run_levels[-1]
        self._run_key = [k | _RUN_KNOWN for k in _level_keys(self._run_levels, 8)]
        self._len_cap = self._len_levels[-1]
        self._len_key = _level_keys(self._len_levels, 19)
        self._run_classes: set[int] = set()
        self._custom = any(id(d) not in builtin_ids for d in self.detectors)
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    # ------------------------------------------------------------------ public API
    def redact(self, obj: Any) -> Any:
        """A redacted deep copy of ``obj``; never mutates it. Fails closed.

        Values under sensitive keys become ``[REDACTED]`` whatever their type; strings are
        scanned by the detectors. Dicts, lists and tuples (namedtuples keep their type) are
        copied; any other mapping becomes a dict, a set a list, a dataclass or attrs instance
        a dict of its fields; bytes are decoded (UTF-8, errors replaced) and scanned as text;
        dates, times and UUIDs become their text, an enum its value. Numbers, bools and None
        are kept. Any other object becomes its ``repr()``, scanned as text. String keys
        (``StrEnum`` ones become plain ``str``) and number keys are kept; other keys become
        their redacted ``repr()``.
        """
        if not self.enabled:
            return obj
        counts: dict[str, int] = {}
        out = self._walk(obj, counts, 0)
        if counts:
            self._merge(counts)
        return out

    def redact_text(self, text: str) -> str:
        """``text`` with every detected value replaced by its placeholder."""
        if not isinstance(text, str):
            raise TypeError(f"redact_text takes a str, got {type(text).__name__}")
        if not self.enabled:
            return text
        counts: dict[str, int] = {}
        out = self._text(text, counts)
        if counts:
            self._merge(counts)
        return out

    # 1.2.1 name
    redact_string = redact_text

    def stats(self) -> dict[str, int]:
        """Redactions made so far, by category (``"key"`` for sensitive keys); never values."""
        with self._lock:
            return dict(self._counts)

    def reset_stats(self) -> None:
        with self._lock:
            self._counts.clear()

    # ------------------------------------------------------------------ internals
    def _merge(self, counts: dict[str, int]) -> None:
        with self._lock:
            mine = self._counts
            for k, v in counts.items():
                mine[k] = mine.get(k, 0) + v

    def _walk(self, obj: Any, counts: dict[str, int], depth: int) -> Any:
        """Fail closed: what is not a number, None or a known shape is redacted as text."""
        t = type(obj)
        if t is str:
            if obj in self._clean:
                return obj
            return self._text(obj, counts)
        if t in _SCALARS:
            return obj
        if t is dict or t is list:  # the common containers first
            if depth >= self.max_depth:
                counts["too_deep"] = counts.get("too_deep", 0) + 1
                return DEPTH_PLACEHOLDER
            if t is dict:
                return self._dict(obj, counts, depth + 1)
            return self._list(obj, counts, depth + 1)
        return self._other(obj, counts, depth)

    def _list(self, items: list[Any], counts: dict[str, int], depth: int) -> list[Any]:
        clean = self._clean
        text = self._text
        walk = self._walk
        out = []
        for v in items:
            t = type(v)
            if t is str:
                out.append(v if v in clean else text(v, counts))
            elif t in _SCALARS:
                out.append(v)
            else:
                out.append(walk(v, counts, depth))
        return out

    def _other(self, obj: Any, counts: dict[str, int], depth: int) -> Any:
        t = type(obj)
        if isinstance(obj, str):  # a str subclass (StrEnum ...): a plain, redacted str
            return self._text(str.__str__(obj), counts)
        if isinstance(obj, int):  # an int subclass (IntEnum ...): a plain int
            return int.__int__(obj)
        if isinstance(obj, float):
            return float.__float__(obj)
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return self._text(bytes(obj).decode("utf-8", "replace"), counts)
        if isinstance(obj, (_dt.date, _dt.time)):  # datetime too: ISO text, as orjson writes
            return self._text(obj.isoformat(), counts)
        if isinstance(obj, UUID):
            return self._text(str(obj), counts)
        if depth >= self.max_depth:
            counts["too_deep"] = counts.get("too_deep", 0) + 1
            return DEPTH_PLACEHOLDER
        if isinstance(obj, dict):
            return self._dict(obj, counts, depth + 1)
        if isinstance(obj, list):
            return [self._walk(v, counts, depth + 1) for v in obj]
        if isinstance(obj, tuple):
            items = [self._walk(v, counts, depth + 1) for v in obj]
            if hasattr(obj, "_fields"):  # a namedtuple
                return t(*items)
            return tuple(items)
        if isinstance(obj, Mapping):  # MappingProxyType, custom mappings: a plain dict
            return self._dict(obj, counts, depth + 1)
        if isinstance(obj, (set, frozenset)):  # a list (JSON has no sets)
            return [self._walk(v, counts, depth + 1) for v in obj]
        if not isinstance(obj, type):
            if dataclasses.is_dataclass(obj):  # a dict of its fields (asdict, but shallow)
                fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
                return self._dict(fields, counts, depth + 1)
            attrs_fields = getattr(t, "__attrs_attrs__", None)
            if attrs_fields is not None:  # an attrs instance: the same
                fields = {a.name: getattr(obj, a.name) for a in attrs_fields}
                return self._dict(fields, counts, depth + 1)
        if isinstance(obj, Enum):  # what orjson would write: its value
            return self._walk(obj.value, counts, depth + 1)
        return self._text(_safe_repr(obj), counts)

    def _dict(
        self, d: Mapping[Any, Any], counts: dict[str, int], depth: int
    ) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        keys = self.keys
        cache = keys._cache
        clean = self._clean
        text = self._text
        walk = self._walk
        scalars = _SCALARS
        hidden = 0
        for k, v in d.items():
            if type(k) is str:
                hit = cache.get(k)
                if hit is None:
                    hit = keys.is_sensitive(k)
                if hit:
                    out[k] = KEY_PLACEHOLDER
                    hidden += 1
                    continue
            elif type(k) not in scalars:
                if isinstance(k, str):  # a StrEnum key: checked, and written, as a plain str
                    k = str.__str__(k)
                elif isinstance(k, (int, float)):  # an IntEnum key: a plain number
                    k = walk(k, counts, depth)
                else:  # a tuple, bytes, an object: its redacted repr
                    k = text(_safe_repr(k), counts)
                if type(k) is str and keys.is_sensitive(k):
                    out[k] = KEY_PLACEHOLDER
                    hidden += 1
                    continue
            t = type(v)
            if t is str:
                out[k] = v if v in clean else text(v, counts)
            elif t in scalars:
                out[k] = v
            elif t is dict and depth < self.max_depth:  # the common nesting, without _walk
                out[k] = self._dict(v, counts, depth + 1)
            else:
                out[k] = walk(v, counts, depth)
        if hidden:
            counts["key"] = counts.get("key", 0) + hidden
        return out

    def _plan_for(self, key: int) -> _Plan | None:
        """The plan of a class; None when it depends on the run level, not in ``key`` yet."""
        features = key & 255
        if key & _RUN_KNOWN:
            run = self._run_levels[(key >> 8) & 31]
        elif key & 1:  # a digit: a run of unknown length
            run = 1 << 30
        else:
            run = 0
        digits = self._levels[(key >> 14) & 31]
        length = self._len_levels[key >> 19]
        plan = tuple(
            (d, d.gate, d.gate_lower, d.prefilter())
            for d, masks in self._requires
            if d.min_run <= run
            and d.min_digits <= digits
            and d.min_len <= length
            and all(m & features for m in masks)
        )
        if run == 1 << 30 and any(step[0].min_run for step in plan):
            self._run_classes.add(key)
            return None
        self._plans[key] = plan
        return plan

    def _text(self, s: str, counts: dict[str, int]) -> str:
        """``s`` redacted; remembered as clean when nothing in it was (see ``cache_size``).

        The string is classified into an int (its longest number-like run, its length, which
        of ``@ : = _ - .`` and upper-case letters it holds ...); the detectors a string of that
        class could hold are computed once per class (``_plan_for``), then their literal gates
        are tested before any regex runs.
        """
        n = len(s)
        if n < 3:
            return s
        if n > self.max_string_length:  # the budget: not scanned, replaced whole
            counts["too_long"] = counts.get("too_long", 0) + 1
            return LENGTH_PLACEHOLDER
        # The digits counted on the UTF-8 bytes (a copy for ASCII text; no other character's
        # encoding holds an ASCII byte): one C loop, cheaper than a regex findall.
        raw = s.encode("utf-8", "surrogatepass")
        digits = len(raw) - len(raw.translate(None, _DIGIT_BYTES))
        if digits:
            if _BORING(s) is not None and not self._custom:
                if self.cache_size:
                    self._remember(s)
                return s
            cap = self._digit_cap
            key = 1 | self._digit_key[digits if digits < cap else cap]
        else:
            key = 0
        cap = self._len_cap
        key |= self._len_key[n if n < cap else cap]
        if "@" in s:
            key |= 2
        if ":" in s:
            key |= 4
        if "=" in s:
            key |= 8
        if "_" in s:
            key |= 16
        if "-" in s:
            key |= 32
        if "." in s:
            key |= 64
        lower: str | None = s.lower()
        if lower != s:  # an upper-case letter (or another cased character): conservative
            key |= 128
        if key in self._run_classes:
            key |= self._run_level(s)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan_for(key)
            if plan is None:  # the plan of this class depends on the longest run
                key |= self._run_level(s)
                plan = self._plans.get(key)
                if plan is None:
                    plan = self._plan_for(key) or ()  # never None: the run is known
        out = s
        for det, gate, gate_lower, first in plan:
            if gate:
                for g in gate:
                    if g in out:
                        break
                else:
                    continue
            if gate_lower:
                if lower is None:
                    lower = out.lower()
                for g in gate_lower:
                    if g in lower:
                        break
                else:
                    continue
            if first is None:
                spans = det.spans(out)
            else:
                m = first(out)
                if m is None:
                    continue
                spans = det.spans_from(out, m)
            if not spans:
                continue
            if self._has_allow:
                spans = [sp for sp in spans if not self._allowed(out[sp[0] : sp[1]])]
                if not spans:
                    continue
            out = _apply(out, spans)
            counts[det.name] = counts.get(det.name, 0) + len(spans)
            lower = None
        if out is s and n <= _CLEAN_MAX_LEN and self.cache_size:
            clean = self._clean
            if len(clean) >= self.cache_size:
                clean.clear()
            clean.add(s)
        return out

    def _run_level(self, s: str) -> int:
        run = max(map(len, _RUNS(s)))  # s has a digit: at least one run
        cap = self._run_cap
        return self._run_key[run if run < cap else cap]

    def _remember(self, s: str) -> None:
        if len(s) <= _CLEAN_MAX_LEN and self.cache_size:
            clean = self._clean
            if len(clean) >= self.cache_size:
                clean.clear()
            clean.add(s)

    def _allowed(self, value: str) -> bool:
        if value in self._allow:
            return True
        return any(rx.fullmatch(value) for rx in self._allow_rx)


#: "#" a digit, "A" an upper-case letter.
_FEATURE_BITS: Final = {"#": 1, "@": 2, ":": 4, "=": 8, "_": 16, "-": 32, ".": 64, "A": 128}


def _mask(chars: str) -> int:
    mask = 0
    for ch in chars:
        bit = _FEATURE_BITS.get(ch)
        if bit is None:
            raise ValueError(
                f"unknown required character {ch!r}; use one of {''.join(_FEATURE_BITS)}"
            )
        mask |= bit
    return mask


def _level_keys(levels: list[int], shift: int) -> list[int]:
    """``[index of the highest level <= n, shifted] for n in 0 .. levels[-1]``."""
    return [(bisect_right(levels, n) - 1) << shift for n in range(levels[-1] + 1)]


def _apply(s: str, spans: list[Span]) -> str:
    pieces: list[str] = []
    last = 0
    for start, end, placeholder in spans:
        if start < last:  # overlapping spans (a custom detector): keep the first
            continue
        pieces.append(s[last:start])
        pieces.append(placeholder)
        last = end
    pieces.append(s[last:])
    return "".join(pieces)


def _safe_repr(obj: object) -> str:
    try:
        return repr(obj)
    except Exception:
        return f"<unrepresentable {type(obj).__name__}>"


def _placeholders(spec: str | Mapping[str, str] | None) -> Mapping[str, str]:
    """The ``placeholders=`` argument as ``{detector name: placeholder}``, checked."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        try:
            return PLACEHOLDER_PRESETS[spec]
        except KeyError:
            raise ValueError(
                f"placeholders: unknown preset {spec!r}; presets are "
                f"{', '.join(sorted(PLACEHOLDER_PRESETS))}"
            ) from None
    if not isinstance(spec, Mapping):
        raise TypeError(
            f"placeholders must be a preset name or a mapping, got {type(spec).__name__}"
        )
    unknown = sorted(set(spec) - set(_BUILTIN_NAMES))
    if unknown:
        raise ValueError(
            f"placeholders: unknown detector(s) {', '.join(map(str, unknown))}; "
            f"built-in detectors are {', '.join(_BUILTIN_NAMES)}"
        )
    for name, placeholder in spec.items():
        if not isinstance(placeholder, str):
            raise TypeError(f"placeholders[{name!r}] must be a str, got {placeholder!r}")
    return spec


def _make_detector(spec: PatternSpec, index: int) -> Detector:
    if isinstance(spec, Detector):
        return spec
    if isinstance(spec, tuple):
        if len(spec) != 2 or not all(isinstance(x, str) for x in spec):
            raise TypeError(
                f"patterns[{index}]: a tuple must be (regex, placeholder), got {spec!r}"
            )
        return Detector(f"custom_{index}", spec[0], spec[1])
    if isinstance(spec, Mapping):
        allowed = {"name", "pattern", "placeholder", "group", "validator"}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise ValueError(
                f"patterns[{index}]: unknown key(s) {', '.join(unknown)}; "
                f"expected {', '.join(sorted(allowed))}"
            )
        if "pattern" not in spec:
            raise ValueError(f"patterns[{index}]: a detector needs a 'pattern'")
        validator: Callable[[str], bool] | None = spec.get("validator")
        return Detector(
            spec.get("name", f"custom_{index}"),
            spec["pattern"],
            spec.get("placeholder"),
            validator,
            group=spec.get("group", 0),
        )
    raise TypeError(
        f"patterns[{index}]: expected a Detector, a (regex, placeholder) tuple or a mapping, "
        f"got {type(spec).__name__}"
    )
