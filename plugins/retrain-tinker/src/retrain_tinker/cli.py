"""`retrain tinker ...`: the local Tinker-compatible stand-in service."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from retrain.errors import RetrainError

app = typer.Typer(help="Tinker tools: a local Tinker-compatible service for offline development and tests.",
                  no_args_is_help=True, add_completion=False)


@app.callback()
def tinker() -> None:
    """Tinker tools: a local Tinker-compatible service for offline development and tests."""


@app.command("serve")
def serve_command(
    model: str = typer.Option(..., "--model", help="Base model: a local HF folder (or hub id) small enough for this machine."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (keep it on loopback)."),
    port: int = typer.Option(0, help="Port; 0 = a free one (printed on the first line)."),
    state_dir: Path = typer.Option(Path("tinker-standin"), "--state-dir",  # noqa: B008
                                   help="Where save_state checkpoints are kept."),
    name: str = typer.Option("", help="Base-model name clients ask for (default: --model as given)."),
    lora_alpha: float = typer.Option(32.0, help="LoRA alpha of the adapters it trains (the real service fixes its own)."),
    api_key_env: str = typer.Option("", help="Require the API key in this environment variable (default: accept any key)."),
    threads: int = typer.Option(0, help="torch threads (0 = torch's default)."),
    quota_steps: int = typer.Option(0, help="Answer optim_step with 402 (quota used up) after this many; 0 = no quota."),
) -> None:
    """Serve the Tinker API on MODEL: a stand-in for the real service (tests, offline development)."""
    api_key = ""
    if api_key_env:
        api_key = os.environ.get(api_key_env, "")
        if not api_key:
            raise RetrainError(f"--api-key-env {api_key_env}: that environment variable is not set.")
    import torch

    from retrain_tinker.standin.server import Service, serve

    if threads > 0:
        torch.set_num_threads(threads)
    state_dir.mkdir(parents=True, exist_ok=True)
    server = serve(Service(model, state_dir, lora_alpha=lora_alpha, api_key=api_key, served_name=name,
                           quota_steps=quota_steps), host, port)
    url = f"http://{server.server_address[0]}:{server.server_address[1]}"
    print(f"retrain tinker stand-in: serving {name or model} at {url} (set TINKER_BASE_URL={url}); "
          f"checkpoints in {state_dir}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("retrain tinker stand-in: stopped", file=sys.stderr)
    finally:
        server.server_close()
