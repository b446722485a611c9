"""Failed-login throttling per (name, client), with growing delays.

NativeAuthenticator locks an *account* after N failures: anyone who knows the
admin's name can keep the admin out, and its message tells a stranger which
names exist. Here failures are counted per (name, client) instead, for names
that exist and names that do not alike: after ``free_failures`` failures, each
further failure makes that pair wait ``base_delay``, then twice as long, up to
``max_delay``. Guessing from one client becomes slow; the owner of the name,
from another client, is not affected.

A client is a browser that has logged in with that name before (the
authenticator's signed cookie), else the client's address as computed by
``client_address``: the address the hub's proxy saw, never one a client claims.

``LoginThrottle`` is pure and in memory (one hub process holds it); the clock is
injectable for tests.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable


@dataclass
class _Failures:
    count: int
    until: float  # monotonic time before which this pair must wait
    last: float


class LoginThrottle:
    """Remembers failed logins per key and says how long a key must wait."""

    def __init__(
        self,
        free_failures: int = 3,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.free_failures = free_failures
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_entries = max_entries
        self.clock = clock
        self._failures: OrderedDict[tuple, _Failures] = OrderedDict()

    def delay_after(self, count: int) -> float:
        """Seconds a key must wait after its ``count``-th consecutive failure."""
        if count <= self.free_failures:
            return 0.0
        return min(self.max_delay, self.base_delay * 2 ** (count - self.free_failures - 1))

    def wait_seconds(self, key: tuple) -> float:
        """Seconds ``key`` must still wait before its next attempt is even checked (0: go)."""
        entry = self._failures.get(key)
        if entry is None:
            return 0.0
        return max(0.0, entry.until - self.clock())

    def failed(self, key: tuple) -> float:
        """Record a failure of ``key``; return the seconds it must now wait."""
        now = self.clock()
        entry = self._failures.pop(key, None)
        if entry is not None and now - entry.last > self.forget_after:
            entry = None  # quiet for long enough: start afresh
        count = 1 if entry is None else entry.count + 1
        delay = self.delay_after(count)
        self._failures[key] = _Failures(count, now + delay, now)
        while len(self._failures) > self.max_entries:
            self._failures.popitem(last=False)  # the least recently failed
        return delay

    def succeeded(self, key: tuple) -> None:
        """Forget the failures of ``key`` (a correct password was given)."""
        self._failures.pop(key, None)

    @property
    def forget_after(self) -> float:
        """A key quiet for this long starts again with free failures."""
        return max(3600.0, 2 * self.max_delay)


# ------------------------------------------------------------------ client address

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> list[Network]:
    """IP addresses or networks (``10.0.0.7``, ``10.42.0.0/16``, ``::1``) as networks.

    Raises ValueError naming the entry that is neither.
    """
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError as error:
            raise ValueError(f"{entry!r} is not an IP address or network: {error}") from None
    return networks


def _ip(text: str):
    """An address as ipaddress sees it, IPv4-mapped IPv6 (``::ffff:1.2.3.4``, how a
    dual-stack proxy writes an IPv4 client) as IPv4; None if it is not an address."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _in(address, networks: Iterable[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def forwarded_client(peer: str, forwarded_for: str | None, skip: Iterable[Network]) -> str:
    """The client address behind a trusted proxy that connected from ``peer``.

    The proxy (configurable-http-proxy, like any proxy with ``xfwd``) *appends* the
    address it received the request from to ``X-Forwarded-For``; everything left of
    that was written by someone else, the client included. So the rightmost entry is
    the one to believe, and further entries to the left only while the entry just
    read is itself a proxy the operator trusts (``skip``, JupyterHub's
    ``trusted_downstream_ips``: e.g. a TLS terminator in front of the hub's proxy).
    ``X-Real-Ip`` is not read: the hub's proxy passes a client's own on unchanged.
    """
    skip = list(skip)
    entries = [e.strip() for e in (forwarded_for or "").split(",") if e.strip()]
    chosen = peer
    for entry in reversed(entries):
        address = _ip(entry)
        if address is None:
            break  # garbage in the header: believe what was read before it
        chosen = str(address)
        if not _in(address, skip):
            break
    return chosen


