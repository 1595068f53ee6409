"""The ``tinker`` backend: the policy lives on a Tinker service; retrain drives it through the SDK.

* One retrain step = ``forward_backward(datums, "cispo")`` + ``optim_step(AdamParams)``
  (``retrain_tinker.datums`` says why cispo reproduces retrain's gradient exactly). AdamW with
  torch's betas/eps (the local backend's optimizer), the config's learning rate with the same
  linear warm-up, weight decay and gradient clip. ``version`` counts completed optimizer steps.
* The service returns the trainer's logprobs of every token: mismatch metrics and retrain's
  loss values come from them, and the service's own loss sum is checked against the data sent.
* Sampling clients come from ``save_weights_and_get_sampling_client`` (``sampling_client``),
  tagged with the version they snapshot; the ``tinker`` engine refuses a stale one.
* Checkpoints: ``save_state`` on the service, its ``tinker://`` path recorded in the run's
  checkpoint folder (``tinker.json``); ``load_checkpoint`` starts a training client from that
  state with its optimizer (``create_training_client_from_state_with_optimizer``).

The training client is created lazily (first step, first sample or checkpoint load), so a resumed
run never creates a fresh adapter it would throw away.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.errors import ConfigError, RetrainError

from retrain_tinker import connection
from retrain_tinker.datums import LOSS_FN, expected_loss_sum, loss_config, policy_batch, trainer_logprobs

if TYPE_CHECKING:
    import torch
    from retrain.types import Rollouts, RunContext

STATE_FILE = "tinker.json"
TORCH_ADAM = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}  # torch.optim.AdamW defaults, as the local backend


def check_config(ctx: RunContext) -> None:
    """What retrain's config asks for that the Tinker API cannot express: refuse it, before any request."""
    cfg = ctx.config
    engine = cfg.inference.engine
    if engine != "tinker" and "." not in engine and ":" not in engine:
        raise ConfigError(f'{cfg.source} [inference] engine = "{engine}": the tinker backend trains on the service; '
                          'sample from it with engine = "tinker".')
    if cfg.training.temperature != 1.0:
        raise ConfigError(f"{cfg.source} [training] temperature = {cfg.training.temperature}: the tinker backend "
                          "needs 1.0 (the service's training logprobs are at temperature 1, so another sampling "
                          "temperature would bias the importance weights).")
    if cfg.algorithm.kl_coef > 0:
        raise ConfigError(f"{cfg.source} [algorithm] kl_coef = {cfg.algorithm.kl_coef}: the Tinker losses have no "
                          "reference-model KL term; set kl_coef = 0 with the tinker backend.")
    if cfg.algorithm.loss_agg != "token_mean":  # the weights sent are mask * A / (step tokens)
        raise ConfigError(f'{cfg.source} [algorithm] loss_agg = "{cfg.algorithm.loss_agg}": the tinker backend sends '
                          'token-mean weights only; set loss_agg = "token_mean" with the tinker backend.')


