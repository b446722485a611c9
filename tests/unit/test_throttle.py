"""LoginThrottle: growing delays per key, a cap, forgetting, bounded memory; the
client address behind the hub's proxy (real sockets, a real tornado server as
JupyterHub runs it, and connections from another uid)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from enertef_hub.throttle import (
    LoginThrottle,
    client_address,
    forwarded_client,
    parse_networks,
    tcp_peer_uid,
)
from tests.harness.services import require_root


@pytest.fixture
def clock():
    return [0.0]


@pytest.fixture
def throttle(clock):
    return LoginThrottle(free_failures=2, base_delay=1.0, max_delay=8.0, clock=lambda: clock[0])


@pytest.mark.parametrize(
    "count, delay", [(1, 0), (2, 0), (3, 1), (4, 2), (5, 4), (6, 8), (7, 8), (50, 8)]
)
def test_delays_grow_and_are_capped(throttle, count, delay):
    assert throttle.delay_after(count) == delay


def test_a_key_waits_after_its_free_failures(throttle, clock):
    key = ("alice", "203.0.113.9")
    assert throttle.failed(key) == 0 and throttle.failed(key) == 0
    assert throttle.wait_seconds(key) == 0
    assert throttle.failed(key) == 1
    assert throttle.wait_seconds(key) == 1
    assert throttle.wait_seconds(("alice", "198.51.100.7")) == 0  # another address
    clock[0] += 1
    assert throttle.wait_seconds(key) == 0
    assert throttle.failed(key) == 2


def test_success_and_a_quiet_hour_reset(throttle, clock):
    key = ("alice", "203.0.113.9")
    for _ in range(4):
        throttle.failed(key)
    throttle.succeeded(key)
    assert throttle.failed(key) == 0
    for _ in range(4):
        throttle.failed(key)
    clock[0] += throttle.forget_after + 1
    assert throttle.failed(key) == 0


def test_memory_is_bounded(clock):
    throttle = LoginThrottle(max_entries=10, clock=lambda: clock[0])
    for i in range(100):
        throttle.failed((f"name{i}", "203.0.113.9"))
    assert len(throttle._failures) == 10


# ------------------------------------------------------------------ client address

LOOPBACK_PROXY = ["127.0.0.0/8", "::1"]


@pytest.fixture
def root():
    """Connections from another uid need root (CI runs as root)."""
    require_root("connecting as another uid needs root")


@pytest.mark.parametrize(
    "forwarded, skip, expected",
    [
        (None, [], "10.0.0.2"),  # no header: the proxy's peer itself
        ("203.0.113.9", [], "203.0.113.9"),
        # A client's own X-Forwarded-For is left of what the proxy appended.
        ("198.51.100.66,203.0.113.9", [], "203.0.113.9"),
        ("198.51.100.66, 127.0.0.1", [], "127.0.0.1"),
        # ... and believed only through proxies the operator trusts.
        ("198.51.100.66, 127.0.0.1", LOOPBACK_PROXY, "198.51.100.66"),
        ("127.0.0.2, 127.0.0.1", LOOPBACK_PROXY, "127.0.0.2"),
        ("::ffff:203.0.113.9", [], "203.0.113.9"),  # a dual-stack proxy's IPv4 client
        ("not-an-ip, 203.0.113.9", LOOPBACK_PROXY, "203.0.113.9"),
        ("not-an-ip", [], "10.0.0.2"),
    ],
)
def test_forwarded_client_believes_only_what_trusted_proxies_wrote(forwarded, skip, expected):
    assert forwarded_client("10.0.0.2", forwarded, parse_networks(skip)) == expected


def test_bad_networks_are_named():
    with pytest.raises(ValueError, match="'proxy.example'"):
        parse_networks(["10.0.0.0/8", "proxy.example"])


def _connect_as(uid: int, port: int, source: str = "127.0.0.1") -> subprocess.Popen:
    """A process running as ``uid`` holding a TCP connection to 127.0.0.1:port open."""
    code = (
        "import socket, sys, time; s = socket.socket();"
        f"s.bind(({source!r}, 0)); s.connect(('127.0.0.1', {port}));"
        "print('up', flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "up"
    return proc


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def test_the_uid_of_a_loopback_peer_is_read_from_proc(root, listener):
    port = listener.getsockname()[1]
    for uid in (65534, os.geteuid()):
        proc = _connect_as(uid, port)
        try:
            conn, peer = listener.accept()
            with conn:
                assert tcp_peer_uid(conn.getpeername(), conn.getsockname()) == uid
        finally:
            proc.communicate("")
    assert tcp_peer_uid(("127.0.0.1", 1), ("127.0.0.1", port)) is None


class _Echo(tornado.web.RequestHandler):
    def initialize(self, trusted):
        self.trusted = trusted

    def get(self):
        self.write(client_address(self.request, parse_networks(self.trusted), parse_networks([])))


@pytest.fixture
def hub_like_server():
    """A tornado server set up as JupyterHub sets up its own (``xheaders=True``)."""
    trusted: list[str] = []
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder = {}

    def run():
        asyncio.set_event_loop(loop)
        app = tornado.web.Application([("/", _Echo, {"trusted": trusted})])
        server = tornado.httpserver.HTTPServer(app, xheaders=True)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server.add_sockets(sockets)
        holder["port"] = sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    yield holder["port"], trusted
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _ask(port: int, headers: dict, uid: int | None = None, source: str = "127.0.0.1") -> str:
    """GET / with ``headers``, from a process running as ``uid`` (default: this one)."""
    code = (
        "import http.client, json, sys;"
        f"c = http.client.HTTPConnection('127.0.0.1', {port}, timeout=10,"
        f" source_address=({source!r}, 0));"
        f"c.request('GET', '/', headers=json.loads(sys.argv[1]));"
        "print(c.getresponse().read().decode())"
    )
    prefix = [] if uid is None else ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    out = subprocess.run(
        [*prefix, sys.executable, "-c", code, json.dumps(headers)],
        capture_output=True, text=True, timeout=30, check=True,
    )
    return out.stdout.strip()


FORGED = {"X-Forwarded-For": "198.51.100.66", "X-Real-Ip": "198.51.100.77"}


def test_a_local_users_forged_headers_are_not_believed(root, hub_like_server):
    port, _trusted = hub_like_server
    # tornado (as JupyterHub runs it) would answer 198.51.100.77 here: X-Real-Ip from
    # anyone. A local user's process reaching the hub directly is counted by its address.
    assert _ask(port, FORGED, uid=65534, source="127.0.0.9") == "127.0.0.9"


def test_the_hubs_own_proxy_is_believed_for_its_appended_entry(hub_like_server):
    port, _trusted = hub_like_server
    # This process's uid is the hub's: like the configurable-http-proxy the hub starts.
    assert _ask(port, {"X-Forwarded-For": "198.51.100.66,203.0.113.9"}) == "203.0.113.9"
    assert _ask(port, FORGED) == "198.51.100.66"
    assert _ask(port, {"X-Real-Ip": "198.51.100.77"}) == "127.0.0.1"


def test_configured_proxies_are_believed_whatever_their_uid(root, hub_like_server):
    port, trusted = hub_like_server
    trusted.append("127.0.0.9/32")
    assert _ask(port, FORGED, uid=65534, source="127.0.0.9") == "198.51.100.66"
    assert _ask(port, FORGED, uid=65534, source="127.0.0.10") == "127.0.0.10"
