"""``[backend] devices = "gpu:0,1"`` (or ``"cpu:2"``): run the same command under torchrun for the user.

``retrain RUN.toml`` with several devices re-executes itself as::

    CUDA_VISIBLE_DEVICES=0,1 python -m retrain.distributed.torchrun --standalone --nproc-per-node 2 \\
        -m retrain.cli.main RUN.toml [the same options]

(through ``retrain.distributed.torchrun``, which keeps torchrun's own messages out of the terminal
until the end). ``--standalone`` picks a free rendezvous port on this machine (one node). ``"cpu:N"`` starts N
processes on the CPU that talk through gloo (for tests and CI; slow, not a way to train faster).
Inside torchrun (``LOCAL_RANK`` set) nothing is re-launched, so ``torchrun ... -m retrain.cli.main
RUN.toml`` by hand works the same (multi-node: your own torchrun flags).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from retrain.errors import ConfigError

#: The launcher's folder for one torchrun job: each rank's user-error line (``rank<R>.error``) and
#: torchrun's own messages (``torchrun.log``).
LAUNCH_DIR_ENV = "RETRAIN_LAUNCH_DIR"
TORCHRUN_LOG = "torchrun.log"
EXIT_USER_ERROR = 2


def parse_devices(devices: str, where: str = "[backend] devices") -> tuple[str, list[str]]:
    """``"gpu:0,1"`` -> ("gpu", ["0", "1"]); ``"cpu:2"`` -> ("cpu", ["0", "1"]); others -> (kind, [])."""
    kind, _, rest = devices.partition(":")
    if kind == "gpu" and rest:
        ids = [x.strip() for x in rest.split(",") if x.strip()]
        if not all(x.isdigit() for x in ids) or len(set(ids)) != len(ids):
            raise ConfigError(f'{where} = "{devices}": expected distinct GPU numbers such as "gpu:0,1".')
        return "gpu", ids
    if kind == "cpu" and rest:
        if not rest.isdigit() or int(rest) < 1:
            raise ConfigError(f'{where} = "{devices}": expected a process count such as "cpu:2".')
        return "cpu", [str(i) for i in range(int(rest))]
    return kind, []


def processes(devices: str) -> int:
    """How many torchrun processes ``devices`` asks for (0: one ordinary process, no torchrun)."""
    kind, ids = parse_devices(devices)
    if kind == "gpu":
        return len(ids) if len(ids) > 1 else 0
    return len(ids) if kind == "cpu" else 0


def needs_launch(devices: str) -> bool:
    """True when ``devices`` asks for several processes and this process is not already one of them."""
    from retrain.distributed.world import launched_by_torchrun

    return processes(devices) > 0 and not launched_by_torchrun()


def torchrun_command(devices: str, cli_args: list[str]) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of the torchrun re-execution of ``retrain <cli_args>``."""
    kind, ids = parse_devices(devices)
    env = dict(os.environ)
    if kind == "gpu":
        env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    env.setdefault("OMP_NUM_THREADS", "1")
    argv = [sys.executable, "-m", "retrain.distributed.torchrun", "--standalone", f"--nproc-per-node={len(ids)}",
            "-m", "retrain.cli.main", *cli_args]
    return argv, env


def launch(devices: str, cli_args: list[str]) -> int:
    """Run ``retrain <cli_args>`` under torchrun with one process per device; returns its exit code.

    torchrun runs in its own session and this process forwards SIGINT / SIGTERM to it once per
    signal: Ctrl-C then reaches every rank exactly once (torchrun passes it on), so the ranks
    finish the step, save a checkpoint together and exit, as a one-process run does. (From the
    terminal's process group each rank would get it twice: once from the terminal, once from
    torchrun, and a second Ctrl-C means "abort now".) torchrun kills ranks that take longer
    than its shutdown timeout (30 s) to exit.
    """
    import signal

    argv, env = torchrun_command(devices, cli_args)
    print(f"retrain: launching {processes(devices)} processes: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="retrain-launch-") as folder:
        proc = subprocess.Popen(argv, env={**env, LAUNCH_DIR_ENV: folder}, start_new_session=True)

        def forward(signum: int, frame: object) -> None:
            proc.send_signal(signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            code = proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return launch_outcome(Path(folder), code)


def launch_outcome(folder: Path, code: int) -> int:
    """The ranks' user errors, each distinct line once, and exit 2 (torchrun's failure report would
    only repeat them); else torchrun's own messages and its exit code."""
    files = sorted(folder.glob("rank*.error"), key=lambda f: int(f.stem.removeprefix("rank") or 0))
    lines = list(dict.fromkeys(f.read_text().strip() for f in files))
    if lines:
        print("\n".join(lines), file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    log = folder / TORCHRUN_LOG
    if log.is_file() and log.stat().st_size:
        sys.stderr.write(log.read_text())
        sys.stderr.flush()
    return code


def record_rank_error(line: str) -> bool:
    """Under retrain's launcher, leave this rank's ``error:`` line for it to print once (every rank
    usually stops with the same line); False when the caller should print it (no launcher, or the
    line cannot be written)."""
    from retrain.distributed.world import launched_by_torchrun

    folder = os.environ.get(LAUNCH_DIR_ENV, "")
    if not folder or not launched_by_torchrun():
        return False
    try:
        Path(folder, f"rank{os.environ.get('RANK', '0')}.error").write_text(line + "\n")
    except OSError:
        return False
    return True
