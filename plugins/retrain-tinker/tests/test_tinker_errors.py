"""The tinker backend and engine refuse what cannot work, each as one line: config the Tinker API
cannot express, a missing key, an unreachable service, a rejected key, a stale sampler."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import torch

pytest.importorskip("tinker")

from retrain.config import load_config  # noqa: E402
from retrain.engines.openai_flavours import StaleWeightsError  # noqa: E402
from retrain.errors import ConfigError  # noqa: E402
from retrain.plugins import load_plugins  # noqa: E402
from retrain.prompts import render_prompts  # noqa: E402
from retrain.run_config import load_run_config  # noqa: E402
from retrain.train.parts import build_parts, close_parts  # noqa: E402
from retrain.types import Rollouts, RunContext, SamplingParams  # noqa: E402
from retrain_tinker.connection import TinkerServiceError  # noqa: E402
from retrain_tinker.standin.server import Service, serve  # noqa: E402
from tinker_helpers import KEY, run_config, run_retrain, start_standin  # noqa: E402


@pytest.fixture
def parts_for(tmp_path, tiny_model):
    """``parts_for(url)``: the run's components, built as `retrain` builds them, on the service at
    ``url``; closed at the end of the test as a run closes them (the SDK sessions finish)."""
    built = []

    def build(url):
        path = run_config(tmp_path / "run.toml", model=tiny_model, url=url, log_dir=tmp_path / "runs", name="e",
                          steps=1)
        cfg, registry = load_run_config(path)
        built.append(build_parts(RunContext(config=cfg, registry=registry, config_path=path,
                                            run_dir=tmp_path / "runs")))
        return built[-1]

    yield build
    for parts in built:
        close_parts(parts)


def test_a_stale_sampler_is_an_error_and_sync_follows_the_trainer(standin, tinker_key, parts_for):
    parts = parts_for(standin)
    backend, engine = parts.backend, parts.engine
    tasks = parts.environment.sample(2)
    prompts = render_prompts(backend.cfg, backend.tokenizer, tasks)
    params = SamplingParams(n=4, max_tokens=6, seed=1)
    gen = engine.generate(prompts, params)
    assert gen.policy_version == 0 and len(gen.completion_ids) == 8
    rollouts = Rollouts.from_generation(tasks, prompts, gen, 4)
    adv = torch.linspace(-1, 1, 8).unsqueeze(1).expand_as(rollouts.mask).contiguous()  # [N, T]
    metrics = backend.train_step(rollouts, adv)
    assert backend.version == 1 and metrics["train/grad_norm"] > 0
    with pytest.raises(StaleWeightsError, match="serves policy version 0, the trainer is at 1"):
        engine.generate(prompts, params)
    engine.sync(backend, 1)
    assert engine.generate(prompts, params).policy_version == 1


def test_what_the_tinker_api_cannot_express_is_refused(tiny_model, tmp_path, tinker_key):
    registry = load_plugins()
    path = run_config(tmp_path / "run.toml", model=tiny_model, url="http://127.0.0.1:9", log_dir=tmp_path, name="e",
                      steps=1)
    cases = {
        "training.temperature": (0.7, "temperature = 0.7: the tinker backend needs 1.0"),
        "algorithm.kl_coef": (0.1, "kl_coef = 0.1: the Tinker losses have no reference-model KL term"),
        "algorithm.loss_agg": ("seq_mean_token_mean", 'loss_agg = "seq_mean_token_mean": the tinker backend sends '
                                                      "token-mean weights only"),
        "inference.engine": ("pytorch", 'engine = "pytorch": the tinker backend trains on the service'),
    }
    for key, (value, message) in cases.items():
        cfg = load_config(path).replace({key: value})
        with pytest.raises(ConfigError, match=message):
            registry.build("backend", "tinker", ctx=RunContext(config=cfg, registry=registry))


def test_missing_key_and_unreachable_service_are_one_line_errors(tiny_model, tmp_path):
    run_config(tmp_path / "run.toml", model=tiny_model, url="http://127.0.0.1:9", log_dir=tmp_path, name="e", steps=1)
    proc = run_retrain("run.toml", env={"TINKER_API_KEY": ""}, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        'error: run.toml [tinker] api_key_env = "TINKER_API_KEY": that environment variable is not set. Export your '
        "Tinker API key in it (for offline work run the local stand-in: retrain tinker serve --model DIR; it accepts "
        "any tml-... key)."]
    proc = run_retrain("run.toml", env={"TINKER_API_KEY": KEY}, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert line == [line[0]] and line[0].startswith("error: tinker: cannot reach the service at http://127.0.0.1:9 (")


@pytest.fixture
def in_process_standin(tiny_model, tmp_path):
    """A stand-in in this process (real HTTP on 127.0.0.1), configured per test: (url, Service kwargs setter)."""
    servers = []

    def start(**kwargs):
        service = Service(str(tiny_model), tmp_path / "state", **kwargs)
        server = serve(service)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        start.services.append(service)
        return f"http://127.0.0.1:{server.server_address[1]}"

    start.services = []  # the Service of each started stand-in, to inspect

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_rejected_key_names_the_variable(in_process_standin, monkeypatch, parts_for):
    url = in_process_standin(api_key="tml-the-right-one")
    monkeypatch.setenv("TINKER_API_KEY", "tml-a-wrong-one")
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    parts = parts_for(url)
    with pytest.raises(TinkerServiceError, match=r"^tinker: create a LoRA training client on .*: the service at "
                       r"http://127.0.0.1:\d+ rejected the API key in \$TINKER_API_KEY \(401: invalid API key "
                       r"for this stand-in\)\. Check the key"):
        parts.engine.generate([[1, 2]], SamplingParams(n=1, max_tokens=2))


def test_an_exhausted_quota_stops_the_step_with_one_line(in_process_standin, tinker_key, parts_for):
    parts = parts_for(in_process_standin(quota_steps=1))
    tasks = parts.environment.sample(2)
    prompts = render_prompts(parts.backend.cfg, parts.backend.tokenizer, tasks)
    gen = parts.engine.generate(prompts, SamplingParams(n=4, max_tokens=4, seed=1))
    rollouts = Rollouts.from_generation(tasks, prompts, gen, 4)
    adv = torch.linspace(-1, 1, 8).unsqueeze(1).expand_as(rollouts.mask).contiguous()  # [N, T]
    parts.backend.train_step(rollouts, adv)
    with pytest.raises(TinkerServiceError, match=r"^tinker: training step 2: billing or quota exhausted at "
                       r"http://127.0.0.1:\d+ \(402: the stand-in's quota of 1 optimizer steps is used up "
                       r"\(--quota-steps\)\)\. Check your Tinker account\.$"):
        parts.backend.train_step(rollouts, adv)
    assert parts.backend.version == 1  # the failed step did not count


def test_without_the_plugin_the_names_say_what_to_install():
    registry = load_plugins(entry_points=False)  # retrain-core alone
    for kind in ("backend", "engine"):
        with pytest.raises(Exception, match=r'= "tinker": no such .* \(provided by retrain-tinker: pip install '
                                            r"retrain-tinker\)"):
            registry.get(kind, "tinker", where=f"run.toml [{kind}]")


def test_a_service_that_dies_mid_run_is_reported_in_seconds(tiny_model, tmp_path, tinker_key, monkeypatch,
                                                            parts_for):
    from retrain_tinker import connection

    monkeypatch.setattr(connection, "PROBE_S", 0.5)  # the health probe while waiting (15 s in a run)
    proc, url = start_standin(tiny_model, tmp_path / "state")
    try:
        parts = parts_for(url)
        tasks = parts.environment.sample(2)
        prompts = render_prompts(parts.backend.cfg, parts.backend.tokenizer, tasks)
        gen = parts.engine.generate(prompts, SamplingParams(n=4, max_tokens=4))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the service dies: the SDK alone would retry for minutes
        proc.wait(timeout=30)
    rollouts = Rollouts.from_generation(tasks, prompts, gen, 4)
    started = time.monotonic()
    with pytest.raises(TinkerServiceError, match=r"^tinker: cannot reach the service at http://127.0.0.1:\d+ during "
                       r"training step 1 \(ConnectError: .*\)\. .* Checkpoints already written are intact: "
                       r"--resume continues\.$"):
        parts.backend.train_step(rollouts, torch.ones_like(rollouts.mask))
    assert time.monotonic() - started < 15


def test_closing_the_parts_finishes_the_service_session(in_process_standin, tiny_model, tmp_path, tinker_key):
    """A run's end closes the backend, which finishes its SDK session: the SDK's heartbeat thread
    stops (no "Session heartbeat failed" lines once the service is gone) and the service knows."""
    url = in_process_standin()
    service = in_process_standin.services[0]
    path = run_config(tmp_path / "run.toml", model=tiny_model, url=url, log_dir=tmp_path / "runs", name="e", steps=1)
    cfg, registry = load_run_config(path)
    parts = build_parts(RunContext(config=cfg, registry=registry, config_path=path, run_dir=tmp_path / "runs"))
    parts.engine.generate([[1, 2]], SamplingParams(n=1, max_tokens=2))  # the SDK opens its session on first use
    assert list(service.sessions.values()) == ["open"]
    close_parts(parts)
    assert list(service.sessions.values()) == ["success"]
    close_parts(parts)  # closing twice is harmless
