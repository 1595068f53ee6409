"""``wandb`` logger: enabled by ``[logging] wandb_project``.

* ``wandb_mode = "offline"`` works with no network (sync later with ``wandb sync``).
* A project set without credentials (no WANDB_API_KEY, no ``wandb login``) does not stop the run:
  one line says so and the logs are written offline under <run>/wandb.
* The wandb run id is kept in <run>/wandb_id.txt, so ``--resume`` continues the same wandb run.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


class WandbLogger:
    """Weights & Biases (offline works; no credentials -> offline logs and one clear message)."""

    def __init__(self, wandb_project: str = "", wandb_entity: str = "", wandb_group: str = "",
                 wandb_tags: list[str] | None = None, wandb_mode: str = "", ctx: Any = None) -> None:
        import wandb

        run_dir = Path(getattr(ctx, "run_dir", None) or ".")
        mode = wandb_mode or os.environ.get("WANDB_MODE", "") or "online"
        if mode == "online" and not has_wandb_credentials():
            print(f"warning: wandb project {wandb_project!r} set but no wandb credentials (WANDB_API_KEY or "
                  f"`wandb login`): logging offline to {run_dir / 'wandb'}; upload later with `wandb sync`.",
                  file=sys.stderr)
            mode = "offline"
        id_file = run_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id + "\n")
        config = ctx.config.to_dict() if ctx is not None and getattr(ctx, "config", None) is not None else {}
        kwargs = dict(project=wandb_project or "retrain", entity=wandb_entity or None, group=wandb_group or None,
                      tags=list(wandb_tags or []) or None, name=run_dir.name, id=run_id, resume="allow",
                      dir=str(run_dir), config=config, mode=mode)
        try:
            self.run = wandb.init(**kwargs)
        except Exception as e:  # network or auth failure: keep training, log offline
            if mode == "offline":
                raise
            print(f"warning: wandb init failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): "
                  f"logging offline to {run_dir / 'wandb'}; upload later with `wandb sync`.", file=sys.stderr)
            kwargs["mode"] = "offline"
            self.run = wandb.init(**kwargs)
        self.mode = kwargs["mode"]
        self.run_id = run_id

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        self.run.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def close(self) -> None:
        self.run.finish()
