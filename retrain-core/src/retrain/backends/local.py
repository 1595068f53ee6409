"""The ``local`` backend: transformers + peft on this machine (docs/training.md, "The local backend").

* LoRA on all linear projections (``[model] lora_rank/alpha/dropout``), or full weights when the
  rank is 0. fp32 on CPU, bf16 on GPU (``[backend] dtype``); optional bf16 autocast over fp32
  weights (``[backend] autocast``, also applied by the pytorch engine's forwards).
* Per-token logprobs at the sampling temperature in chunks (``retrain.backends.logprobs``).
* AdamW, grad-norm clip, linear warm-up then constant LR; micro-batching; optional gradient
  checkpointing; optional ``torch.compile`` of the trained decoder (``[backend] compile``,
  ``retrain.backends.compiled``). ``version`` counts optimizer steps (policy version).
* Checkpoints: adapter (or full weights) + optimizer + scheduler + version.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.backends.attention import use_grouped_attention
from retrain.backends.compiled import CompiledDecoder, wants_compile
from retrain.backends.frozen import (
    adapter_inputs_uncast,
    adapters_fused,
    fusable_adapters,
    lora_layers,
    restore_frozen_base,
    store_frozen_base,
)
from retrain.backends.micro_batch import ActivationMeter, allocated_bytes, auto_rows, even_slices
from retrain.errors import ConfigError
from retrain.train.loss import aggregation, mismatch_sums, policy_loss, truncated_is_weight

if TYPE_CHECKING:
    import torch

    from retrain.types import Rollouts, RunContext


def resolve_device(devices: str) -> str:
    import torch

    from retrain.distributed.world import rank_device

    if rank_device(devices) is not None:  # under torchrun: this rank's GPU (or cpu for gloo runs)
        return rank_device(devices)  # type: ignore[return-value]
    if devices in ("auto", ""):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if devices == "cpu":
        return "cpu"
    check_devices_present(devices)
    if devices.startswith("gpu"):
        idx = devices.partition(":")[2].split(",")[0] or "0"
        return f"cuda:{idx}"
    return devices


def check_devices_present(devices: str, where: str = "[backend] devices") -> None:
    """A GPU named in ``devices`` (gpu, gpu:I,J, cuda:I, mps) must exist here; one line otherwise."""
    import torch

    kind, _, rest = devices.partition(":")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f'{where} = "{devices}": this machine has no MPS device; use "cpu" or "auto".')
    if kind not in ("gpu", "cuda"):
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ConfigError(f'{where} = "{devices}": this machine has no CUDA GPU (torch.cuda.is_available() is '
                          'False); use "cpu" or "auto".')
    missing = [i for i in (rest.split(",") if rest else []) if int(i) >= count]
    if missing:
        raise ConfigError(f'{where} = "{devices}": no GPU {missing[0]} here ({count} visible: 0-{count - 1}).')


def resolve_dtype(dtype: str, device: str, full_finetune: bool = False) -> Any:
    """``auto``: bf16 on GPU, fp32 on CPU, and fp32 for full fine-tuning everywhere (AdamW steps of
    typical learning rates round away in bf16 weights: ``check_updates_survive``)."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") and not full_finetune else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


#: ``micro_batch_size = "auto"`` on a CPU: the default run's step peaks at 2.75 GB instead of 7.6 and runs faster
#: (docs/default-run.md, Memory). On a GPU "auto" is the whole batch when its activations fit (else the most rows
#: that do, backends/micro_batch.py): there the default run's 8 micro-batches took 4.9 s a step against 0.85-1.15 s
#: whole (one H100, docs/default-run.md).
CPU_MICRO_BATCH = 16


def resolve_micro_batch(setting: int | str, device: str) -> int:
    """Rows per micro-batch for ``[backend] micro_batch_size`` on ``device`` (0 = the whole batch)."""
    if setting == "auto":
        return CPU_MICRO_BATCH if device == "cpu" else 0
    return int(setting)


