"""Serving a WSGI app's HTML pages edited: one helper for the MLflow UI and TensorBoard."""

from __future__ import annotations


def serve_edited_html(wsgi_app, environ, start_response, edit):
    """Answer with ``wsgi_app``'s response; an HTML page goes through ``edit(body) -> body`` first.

    The app is asked for an uncompressed body, so the page can be edited; its length
    is set anew and its ETag dropped (it no longer names the body sent).
    """
    captured = {}

    def capture(status, headers, exc_info=None):
        captured.update(status=status, headers=headers)
        return lambda data: None

    body = b"".join(wsgi_app(dict(environ, HTTP_ACCEPT_ENCODING="identity"), capture))
    headers = captured["headers"]
    if any(k.lower() == "content-type" and v.startswith("text/html") for k, v in headers):
        body = edit(body)
        headers = [(k, v) for k, v in headers if k.lower() not in ("content-length", "etag")]
        headers.append(("Content-Length", str(len(body))))
    start_response(captured["status"], headers)
    return [body]
