"""aperion-bus-asgi: a pure ASGI middleware carrying correlation ids through HTTP requests.

Works under any ASGI framework (Starlette, FastAPI, ...); see ``docs/asgi.md``.
"""

from __future__ import annotations

from ._middleware import REQUEST_EVENT, RESPONSE_EVENT, CorrelationMiddleware

__all__ = ["REQUEST_EVENT", "RESPONSE_EVENT", "CorrelationMiddleware"]
