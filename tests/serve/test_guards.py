"""Connection guards and overload: slow or half-open clients are timed out, connections past the limit and requests
past the queue bound get a 503 with Retry-After, and the server keeps serving everyone else (a real uvicorn)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from live_server import live_server

from vlfuse.api import load_run
from vlfuse.serve import create_app
from vlfuse.serve.connections import EVICT_AFTER_S
from vlfuse.serve.limits import ServeLimits

LIMITS = ServeLimits(max_connections=4, header_timeout_s=0.5, body_timeout_s=0.5, max_queue=2)


@pytest.fixture(scope="module")
def server(tiny_run_dir):
    app = create_app(load_run(tiny_run_dir), limits=LIMITS)
    with live_server(app) as url:
        yield url, app


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("sent, what", [
    (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Ty", "headers"),  # headers that never end
    (b"", "headers"),  # a connection that sends nothing
    (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
     b"Content-Length: 1000\r\n\r\n--xyz\r\n", "body"),  # a body that stops
], ids=["slow headers", "silent", "slow body"])  # fmt: skip
def test_a_slow_client_is_timed_out_while_others_are_served(server, sent, what):
    url, _ = server
    slow = _connect(url)
    slow.sendall(sent)
    started = time.monotonic()
    assert httpx.get(f"{url}/healthz").status_code == 200  # served meanwhile
    answer = _read_all(slow)  # the server closes the connection
    waited = time.monotonic() - started
    slow.close()
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer and what.encode() in answer, answer
    assert 0.3 < waited < 3.0


def test_connections_past_the_limit_get_a_503_and_room_comes_back(server):
    url, _ = server
    time.sleep(0.2)  # connections of earlier tests are gone
    held = [_connect(url) for _ in range(LIMITS.max_connections)]
    try:
        time.sleep(0.1)
        refused = httpx.get(f"{url}/healthz")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "too_many_connections"
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert httpx.get(f"{url}/healthz").status_code == 200


def test_at_the_limit_a_new_client_takes_the_place_of_one_stuck_in_its_headers(tiny_run_dir):
    limits = ServeLimits(max_connections=3, header_timeout_s=30.0)
    with live_server(create_app(load_run(tiny_run_dir), limits=limits)) as url:
        stuck = [_connect(url) for _ in range(3)]
        for sock in stuck:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers that never end
        time.sleep(EVICT_AFTER_S + 0.3)
        assert httpx.get(f"{url}/healthz").status_code == 200  # admitted: the longest-stuck one gave way
        answers = []
        for sock in stuck:
            sock.settimeout(0.5)
            try:
                answers.append(sock.recv(4096))
            except TimeoutError:
                answers.append(b"")
            sock.close()
        assert sum(a.startswith(b"HTTP/1.1 408") for a in answers) == 1, answers


def test_a_full_queue_gets_a_503_with_retry_after_and_admits_again_later(server):
    url, app = server
    batcher = app.state.context.batchers["predict"]
    with batcher.reserve(), batcher.reserve():  # two requests already wait: the queue (max_queue=2) is full
        refused = httpx.post(f"{url}/v1/predict", data={"text": "what color is the shape?"})
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "overloaded"
    admitted = httpx.post(f"{url}/v1/predict", data={"text": "what color is the shape?"})
    assert admitted.status_code == 200, admitted.text
    assert httpx.get(f"{url}/v1/info").json()["batching"]["predict"]["refused_queue_full"] >= 1


def test_kept_alive_connections_serve_request_after_request(server):
    url, _ = server
    with httpx.Client(base_url=url) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(0.3)  # idle between requests, under the keep-alive limit; each request gets fresh timers
