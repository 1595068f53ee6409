"""A real TCP server on 127.0.0.1 that speaks just enough HTTP to misbehave on purpose.

It answers the OpenAI-style endpoints the ``openai`` engine and the judge use. Requests to the
*target* path (``/v1/completions`` for the engine, ``/v1/chat/completions`` for the judge) get
the selected misbehaviour; with ``marked=True`` only those whose body contains ``"BAD"`` do, so
a judge can answer once before things go wrong and a test can mix good and bad requests.
Everything else gets a healthy reply.

A misbehaviour is a function ``(server, conn, attempt) -> None`` that writes raw bytes to the
socket (or nothing, or a reset); ``attempt`` counts the bad requests seen so far (from 1), so a
fault can be transient ("reset twice, then answer").
"""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

Behaviour = Callable[["MisbehavingServer", socket.socket, int], None]


def http_reply(status: int, body: bytes, content_type: str = "application/json", extra: str = "",
               length: int | None = None) -> bytes:
    head = (f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: "
            f"{len(body) if length is None else length}\r\nConnection: close\r\n{extra}\r\n")
    return head.encode() + body


def json_reply(payload: Any, status: int = 200, extra: str = "") -> bytes:
    return http_reply(status, json.dumps(payload).encode(), extra=extra)


def completion(token_ids: Any = (5, 6, 7), logprobs: Any = (-0.5, -0.25, -0.125), n: int = 2) -> dict[str, Any]:
    """A healthy ``/v1/completions`` reply with ``n`` choices (what vLLM sends with return_token_ids)."""
    return {"choices": [{"index": i, "text": "abc", "finish_reason": "length",
                         "token_ids": list(token_ids) if isinstance(token_ids, tuple) else token_ids,
                         "logprobs": {"token_logprobs": list(logprobs) if isinstance(logprobs, tuple) else logprobs}}
                        for i in range(n)]}


def chat(content: Any = "CORRECT") -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


def reset(conn: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0): the client sees 'connection reset by peer'."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class MisbehavingServer:
    def __init__(self, target: str, behaviour: Behaviour, n: int = 2, marked: bool = True) -> None:
        self.target, self.behaviour, self.n, self.marked = target, behaviour, n, marked
        self.bad_requests = 0
        self.requests = 0
        self.basic_auth: list[str] = []  # Authorization headers received
        self.lock = threading.Lock()
        self.stop = threading.Event()
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                server.serve_one(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.tcp.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.tcp.server_address[1]}"
        self.thread = threading.Thread(target=self.tcp.serve_forever, daemon=True)

    def __enter__(self) -> MisbehavingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.tcp.shutdown()
        self.tcp.server_close()

    def serve_one(self, conn: socket.socket) -> None:
        path, body = self._read_request(conn)
        if path is None:
            return
        with self.lock:
            self.requests += 1
            bad = path == self.target and (not self.marked or "BAD" in body)
            self.bad_requests += bad
            attempt = self.bad_requests
        try:
            if bad:
                self.behaviour(self, conn, attempt)
            else:
                conn.sendall(self.healthy(path, body))
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def healthy(self, path: str, body: str) -> bytes:
        if path == "/v1/models":
            return json_reply({"data": [{"id": "tiny", "object": "model"}]})
        if path == "/v1/completions":
            return json_reply(completion(n=self.n))
        if path == "/v1/chat/completions":
            return json_reply(chat("INCORRECT" if "wrong" in body else "CORRECT"))
        return json_reply({"error": {"message": f"no route {path}"}}, status=404)

    def _read_request(self, conn: socket.socket) -> tuple[str | None, str]:
        data = b""
        conn.settimeout(10)
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return None, ""
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = next((int(x.split(":", 1)[1]) for x in lines[1:] if x.lower().startswith("content-length:")), 0)
            while len(rest) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                rest += chunk
        except OSError:
            return None, ""
        auth = [x.split(":", 1)[1].strip() for x in lines[1:] if x.lower().startswith("authorization:")]
        self.basic_auth.extend(auth)
        return lines[0].split(" ")[1], rest.decode("utf-8", errors="replace")


# -- the misbehaviours: transport and framing (both clients) ------------------------------------

def send(raw: bytes) -> Behaviour:
    return lambda server, conn, attempt: conn.sendall(raw)


def transient(times: int, fault: Behaviour) -> Behaviour:
    """``fault`` for the first ``times`` bad requests, then a healthy reply."""
    def behave(server: MisbehavingServer, conn: socket.socket, attempt: int) -> None:
        if attempt <= times:
            return fault(server, conn, attempt)
        healthy = completion(n=server.n) if server.target == "/v1/completions" else chat("CORRECT")
        conn.sendall(json_reply(healthy))
    return behave


def hang(seconds: float) -> Behaviour:
    """Accept, read the request, then say nothing for ``seconds`` (or until the server stops)."""
    return lambda server, conn, attempt: server.stop.wait(seconds)


def trickle(server: MisbehavingServer, conn: socket.socket, attempt: int) -> None:
    """Headers at once, then one body byte every 0.5 s (each read succeeds, the reply never ends)."""
    conn.sendall(http_reply(200, b"", length=10_000))
    for _ in range(40):
        if server.stop.wait(0.5):
            return
        conn.sendall(b" ")


TRANSPORT: dict[str, Behaviour] = {
    "malformed-json": send(http_reply(200, b'{"choices": [{"index": 0, "tex')),
    "non-utf8-body": send(http_reply(200, b'{"choices": "\xff\xfe\xfa"}')),
    "truncated-body": send(http_reply(200, b'{"choices": [', length=5000)),
    "non-http-reply": send(b"SSH-2.0-OpenSSH_9.6\r\n"),
    "close-without-reply": send(b""),
    "connection-reset": lambda server, conn, attempt: reset(conn),
    "header-line-too-long": send(b"HTTP/1.1 200 OK\r\nX-Junk: " + b"a" * 70_000 + b"\r\n\r\n{}"),
    "broken-chunked-encoding": send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n"),
    "html-error-page": send(http_reply(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")),
    "http-500": send(json_reply({"error": {"message": "internal error"}}, status=500)),
    "http-502-plain-text": send(http_reply(502, b"bad gateway", "text/plain")),
    "http-503-retry-after": send(json_reply({"error": "overloaded"}, status=503, extra="Retry-After: 1\r\n")),
    "http-429-retry-after-beyond-budget": send(json_reply({"error": "slow down"}, status=429,
                                                          extra="Retry-After: 3600\r\n")),
    "no-reply-within-timeout": hang(30),
    "body-trickles-forever": trickle,
}

#: Transient faults: the request must succeed after the retries (nothing counted, nothing stopped).
TRANSIENT: dict[str, Behaviour] = {
    "reset-twice-then-answer": transient(2, lambda server, conn, attempt: reset(conn)),
    "http-429-with-retry-after-then-answer": transient(1, send(json_reply({"error": "rate"}, status=429,
                                                                          extra="Retry-After: 1\r\n"))),
    "http-503-then-answer": transient(2, send(json_reply({"error": "warming up"}, status=503))),
    "garbage-once-then-answer": transient(1, send(http_reply(200, b"\x00\x01garbage"))),
}