class TinkerBackend:
    """Tinker service: LoRA training through the official tinker SDK (forward_backward + optim_step, save_state)."""

    config_section = "tinker"

    def __init__(self, *, base_model: str, lora_rank: int, base_url: str, api_key_env: str, timeout: float,
                 ctx: RunContext | None) -> None:
        if ctx is None:
            raise ConfigError("the tinker backend needs a run context (build it with registry.build(..., ctx=ctx)).")
        where = f"{ctx.config.source} [tinker]"
        if not base_model:
            raise ConfigError(f'{where} base_model is empty: name the service\'s base model, e.g. "Qwen/Qwen3-8B".')
        if lora_rank <= 0:
            raise ConfigError(f"{where} lora_rank = {lora_rank}: the service trains LoRA adapters; use a rank >= 1.")
        check_config(ctx)
        self.cfg = ctx.config
        if timeout <= 0:
            raise ConfigError(f"{where} timeout = {timeout:g}: must be a positive number of seconds.")
        self.base_model, self.lora_rank = base_model, lora_rank
        self.service, self.link = connection.connect(base_url, api_key_env, timeout, where)
        self.tokenizer = self._tokenizer()
        ctx.tokenizer = self.tokenizer
        self.version = 0
        self.training: Any = None  # tinker.TrainingClient, created on first use

    def _tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(self.base_model)
        except OSError as e:
            raise ConfigError(f'{self.cfg.source} [tinker] base_model = "{self.base_model}": its tokenizer cannot be '
                              f"loaded here ({e}); retrain renders prompts and decodes completions locally.") from e
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        return tok

    def training_client(self) -> Any:
        """The service's training client (a fresh LoRA adapter on first use)."""
        if self.training is None:
            self.training = self.link.call(f"create a LoRA training client on {self.base_model}", lambda: (
                self.service.create_lora_training_client(base_model=self.base_model, rank=self.lora_rank,
                                                         seed=self.cfg.training.seed)))
        return self.training

    # -- one optimizer step ---------------------------------------------------------------------------
    def learning_rate(self) -> float:
        """The local backend's schedule: linear warm-up over warmup_steps, then constant."""
        t = self.cfg.training
        return t.lr * (min(1.0, (self.version + 1) / t.warmup_steps) if t.warmup_steps > 0 else 1.0)

    def train_step(self, rollouts: Rollouts, token_advantages: torch.Tensor, *,
                   importance_correction: bool = True) -> dict[str, float]:
        """One optimizer step on the service; returns loss/*, mismatch/*, train/* and tinker/* metrics.

        The sampler is never the trainer here, so the importance correction always applies
        (``importance_correction`` is accepted for the protocol and ignored).
        """
        import tinker
        import torch
        from retrain.train.loss import mismatch_metrics, policy_loss, truncated_is_weight

        a, t = self.cfg.algorithm, self.cfg.training
        step = self.version + 1
        batch = policy_batch(rollouts, token_advantages)
        if not batch.datums:
            raise RetrainError(f"tinker: step {step} has no trained tokens (every completion is masked out).")
        client = self.training_client()
        lr = self.learning_rate()
        adam = tinker.AdamParams(learning_rate=lr, weight_decay=t.weight_decay, grad_clip_norm=t.max_grad_norm,
                                 **TORCH_ADAM)
        what = f"training step {step}"
        with self.link.errors(what):  # both submitted before waiting: the service pipelines them
            fb_future = client.forward_backward(batch.datums, LOSS_FN, loss_config(a.tis_cap))
            optim_future = client.optim_step(adam)
        fb, optim = self.link.wait(fb_future, what), self.link.wait(optim_future, what)
        mask = rollouts.mask.float()  # [N, T]
        engine_lp = rollouts.logprobs.float()  # [N, T]
        lp = trainer_logprobs(batch, fb.loss_fn_outputs, tuple(mask.shape))  # [N, T]
        service_loss = float(fb.metrics.get("loss:sum", float("nan")))
        expected, tol = expected_loss_sum(lp, engine_lp, batch.weights, mask, a.tis_cap)
        if not math.isfinite(service_loss) or abs(service_loss - expected) > tol:
            raise RetrainError(f"tinker: step {step}: the service's loss:sum {service_loss:.6g} differs from "
                               f"{expected:.6g}, the cispo loss of the data sent: it did not train what retrain "
                               "computed (stopping before more steps are wasted).")
        opt_metrics = {k: float(v) for k, v in (optim.metrics or {}).items()}
        if not math.isfinite(opt_metrics.get("grad_norm", 0.0)):  # the service may not report it at all
            raise RetrainError(f"tinker: step {step}: non-finite gradient norm {opt_metrics['grad_norm']} reported "
                               "by the service.")
        self.version = step
        # retrain's own loss values (as the local backend reports them), from the service's logprobs
        w = truncated_is_weight(lp, engine_lp, a.tis_cap)  # [N, T]
        _, sums = policy_loss(lp, lp, token_advantages.float(), mask, kind=a.loss, eps_low=a.clip_eps_low,
                              eps_high=a.clip_eps_high, denom=batch.denom, is_weight=w)
        with torch.no_grad():
            truncated = float(((torch.exp(lp - engine_lp) > a.tis_cap).float() * mask).sum() / batch.denom)
        return {
            "loss/policy": sums.policy / batch.denom,
            "loss/clip_frac": sums.clipped / batch.denom,
            "loss/ratio_mean": sums.ratio / batch.denom,
            "loss/kl_ref": 0.0,
            **mismatch_metrics(lp, engine_lp, mask),
            **({"train/grad_norm": opt_metrics["grad_norm"]} if "grad_norm" in opt_metrics else {}),
            "train/lr": lr,
            "train/tokens": batch.denom,
            "tinker/loss_sum": service_loss,
            "tinker/is_truncated_frac": truncated,
            **{f"tinker/{k}": v for k, v in opt_metrics.items() if k != "grad_norm"},
        }

    def logprobs(self, rollouts: Rollouts, rows: slice | None = None, with_entropy: bool = False,
                 model: Any = None) -> tuple[torch.Tensor, None]:
        """The service's logprobs [N, T] of the completion tokens (one ``forward``, no gradient; no entropy).

        What retrain's post-sync check compares with the sampler's logprobs (``[inference] sync_tolerance``).
        """
        import torch

        if rows is not None:
            raise NotImplementedError("tinker backend: logprobs of a row slice")
        batch = policy_batch(rollouts, torch.zeros_like(rollouts.mask))
        mask = rollouts.mask
        if not batch.datums:
            return torch.zeros(mask.shape), None
        client = self.training_client()
        out = self.link.call(f"score {len(batch.datums)} completions at version {self.version}", lambda: (
            client.forward(batch.datums, LOSS_FN, loss_config(self.cfg.algorithm.tis_cap))))
        return trainer_logprobs(batch, out.loss_fn_outputs, tuple(mask.shape)), None

    # -- sampling -------------------------------------------------------------------------------------
    def sampling_client(self) -> Any:
        """A sampling client on a snapshot of the current weights (``self.version``)."""
        client = self.training_client()
        return self.link.call(f"snapshot the weights of version {self.version} for sampling",
                              client.save_weights_and_get_sampling_client)

    def close(self) -> None:
        """Finish the service session (end of the run; retrain.train.parts.close_parts)."""
        service, self.service, self.training = self.service, None, None
        if service is not None:
            connection.close_service(service, self.link.url)

    # -- checkpoints ----------------------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path) -> None:
        """``save_state`` on the service (weights + optimizer); the tinker:// path goes in ``path/tinker.json``."""
        client = self.training_client()
        name = f"retrain-v{self.version}"
        saved = self.link.call(f"save_state {name}", lambda: client.save_state(name, overwrite=True))
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / STATE_FILE).write_text(json.dumps({
            "state_path": saved.path, "version": self.version, "base_model": self.base_model,
            "lora_rank": self.lora_rank, "model_id": client.model_id, "base_url": self.link.url}, indent=1) + "\n")

    def load_checkpoint(self, path: str | Path) -> None:
        """A new training client from the saved state, with its optimizer; version restored."""
        path = Path(path)
        f = path / STATE_FILE
        if not f.is_file():
            raise ConfigError(f"{path}: no {STATE_FILE} in this checkpoint: it was not written by the tinker backend.")
        state = json.loads(f.read_text())
        if state["base_model"] != self.base_model or int(state["lora_rank"]) != self.lora_rank:
            raise ConfigError(f"{path}: saved for base_model {state['base_model']!r} rank {state['lora_rank']}, "
                              f"the config has [tinker] base_model {self.base_model!r} rank {self.lora_rank}.")
        self.training = self.link.call(f"load_state {state['state_path']}", lambda: (
            self.service.create_training_client_from_state_with_optimizer(state["state_path"])))
        self.version = int(state["version"])
