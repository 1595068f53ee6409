"""Run a campaign: every condition x seed as a ``retrain`` subprocess, resumable, with a manifest.

``run_campaign(config_path, overrides)`` is what ``retrain RUN.toml`` calls when ``[campaign]``
has seeds or conditions. Each child is the plain ``retrain`` CLI on the same TOML with
``--set`` overrides (its own ``logging.log_dir``/``run_name``, seed, wandb group and tags, and
``campaign.seeds=[]``/``campaign.conditions=[]`` so it is an ordinary run), started from the
same working directory so relative paths and ``./my_module.py`` dotted paths mean the same thing.

Resuming is the same command again: a run that finished (done marker, or ``max_steps`` training
steps logged) is skipped; one that has checkpoints continues with ``--resume latest``; one that
died before its first checkpoint is moved aside (``<name>.aborted-N``, never deleted) and restarts.
wandb run ids are kept in ``manifest.json`` and written to ``<run>/wandb_id.txt`` before the
child starts (the wandb logger reads it; ``WANDB_RUN_ID``/``WANDB_RESUME=allow`` are set too), so a
resumed run continues the same wandb run.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from retrain.campaign import rundir
from retrain.campaign.spec import RunSpec, expand, launch_order, shadowed
from retrain.config import Config, load_config, parse_set
from retrain.config import _toml_value as toml_value
from retrain.errors import EXIT_OUT_OF_MEMORY, RetrainError

MANIFEST = "manifest.json"
INTERRUPTED = 130
OOM_RETRIES = 3  # attempts of one run that may end out of GPU memory beside others before it counts as failed
OOM_EVENT_SECONDS = 30.0  # runs out of memory within this long of the last cap cut: the same shortage, cut once


def run_campaign(config_path: str | Path, overrides: dict[str, Any] | list[str] | None = None,
                 *, echo: Any = None) -> int:
    """Run (or resume) every condition x seed of the campaign in ``config_path``.

    Returns 0 when every run finished, 1 when some failed, 130 when interrupted.
    """
    say = echo or (lambda msg: print(msg, flush=True))
    overrides = parse_set(overrides) if isinstance(overrides, list) else dict(overrides or {})
    config = load_config(config_path, overrides)
    cdir, specs = expand(config_path, overrides, config)
    if "training.seed" in overrides and config.campaign.seeds:
        say(f"warning: --seed/training.seed is ignored: [campaign] seeds = {config.campaign.seeds} set each run's seed")
    for key in shadowed(overrides, specs):
        if key != "training.seed":
            say(f"warning: --set {key} is replaced by a campaign condition or the campaign itself in some runs")
    resolved = {spec.name: resolve_child(config_path, spec) for spec in specs}
    cdir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.open(cdir, config_path, overrides, config, specs, resolved)
    return Campaign(cdir, config_path, config, specs, resolved, manifest, say).run()


def resolve_child(config_path: str | Path, spec: RunSpec) -> Config:
    """The child's validated config, every selected name resolved against the installed plugins
    (``load_run_config``), so a typo fails before any run starts."""
    from retrain.run_config import load_run_config

    where = f'campaign condition "{spec.condition}"'
    try:
        child, _ = load_run_config(config_path, spec.overrides)
    except RetrainError as e:
        raise type(e)(f"{where}: {e}") from None
    return child


def child_command(config_path: str | Path, spec: RunSpec, resume: bool) -> list[str]:
    """The ``retrain`` command line of one run (the console script next to this Python, else
    ``python -c``)."""
    script = Path(sys.executable).parent / "retrain"
    head = [str(script)] if script.is_file() else [sys.executable, "-c", "from retrain.cli.main import main; main()"]
    sets = [arg for key, value in spec.overrides.items() for arg in ("--set", f"{key}={toml_value(value)}")]
    return [*head, str(config_path), *sets, *(["--resume", "latest"] if resume else [])]


def _training_part(cfg: dict[str, Any]) -> dict[str, Any]:
    """A run's resolved config without ``[campaign]`` (workers, stagger: how the pool runs, not what a run learns)."""
    return {k: v for k, v in cfg.items() if k != "campaign"}


