"""The reward sandbox: a supervisor process that forks warm workers and enforces the timeout.

Run as ``python -m retrain.rewards.sandbox READ_FD WRITE_FD WORKERS PRELOAD WARMUP PDEATHSIG``
by :class:`retrain.rewards.pool.WorkerPool`; never imported by the training loop itself.

Process tree and how each part dies with the training process (every way it can end):

```
training process ──pipe──> supervisor (this module's main; single-threaded, imports the checker once)
                              ├── worker (os.fork of the warm supervisor)
                              └── worker
```
- the supervisor watches its command pipe at all times, also while workers are busy: when the
  training process ends (return, exception, SIGTERM, SIGKILL, OOM kill) the kernel closes the
  pipe, the supervisor reads EOF, SIGKILLs its workers and exits;
- every worker asks the kernel (Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``) to be killed when the
  supervisor dies, so SIGKILLing the supervisor cannot orphan a worker stuck in a C loop (a
  sympy power tower holds the GIL, so no Python-level watchdog could run there);
- the supervisor gets the same request when it was started from the training process's main
  thread (the signal follows the creating *thread*), as a second line of defence;
- no ``multiprocessing`` processes: no forkserver, no resource tracker, no re-import of the
  training script's ``__main__`` in workers.

Forking the supervisor is safe: it runs no threads, and it imported the checker (math-verify)
before the first fork, so a new worker is warm in milliseconds and a killed one is replaced fast.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import time
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import Any

PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Ask the kernel to SIGKILL this process when its parent (thread) dies; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _import_function(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _worker_main(conn: Connection, supervisor: int) -> None:
    """Serve jobs ``(fn_path, args, sys_path)`` until the supervisor closes the pipe."""
    die_with_parent()
    if os.getppid() != supervisor:  # the supervisor died before prctl took effect
        os._exit(1)
    functions: dict[str, Any] = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            os._exit(0)
        fn_path, args, sys_path = msg
        try:
            for entry in sys_path:  # the parent's folders, after the worker's own: no shadowing
                if entry not in sys.path:
                    sys.path.append(entry)
            fn = functions.get(fn_path) or functions.setdefault(fn_path, _import_function(fn_path))
            reply = ("ok", fn(*args), "")
        except BaseException as e:  # noqa: BLE001 - anything a checker raises is an error outcome
            reply = ("error", None, f"{type(e).__name__}: {e}"[:300])
        try:
            conn.send(reply)
        except Exception as e:  # unpicklable result
            conn.send(("error", None, f"result not picklable: {type(e).__name__}: {e}"[:300]))


class ParentGone(Exception):
    """The training process closed the command pipe (it ended, however it ended)."""


class Supervisor:
    def __init__(self, commands: Connection, replies: Connection, size: int) -> None:
        self.commands, self.replies, self.size = commands, replies, size
        self.workers: list[tuple[int, Connection] | None] = [None] * size  # (pid, conn)

    def _fork_worker(self) -> tuple[int, Connection]:
        parent_fd, child_fd = os.pipe(), os.pipe()  # supervisor -> worker, worker -> supervisor
        me = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker: keep only its own two pipe ends
            try:
                for fd in (parent_fd[1], child_fd[0], self.commands.fileno(), self.replies.fileno()):
                    os.close(fd)
                for other in self.workers:
                    if other is not None:
                        other[1].close()
                conn = _Duplex(parent_fd[0], child_fd[1])
                _worker_main(conn, me)  # type: ignore[arg-type]
            finally:
                os._exit(0)
        os.close(parent_fd[0])
        os.close(child_fd[1])
        return pid, _Duplex(child_fd[0], parent_fd[1])  # type: ignore[return-value]

    def _kill(self, w: int) -> None:
        slot = self.workers[w]
        if slot is None:
            return
        pid, conn = slot
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        conn.close()
        self.workers[w] = None

    def kill_all(self) -> None:
        for w in range(self.size):
            self._kill(w)

    def _worker(self, w: int) -> tuple[int, Connection]:
        slot = self.workers[w]
        if slot is None:
            slot = self.workers[w] = self._fork_worker()
        return slot

    def run(self, fn: str, jobs: list[tuple[Any, ...]], sys_path: list[str], timeout: float) -> list[tuple]:
        """``fn(*args)`` for each job; ``(status, value, detail)`` in job order."""
        results: list[tuple | None] = [None] * len(jobs)
        pending = deque(enumerate(jobs))
        busy: dict[int, tuple[int, float]] = {}  # worker index -> (job index, deadline)
        replaced = 0
        while pending or busy:
            for w in range(self.size):
                if pending and w not in busy:
                    j, args = pending.popleft()
                    self._worker(w)[1].send((fn, args, sys_path))
                    busy[w] = (j, time.monotonic() + timeout)
            next_deadline = min(d for _, d in busy.values())
            conns = {self.workers[w][1]: w for w in busy}  # type: ignore[index]
            ready = wait([*conns, self.commands], timeout=max(0.0, next_deadline - time.monotonic()))
            if self.commands in ready:
                raise ParentGone  # EOF (or a stray command mid-run): the training process is gone
            for conn in ready:
                w = conns[conn]
                j, _ = busy.pop(w)
                try:
                    results[j] = conn.recv()
                except (EOFError, OSError):  # the worker died (segfault, os._exit, OOM kill)
                    pid = self.workers[w][0]  # type: ignore[index]
                    self._kill(w)
                    results[j] = ("error", None, f"worker process {pid} died")
                    replaced += 1
            now = time.monotonic()
            for w, (j, deadline) in list(busy.items()):
                if now >= deadline:
                    busy.pop(w)
                    results[j] = ("timeout", None, f"no result within {timeout:g} s")
                    self._kill(w)
                    replaced += 1
        return [r if r is not None else ("error", None, "lost") for r in results] + [("replaced", replaced, "")]

    def serve(self) -> None:
        while True:
            try:
                msg = self.commands.recv()
            except (EOFError, OSError):
                return
            if msg is None:
                return
            fn, jobs, sys_path, timeout = msg
            try:
                out = self.run(fn, jobs, sys_path, timeout)
            except ParentGone:
                return
            try:
                self.replies.send(out)
            except (BrokenPipeError, OSError):
                return


class _Duplex:
    """A pickling connection over two one-way pipe fds (``multiprocessing.connection.Connection``
    needs one fd for both directions, which os.pipe does not give)."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._r = Connection(read_fd, writable=False)
        self._w = Connection(write_fd, readable=False)

    def send(self, obj: Any) -> None:
        self._w.send(obj)

    def recv(self) -> Any:
        return self._r.recv()

    def fileno(self) -> int:
        return self._r.fileno()

    def close(self) -> None:
        self._r.close()
        self._w.close()


def main(argv: list[str]) -> None:
    read_fd, write_fd, size = int(argv[0]), int(argv[1]), int(argv[2])
    preload = [m for m in argv[3].split(",") if m]
    warmup, pdeathsig = argv[4], argv[5] == "1"
    if pdeathsig:
        die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's to handle
    commands = Connection(read_fd, writable=False)
    replies = Connection(write_fd, readable=False)
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
    supervisor = Supervisor(commands, replies, size)
    try:
        replies.send("ready")  # the timeout clock starts only once the checker is warm
        supervisor.serve()
    finally:
        supervisor.kill_all()
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
