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


def _unix_socket_server_class(path: str):
    from tensorboard import program
    from werkzeug import serving

    class UnixSocketServer(program.TensorBoardServer):
        """TensorBoard's threaded Werkzeug server, bound to a unix socket."""

        def __init__(self, wsgi_app, flags):
            self._path = path
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