class Manifest:
    """``manifest.json``: what ran, with which resolved config, command, wandb id and outcome."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data

    @classmethod
    def open(cls, cdir: Path, config_path: str | Path, overrides: dict[str, Any], config: Config,
             specs: list[RunSpec], resolved: dict[str, Config]) -> Manifest:
        path = cdir / MANIFEST
        old = json.loads(path.read_text()) if path.is_file() else {}
        runs_old = old.get("runs", {})
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        data = {"config": str(Path(config_path).resolve()), "cwd": os.getcwd(), "created": old.get("created", now),
                "updated": now, "argv": sys.argv, "overrides": overrides,
                "max_workers": config.campaign.max_workers,
                "seeds": sorted({s.seed for s in specs}, key=[s.seed for s in specs].index),
                "conditions": list(dict.fromkeys(s.condition for s in specs)),
                "wandb_project": config.logging.wandb_project, "runs": {}}
        for spec in specs:
            prev = runs_old.get(spec.name, {})
            cfg = resolved[spec.name].to_dict(redact=True)
            data["runs"][spec.name] = {
                "condition": spec.condition, "seed": spec.seed, "run_dir": str(spec.run_dir),
                "max_steps": resolved[spec.name].training.max_steps,
                "status": prev.get("status", "pending"), "returncode": prev.get("returncode"),
                "attempts": prev.get("attempts", []), "command": prev.get("command", []),
                "config_changed": bool(prev.get("config")) and _training_part(prev["config"]) != _training_part(cfg),
                "wandb": {"id": prev.get("wandb", {}).get("id") or _wandb_id(cdir.name, spec.name),
                          "group": spec.group, "tags": spec.overrides.get("logging.wandb_tags", [])},
                "config": cfg,
            }
        # runs of an earlier version of the campaign that it no longer has: kept, not counted
        retired = dict(old.get("retired_runs", {}))
        retired.update({n: r for n, r in runs_old.items() if n not in data["runs"]})
        if retired:
            data["retired_runs"] = retired
        manifest = cls(path, data)
        manifest.save()
        return manifest

    def run(self, name: str) -> dict[str, Any]:
        return self.data["runs"][name]

    def save(self) -> None:
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        os.replace(tmp, self.path)


def _wandb_id(campaign: str, name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{campaign}-{name}")
    return f"{safe[:48]}-{secrets.token_hex(3)}"


class Campaign:
    """The worker pool: at most ``max_workers`` children, ``stagger_seconds`` apart."""

    def __init__(self, cdir: Path, config_path: str | Path, config: Config, specs: list[RunSpec],
                 resolved: dict[str, Config], manifest: Manifest, say: Any) -> None:
        self.cdir, self.config_path, self.config = cdir, config_path, config
        self.specs, self.resolved, self.manifest, self.say = specs, resolved, manifest, say
        self.workers = max(1, config.campaign.max_workers)  # lowered when runs run out of GPU memory
        self.echo = self.workers == 1  # one run at a time: its output on the console, unprefixed
        self.todo: list[RunSpec] = []  # runs not started yet, in launch order
        self.active: dict[str, tuple[subprocess.Popen[bytes], threading.Thread, IO[bytes]]] = {}
        self.company: dict[str, int] = {}  # run -> most other runs beside it during its current attempt
        self.oom_cut_at = -OOM_EVENT_SECONDS  # time.monotonic() of the last cut of ``workers``
        self.squeezed = (cdir / "squeeze" / "report.json").is_file()

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> int:
        self.todo = todo = [s for s in launch_order(self.specs) if not self._skip(s)]
        self.say(f"campaign {self.cdir}: {len(self.specs)} runs ({len(self.specs) - len(todo)} already done), "
                 f"{self.workers} worker(s)")
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt) if _main_thread() else None
        try:
            last_start = 0.0
            while todo or self.active:
                while todo and len(self.active) < self.workers:
                    wait = self.config.campaign.stagger_seconds - (time.monotonic() - last_start)
                    if self.active and wait > 0:
                        break
                    self._start(todo.pop(0))
                    last_start = time.monotonic()
                self._reap()
                time.sleep(0.2)
        except KeyboardInterrupt:
            self._stop_all()
            self.say(f"campaign interrupted; run the same command again to resume ({self.cdir / MANIFEST})")
            return INTERRUPTED
        finally:
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
        return self._finish()

    def _skip(self, spec: RunSpec) -> bool:
        entry = self.manifest.run(spec.name)
        if rundir.is_finished(spec.run_dir, entry["max_steps"]) or (
                entry["status"] == "done" and spec.run_dir.is_dir()):
            if entry["status"] != "done":
                entry["status"] = "done"
                self.manifest.save()
            return True
        return False

    def _start(self, spec: RunSpec) -> None:
        entry = self.manifest.run(spec.name)
        resume = bool(rundir.checkpoints(spec.run_dir))
        used = (spec.run_dir / rundir.METRICS).exists() or (spec.run_dir / "checkpoints").exists()
        if used and not resume:  # died before its first checkpoint: keep it, start over (new wandb run)
            n = 1
            while spec.run_dir.with_name(f"{spec.name}.aborted-{n}").exists():
                n += 1
            spec.run_dir.rename(spec.run_dir.with_name(f"{spec.name}.aborted-{n}"))
            entry["wandb"]["id"] = _wandb_id(self.cdir.name, spec.name)
            self.say(f"{spec.name}: no checkpoint to resume; previous attempt kept as {spec.name}.aborted-{n}")
        if entry["config_changed"]:
            self.say(f"warning: {spec.name}: the config changed since this run last started")
        # the wandb logger reads <run>/wandb_id.txt: a resumed run continues the same wandb run
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        id_file = spec.run_dir / "wandb_id.txt"
        if not id_file.is_file():
            id_file.write_text(entry["wandb"]["id"] + "\n")
        entry["wandb"]["id"] = id_file.read_text().strip()
        cmd = child_command(self.config_path, spec, resume)
        env = dict(os.environ, WANDB_RUN_ID=entry["wandb"]["id"], WANDB_RESUME="allow",
                   RETRAIN_CAMPAIGN_DIR=str(self.cdir), RETRAIN_CAMPAIGN_RUN=spec.name, PYTHONUNBUFFERED="1")
        if self.workers > 1 and "OMP_NUM_THREADS" not in os.environ:  # don't oversubscribe CPU cores
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.workers))
        log_path = self.cdir / "logs" / f"{spec.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, preexec_fn=_die_with_parent)
        prefix = "" if self.echo else f"[{spec.name}] "
        tee = threading.Thread(target=_tee, args=(proc.stdout, log, prefix, self.echo), daemon=True)
        tee.start()
        self.active[spec.name] = (proc, tee, log)
        for name in self.active:
            self.company[name] = max(self.company.get(name, 0), len(self.active) - 1)
        entry.update(status="running", command=cmd, pid=proc.pid, returncode=None)
        entry["attempts"].append({"start": time.strftime("%Y-%m-%dT%H:%M:%S"), "resume": resume, "end": None,
                                  "returncode": None, "pid": proc.pid})
        self.manifest.save()
        self.say(f"{'resuming' if resume else 'starting'} {spec.name} (log: {log_path})")

    def _reap(self) -> None:
        for name, (proc, tee, log) in list(self.active.items()):
            if proc.poll() is None:
                continue
            tee.join(timeout=5)
            log.close()
            del self.active[name]
            spec = next(s for s in self.specs if s.name == name)
            entry = self.manifest.run(name)
            # exit 0 without max_steps logged: the run was stopped (SIGINT saves a checkpoint and returns)
            finished = rundir.is_finished(spec.run_dir, entry["max_steps"])
            if self._retry_out_of_memory(spec, proc.returncode, entry):
                continue
            ok = proc.returncode == 0 and finished
            status = "done" if ok else ("interrupted" if proc.returncode == 0 else "failed")
            entry.update(status=status, returncode=proc.returncode, pid=None)
            entry["attempts"][-1].update(end=time.strftime("%Y-%m-%dT%H:%M:%S"), returncode=proc.returncode)
            self.manifest.save()
            self.say(f"{'finished' if ok else status.upper()} {name} (exit {proc.returncode})"
                     + ("" if ok else f"; see {self.cdir / 'logs' / (name + '.log')}"))
            if ok and not self.squeezed:
                self._auto_squeeze(spec)

    def _retry_out_of_memory(self, spec: RunSpec, returncode: int | None, entry: dict[str, Any]) -> bool:
        """A run that ran out of GPU memory (``EXIT_OUT_OF_MEMORY``) while others shared the GPU at any time of
        its attempt goes back to the front of the queue, so it is not failed for its neighbours' memory. The
        campaign then runs one fewer at once (at most as many as still run, at least 1); runs that run out
        together, as all of them do when the GPU fills up, lower it once. Alone, or after ``OOM_RETRIES``, it fails."""
        beside = self.company.pop(spec.name, 0)
        retries = sum(a.get("returncode") == EXIT_OUT_OF_MEMORY for a in entry["attempts"][:-1])
        if returncode != EXIT_OUT_OF_MEMORY or not beside or retries >= OOM_RETRIES:
            return False
        if time.monotonic() - self.oom_cut_at > OOM_EVENT_SECONDS:
            self.workers = max(1, min(self.workers - 1, len(self.active)))
            self.oom_cut_at = time.monotonic()
        entry.update(status="pending", returncode=returncode, pid=None)
        entry["attempts"][-1].update(end=time.strftime("%Y-%m-%dT%H:%M:%S"), returncode=returncode)
        self.manifest.save()
        self.todo.insert(0, spec)
        self.say(f"{spec.name} ran out of GPU memory beside {beside} other run(s): it starts again later, "
                 f"with at most {self.workers} run(s) at once")
        return True

    def _stop_all(self) -> None:
        """SIGINT every child (the loop finishes its step, saves a checkpoint and exits), SIGKILL
        after 15 s. Children that already ended are recorded as such first."""
        self._reap()
        for proc, _, _ in self.active.values():
            _signal(proc, signal.SIGINT)
        deadline = time.monotonic() + 15
        for name, (proc, tee, log) in self.active.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
                proc.wait()
            tee.join(timeout=5)
            log.close()
            entry = self.manifest.run(name)
            spec = next(s for s in self.specs if s.name == name)
            done = proc.returncode == 0 and rundir.is_finished(spec.run_dir, entry["max_steps"])  # its last step
            entry.update(status="done" if done else "interrupted", returncode=proc.returncode, pid=None)
            entry["attempts"][-1].update(end=time.strftime("%Y-%m-%dT%H:%M:%S"), returncode=proc.returncode)
        self.active.clear()
        self.company.clear()
        self.manifest.save()

    # -- after runs -------------------------------------------------------------------------
    def _auto_squeeze(self, spec: RunSpec) -> None:
        cfg = self.resolved[spec.name]
        if not cfg.squeeze.auto or cfg.model.lora_rank <= 0:
            return
        self.squeezed = True
        try:
            from retrain.campaign.squeeze_step import squeeze_run

            text = squeeze_run(spec.run_dir, self.cdir / "squeeze", cfg.squeeze.energy, cfg.squeeze.compress)
            self.say(text)
        except Exception as e:  # the campaign's runs matter more than the analysis
            self.say(f"warning: squeeze of {spec.name} failed: {type(e).__name__}: {e}")

    def _finish(self) -> int:
        from retrain.campaign.summary import write_summary

        failed = [n for n, r in self.manifest.data["runs"].items() if r["status"] != "done"]
        try:
            self.say(write_summary(self.cdir))
        except Exception as e:
            self.say(f"warning: summary failed: {type(e).__name__}: {e}")
        try:
            from retrain.campaign.plots import plot_campaign

            for path in plot_campaign(self.cdir):
                self.say(f"wrote {path}")
        except Exception as e:
            self.say(f"warning: plots skipped: {type(e).__name__}: {e}")
        if failed:
            self.say(f"{len(failed)} run(s) did not finish: {', '.join(failed)}. Run the same command again to retry.")
            return 1
        return 0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the campaign process dies (even by SIGKILL), so no run
    keeps writing into a directory that a resumed campaign is about to use."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _tee(stream: IO[bytes], log: IO[bytes], prefix: str, echo: bool) -> None:
    for line in iter(stream.readline, b""):
        log.write(line)
        log.flush()
        if echo:
            sys.stdout.write(prefix + line.decode(errors="replace"))
            sys.stdout.flush()
