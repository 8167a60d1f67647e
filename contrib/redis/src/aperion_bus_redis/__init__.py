"""aperion-bus-redis: events across processes and machines on Redis Streams.

``RedisStreams`` is the plugin (entry-point name ``redis``); see ``docs/redis.md``.
"""

from __future__ import annotations

from ._plugin import (
    DEAD_LETTER_REASON,
    PUBLISHED_REASON,
    UNDECODABLE_EVENT,
    UNPUBLISHED_REASON,
    PublishBufferFull,
    RedisConnectionError,
    RedisStreams,
    SerializationError,
)
from ._settings import RedisSettings

__all__ = [
    "DEAD_LETTER_REASON",
    "PUBLISHED_REASON",
    "UNDECODABLE_EVENT",
    "UNPUBLISHED_REASON",
    "PublishBufferFull",
    "RedisConnectionError",
    "RedisSettings",
    "RedisStreams",
    "SerializationError",
]
