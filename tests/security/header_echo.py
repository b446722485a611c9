"""A web server that tells what it was sent: the stand-in for any process behind the proxy.

``python header_echo.py PORT [RECORD]``: every HTTP request on 127.0.0.1:PORT is
answered with JSON ``{"method", "uri", "headers"}``; a websocket at any path ending in
``/ws`` sends the same for its handshake as its first message. With RECORD, each of
those is also appended to that file as a line of JSON, so a test can see every request
that reached the process, answered or not.
"""

from __future__ import annotations

import asyncio
import json
import sys

from tornado import web, websocket


def describe(request, record: str | None) -> str:
    seen = json.dumps({"method": request.method, "uri": request.uri, "headers": dict(request.headers.get_all())})
    if record:
        with open(record, "a") as out:
            out.write(seen + "\n")
    return seen


def make_app(record: str | None) -> web.Application:
    class Echo(web.RequestHandler):
        def check_xsrf_cookie(self):
            pass

        def _echo(self, *args):
            self.set_header("Content-Type", "application/json")
            self.finish(describe(self.request, record))

        get = post = put = delete = patch = head = options = _echo

    class EchoSocket(websocket.WebSocketHandler):
        def check_origin(self, origin):
            return True

        def open(self, *args):
            self.write_message(describe(self.request, record))

    return web.Application([(r".*/ws", EchoSocket), (r".*", Echo)])


async def main(port: int, record: str | None):
    make_app(record).listen(port, address="127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
