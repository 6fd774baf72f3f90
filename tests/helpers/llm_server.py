"""A real HTTP server on 127.0.0.1 speaking the chat-completions protocol, for label tests and benchmarks.

`respond(request)` decides each answer; the default reads the quoted contexts and names them by
their most common focus token (the word between « and »). Every request is recorded.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ChatRequest:
    """One request as the server saw it."""

    node_id: str
    body: dict[str, Any]
    at: float

    @property
    def prompt(self) -> str:
        return self.body["messages"][-1]["content"]


@dataclass
class Reply:
    """What to send back: an HTTP status and either a chat completion's content or a raw body."""

    content: str | None = None
    status: int = 200
    raw: bytes | None = None
    delay_s: float = 0.0


def focus_word(prompt: str) -> str:
    """The most common marked focus token of the quoted contexts (ties: first seen)."""
    words = re.findall(r"«([^»]*)»", prompt)
    return Counter(w.strip().lower() for w in words).most_common(1)[0][0] if words else "nothing"


def good_content(prompt: str) -> str:
    word = focus_word(prompt)
    return json.dumps(
        {
            "label": f"{word} contexts",
            "explanation": f"The feature fires on the word {word}.",
            "visual_prompt": f"a still life photograph of {word} on a wooden table",
        }
    )


def good(request: ChatRequest) -> Reply:
    return Reply(good_content(request.prompt))


@dataclass
class ChatServer:
    """The running server: its URL, the requests it got, and the answer policy (swappable)."""

    respond: Callable[[ChatRequest], Reply] = good
    requests: list[ChatRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""
    httpd: ThreadingHTTPServer | None = None

    def record(self, request: ChatRequest) -> int:
        with self.lock:
            self.requests.append(request)
            return len(self.requests)

    def nodes_asked(self) -> list[str]:
        with self.lock:
            return [r.node_id for r in self.requests]

    def stop(self) -> None:
        """Stop listening: later connections are refused."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


def _handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            request = ChatRequest(self.headers.get("X-Vista-Node") or "", body, time.monotonic())
            server.record(request)
            if self.path != "/v1/chat/completions":
                self._send(404, b'{"error": "not found"}')
                return
            reply = server.respond(request)
            if reply.delay_s:
                time.sleep(reply.delay_s)
            if reply.raw is not None:
                payload = reply.raw
            elif reply.status != 200:
                payload = json.dumps({"error": {"message": "try later"}}).encode()
            else:
                content = reply.content or ""
                payload = json.dumps(
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "model": body.get("model"),
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                        ],
                        "usage": {"prompt_tokens": len(request.prompt) // 4, "completion_tokens": len(content) // 4},
                    }
                ).encode()
            self._send(reply.status, payload)

        def _send(self, status: int, payload: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left

    return Handler


@contextmanager
def chat_server(respond: Callable[[ChatRequest], Reply] = good) -> Iterator[ChatServer]:
    """A ChatServer listening on a free loopback port for the duration of the block."""
    server = ChatServer(respond=respond)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    server.httpd = httpd
    server.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=5)


def answering(status: int) -> Callable[[ChatRequest], Reply]:
    """A server policy: every request gets HTTP `status` (an OpenAI-style error body)."""

    def respond(request: ChatRequest) -> Reply:
        """The same status, whoever asks."""
        return Reply(status=status)

    return respond


def closed_port_url() -> str:
    """An API root on a loopback port that nothing listens on (bound, then closed): connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
