"""Worker processes with a per-call timeout, for checkers that may hang or crash.

``WorkerPool.run(fn, jobs)`` calls ``fn(*args)`` for each job in worker processes (started with
``forkserver`` on POSIX, else ``spawn``; never ``fork``, which would copy torch's threads). A
call that runs past ``timeout`` seconds gets its worker killed and replaced; a call that raises
(or whose worker dies) is an error. Each job ends as an :class:`Outcome`, so the caller can
score failures 0 AND count them. ``fn`` is a dotted path (``"module:function"``) so that it
can be imported in the worker.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import sys
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any


@dataclass
class Outcome:
    status: str  # "ok" | "timeout" | "error"
    value: Any = None
    detail: str = ""


def _import_function(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _worker_main(conn: Connection, preload: tuple[str, ...], warmup: str) -> None:
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # the job that needs it will report the error
            pass
    if warmup:
        try:
            _import_function(warmup)()
        except Exception:
            pass
    conn.send("ready")  # the timeout clock starts only once the worker is warm
    functions: dict[str, Any] = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_id, fn_path, args, sys_path = msg
        try:
            for entry in reversed(sys_path):
                if entry not in sys.path:
                    sys.path.insert(0, entry)
            fn = functions.get(fn_path) or functions.setdefault(fn_path, _import_function(fn_path))
            reply = (job_id, "ok", fn(*args), "")
        except BaseException as e:  # noqa: BLE001 - anything a checker raises is an error outcome
            reply = (job_id, "error", None, f"{type(e).__name__}: {e}"[:300])
        try:
            conn.send(reply)
        except Exception as e:  # unpicklable result
            conn.send((job_id, "error", None, f"result not picklable: {type(e).__name__}: {e}"[:300]))


def _context() -> Any:
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


#: Seconds a new worker may take to import and warm up before it counts as broken.
STARTUP_TIMEOUT = 120.0


class _Worker:
    def __init__(self, ctx: Any, preload: tuple[str, ...], warmup: str) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, preload, warmup), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False

    def wait_ready(self) -> None:
        if self.ready:
            return
        if not self.conn.poll(STARTUP_TIMEOUT):
            self.kill()
            raise RuntimeError(f"reward worker did not start within {STARTUP_TIMEOUT:g} s")
        try:
            self.conn.recv()
        except (EOFError, OSError):
            raise RuntimeError(f"reward worker exited during start-up (exit code {self.proc.exitcode})") from None
        self.ready = True

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(timeout=2)
        self.kill()


class WorkerPool:
    """``workers`` processes; each call may take at most ``timeout`` seconds."""

    def __init__(self, workers: int = 2, timeout: float = 5.0, preload: tuple[str, ...] = (),
                 warmup: str = "") -> None:
        self.size = max(1, workers)
        self.timeout = timeout
        self.preload = preload
        self.warmup = warmup  # "module:function" called once per worker before it takes jobs
        self._ctx = _context()
        if self._ctx.get_start_method() == "forkserver" and preload:
            self._ctx.set_forkserver_preload(["retrain.rewards.pool", *preload])
        self._workers: list[_Worker] = []
        self.replaced = 0  # workers killed after a timeout or crash (lifetime total)

    def _ensure_workers(self) -> None:
        while len(self._workers) < self.size:
            self._workers.append(_Worker(self._ctx, self.preload, self.warmup))

    def run(self, fn: str, jobs: list[tuple[Any, ...]]) -> list[Outcome]:
        """``[fn(*args) for args in jobs]`` in the workers, as outcomes in job order."""
        results: list[Outcome | None] = [None] * len(jobs)
        if not jobs:
            return []
        self._ensure_workers()
        pending = deque(enumerate(jobs))
        busy: dict[int, tuple[int, float]] = {}  # worker index -> (job index, deadline)
        path = list(sys.path)
        while pending or busy:
            for w, worker in enumerate(self._workers):
                if pending and w not in busy:
                    worker.wait_ready()
                    j, args = pending.popleft()
                    worker.conn.send((j, fn, args, path))
                    busy[w] = (j, time.monotonic() + self.timeout)
            next_deadline = min(d for _, d in busy.values())
            ready = wait([self._workers[w].conn for w in busy], timeout=max(0.0, next_deadline - time.monotonic()))
            for w in list(busy):
                worker = self._workers[w]
                if worker.conn not in ready:
                    continue
                j, _ = busy.pop(w)
                try:
                    _, status, value, detail = worker.conn.recv()
                    results[j] = Outcome(status, value, detail)
                except (EOFError, OSError):  # the worker died (segfault, os._exit, OOM kill)
                    results[j] = Outcome("error", None, f"worker process died (exit code {worker.proc.exitcode})")
                    self._replace(w)
            now = time.monotonic()
            for w, (j, deadline) in list(busy.items()):
                if now >= deadline:
                    busy.pop(w)
                    results[j] = Outcome("timeout", None, f"no result within {self.timeout:g} s")
                    self._replace(w)
        return [r if r is not None else Outcome("error", None, "lost") for r in results]

    def _replace(self, w: int) -> None:
        self._workers[w].kill()
        self._workers[w] = _Worker(self._ctx, self.preload, self.warmup)
        self.replaced += 1

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []

    def __del__(self) -> None:  # pragma: no cover - best effort; close() is the API
        try:
            self.close()
        except Exception:
            pass
