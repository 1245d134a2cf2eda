"""The webhook client on the wire: kept-alive connections that servers close, answers it must not
follow, logins and proxies from the URL and the environment, and a server that is not there."""

from __future__ import annotations

import base64
import socket
import threading

import pytest

from leadflow.delivery.webhook import Poster, PostError
from tests.support.temporal_harness import free_port
from tests.support.wire import Receiver


def test_a_post_carries_path_query_body_and_headers_and_reads_the_answer() -> None:
    with Receiver() as crm:
        poster = Poster(5)
        try:
            answers = [poster.post(f"{crm.url}/hooks?x={n}", b'{"n":%d}' % n,
                                   {"Content-Type": "application/json", "Idempotency-Key": f"k{n}"})
                       for n in range(3)]
        finally:
            poster.close()
    assert [(a.status_code, a.is_success, a.text) for a in answers] == [(200, True, '{"ok": true}')] * 3
    assert [(r.path, r.body, r.headers["Idempotency-Key"]) for r in crm.requests] == [
        (f"/hooks?x={n}", b'{"n":%d}' % n, f"k{n}") for n in range(3)]


def test_an_idle_connection_closed_by_the_server_is_opened_again() -> None:
    """A raw server that answers one request per connection and hangs up without saying so."""
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    served: list[bytes] = []

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                served.append(data)
                conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    poster = Poster(5)
    try:
        assert poster.post(f"http://127.0.0.1:{port}/a", b"", {}).status_code == 201
        thread.join(0.5)  # the server has hung up by now
        assert poster.post(f"http://127.0.0.1:{port}/b", b"", {}).status_code == 201
    finally:
        poster.close()
        listener.close()
    assert [r.split(b" ")[1] for r in served] == [b"/a", b"/b"]


def test_redirects_are_answers_logins_come_from_the_url_and_no_server_is_an_error() -> None:
    with Receiver(answers={"/moved": 302, "/refused": 422}) as crm:
        host = crm.url.removeprefix("http://")
        poster = Poster(5)
        try:
            moved = poster.post(f"http://ops:s%40cret@{host}/moved", b"{}", {})
            refused = poster.post(f"{crm.url}/refused", b"{}", {})
        finally:
            poster.close()
    assert moved.status_code == 302 and not moved.is_success  # looked at, not followed
    assert refused.status_code == 422 and "this CRM says no" in refused.text
    login = crm.requests[0].headers["Authorization"]
    assert base64.b64decode(login.removeprefix("Basic ")) == b"ops:s@cret"
    with pytest.raises(PostError, match="ConnectionRefused"):
        Poster(2).post(f"http://127.0.0.1:{free_port()}/hooks", b"{}", {})
    with pytest.raises(PostError, match="not an http"):
        Poster(2).post("ftp://crm.example/hooks", b"{}", {})


def test_http_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with Receiver() as proxy:
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        poster = Poster(5)
        try:
            answer = poster.post("http://crm.example:8080/hooks", b"{}", {})
        finally:
            poster.close()
    assert answer.status_code == 200
    assert proxy.requests[0].path == "http://crm.example:8080/hooks"  # the absolute form, to a proxy
