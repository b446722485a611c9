"""The MLflow UI's and TensorBoard's HTML pages are served edited, everything else as it is."""

from enertef_hub.notebook.html_pages import serve_edited_html


def _app(content_type: str, body: bytes):
    def app(environ, start_response):
        assert environ["HTTP_ACCEPT_ENCODING"] == "identity"  # asked uncompressed, to edit it
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                  ("ETag", '"abc"')])
        return [body]
    return app


def _serve(app):
    seen = {}

    def start_response(status, headers):
        seen.update(status=status, headers=dict(headers))

    body = b"".join(serve_edited_html(app, {"PATH_INFO": "/"}, start_response, lambda b: b.upper()))
    return seen, body


def test_an_html_page_is_edited_with_its_new_length_and_no_etag():
    seen, body = _serve(_app("text/html; charset=utf-8", b"<p>hi</p>"))
    assert body == b"<P>HI</P>"
    assert seen["status"] == "200 OK"
    assert seen["headers"]["Content-Length"] == str(len(body)) and "ETag" not in seen["headers"]


def test_other_content_is_passed_as_it_is():
    seen, body = _serve(_app("application/json", b'{"a": 1}'))
    assert body == b'{"a": 1}' and seen["headers"]["ETag"] == '"abc"'
