"""One training model of the stand-in: retrain's ``local`` backend (transformers + peft LoRA) plus
the ``pytorch`` engine's decoder, driven by Tinker's operations.

* ``forward_backward`` adds gradients of a summed per-token loss (Tinker's built-in losses, as the
  SDK documents them) and returns the target logprobs at temperature 1; gradients accumulate until
  ``optim_step``, which applies AdamW with the request's hyperparameters.
* ``snapshot`` copies the LoRA weights for a sampler; ``sample`` swaps a snapshot in, decodes with
  retrain's seeded KV-cache sampler and swaps the live weights back, so a sampler keeps serving the
  weights it was created from, whatever training does afterwards.
* ``save`` / ``load`` use the local backend's checkpoints (adapter + optimizer + step count).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from retrain_tinker.standin.wire import Datum

#: Default clip thresholds of the built-in losses (Tinker docs: ppo 0.8/1.2, cispo 0/4).
CLIP_DEFAULTS = {"ppo": (0.8, 1.2), "cispo": (0.0, 4.0)}
LOSSES = ("cross_entropy", "importance_sampling", "ppo", "cispo")


class UserError(ValueError):
    """A request the stand-in refuses (the SDK raises it as RequestFailedError, category user)."""


def local_config(base_model: str, rank: int, lora_alpha: float) -> Any:
    """The retrain config the local backend is built from: fp32 on CPU, temperature 1 (Tinker's logprobs)."""
    from retrain.config import config_from_dict

    return config_from_dict({
        "model": {"model": base_model, "lora_rank": rank, "lora_alpha": lora_alpha, "lora_dropout": 0.0},
        "backend": {"devices": "cpu", "dtype": "float32"},
        "training": {"temperature": 1.0},
    }, source="retrain tinker serve")


class StandinModel:
    """A LoRA training model (``model_id``) on the stand-in's base model."""

    def __init__(self, model_id: str, base_model: str, rank: int, lora_alpha: float, seed: int | None) -> None:
        import torch
        from retrain.backends.local import LocalBackend
        from retrain.types import RunContext

        if rank <= 0:
            raise UserError(f"LoRA rank must be positive, got {rank}")
        self.model_id, self.base_model, self.rank, self.lora_alpha = model_id, base_model, rank, lora_alpha
        if seed is not None:
            torch.manual_seed(seed)  # LoRA initialisation
        self.local = LocalBackend(devices="cpu", dtype="float32", ctx=RunContext(
            config=local_config(base_model, rank, lora_alpha), registry=None))
        self.steps = 0  # optimizer steps taken (also restored by load)

    # -- training --------------------------------------------------------------------------------------
    def forward_backward(self, data: list[Datum], loss_fn: str, config: dict[str, float],
                         forward_only: bool) -> tuple[list[np.ndarray], dict[str, float]]:
        """Per-datum target logprobs and {"loss:sum"}; gradients added unless ``forward_only``."""
        import torch
        from retrain.backends.logprobs import completion_logprobs

        if loss_fn not in LOSSES:
            raise UserError(f"loss_fn {loss_fn!r} is not implemented by the stand-in (it has {', '.join(LOSSES)})")
        if not data:
            raise UserError("forward_backward without data")
        for i, d in enumerate(data):
            targets = d.inputs.get("target_tokens")
            if targets is None or len(targets) != len(d.tokens) or len(d.tokens) == 0:
                raise UserError(f"datum {i}: target_tokens must have one id per model_input token")
            if list(targets[:-1]) != d.tokens[1:]:
                raise UserError(f"datum {i}: the stand-in supports next-token targets only "
                                "(target_tokens[:-1] == model_input[1:])")
        tok = self.local.tokenizer
        lengths = [len(d.tokens) for d in data]
        t = max(lengths)
        # position i of a datum scores target i given tokens[: i + 1]: prompt = first token, completion = targets
        completion = torch.full((len(data), t), tok.pad_token_id, dtype=torch.long)  # [D, L]
        mask = torch.zeros(len(data), t)  # [D, L]
        for i, d in enumerate(data):
            completion[i, :lengths[i]] = torch.as_tensor(d.inputs["target_tokens"], dtype=torch.long)
            mask[i, :lengths[i]] = 1.0
        model = self.local.model
        model.train(not forward_only)
        with torch.set_grad_enabled(not forward_only):
            lp, _ = completion_logprobs(model, [[d.tokens[0]] for d in data], completion, mask,
                                        pad_id=tok.pad_token_id, temperature=1.0, chunk=self.local.logprob_chunk)
            loss = self._loss(lp, mask, data, loss_fn, config)  # scalar: sum over every token of every datum
        value = float(loss.detach())
        if not math.isfinite(value):
            raise UserError(f"non-finite loss {value}")
        if not forward_only:
            loss.backward()
        logprobs = [lp[i, :lengths[i]].detach().float().numpy() for i in range(len(data))]
        return logprobs, {"loss:sum": value}

    @staticmethod
    def _loss(lp: Any, mask: Any, data: list[Datum], loss_fn: str, config: dict[str, float]) -> Any:
        import torch

        def column(name: str) -> torch.Tensor:  # [D, L] from a per-datum loss input
            out = torch.zeros_like(mask)
            for i, d in enumerate(data):
                if name not in d.inputs:
                    raise UserError(f"loss_fn {loss_fn!r} needs loss_fn_inputs[{name!r}] (datum {i})")
                x = torch.as_tensor(np.asarray(d.inputs[name], dtype=np.float32))
                if x.numel() != len(d.tokens):
                    raise UserError(f"datum {i}: loss_fn_inputs[{name!r}] has {x.numel()} values for "
                                    f"{len(d.tokens)} tokens")
                out[i, :x.numel()] = x
            return out

        if loss_fn == "cross_entropy":
            return -(lp * column("weights") * mask).sum()
        adv, sampling = column("advantages"), column("logprobs")  # [D, L] x2
        ratio = torch.exp((lp - sampling) * mask)  # [D, L]
        if loss_fn == "importance_sampling":
            return -(ratio * adv * mask).sum()
        default_low, default_high = CLIP_DEFAULTS[loss_fn]
        low = config.get("clip_low_threshold", default_low)
        high = config.get("clip_high_threshold", default_high)
        if loss_fn == "ppo":
            per_token = torch.minimum(ratio * adv, ratio.clamp(low, high) * adv)  # [D, L]
            return -(per_token * mask).sum()
        return -(ratio.clamp(low, high).detach() * lp * adv * mask).sum()  # cispo

    def optim_step(self, params: dict[str, Any]) -> dict[str, float]:
        """AdamW with the request's learning rate, betas, eps, weight decay and gradient clip."""
        import torch

        opt = self.local.optimizer
        for group in opt.param_groups:
            group["lr"] = float(params.get("learning_rate", 1e-4))
            group["betas"] = (float(params.get("beta1", 0.9)), float(params.get("beta2", 0.95)))
            group["eps"] = float(params.get("eps", 1e-12))
            group["weight_decay"] = float(params.get("weight_decay", 0.0))
        trainable = [p for g in opt.param_groups for p in g["params"]]
        clip = float(params.get("grad_clip_norm", 0.0))
        norm = float(torch.nn.utils.clip_grad_norm_(trainable, clip if clip > 0 else float("inf")))
        if math.isfinite(norm):  # a non-finite gradient is reported, not applied
            opt.step()
            self.steps += 1
        opt.zero_grad(set_to_none=True)
        return {"grad_norm": norm, "learning_rate": float(params.get("learning_rate", 1e-4)),
                "optimizer_steps": float(self.steps)}

    # -- sampling --------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The current LoRA weights, copied (what a sampler created now will serve)."""
        from peft import get_peft_model_state_dict

        return {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.local.model).items()}

    def sample(self, weights: dict[str, Any] | None, prompt: list[int], n: int, params: dict[str, Any],
               seed: int) -> list[tuple[list[int], list[float], str]]:
        """``n`` samples of ``prompt`` from ``weights`` (a snapshot; None = the base model)."""
        import contextlib

        import torch
        from peft import set_peft_model_state_dict
        from retrain.engines.pytorch import decode, stop_token_ids

        if params.get("max_tokens") is None:
            raise UserError("sampling_params.max_tokens is required by the stand-in")
        if int(params.get("top_k", -1)) != -1:
            raise UserError("top_k is not implemented by the stand-in")
        stop = params.get("stop")
        model, tok = self.local.model, self.local.tokenizer
        if stop is None:
            eos = stop_token_ids(tok, model)
        elif isinstance(stop, list) and all(isinstance(x, int) for x in stop):
            eos = set(stop)
        else:
            raise UserError("stop strings are not implemented by the stand-in (pass token ids)")
        live = self.snapshot() if weights is not None else None
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), (model.disable_adapter() if weights is None else contextlib.nullcontext()):
                if weights is not None:
                    set_peft_model_state_dict(model, weights)
                temperature = float(params.get("temperature", 1.0))
                d = decode(model, [list(prompt)] * n, max_tokens=int(params["max_tokens"]), temperature=temperature,
                           top_p=float(params.get("top_p", 1.0)), seed=seed, eos_ids=eos, pad_id=tok.pad_token_id,
                           greedy=temperature <= 0, group_size=n)
        finally:
            if live is not None:
                set_peft_model_state_dict(model, live)
            model.train(was_training)
        return list(zip(d.tokens, d.logprobs, d.finish_reasons, strict=True))

    # -- checkpoints -----------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Adapter + optimizer + step count (the local backend's checkpoint) and what the model is."""
        self.local.version = self.steps
        self.local.save_checkpoint(folder)
        (folder / "tinker_model.json").write_text(json.dumps(
            {"base_model": self.base_model, "rank": self.rank, "lora_alpha": self.lora_alpha,
             "model_id": self.model_id}) + "\n")

    def load(self, folder: Path, optimizer: bool) -> None:
        state = self.local.optimizer.state_dict() if not optimizer else None
        self.local.load_checkpoint(folder)
        self.steps = self.local.version
        if state is not None:  # weights only: a fresh optimizer
            self.local.optimizer.load_state_dict(state)


def read_model_meta(folder: Path) -> dict[str, Any]:
    path = folder / "tinker_model.json"
    if not path.is_file():
        raise UserError(f"no checkpoint at {folder}")
    return json.loads(path.read_text())


def random_seed() -> int:
    return int.from_bytes(os.urandom(4), "little")