def _proc_net_address(field: str) -> tuple[str, int]:
    """(address, port) of a ``/proc/net/tcp[6]`` address field (``0100007F:1F90``).

    The kernel prints each 32-bit word of the address as a host-order number.
    """
    hex_address, hex_port = field.split(":")
    raw = b"".join(
        struct.pack("=I", int(hex_address[i : i + 8], 16)) for i in range(0, len(hex_address), 8)
    )
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return str(_ip(socket.inet_ntop(family, raw))), int(hex_port, 16)


def tcp_peer_uid(peer: tuple[str, int], local: tuple[str, int], proc: str = "/proc/net") -> int | None:
    """The uid owning the other end of a loopback TCP connection, or None if unknown.

    ``peer`` and ``local`` are the two ends as this process sees them. The peer's
    socket is the one whose local end is ``peer`` and whose remote end is ``local``
    (Linux only: read from ``/proc/net/tcp`` and ``tcp6``).
    """
    want_local = (str(_ip(peer[0])), int(peer[1]))
    want_remote = (str(_ip(local[0])), int(local[1]))
    for name in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc, name)) as table:
                next(table, None)  # header
                for line in table:
                    fields = line.split()
                    if len(fields) < 8:
                        continue
                    try:
                        if (
                            _proc_net_address(fields[1]) == want_local
                            and _proc_net_address(fields[2]) == want_remote
                        ):
                            return int(fields[7])
                    except (ValueError, OSError):
                        continue
        except OSError:
            continue
    return None


def _direct_peer(request) -> tuple[str | None, object]:
    """(the address of the connection's other end, the socket) of a tornado request.

    tornado's ``request.remote_ip`` is *not* it: with ``xheaders`` (JupyterHub
    always turns it on) tornado replaces it with ``X-Real-Ip`` or ``X-Forwarded-For``
    from whoever connected. The connection's own address is kept in its context.
    """
    connection = getattr(request, "connection", None)
    context = getattr(connection, "context", None)
    stream = getattr(connection, "stream", None)
    sock = getattr(stream, "socket", None)
    address = getattr(context, "address", None)
    if isinstance(address, tuple) and address:
        return str(address[0]), sock
    if context is not None:
        return None, sock  # a unix socket: no address
    # Not a tornado connection (tests' stand-ins): what the request says it came from.
    return getattr(request, "remote_ip", None), None


def _is_own_process(peer_ip, sock) -> bool:
    """Whether the other end of ``sock`` (loopback or a unix socket) runs as this
    process's uid: the hub's own proxy, which the hub started. On a shared machine
    every local user's process also connects from loopback; only the uid tells the
    proxy apart."""
    if sock is None:
        return False
    try:
        if sock.family == socket.AF_UNIX:
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            uid = struct.unpack("3i", creds)[1]
        else:
            peer, local = sock.getpeername(), sock.getsockname()
            uid = tcp_peer_uid((peer_ip, peer[1]), (local[0], local[1]))
    except (OSError, AttributeError, ValueError):
        return False
    return uid is not None and uid == os.geteuid()


_LOOPBACK = parse_networks(["127.0.0.0/8", "::1/128"])


def client_address(
    request,
    trusted_proxies: Iterable[Network] = (),
    skip: Iterable[Network] = (),
) -> str:
    """The address of the client of ``request``, as the hub's proxy saw it.

    ``X-Forwarded-For`` is believed only when the direct peer is a trusted proxy:
    a peer in ``trusted_proxies``, or a loopback (or unix-socket) peer running as
    the hub's own uid (the configurable-http-proxy the hub started). Any other
    peer is the client itself, whatever headers it sends.
    """
    peer, sock = _direct_peer(request)
    peer_ip = _ip(peer) if peer else None
    if peer_ip is not None and _in(peer_ip, trusted_proxies):
        trusted = True
    elif peer_ip is None or _in(peer_ip, _LOOPBACK):
        trusted = _is_own_process(peer, sock)
    else:
        trusted = False
    direct = str(peer_ip) if peer_ip is not None else "unix"
    if not trusted:
        return direct
    headers = getattr(request, "headers", None) or {}
    forwarded = headers.get("X-Forwarded-For") if hasattr(headers, "get") else None
    return forwarded_client(direct, forwarded, skip)
