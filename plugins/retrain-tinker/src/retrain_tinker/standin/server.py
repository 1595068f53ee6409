"""A local Tinker-compatible HTTP service: a stand-in for the real one, for tests and offline work.

It speaks the ``/api/v1/...`` protocol of the official ``tinker`` SDK (0.38) on one base model,
so the unmodified SDK (``ServiceClient(base_url=...)`` or ``TINKER_BASE_URL``) trains and samples
through it. Long operations follow Tinker's futures: the POST returns ``{"request_id"}`` at once,
one worker thread runs the operations in arrival order (the SDK sends a training client's
requests in ``seq_id`` order), and ``/api/v1/retrieve_future`` long-polls for the result
(``try_again`` after 20 s). Results the SDK reads as protobuf (samples, forward/backward outputs)
are protobuf; the rest is JSON.

What it implements is listed in ``ROUTES``; any other endpoint answers 404 with a line saying
the stand-in lacks it. It is not the real service: one process, one worker, CPU, LoRA on every
linear layer of the base model (not the unembedding), checkpoints in a local folder.
"""

from __future__ import annotations

import json
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from retrain_tinker.standin import wire
from retrain_tinker.standin.model import StandinModel, UserError, random_seed, read_model_meta

LONG_POLL_S = 20.0


@dataclass
class Future:
    event: threading.Event = field(default_factory=threading.Event)
    json: dict[str, Any] | None = None
    proto: bytes | None = None
    error: tuple[str, str] | None = None  # (message, category: "user" | "server")


@dataclass
class Sampler:
    model_id: str  # the model whose network runs the samples
    weights: dict[str, Any] | None  # LoRA snapshot; None = the base model
    model_path: str | None = None


