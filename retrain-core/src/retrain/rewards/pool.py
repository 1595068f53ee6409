"""Worker processes with a per-call timeout, for checkers that may hang or crash.

``WorkerPool.run(fn, jobs)`` calls ``fn(*args)`` for each job in worker processes. A call that
runs past ``timeout`` seconds gets its worker killed and replaced; a call that raises (or whose
worker dies) is an error. Each job ends as an :class:`Outcome`, so the caller can score failures
0 AND count them. ``fn`` is a dotted path (``"module:function"``) so that it can be imported in the
worker.

The workers live under a supervisor process (:mod:`retrain.rewards.sandbox`, a fresh interpreter,
never a ``fork`` of the training process, which would copy torch's threads) that imports the
checker once and forks warm workers from itself. They all die with the training process however
it ends (return, exception, SIGTERM, SIGKILL); the sandbox module says how.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any


@dataclass
class Outcome:
    status: str  # "ok" | "timeout" | "error"
    value: Any = None
    detail: str = ""


#: Seconds the supervisor may take to import and warm up the checker before it counts as broken.
STARTUP_TIMEOUT = 120.0


class WorkerPool:
    """``workers`` processes; each call may take at most ``timeout`` seconds."""

    def __init__(self, workers: int = 2, timeout: float = 5.0, preload: tuple[str, ...] = (),
                 warmup: str = "") -> None:
        self.size = max(1, workers)
        self.timeout = timeout
        self.preload = preload
        self.warmup = warmup  # "module:function" called once (in the supervisor) before any job
        self.replaced = 0  # workers killed after a timeout or crash (lifetime total)
        self._proc: subprocess.Popen[bytes] | None = None
        self._commands: Connection | None = None
        self._replies: Connection | None = None
        self._lock = threading.Lock()  # one run at a time per pool

    @property
    def supervisor_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        main_thread = threading.current_thread() is threading.main_thread()
        argv = [sys.executable, "-m", "retrain.rewards.sandbox", str(to_child_r), str(from_child_w),
                str(self.size), ",".join(self.preload), self.warmup, "1" if main_thread else "0"]
        try:
            self._proc = subprocess.Popen(argv, pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL,
                                          env=_child_env())
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._commands = Connection(to_child_w, readable=False)
        self._replies = Connection(from_child_r, writable=False)
        if not self._replies.poll(STARTUP_TIMEOUT):
            self._shutdown()
            raise RuntimeError(f"reward sandbox did not start within {STARTUP_TIMEOUT:g} s")
        try:
            self._replies.recv()
        except (EOFError, OSError):
            code = self._proc.wait() if self._proc else None
            self._shutdown()
            raise RuntimeError(f"reward sandbox exited during start-up (exit code {code}); "
                               f"see its traceback above") from None

    def run(self, fn: str, jobs: list[tuple[Any, ...]]) -> list[Outcome]:
        """``[fn(*args) for args in jobs]`` in the workers, as outcomes in job order."""
        if not jobs:
            return []
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._shutdown()
                self._start()
            assert self._commands is not None and self._replies is not None
            rounds = -(-len(jobs) // self.size)  # the supervisor replies within rounds * timeout
            try:
                self._commands.send((fn, list(jobs), _search_path(), self.timeout))
                if not self._replies.poll(rounds * (self.timeout + 1.0) + 60.0):
                    raise TimeoutError("no reply")
                out = self._replies.recv()
            except (EOFError, OSError) as e:  # TimeoutError is an OSError
                code = self._proc.poll() if self._proc else None
                self._shutdown()
                raise RuntimeError(f"reward sandbox stopped answering (exit code {code}): {type(e).__name__}") from None
            except BaseException:  # e.g. KeyboardInterrupt mid-call: the reply would be out of step
                self._shutdown()
                raise
        *rows, (_, replaced, _) = out
        self.replaced += replaced
        return [Outcome(*row) for row in rows]

    def _shutdown(self) -> None:
        for conn in (self._commands, self._replies):
            if conn is not None:
                conn.close()  # EOF: the supervisor kills its workers and exits
        self._commands = self._replies = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def close(self) -> None:
        with self._lock:
            self._shutdown()

    def __del__(self) -> None:  # pragma: no cover - best effort; close() is the API
        try:
            self._shutdown()
        except Exception:
            pass


def _child_env() -> dict[str, str]:
    """The environment with retrain importable in the supervisor (also from a source checkout)."""
    import retrain

    root = os.path.dirname(os.path.dirname(os.path.abspath(retrain.__file__)))
    extra = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + extra if extra else "")}


def _search_path() -> list[str]:
    """``sys.path`` with the working directory made absolute ('' means "here" in this process)."""
    return [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
