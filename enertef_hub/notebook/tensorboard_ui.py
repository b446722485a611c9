"""TensorBoard on a unix socket, for jupyter-server-proxy.

TensorBoard itself only listens on TCP ports, and on a shared machine (the local
spawner) any account can connect to another user's ``127.0.0.1:PORT`` around the
hub's proxy and read their training logs. jupyter-server-proxy can talk to a unix
socket in a private folder instead; this module runs TensorBoard's own WSGI app,
built by TensorBoard's own ``program.TensorBoard`` from the usual flags, with a
server class that listens there. Run::

    python -m enertef_hub.notebook.tensorboard_ui --unix-socket PATH --logdir DIR --path_prefix /user/alice/tensorboard
"""

from __future__ import annotations

import sys

from .html_pages import serve_edited_html

#: How TensorBoard's index page asks for its fonts: from the site root, whatever
#: ``--path_prefix`` says, so behind the hub's proxy every font answers 404.
_FONT_URL = b"url(/font-roboto/"


def prefix_font_urls(html: bytes, prefix: str) -> bytes:
    """TensorBoard's index page with its font URLs under *prefix* (pure)."""
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    return html.replace(_FONT_URL, b"url(" + prefix.encode() + b"/font-roboto/")


def font_url_fix(wsgi_app, prefix: str):
    """WSGI middleware: serve TensorBoard's HTML pages with prefixed font URLs."""

    def app(environ, start_response):
        if not environ.get("PATH_INFO", "").endswith(("/", ".html")):
            return wsgi_app(environ, start_response)
        return serve_edited_html(wsgi_app, environ, start_response, lambda body: prefix_font_urls(body, prefix))

    return app


def _unix_socket_server_class(path: str):
    from tensorboard import program
    from werkzeug import serving

    class UnixSocketServer(program.TensorBoardServer):
        """TensorBoard's threaded Werkzeug server, bound to a unix socket."""

        def __init__(self, wsgi_app, flags):
            self._path = path
            wsgi_app = font_url_fix(wsgi_app, flags.path_prefix or "")
            self._server = serving.make_server(f"unix://{path}", 0, wsgi_app, threaded=True)

        def serve_forever(self):
            self._server.serve_forever()

        def get_url(self):
            return f"unix://{self._path}"

    return UnixSocketServer


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--unix-socket PATH`` plus any ``tensorboard`` flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--unix-socket" not in argv[:-1]:
        print("usage: python -m enertef_hub.notebook.tensorboard_ui --unix-socket PATH [tensorboard flags]", file=sys.stderr)
        return 2
    at = argv.index("--unix-socket")
    path = argv[at + 1]
    del argv[at : at + 2]

    from absl import app
    from tensorboard import default, main_lib, program
    from tensorboard.plugins import base_plugin

    class SocketTensorBoard(program.TensorBoard):
        def _register_info(self, server):
            # The info file announces a TCP port to the `%tensorboard` notebook magic;
            # there is none here, and the magic must not try to reuse this instance.
            pass

    main_lib.global_init()
    tensorboard = SocketTensorBoard(plugins=default.get_plugins(), server_class=_unix_socket_server_class(path))
    try:
        app.run(tensorboard.main, argv=[sys.argv[0], *argv], flags_parser=tensorboard.configure)
    except base_plugin.FlagsError as exc:
        print(f"TensorBoard: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
