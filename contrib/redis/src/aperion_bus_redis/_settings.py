"""The plugin's settings, checked once at construction (no I/O here)."""

from __future__ import annotations

import re
import string
import urllib.parse
from typing import Any, Final, Literal, cast

import attrs
from aperion_bus.settings import Settings, check_keys

__all__ = ["RedisSettings", "domain_of", "masked_url", "matches_any"]

Mode = Literal["shared", "broadcast"]
_MODES: Final = ("shared", "broadcast")
GroupStart = Literal["latest", "earliest"]
_GROUP_STARTS: Final = ("latest", "earliest")


_S: Final = Settings("redis")
_PASSWORD: Final = re.compile(r"//([^/@:]*):[^/@]*@")
_PATTERNS: Final = "event patterns ('domain.action', 'domain.*' or '*')"


def _is_pattern(pattern: str) -> bool:
    if pattern == "*":
        return True
    segments = pattern.split(".")
    return all(
        seg and ("*" not in seg or (seg == "*" and i == len(segments) - 1))
        for i, seg in enumerate(segments)
    )


def matches_any(patterns: tuple[str, ...], event_type: str) -> bool:
    """True if one of ``patterns`` (``a.b``, ``a.*``, ``*``) matches ``event_type``."""
    for p in patterns:
        if p == "*" or p == event_type:
            return True
        if p.endswith(".*") and event_type.startswith(p[:-1]):
            return True
    return False


def masked_url(url: str) -> str:
    """``url`` with its password (``user:PASSWORD@`` or ``?password=``) replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(k.lower() == "password" for k, _ in pairs):
            query = "&".join(
                f"{k}=***" if k.lower() == "password" else urllib.parse.urlencode({k: v})
                for k, v in pairs
            )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def domain_of(event_type: str) -> str:
    """``user.login`` -> ``user``: the part a per-domain stream is named after."""
    return event_type.partition(".")[0]


def _positive_int(name: str, value: object, allow_zero: bool = False) -> int:
    return _S.integer(name, value, min=0 if allow_zero else 1)


def _nonempty_str(name: str, value: object) -> str:
    return _S.string(name, value)


def _str_list(name: str, value: object, item: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    check = _is_pattern if name == "patterns" else (lambda v: bool(v.strip()))
    return tuple(_S.strings(name, value, check=check, item=item))


@attrs.frozen
class RedisSettings:
    """Every setting of the ``redis`` plugin, validated (see ``docs/redis.md``)."""

    url: str = "redis://localhost:6379/0"
    stream: str = "aperion:events"
    group: str = "aperion"
    consumer: str | None = None
    patterns: tuple[str, ...] = ("*",)
    mode: Mode = "shared"
    maxlen: int | None = 100_000
    max_deliveries: int = 5
    claim_idle_ms: int = 30_000
    domains: tuple[str, ...] | None = None
    consume: bool = True
    batch_size: int = 100
    block_ms: int = 1_000
    buffer_size: int = 100_000
    group_start: GroupStart = "latest"
    flush_timeout_ms: int = 30_000

    @property
    def per_domain(self) -> bool:
        return "{domain}" in self.stream

    def stream_for(self, event_type: str) -> str:
        if self.per_domain:
            return self.stream.replace("{domain}", domain_of(event_type))
        return self.stream

    def consume_streams(self) -> tuple[str, ...]:
        """The streams this process reads."""
        if not self.per_domain:
            return (self.stream,)
        assert self.domains is not None
        return tuple(self.stream.replace("{domain}", d) for d in self.domains)

    @classmethod
    def build(cls, **kwargs: Any) -> RedisSettings:
        """Check raw settings (from a config file or keyword arguments)."""
        check_keys("redis", kwargs, (a.name for a in attrs.fields(cls)))
        s = dict(kwargs)
        url = _nonempty_str("url", s.get("url", "redis://localhost:6379/0"))
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise _S.error(
                "url", _PASSWORD.sub(r"//\1:***@", url),
                "a URL starting with redis://, rediss:// or unix://",
            )
        stream = _nonempty_str("stream", s.get("stream", "aperion:events"))
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(stream) if f is not None}
        except ValueError as exc:
            raise _S.error("stream", stream, f"a stream name ({exc})") from None
        if fields - {"domain"}:
            raise _S.error("stream", stream, "a stream name whose only placeholder is {domain}")
        group = _nonempty_str("group", s.get("group", "aperion"))
        consumer = s.get("consumer")
        if consumer is not None:
            consumer = _nonempty_str("consumer", consumer)
        patterns = _str_list("patterns", s.get("patterns", ["*"]), _PATTERNS)
        mode = cast(Mode, _S.choice("mode", s.get("mode", "shared"), _MODES))
        maxlen = s.get("maxlen", 100_000)
        if maxlen is not None:
            maxlen = _positive_int("maxlen", maxlen)
        max_deliveries = _positive_int("max_deliveries", s.get("max_deliveries", 5))
        claim_idle_ms = _positive_int("claim_idle_ms", s.get("claim_idle_ms", 30_000))
        group_start = cast(
            GroupStart, _S.choice("group_start", s.get("group_start", "latest"), _GROUP_STARTS)
        )
        consume = _S.boolean("consume", s.get("consume", True))
        domains_raw = s.get("domains")
        domains: tuple[str, ...] | None = None
        if domains_raw is not None:
            domains = _str_list("domains", domains_raw, "domain names (non-empty strings)")
        if "{domain}" in stream and domains is None and consume:
            derived: list[str] = []
            for p in patterns:
                if p == "*":
                    raise _S.error(
                        "domains", None, f"the domains to consume: stream {stream!r} is per "
                        "domain and patterns include '*'"
                    )
                d = domain_of(p)
                if d not in derived:
                    derived.append(d)
            domains = tuple(derived)
        if "{domain}" in stream and consume and not domains:
            raise _S.error(
                "domains", domains, "at least one domain to consume: the stream is per domain"
            )
        return cls(
            url=url,
            stream=stream,
            group=group,
            consumer=consumer,
            patterns=patterns,
            mode=mode,
            maxlen=maxlen,
            max_deliveries=max_deliveries,
            claim_idle_ms=claim_idle_ms,
            domains=domains,
            consume=consume,
            batch_size=_positive_int("batch_size", s.get("batch_size", 100)),
            block_ms=_positive_int("block_ms", s.get("block_ms", 1_000)),
            buffer_size=_positive_int("buffer_size", s.get("buffer_size", 100_000)),
            group_start=group_start,
            flush_timeout_ms=_positive_int(
                "flush_timeout_ms", s.get("flush_timeout_ms", 30_000), allow_zero=True
            ),
        )
