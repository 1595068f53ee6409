"""The reward sandbox: workers die with the scoring process however it ends, nothing leaks, and
extraction runs in the workers (real processes, counted from /proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts processes in /proc")

SCORER = textwrap.dedent('''
    import os, signal, sys, threading
    from retrain.rewards.basic import MathReward

    # a child inherits an ignored SIGINT from its parent (seen inside the full suite): this test is about
    # the scoring process dying of a KeyboardInterrupt, so it installs Python's own handler first
    signal.signal(signal.SIGINT, signal.default_int_handler)

    reward = MathReward(timeout=600, workers=2)
    reward.score(["\\\\boxed{1}"], ["1"])  # the sandbox is up
    print("supervisor", reward.pool.supervisor_pid, flush=True)
    if sys.argv[1] == "exception":
        threading.Timer(2.0, lambda: os.kill(os.getpid(), 2)).start()  # KeyboardInterrupt, uncaught
    print("scoring", flush=True)
    # both workers busy in sympy on a power tower (a C loop holding the GIL) for minutes
    reward.score(["\\\\boxed{9^{9^{9^{9}}}}"] * 4, ["9^{x}"] * 4)
''')


def tagged(tag: str) -> list[tuple[int, str]]:
    """Live processes started with RETRAIN_TEST_TAG=tag in their environment (zombies excluded)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if f"RETRAIN_TEST_TAG={tag}".encode() not in Path(f"/proc/{pid}/environ").read_bytes():
                continue
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if state != "Z":
            out.append((int(pid), cmd))
    return out


def wait_for(predicate, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.fixture()
def scorer(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Start a scoring process with 2 busy workers; yield (process, tag, supervisor pid); kill leftovers."""
    script = tmp_path / "scorer.py"
    script.write_text(SCORER)
    tag = uuid.uuid4().hex
    procs: list[subprocess.Popen[str]] = []

    def start(mode: str) -> tuple[subprocess.Popen[str], str, int]:
        proc = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "RETRAIN_TEST_TAG": tag})
        procs.append(proc)
        assert proc.stdout is not None
        supervisor = int(proc.stdout.readline().split()[1])
        assert proc.stdout.readline().strip() == "scoring"
        # scorer + supervisor + 2 workers, the workers at work
        assert wait_for(lambda: len(tagged(tag)) == 4, 30), tagged(tag)
        return proc, tag, supervisor

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    for pid, _ in tagged(tag):  # only our own tagged processes, by id
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL", "exception"])
def test_busy_workers_die_with_the_scoring_process(scorer, how: str) -> None:  # type: ignore[no-untyped-def]
    proc, tag, _ = scorer(how)
    commands = " ".join(cmd for _, cmd in tagged(tag))
    assert "forkserver" not in commands and "resource_tracker" not in commands
    if how != "exception":
        time.sleep(1.0)  # the workers are deep in the power tower
        proc.send_signal(getattr(signal, how))
    _, err = proc.communicate(timeout=60)  # reads the pipes while waiting: a full pipe cannot stall the exit
    if how == "exception":
        assert "KeyboardInterrupt" in err
    assert wait_for(lambda: not tagged(tag), 5.0), f"survivors after {how}: {tagged(tag)}"


def test_killing_the_supervisor_kills_its_busy_workers(scorer) -> None:  # type: ignore[no-untyped-def]
    proc, tag, supervisor = scorer("SIGKILL")
    time.sleep(1.0)
    os.kill(supervisor, signal.SIGKILL)  # PR_SET_PDEATHSIG takes the workers down
    # the workers go; the scoring process may stay or stop on the broken pipe, never a worker
    assert wait_for(lambda: {pid for pid, _ in tagged(tag)} <= {proc.pid}, 5.0), tagged(tag)
    proc.kill()
    proc.wait()


def test_extraction_runs_in_the_workers_and_close_ends_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import retrain.rewards.extract as extract
    import retrain.rewards.math_check as math_check
    from retrain.rewards.basic import MathReward

    def not_here(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("extraction ran in the training process")

    monkeypatch.setattr(extract, "extract_answer", not_here)
    monkeypatch.setattr(math_check, "extract_answer", not_here)
    reward = MathReward(timeout=5.0, workers=1)
    try:
        hostile = "\\boxed{" * 9000 + "1"
        result = reward.score([hostile, "\\boxed{3 \\times 10^5}"], ["1", "300000"])
        assert result.rewards == [0.0, 1.0] and (result.errors, result.timeouts) == (0, 0)
        supervisor = reward.pool.supervisor_pid
        assert supervisor is not None
    finally:
        reward.close()
    assert reward.pool.supervisor_pid is None
    assert wait_for(lambda: not Path(f"/proc/{supervisor}").exists(), 5.0)


def test_timeouts_are_counted_and_the_pool_recovers() -> None:
    from retrain.rewards.basic import MathReward

    reward = MathReward(timeout=1.0, workers=1)
    try:
        result = reward.score(["\\boxed{9^{9^{9^{9}}}}", "\\boxed{2}", "\\boxed{9^{9^{9^{9}}}}", "\\boxed{x+1}"],
                              ["9^{x}", "2", "9^{x}", "1+x"])
        assert result.rewards == [0.0, 1.0, 0.0, 1.0]
        assert (result.timeouts, result.errors) == (2, 0) and reward.pool.replaced == 2
    finally:
        reward.close()


def test_a_pool_started_from_a_thread_that_ends_keeps_working() -> None:
    """PR_SET_PDEATHSIG follows the creating *thread*: the supervisor only asks for it when started
    from the main thread, so scoring from a short-lived thread does not kill it."""
    import threading

    from retrain.rewards.basic import MathReward

    reward = MathReward(timeout=5.0, workers=1)
    try:
        box: list[object] = []
        thread = threading.Thread(target=lambda: box.append(reward.score(["\\boxed{2}"], ["2"]).rewards))
        thread.start()
        thread.join()
        assert box == [[1.0]]
        supervisor = reward.pool.supervisor_pid
        time.sleep(0.5)  # time for a parent-death signal to land, were one set
        assert reward.score(["\\boxed{x^2}"], ["x \\cdot x"]).rewards == [1.0]
        assert reward.pool.supervisor_pid == supervisor  # the same supervisor, not a restart
    finally:
        reward.close()
