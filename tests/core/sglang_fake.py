"""FakeSGLangServer: a small local HTTP server that speaks SGLang's native API, for the openai
engine's ``sglang`` flavour. SGLang itself cannot run here (CUDA-only kernels), so this fake
follows SGLang's documented request/response shapes (python/sglang/srt/managers/io_struct.py:
GenerateReqInput, UpdateWeightFromDiskReqInput, LoadLoRAAdapterReqInput) and nothing more.

Completions are deterministic functions of (prompt, sample index, loaded weights), so a sync
visibly changes them. ``restart()`` forgets loaded adapters and weights like a restarted server.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class FakeSGLangServer:
    """A fake of SGLang's HTTP server (``/generate``, weight and LoRA endpoints) on 127.0.0.1."""

    def __init__(self, base_model: str = "tiny-base") -> None:
        self.base_model = base_model
        self.adapters: dict[str, str] = {}  # lora_name -> lora_path
        self.weights = base_model  # model_path of the loaded weights
        self.weight_version = "default"
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_next = 0  # answer this many requests with 503 first (retry tests)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def restart(self) -> None:
        self.adapters.clear()
        self.weights, self.weight_version = self.base_model, "default"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- SGLang behaviour --------------------------------------------------------------------
    def generate(self, body: dict[str, Any]) -> tuple[int, Any]:
        rows = body["input_ids"]
        loras = body.get("lora_path") or [None] * len(rows)
        loras = loras if isinstance(loras, list) else [loras] * len(rows)
        missing = sorted({name for name in loras if name and name not in self.adapters})
        if missing:
            return 400, {"error": {"message": f"The following requested LoRA adapters are not loaded: {missing}"}}
        sp = body["sampling_params"]
        out = []
        for j, (ids, lora) in enumerate(zip(rows, loras)):
            salt = len(self.adapters.get(lora or "", self.weights)) + sp.get("sampling_seed", 0) + j
            toks = [4 + (sum(ids) + salt + 7 * k) % 90 for k in range(sp["max_new_tokens"])]
            triples = [[-0.5 - 0.01 * k, t, None] for k, t in enumerate(toks)]
            out.append({"text": "".join(chr(32 + t % 90) for t in toks), "output_ids": toks,
                        "meta_info": {"output_token_logprobs": triples if body.get("return_logprob") else None,
                                      "finish_reason": {"type": "length", "length": len(toks)},
                                      "weight_version": self.weight_version}})
        return 200, out

    def route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        self.calls.append((path, body))
        if method == "GET" and path == "/get_model_info":
            return 200, {"model_path": self.weights, "is_generation": True, "weight_version": self.weight_version}
        if method == "GET" and path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": self.base_model, "root": self.base_model}]}
        if path == "/generate":
            return self.generate(body)
        if path == "/load_lora_adapter":
            if not (Path(body["lora_path"]) / "adapter_config.json").is_file():
                return 200, {"success": False, "message": f"no adapter at {body['lora_path']}"}
            self.adapters[body["lora_name"]] = body["lora_path"]
            return 200, {"success": True, "loaded_adapters": dict(self.adapters)}
        if path == "/unload_lora_adapter":
            self.adapters.pop(body["lora_name"], None)
            return 200, {"success": True, "loaded_adapters": dict(self.adapters)}
        if path == "/update_weights_from_disk":
            if not (Path(body["model_path"]) / "config.json").is_file():
                return 200, {"success": False, "message": f"no model at {body['model_path']}"}
            self.weights = body["model_path"]
            self.weight_version = body.get("weight_version") or self.weight_version
            return 200, {"success": True, "message": "Succeeded to update model weights.", "num_paused_requests": 0}
        return 404, {"detail": "Not Found"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}") if n else {}
                if fake.fail_next > 0:
                    fake.fail_next -= 1
                    code, data = 503, {"error": {"message": "overloaded"}}
                else:
                    code, data = fake.route(method, self.path, body)
                raw = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

        return Handler