def check_updates_survive(params: list[Any], lr: float, dtype: Any, where: str) -> None:
    """Fail loudly when most AdamW updates would round away in low-precision weights.

    An AdamW step moves a weight by about ``lr``; a bf16 weight w only changes when the step is
    at least half its spacing, about |w| * eps / 2 (eps = 2^-7 for bf16). At lr 5e-6 that is lost for
    every |w| > 1.3e-3, i.e. nearly all the weights of a pretrained model: training would log
    losses and rewards while the model never changes."""
    import torch

    if dtype not in (torch.bfloat16, torch.float16) or not params or lr <= 0:
        return
    half_spacing = torch.finfo(dtype).eps / 2
    with torch.no_grad():
        flat = torch.cat([p.detach().abs().float().flatten()[::max(1, p.numel() // 4096)] for p in params])  # sample
        lost = float((flat * half_spacing > lr).float().mean())
        needed = float(flat.median()) * half_spacing
    if lost > 0.5:
        name = "bfloat16" if dtype == torch.bfloat16 else "float16"
        raise ConfigError(
            f"{where}: full fine-tuning of {name} weights at [training] lr = {lr:g}: for {lost:.0%} of the weights an "
            f"AdamW step of {lr:g} is below half of {name}'s spacing at their value and rounds away, so they would "
            f'never change. Use [backend] dtype = "float32" (fp32 master weights; add autocast = "bfloat16" for '
            f"bf16 speed), LoRA ([model] lora_rank > 0), or lr >= {needed:.1e}.")


def _cpu_name() -> str:
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def write_numerics(run_dir: Path, device: str, dtype: Any, autocast: Any, compile_backend: str = "none",
                   attention: str = "default") -> dict[str, Any]:
    """``<run dir>/numerics.json``: what decides the run's floating-point results beyond the config and
    the seed (docs/training.md, Reproducibility): versions, device, CPU kernel set, torch threads."""
    import json

    import torch
    import transformers

    info = {"torch": torch.__version__, "transformers": transformers.__version__, "device": device,
            "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else _cpu_name(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(), "dtype": str(dtype).removeprefix("torch."),
            "autocast": str(autocast).removeprefix("torch.") if autocast is not None else "none",
            "compile": compile_backend,  # torch.compile backend of the trained decoder, or "none"
            "attention": attention}  # transformers attention implementation (sdpa_gqa on CPU: backends/attention.py)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "numerics.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def model_source(name: str) -> tuple[str, str | None]:
    """(path or hub id, gguf file name or None), via ``retrain.models`` when it is installed."""
    try:
        from retrain.models import resolve_model_source
    except ImportError:
        resolve_model_source = None
    if resolve_model_source is not None:
        src = resolve_model_source(name)
        if isinstance(src, (tuple, list)):
            return str(src[0]), (src[1] if len(src) > 1 else None)
        if isinstance(src, (str, Path)):
            return str(src), None
        return str(src.path), getattr(src, "gguf_file", None)
    p = Path(name)
    if p.suffix == ".gguf" and p.is_file():
        return str(p.parent), p.name
    return name, None


class LocalBackend:
    """Local trainer: transformers + peft, LoRA on all linear projections or full weights ([model] lora_rank)."""

    config_section = "backend"

    def __init__(self, devices: str = "auto", dtype: str = "auto", autocast: str = "none",
                 gradient_checkpointing: bool = False,
                 logprob_chunk: int = 1024, micro_batch_size: int | str = 0, threads: int = 0,
                 compile: bool | str = "auto", ctx: RunContext | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from retrain.distributed.world import rank_device

        if ctx is None:
            raise ConfigError("the local backend needs a run context (build it with registry.build(..., ctx=ctx)).")
        cfg = ctx.config
        self.cfg = cfg
        self.device = resolve_device(devices)
        if threads > 0:
            torch.set_num_threads(threads)
        self.dtype = resolve_dtype(dtype, self.device, full_finetune=cfg.model.lora_rank == 0)
        mixed = None if autocast == "none" else resolve_dtype(autocast, self.device)
        self.autocast_dtype = None if mixed == self.dtype else mixed  # bf16 weights (GPU default): nothing to do
        self.logprob_chunk = logprob_chunk
        self.micro_batch_size = resolve_micro_batch(micro_batch_size, self.device)
        self.micro_batch_auto = micro_batch_size == "auto" and self.device.startswith("cuda")  # sized per step
        self.activation_meter = ActivationMeter()  # what "auto" micro-batches held: sizes the next step's
        self.temperature = cfg.training.temperature
        self.version = 0
        self.dist: Any = None  # torchrun runs: retrain.distributed.fsdp.ShardedTrainer (FSDP2 hooks below)
        self.sampling_model: Any = None  # torchrun runs: the full replica the pytorch engine samples from
        path, gguf = model_source(cfg.model.model)
        kw: dict[str, Any] = {"trust_remote_code": cfg.model.trust_remote_code}
        if gguf:
            kw["gguf_file"] = gguf
        self.tokenizer = AutoTokenizer.from_pretrained(path, **kw)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype, **kw).to(self.device)
        use_grouped_attention(model, self.device)  # CPU: no repeated K/V heads (backends/attention.py)
        self.lora = cfg.model.lora_rank > 0
        if self.lora:
            from peft import LoraConfig, get_peft_model

            lcfg = LoraConfig(r=cfg.model.lora_rank, lora_alpha=cfg.model.lora_alpha,
                              lora_dropout=cfg.model.lora_dropout, target_modules="all-linear",
                              task_type="CAUSAL_LM")
            model = get_peft_model(model, lcfg)
            if self.autocast_dtype is not None and rank_device(devices) is None:
                store_frozen_base(model, self.autocast_dtype)  # the bf16 autocast would cast them to anyway
            elif self.dtype in (torch.bfloat16, torch.float16) and rank_device(devices) is None:
                self.autocast_dtype = self.dtype  # fp32 adapters computed in bf16: backends/frozen.py
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if self.lora:
                model.enable_input_require_grads()
        self.model = model
        self.adapter_layers = lora_layers(model) if self.lora else []  # found once: compute_context runs per forward
        # a CPU's bf16 addmm decoded slower than peft's three ops: fused on CUDA only (backends/frozen.py)
        self.fused_adapters = fusable_adapters(self.adapter_layers) if self.device.startswith("cuda") else []
        self.reference = None  # full fine-tuning with a KL penalty keeps a frozen copy of the base
        a = cfg.algorithm
        if a.kl_coef > 0 and not self.lora:
            import copy

            self.reference = copy.deepcopy(model).eval().requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        t = cfg.training
        if not self.lora:
            check_updates_survive(params, t.lr, self.dtype, f"{cfg.source} [backend] dtype = \"{dtype}\"")
        self.optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
        warm = t.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warm) if warm > 0 else 1.0)
        ctx.tokenizer = self.tokenizer
        self.compiled: CompiledDecoder | None = None  # [backend] compile: train_step's decoder, compiled
        distributed = rank_device(devices) is not None  # torchrun: the sharded trainer runs its own forward
        if compile is True and distributed:
            print("warning: [backend] compile = true: not applied under torchrun (the sharded trainer's "
                  "forward is not compiled); training runs uncompiled", file=sys.stderr, flush=True)
        elif wants_compile(compile, self.device, t.max_steps, distributed):
            from retrain.backends.logprobs import causal_lm_parts

            self.compiled = CompiledDecoder(causal_lm_parts(model)[0])
        if ctx.run_dir is not None:
            write_numerics(Path(ctx.run_dir), self.device, self.dtype, self.autocast_dtype,
                           self.compiled.backend if self.compiled else "none",
                           getattr(model.config, "_attn_implementation", None) or "default")

    def compute_context(self) -> Any:
        """``torch.autocast`` for ``[backend] autocast`` (forward passes of trainer and engine), else a no-op.
        A LoRA run with bf16 (fp16) weights always has it: its fp32 adapters compute in bf16 (backends/frozen.py)."""
        import contextlib

        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(torch.autocast(device_type=self.device.split(":")[0], dtype=self.autocast_dtype))
        if self.adapter_layers:
            stack.enter_context(adapter_inputs_uncast(self.adapter_layers))  # autocast computes the adapters in bf16
        if self.fused_adapters:
            stack.enter_context(adapters_fused(self.fused_adapters))  # scaling * B(A(x)) inside the B matmul
        return stack

    # -- logprobs -------------------------------------------------------------------------------
    def logprobs(self, rollouts: Rollouts, rows: slice | None = None, with_entropy: bool = False,
                 model: Any = None, prefix: Any = None, decoder: Any = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Trainer logprobs [n, T] of the sampled tokens at the sampling temperature (grad if enabled).
        ``prefix``: the step's common prompt prefix, already run (``SharedPrefix``; micro-batches).
        ``decoder``: the model's decoder compiled (``train_step`` under ``[backend] compile``)."""
        from retrain.backends.logprobs import completion_logprobs

        rows = rows or slice(0, rollouts.n)
        if self.dist is not None and model is None:
            return self.dist.logprobs(self, rollouts, rows, with_entropy)
        with self.compute_context():
            return completion_logprobs(
                model if model is not None else self.model, rollouts.prompt_ids[rows],
                rollouts.completion_ids[rows], rollouts.mask[rows], pad_id=self.tokenizer.pad_token_id,
                temperature=self.temperature, chunk=self.logprob_chunk, with_entropy=with_entropy, prefix=prefix,
                decoder=decoder)

    def token_entropy(self, rollouts: Rollouts) -> torch.Tensor:
        """Shannon entropy [N, T] of the trainer's distribution at the sampling temperature (0 off-mask)."""
        import torch

        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            _, ent = self.logprobs(rollouts, with_entropy=True)
        self.model.train(was_training)
        return ent.cpu()  # type: ignore[union-attr]

    def _reference_logprobs(self, rollouts: Rollouts, rows: slice) -> torch.Tensor:
        import torch

        with torch.no_grad():
            if self.lora:
                with self.model.disable_adapter():
                    return self.logprobs(rollouts, rows)[0]
            return self.logprobs(rollouts, rows, model=self.reference)[0]

    # -- one optimizer step ---------------------------------------------------------------------
    def train_step(self, rollouts: Rollouts, token_advantages: torch.Tensor, *,
                   importance_correction: bool = False) -> dict[str, float]:
        """One optimizer step on ``token_advantages [N, T]``; returns loss/*, mismatch/*, train/* metrics.

        ``importance_correction``: the engine is not this trainer (different numerics): clip the
        ratio against the trainer's own pre-update logprobs and weight tokens by the truncated
        importance weight min(exp(trainer - engine), tis_cap). Otherwise the ratio is taken against
        the engine's sampling logprobs directly (1 on-policy).

        Under ``[backend] compile`` the policy forward and backward run through the compiled decoder
        (a compiler error: one warning, and the step runs eagerly from the same state).
        """
        if self.compiled is not None and self.compiled.active and self.dist is None:
            return self.compiled.run_step(lambda decoder: self._train_step(
                rollouts, token_advantages, importance_correction=importance_correction, decoder=decoder))
        return self._train_step(rollouts, token_advantages, importance_correction=importance_correction)

    def _train_step(self, rollouts: Rollouts, token_advantages: torch.Tensor, *, importance_correction: bool,
                    decoder: Any = None) -> dict[str, float]:
        import torch

        a, t = self.cfg.algorithm, self.cfg.training
        n = rollouts.n
        mb = self.micro_batch_size if self.micro_batch_size > 0 else n
        if self.micro_batch_auto:  # the whole batch if its activations fit, else fewer rows (backends/micro_batch.py)
            width = max(len(p) for p in rollouts.prompt_ids) + rollouts.mask.shape[1]
            mb = auto_rows(self.model, n, width, (self.autocast_dtype or self.dtype).itemsize, self.device,
                           self.activation_meter)
        slices = even_slices(n, mb) if self.micro_batch_auto else [slice(s, min(n, s + mb)) for s in range(0, n, mb)]
        mb = max(r.stop - r.start for r in slices)
        mask_all = rollouts.mask.to(self.device)  # [N, T]
        denom = float(mask_all.sum().clamp(min=1.0))
        step_rows, step_micro_batches = float(n), float(len(slices))
        if self.dist is not None:  # the whole step, all ranks
            denom = max(1.0, self.dist.global_tokens(float(mask_all.sum())))
            if a.loss_agg != "token_mean":
                counts = self.dist.reduce_sums({"rows": step_rows, "micro": step_micro_batches})
                step_rows, step_micro_batches = counts["rows"], counts["micro"]
        adv_all = token_advantages.to(self.device, torch.float32)  # [N, T]
        engine_lp_all = rollouts.logprobs.to(self.device, torch.float32)  # [N, T]
        want_ref = a.kl_coef > 0
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        sums_mb: list[torch.Tensor] = []  # per micro-batch: the sums of the step's metrics (below)
        prefix = None
        if mb < n and self.dist is None:  # micro-batches share one forward of the prompts' common prefix
            from retrain.backends.logprobs import SharedPrefix

            with self.compute_context():
                prefix = SharedPrefix.of(self.model, rollouts.prompt_ids, decoder=decoder)
        measure = self.micro_batch_auto and self.dist is None  # the first micro-batch's held activations
        for i, rows in enumerate(slices):
            held_before = allocated_bytes(self.device) if measure and i == 0 else None
            mask = mask_all[rows]
            lp, _ = self.logprobs(rollouts, rows, prefix=prefix, decoder=decoder)  # [n, T]
            engine_lp = engine_lp_all[rows]  # [n, T]
            if importance_correction:
                old, w = lp.detach(), truncated_is_weight(lp, engine_lp, a.tis_cap)
            else:
                old, w = engine_lp, None
            ref = self._reference_logprobs(rollouts, rows) if want_ref else None
            agg_denom, row_scale = aggregation(a.loss_agg, mask, step_tokens=denom, step_rows=step_rows,
                                               max_tokens=t.max_tokens, step_micro_batches=step_micro_batches)
            loss, sums = policy_loss(lp, old, adv_all[rows], mask, kind=a.loss, eps_low=a.clip_eps_low,
                                     eps_high=a.clip_eps_high, denom=agg_denom, is_weight=w, ref_logprobs=ref,
                                     kl_coef=a.kl_coef, kl_estimator=a.kl_estimator, row_scale=row_scale,
                                     on_device=True)
            if held_before is not None:  # per token of the rows' full width, as the estimate counts them
                self.activation_meter.observe(allocated_bytes(self.device) - held_before, (rows.stop - rows.start) * width)
            if self.dist is not None:  # FSDP2: reduce gradients over ranks once, after the last micro-batch
                self.dist.before_backward(last=rows.stop >= n)
            loss.backward()
            mm_kl, mm_abs = mismatch_sums(lp, engine_lp, mask)
            sums_mb.append(torch.stack([sums.policy, sums.kl_ref, sums.clipped, sums.ratio, sums.objective,
                                        mm_kl, mm_abs]))  # [7] on the device: no synchronisation per micro-batch
        if prefix is not None:
            prefix.backward()  # the micro-batches' summed gradient through the one prefix forward
        tot = dict(zip(("policy", "kl", "clip", "ratio", "objective", "mm_kl", "mm_abs"),
                       torch.stack(sums_mb).sum(0).tolist(), strict=True))
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.dist is not None:
            self.dist.reduce_gradients(params)  # LoRA replicated: one all-reduce; FSDP2: already reduced
            tot = self.dist.reduce_sums(tot)
            grad_norm = self.dist.clip_grad_norm(params, t.max_grad_norm)
        else:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm))
        lr = self.scheduler.get_last_lr()[0]
        if math.isfinite(grad_norm):
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.version += 1
        if self.dist is not None:
            self.dist.refresh_replica()
        return {
            "loss/policy": tot["policy"] / denom,  # token mean of the per-token term, whatever loss_agg
            "loss/objective": tot["objective"],  # the value minimised (loss_agg, KL included)
            "loss/clip_frac": tot["clip"] / denom,
            "loss/ratio_mean": tot["ratio"] / denom,
            "loss/kl_ref": tot["kl"] / denom if want_ref else 0.0,
            "mismatch/kl": tot["mm_kl"] / denom,
            "mismatch/abs_logprob_delta": tot["mm_abs"] / denom,
            "train/grad_norm": grad_norm,
            "train/lr": lr,
            "train/tokens": denom,
            "memory/micro_batch_rows": float(mb),
        }

    # -- weights for external engines --------------------------------------------------------------
    def save_adapter(self, path: str | Path) -> Path:
        """Write the LoRA adapter (peft format) to ``path``; for engines that load adapters."""
        if not self.lora:
            raise ConfigError("save_adapter: [model] lora_rank = 0 (full fine-tuning) has no adapter; use save_weights.")
        path = Path(path)
        (self.sampling_model if self.dist is not None else self.model).save_pretrained(path)
        return path

    def save_weights(self, path: str | Path) -> Path:
        """Write full (LoRA-merged when LoRA) weights + tokenizer in HF format to ``path``."""
        path = Path(path)
        model = self.sampling_model if self.dist is not None else self.model  # FSDP: the full replica
        if self.lora:
            import copy

            merged = copy.deepcopy(model)
            restore_frozen_base(merged, self.dtype)  # W + BA in the model's dtype, not the autocast one
            merged = merged.merge_and_unload()
            merged.save_pretrained(path)
        else:
            model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        return path

    # -- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path) -> None:
        """Adapter (LoRA) or weights + optimizer + scheduler + version into the folder ``path``."""
        import torch

        path = Path(path)
        if self.dist is not None:  # torch.distributed.checkpoint, resumable on any number of ranks
            from retrain.distributed.checkpoint import save_backend

            return save_backend(self, path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path / ("adapter" if self.lora else "model"))
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "version": self.version}, path / "trainer_state.pt")

    def load_checkpoint(self, path: str | Path) -> None:
        from safetensors.torch import load_file

        from retrain.train.checkpoint import load_data

        path = Path(path)
        from retrain.distributed.checkpoint import is_dcp, load_backend

        if self.dist is not None or is_dcp(path):  # sharded checkpoint, or loading into a sharded model
            return load_backend(self, path)
        if self.lora:
            from peft import set_peft_model_state_dict

            f = path / "adapter" / "adapter_model.safetensors"
            if not f.is_file():
                raise ConfigError(f"{path}: no LoRA adapter in this checkpoint (was it saved with lora_rank = 0?).")
            set_peft_model_state_dict(self.model, load_file(str(f), device=str(self.device)))
        else:
            files = sorted((path / "model").glob("*.safetensors"))
            if not files:
                raise ConfigError(f"{path}: no model weights in this checkpoint (was it saved with LoRA?).")
            state: dict[str, Any] = {}
            for f in files:
                state.update(load_file(str(f), device=str(self.device)))
            missing, _ = self.model.load_state_dict(state, strict=False)
            tied = {k for k in missing if "lm_head" in k or "embed" in k}
            if set(missing) - tied:
                raise ConfigError(f"{path}: checkpoint weights miss {sorted(set(missing) - tied)[:3]}...")
        st = load_data(path / "trainer_state.pt", map_location=self.device)  # data only, never code
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        self.version = int(st["version"])
