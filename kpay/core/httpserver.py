"""The HTTP server: a cap on open connections, and the client's address believed from
forwarded headers only when they come from a trusted proxy (``[server]
trusted_proxies``, docs/operations.md "Reverse proxy")."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Any

import tornado.httpserver
import tornado.httputil
import tornado.iostream

log = logging.getLogger("kpay")


class KPayHTTPServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTP server with a cap on open connections and forwarded headers
    believed only from trusted proxies.

    ``max_connections``: Tornado has no cap of its own. Every accepted connection is
    counted until its socket closes, whatever it became (a WebSocket keeps its
    connection's stream, so it stays counted); one accepted at the cap is closed at once.

    ``trusted_proxies``: X-Forwarded-For / X-Real-IP / X-Forwarded-Proto set
    ``request.remote_ip`` and ``request.protocol`` (through
    :func:`client_ip`) only when the socket peer is one of them; Tornado's
    own ``xheaders`` would believe them from anyone.
    """

    def initialize(self, request_callback: Any, *, max_connections: int = 10_000,
                   trusted_proxies: list[str] | tuple[str, ...] = (), **kwargs: Any) -> None:
        kwargs["xheaders"] = False
        super().initialize(request_callback, **kwargs)
        self.max_connections = max_connections
        self.trusted_proxies = trusted_networks(trusted_proxies)
        self.open_connections = 0
        self.refused_connections = 0
        self._refusing = False

    def handle_stream(self, stream: tornado.iostream.IOStream, address: Any) -> None:
        if self.open_connections >= self.max_connections:
            self.refused_connections += 1
            if not self._refusing:
                self._refusing = True
                log.warning("%d connections open ([server] max_connections): closing new "
                            "ones until fewer are open", self.open_connections)
            stream.close()
            return
        if self._refusing and self.open_connections < self.max_connections * 0.9:
            self._refusing = False
        self.open_connections += 1
        # Counted down when the socket closes, through whichever owner closes it (the
        # HTTP connection or, after an upgrade, the WebSocket): IOStream.close() calls
        # close_fd() exactly once.
        close_fd = stream.close_fd

        def release() -> None:
            self.open_connections -= 1
            close_fd()

        stream.close_fd = release  # type: ignore[method-assign]
        super().handle_stream(stream, address)

    def start_request(self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
                      ) -> tornado.httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        context = getattr(request_conn, "context", None)
        if self.trusted_proxies and context is not None:
            delegate = ForwardedHeaders(delegate, context, self.trusted_proxies)
        return delegate


class ForwardedHeaders(tornado.httputil.HTTPMessageDelegate):
    """Sets one request's ``remote_ip`` and ``protocol`` from the forwarded headers when
    its peer is a trusted proxy (:func:`client_ip`), and puts the
    connection's own back when the request is done (the next one on the connection
    starts from the socket again)."""

    def __init__(self, inner: tornado.httputil.HTTPMessageDelegate, context: Any,
                 trusted: Any) -> None:
        self.inner = inner
        self.context = context
        self.trusted = trusted
        self.peer = context.remote_ip
        self.protocol = context.protocol

    def headers_received(self, start_line: Any, headers: tornado.httputil.HTTPHeaders) -> Any:
        self.context.remote_ip = client_ip(self.peer, headers, self.trusted)
        self.context.protocol = client_protocol(self.peer, headers, self.trusted,
                                                self.protocol)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        try:
            self.inner.finish()
        finally:
            self._restore()

    def on_connection_close(self) -> None:
        try:
            self.inner.on_connection_close()
        finally:
            self._restore()

    def _restore(self) -> None:
        self.context.remote_ip = self.peer
        self.context.protocol = self.protocol


# -- the client's address ------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(entries: Sequence[str]) -> tuple[IPNetwork, ...]:
    """``[server] trusted_proxies`` (validated by ``ServerSettings``) as networks."""
    return tuple(ipaddress.ip_network(entry.strip()) for entry in entries)


def ip_or_none(value: str) -> IPAddress | None:
    """``value`` as an IP address (an IPv4-mapped IPv6 one as IPv4), or None when it is
    not exactly one: a port, a name, ``unknown`` or junk are not addresses."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)


def client_ip(peer: str, headers: tornado.httputil.HTTPHeaders,
              trusted: Sequence[IPNetwork]) -> str:
    """The client's IP address: THE one rule for ``request.remote_ip`` (which the HTTP
    server sets from it, so the access log, the notify records and the
    ``spbill_create_ip`` sent to WeChat Pay all agree).

    The socket ``peer`` unless it is a trusted proxy (``[server] trusted_proxies``).
    From a trusted proxy: walking ``X-Forwarded-For`` from the right (each proxy
    appends the address it was connected from), the first address that is not a
    trusted proxy; if every one is, the left-most. Without ``X-Forwarded-For``, a valid
    ``X-Real-IP``. A hop that is not an IP address ends the walk at the last address
    vouched for by a trusted proxy; nothing from the headers is used unless it is one.
    """
    address = ip_or_none(peer)
    if address is None or not is_trusted(address, trusted):
        return peer
    forwarded = ",".join(headers.get_list("X-Forwarded-For"))
    if forwarded.strip():
        client = address
        for hop in reversed(forwarded.split(",")):
            hop_address = ip_or_none(hop)
            if hop_address is None:
                break
            client = hop_address
            if not is_trusted(hop_address, trusted):
                break
        return str(client)
    real = ip_or_none(headers.get("X-Real-IP", ""))
    return str(real) if real is not None else str(address)


def client_protocol(peer: str, headers: tornado.httputil.HTTPHeaders,
                    trusted: Sequence[IPNetwork], own: str) -> str:
    """``http`` or ``https`` as the client used it: ``X-Forwarded-Proto`` (its last
    value, set by the nearest proxy) when ``peer`` is a trusted proxy, else ``own``."""
    address = ip_or_none(peer)
    if address is None or not is_trusted(address, trusted):
        return own
    proto = headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
    return proto if proto in ("http", "https") else own
