"""A FAKE of a remote LLM judge service: a real local HTTP server speaking the OpenAI
``/v1/chat/completions`` protocol with deterministic verdicts (no LLM can run here).

Verdict rule: CORRECT when the response's last line ends with the reference answer. Behaviour
switches, by the response's content: ``slow`` sleeps 3 s, ``garbled`` replies without a verdict;
by server state: ``fail_next`` requests answer 503 first. Model ``"missing"`` gets a 404.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeRemoteJudge:
    def __init__(self) -> None:
        self.requests = 0
        self.fail_next = 0
        self.lock = threading.Lock()
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with judge.lock:
                    judge.requests += 1
                    fail = judge.fail_next > 0
                    judge.fail_next -= 1 if fail else 0
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": f"no route {self.path}"})
                if body.get("model") == "missing":
                    return self._send(404, {"error": "model 'missing' not found"})
                if fail:
                    return self._send(503, {"error": "overloaded"})
                prompt = body["messages"][-1]["content"]
                reference = re.search(r"Reference answer: (.*)\n", prompt).group(1).strip()
                response = prompt.split("Student's response (end):\n", 1)[1].split("\n\nIs the student", 1)[0]
                if "slow" in response:
                    time.sleep(3)
                if "garbled" in response:
                    text = "I am not sure."
                else:
                    text = "CORRECT" if response.strip().endswith(reference) else "INCORRECT"
                self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})

            def _send(self, code: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeRemoteJudge:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
