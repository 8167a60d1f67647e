"""A small HTTP server exposing a Prometheus registry at ``/metrics``."""

from __future__ import annotations

import socketserver
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ._prometheus import import_prometheus_client

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["MetricsServer"]


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsServer:
    """Serves ``registry`` on ``http://host:port/metrics`` from a daemon thread.

    ``port=0`` picks a free port (read :attr:`port`). Stop it with :meth:`shutdown` (or use
    it as a context manager).
    """

    def __init__(self, registry: CollectorRegistry, port: int = 0, host: str = "127.0.0.1") -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int in 0..65535, got {port!r}")
        pc = import_prometheus_client()
        app = pc.make_wsgi_app(registry)
        try:
            self._httpd = make_server(host, port, app, _Server, _QuietHandler)
        except OSError as exc:  # EADDRINUSE, EACCES, an address that is not ours
            raise OSError(
                exc.errno, f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
            ) from exc
        self.host = host
        self.port: int = self._httpd.server_port
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"aperion-bus-metrics-{self.port}", daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def shutdown(self) -> None:
        """Stop serving and close the socket; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5.0)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "serving"
        return f"<MetricsServer {self.url} {state}>"