class Service:
    """State and operations of the stand-in (thread-safe: model work runs on one worker thread)."""

    def __init__(self, base_model: str, state_dir: Path, *, lora_alpha: float = 32.0, api_key: str = "",
                 served_name: str = "", quota_steps: int = 0) -> None:
        self.base_model = base_model
        self.served_name = served_name or base_model
        self.state_dir = Path(state_dir)
        self.lora_alpha = lora_alpha
        self.api_key = api_key
        self.quota_steps = quota_steps  # > 0: optim_step answers 402 after this many (to exercise quota errors)
        self.optim_requests = 0
        self.sessions: dict[str, str] = {}  # session id -> "open", or the finish reason the SDK sent on close
        self.models: dict[str, StandinModel] = {}
        self.samplers: dict[str, Sampler] = {}
        self.futures: dict[str, Future] = {}
        self.lock = threading.Lock()
        self.work: queue.Queue[tuple[Future, Callable[[], Any]]] = queue.Queue()
        self.worker = threading.Thread(target=self._run, name="tinker-standin-worker", daemon=True)
        self.worker.start()

    # -- sessions --------------------------------------------------------------------------------------
    def create_session(self) -> dict[str, Any]:
        session_id = uuid.uuid4().hex[:12]
        with self.lock:
            self.sessions[session_id] = "open"
        return {"type": "create_session", "session_id": session_id}

    def heartbeat(self, session_id: str) -> tuple[int, dict[str, Any]]:
        """410 for a finished session: the SDK then stops its heartbeat loop, as with the real service."""
        if self.sessions.get(session_id, "open") != "open":
            return 410, {"detail": f"session {session_id} is finished"}
        return 200, {"type": "session_heartbeat"}

    def finish_session(self, session_id: str, reason: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if self.sessions.get(session_id, "open") == "open":  # the first reason wins, as the SDK documents
                self.sessions[session_id] = reason or "finished"
        return 200, {}

    # -- futures ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            fut, op = self.work.get()
            try:
                out = op()
                if isinstance(out, bytes):
                    fut.proto = out
                else:
                    fut.json = out
            except (UserError, wire.WireError) as e:
                fut.error = (str(e), "user")
            except Exception as e:  # noqa: BLE001 - reported to the client, the service keeps running
                fut.error = (f"{type(e).__name__}: {e}", "server")
            fut.event.set()

    def submit(self, op: Callable[[], Any], **extra: Any) -> dict[str, Any]:
        request_id = uuid.uuid4().hex
        fut = Future()
        with self.lock:
            self.futures[request_id] = fut
        self.work.put((fut, op))
        return {"request_id": request_id, **extra}

    def call(self, op: Callable[[], Any]) -> Any:
        """Run ``op`` on the worker (after what is queued) and wait: for endpoints answered inline."""
        fut = Future()
        self.work.put((fut, op))
        fut.event.wait()
        if fut.error is not None:
            raise UserError(fut.error[0])
        return fut.json

    def retrieve(self, request_id: str) -> tuple[int, Any]:
        fut = self.futures.get(request_id)
        if fut is None:
            return 404, {"detail": f"no future {request_id}"}
        if not fut.event.wait(LONG_POLL_S):
            return 200, {"type": "try_again", "request_id": request_id, "queue_state": "active"}
        if fut.error is not None:
            return 200, {"error": fut.error[0], "category": fut.error[1]}
        return 200, fut.proto if fut.proto is not None else fut.json

    # -- paths -----------------------------------------------------------------------------------------
    def _folder(self, model_id: str, kind: str, name: str) -> Path:
        return self.state_dir / "models" / model_id.replace(":", "_") / kind / name

    def _resolve(self, path: str) -> tuple[str, Path]:
        """``tinker://MODEL_ID/weights/NAME`` (or ``sampler_weights``) -> (model id, folder)."""
        if not path.startswith("tinker://"):
            raise UserError(f"{path!r} is not a tinker:// path")
        rest = path[len("tinker://"):]
        for kind in ("/weights/", "/sampler_weights/"):
            if kind in rest:
                model_id, name = rest.split(kind, 1)
                return model_id, self._folder(model_id, kind.strip("/"), name)
        raise UserError(f"{path!r}: expected tinker://MODEL_ID/weights/NAME")

    def model(self, model_id: str) -> StandinModel:
        m = self.models.get(model_id)
        if m is None:
            raise UserError(f"no model {model_id} on this stand-in")
        return m

    # -- operations (run on the worker) ---------------------------------------------------------------
    def create_model(self, req: dict[str, Any]) -> dict[str, Any]:
        if req["base_model"] != self.served_name:
            raise UserError(f"base model {req['base_model']!r} is not served here (this stand-in serves "
                            f"{self.served_name!r})")
        lora = req.get("lora_config") or {}
        model_id = f"{req['session_id']}:train:{req['model_seq_id']}"
        self.models[model_id] = StandinModel(model_id, self.base_model, int(lora.get("rank", 32)),
                                             self.lora_alpha, lora.get("seed"))
        return {"model_id": model_id, "type": "create_model"}

    def forward_backward(self, fb: wire.ForwardBackward) -> bytes:
        logprobs, metrics = self.model(fb.model_id).forward_backward(fb.data, fb.loss_fn, fb.config, fb.forward_only)
        return wire.forward_backward_output(logprobs, metrics)

    def optim_step(self, req: dict[str, Any]) -> dict[str, Any]:
        if "adam_params" not in req:
            raise UserError("the stand-in implements the Adam optimizer only (adam_params)")
        return {"metrics": self.model(req["model_id"]).optim_step(req["adam_params"])}

    def save_weights(self, req: dict[str, Any]) -> dict[str, Any]:
        model = self.model(req["model_id"])
        name = req.get("path") or f"step-{model.steps}"
        folder = self._folder(model.model_id, "weights", name)
        if folder.exists() and not req.get("overwrite"):
            raise UserError(f"checkpoint {name!r} exists (pass overwrite=True)")
        model.save(folder)
        return {"path": f"tinker://{model.model_id}/weights/{name}", "type": "save_weights"}

    def load_weights(self, req: dict[str, Any]) -> dict[str, Any]:
        _, folder = self._resolve(req["path"])
        meta = read_model_meta(folder)
        if req.get("session_id") is not None:  # create-via-load: a new model from the checkpoint
            model_id = f"{req['session_id']}:train:{req['model_seq_id']}"
            self.models[model_id] = StandinModel(model_id, self.base_model, int(meta["rank"]),
                                                 float(meta["lora_alpha"]), None)
        else:
            model_id = req["model_id"]
        self.model(model_id).load(folder, optimizer=bool(req.get("optimizer")))
        return {"path": req["path"], "model_id": model_id, "type": "load_weights"}

    def save_weights_for_sampler(self, req: dict[str, Any]) -> dict[str, Any]:
        model = self.model(req["model_id"])
        if req.get("kind", "snapshot") != "snapshot":
            raise UserError(f"sampling client kind {req.get('kind')!r} is not implemented by the stand-in")
        if req.get("path"):  # a named, persistent sampler checkpoint
            folder = self._folder(model.model_id, "sampler_weights", req["path"])
            model.save(folder)
            return {"path": f"tinker://{model.model_id}/sampler_weights/{req['path']}",
                    "type": "save_weights_for_sampler"}
        session = f"{model.model_id.split(':train:')[0]}:sample:{req['sampling_session_seq_id']}"
        self.samplers[session] = Sampler(model.model_id, model.snapshot())
        return {"sampling_session_id": session, "type": "save_weights_for_sampler"}

    def create_sampling_session(self, req: dict[str, Any]) -> dict[str, Any]:
        session = f"{req['session_id']}:sample:{req['sampling_session_seq_id']}"
        path = req.get("model_path")
        if path:
            model_id, folder = self._resolve(path)
            if model_id not in self.models:
                raise UserError(f"{path}: the stand-in samples checkpoints of models it holds in this process only")
            from safetensors.torch import load_file

            weights = load_file(str(folder / "adapter" / "adapter_model.safetensors"))
            self.samplers[session] = Sampler(model_id, weights, path)
        else:
            if req.get("base_model") != self.served_name:
                raise UserError(f"base model {req.get('base_model')!r} is not served here")
            host = next(iter(self.models), None)
            if host is None:
                host = f"{req['session_id']}:base"
                self.models[host] = StandinModel(host, self.base_model, 1, self.lora_alpha, 0)
            self.samplers[session] = Sampler(host, None)
        return {"type": "create_sampling_session", "sampling_session_id": session}

    def sample(self, req: dict[str, Any]) -> bytes:
        sampler = self.samplers.get(req.get("sampling_session_id") or "")
        if sampler is None:
            raise UserError("the stand-in samples through a sampling session only (sampling_session_id)")
        if req.get("prompt_logprobs") or req.get("topk_prompt_logprobs") or req.get("topk_sample_logprobs") \
                or req.get("target_prompt_logprobs") or req.get("prompt_alt_tokens_k"):
            raise UserError("prompt/top-k logprobs are not implemented by the stand-in")
        prompt: list[int] = []
        for chunk in req["prompt"]["chunks"]:
            if chunk.get("type", "encoded_text") != "encoded_text":
                raise UserError("only token chunks are implemented by the stand-in")
            prompt.extend(int(t) for t in chunk["tokens"])
        params = req["sampling_params"]
        seed = params.get("seed")
        return wire.sample_response(self.model(sampler.model_id).sample(
            sampler.weights, prompt, int(req.get("num_samples", 1)), params,
            seed=int(seed) if seed is not None else random_seed()))

    def info(self, model_id: str) -> dict[str, Any]:
        m = self.model(model_id)
        return {"type": "get_info", "model_id": model_id, "is_lora": True, "lora_rank": m.rank,
                "model_name": self.served_name,
                "model_data": {"arch": "retrain-standin", "model_name": self.served_name,
                               "tokenizer_id": self.base_model}}


#: Client flags: plain httpx transport, one forward_backward chunk at a time, no JWT exchange.
CLIENT_CONFIG = {"pjwt_auth_enabled": False, "use_pyqwest_transport": False, "parallel_fwdbwd_chunks": False,
                 "proto_compress_fwdbwd": False, "sample_use_retrieve_futures": False,
                 "sample_join_sampling_session": False, "custom_loss_server_side": False,
                 "billing_exception_max_pause_duration_sec": 0}

#: (method, path) -> what it does; paths ending in "/" take one more segment.
ROUTES = {
    ("GET", "/api/v1/healthz"): "health check",
    ("POST", "/api/v1/client/config"): "client flags",
    ("POST", "/api/v1/client/dynamic_config"): "client flags (refreshed)",
    ("POST", "/api/v1/create_session"): "session",
    ("POST", "/api/v1/session_heartbeat"): "session heartbeat (410 once the session is finished)",
    ("POST", "/api/v1/sessions/{id}/finish"): "finish a session (ServiceClient.close)",
    ("POST", "/api/v1/telemetry"): "SDK telemetry (accepted, discarded)",
    ("GET", "/api/v1/get_server_capabilities"): "the served base model",
    ("POST", "/api/v1/create_model"): "LoRA training model (future)",
    ("POST", "/api/v1/get_info"): "model info",
    ("POST", "/api/v1/forward_backward"): "forward/backward, protobuf (future)",
    ("POST", "/api/v1/optim_step"): "AdamW step (future)",
    ("POST", "/api/v1/save_weights"): "save_state (future)",
    ("POST", "/api/v1/load_weights"): "load state / training client from state (future)",
    ("POST", "/api/v1/save_weights_for_sampler"): "sampler snapshot or named sampler weights (future)",
    ("POST", "/api/v1/create_sampling_session"): "sampling client from a path or the base model",
    ("GET", "/api/v1/samplers/"): "sampler info",
    ("POST", "/api/v1/asample"): "sample, protobuf (future)",
    ("POST", "/api/v1/retrieve_future"): "future result (long poll)",
}


def make_handler(service: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: the SDK polls a lot
            pass

        def _send(self, status: int, body: Any) -> None:
            if isinstance(body, bytes):
                data, ctype = body, "application/x-protobuf"
            else:
                data, ctype = json.dumps(body).encode(), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            if service.api_key and self.headers.get("X-API-Key") != service.api_key:
                return self._send(401, {"detail": "invalid API key for this stand-in"})
            try:
                status, body = route(service, method, path, raw)
            except (UserError, wire.WireError) as e:
                status, body = 400, {"detail": str(e)}
            except (KeyError, TypeError, ValueError) as e:
                status, body = 422, {"detail": f"malformed request: {type(e).__name__}: {e}"}
            self._send(status, body)

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

    return Handler


def route(s: Service, method: str, path: str, raw: bytes) -> tuple[int, Any]:
    """Dispatch one request: (status, JSON-able dict or protobuf bytes)."""
    if (method, path) == ("POST", "/api/v1/forward_backward"):
        fb = wire.read_forward_backward(raw)
        return 200, s.submit(lambda: s.forward_backward(fb), model_id=fb.model_id)
    req = json.loads(raw) if raw else {}
    simple: dict[tuple[str, str], Callable[[], Any]] = {
        ("GET", "/api/v1/healthz"): lambda: {"status": "ok"},
        ("POST", "/api/v1/client/config"): lambda: CLIENT_CONFIG,
        ("POST", "/api/v1/client/dynamic_config"): lambda: {},
        ("POST", "/api/v1/create_session"): s.create_session,
        ("POST", "/api/v1/session_heartbeat"): lambda: s.heartbeat(req.get("session_id", "")),
        ("POST", "/api/v1/telemetry"): lambda: {"status": "accepted"},
        ("GET", "/api/v1/get_server_capabilities"): lambda: {"supported_models": [
            {"model_name": s.served_name, "trainable": True, "sampleable": True}]},
        ("POST", "/api/v1/get_info"): lambda: s.info(req["model_id"]),
        ("POST", "/api/v1/retrieve_future"): lambda: s.retrieve(req["request_id"]),
    }
    futures: dict[str, Callable[[dict[str, Any]], Any]] = {
        "/api/v1/create_model": s.create_model, "/api/v1/optim_step": s.optim_step,
        "/api/v1/save_weights": s.save_weights, "/api/v1/load_weights": s.load_weights,
        "/api/v1/save_weights_for_sampler": s.save_weights_for_sampler,
    }
    if (method, path) in simple:
        out = simple[(method, path)]()
        return out if isinstance(out, tuple) else (200, out)
    if (method, path) == ("POST", "/api/v1/optim_step") and s.quota_steps:
        with s.lock:
            s.optim_requests += 1
            if s.optim_requests > s.quota_steps:
                return 402, {"detail": f"the stand-in's quota of {s.quota_steps} optimizer steps is used up "
                                       "(--quota-steps)"}
    if method == "POST" and path in futures:
        return 200, s.submit(lambda: futures[path](req), model_id=req.get("model_id"))
    if (method, path) == ("POST", "/api/v1/create_sampling_session"):
        return 200, s.call(lambda: s.create_sampling_session(req))  # answered inline, not a future
    if (method, path) == ("POST", "/api/v1/asample"):
        n = int(req.get("num_samples", 1))
        out = s.submit(lambda: s.sample(req))
        return 200, {**out, "sample_sequence_ids": [f"{out['request_id']}:{i}" for i in range(n)]}
    if method == "POST" and path.startswith("/api/v1/sessions/") and path.endswith("/finish"):
        return s.finish_session(path.split("/")[-2], (req.get("reason") or {}).get("type", ""))
    if method == "GET" and path.startswith("/api/v1/samplers/"):
        sampler = s.samplers.get(path.rsplit("/", 1)[-1])
        if sampler is None:
            return 404, {"detail": "no such sampler"}
        return 200, {"sampler_id": path.rsplit("/", 1)[-1], "base_model": s.served_name,
                     "model_path": sampler.model_path}
    return 404, {"detail": f"{method} {path} is not implemented by the retrain Tinker stand-in"}


def serve(service: Service, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Bind (port 0 = a free one) and return the server; call ``serve_forever()`` on it."""
    server = ThreadingHTTPServer((host, port), make_handler(service))
    server.daemon_threads = True
    return server
