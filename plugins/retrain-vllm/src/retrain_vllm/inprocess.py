"""In-process vLLM engine: a ``vllm.LLM`` in the training process.

* LoRA: every sync writes the adapter and makes a new ``LoRARequest("retrain-v<N>", N + 1, dir)``;
  the previous adapter is removed from vLLM's cache. Requests name the adapter of the version
  they sample from, so a rollout can only come from the synced version.
* Full fine-tuning: every sync writes the weights and reloads them in place
  (``collective_rpc("reload_weights", weights_path=...)``); a model with tied embeddings is
  served and synced untied (retrain_vllm/tied.py).
* Logprobs are vLLM's ``processed_logprobs``: the sampled token's logprob after temperature and
  top-p processing, i.e. the trainer's quantity (mismatch metrics near 0 after a sync).
* ``sleep = true`` (GPU only) puts vLLM to sleep after each generation and wakes it before the
  next generation or sync, freeing its GPU memory for the trainer.
"""

from __future__ import annotations

import gc
import os
import shutil
from typing import TYPE_CHECKING, Any

from retrain.errors import ConfigError, RetrainError
from retrain.types import Generation, SamplingParams

if TYPE_CHECKING:
    from retrain_vllm.settings import EngineSettings


class InProcessVLLMEngine:
    """vllm.LLM in this process; versioned LoRARequests or in-place weight reload."""

    shares_weights = False  # different numerics from the trainer: the loop applies importance correction
    syncs_weights = True

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = s = settings
        if s.sleep and s.on_cpu:
            raise ConfigError("[vllm] sleep = true needs a GPU (vLLM's sleep mode frees CUDA memory); "
                              "set sleep = false on CPU.")
        # one process: no engine-core subprocess, so weight reloads and LoRA paths stay local
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if s.on_cpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(s.cpu_kv_cache_gb))
        from vllm import LLM

        kw: dict[str, Any] = dict(model=s.model_dir, max_model_len=s.max_model_len, dtype=s.dtype, seed=s.seed,
                                  enforce_eager=s.enforce_eager or s.on_cpu, logprobs_mode="processed_logprobs")
        if not s.on_cpu:
            kw["gpu_memory_utilization"] = s.gpu_memory_utilization
        if s.lora_rank > 0:
            kw.update(enable_lora=True, max_lora_rank=s.max_lora_rank, max_loras=1)
        if s.sleep:
            kw["enable_sleep_mode"] = True
        try:
            self.llm = LLM(**kw)
        except Exception as e:
            raise RetrainError(f"vLLM could not load {s.model_dir}: {type(e).__name__}: {e}") from e
        self.version = 0
        self.lora_request: Any = None
        self.asleep = False
        self.weights_dir = s.work_dir / "weights"

    # -- sampling -------------------------------------------------------------------------------
    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Generation:
        """B prompts -> N = B*n rows (groups contiguous), from the synced policy version."""
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.inputs import TokensPrompt

        self._wake()
        if self.lora_request is not None and self.lora_request.lora_int_id != self.version + 1:
            raise RetrainError(f"vllm engine: adapter {self.lora_request.lora_name} does not belong to policy "
                               f"version {self.version} (stale adapter).")
        per_prompt = [VLLMSamplingParams(n=params.n, max_tokens=params.max_tokens, temperature=params.temperature,
                                         top_p=params.top_p, seed=(params.seed * 100_003 + i * params.n) % 2**31,
                                         logprobs=0, skip_special_tokens=True)
                      for i in range(len(prompt_ids))]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompt_ids], per_prompt,
                                 lora_request=self.lora_request, use_tqdm=False)
        ids, lps, reasons, texts = [], [], [], []
        for out in outs:  # vLLM keeps the order of the prompts
            for o in sorted(out.outputs, key=lambda c: c.index):
                toks = list(o.token_ids)
                ids.append(toks)
                lps.append([float(step[t].logprob) for step, t in zip(o.logprobs, toks)])
                reasons.append(o.finish_reason or "length")
                texts.append(o.text)
        if self.settings.sleep:
            self._sleep()
        return Generation(completion_ids=ids, logprobs=lps, finish_reasons=reasons, texts=texts,
                          policy_version=self.version)

    # -- weight sync ----------------------------------------------------------------------------
    def sync(self, backend: Any, version: int) -> None:
        """Load the backend's adapter (LoRA) or weights (full) as policy ``version``."""
        from vllm.lora.request import LoRARequest

        from retrain_vllm.tied import sync_source

        self._wake()
        folder = self.weights_dir / f"v{version}"
        if self.settings.lora_rank > 0:
            path = backend.save_adapter(folder) or folder
            old = self.lora_request
            self.lora_request = LoRARequest(f"retrain-v{version}", version + 1, str(path))
            if old is not None and old.lora_int_id != version + 1:
                self.llm.llm_engine.remove_lora(old.lora_int_id)
            # load now, so a broken adapter fails at sync time, not mid-generation
            if not self.llm.llm_engine.add_lora(self.lora_request):
                raise RetrainError(f"vLLM refused the adapter of policy version {version} at {path}.")
        else:  # a tied model is written untied (retrain_vllm.tied), else vLLM keeps a stale output layer
            path = sync_source(backend, 0).save_weights(folder) or folder
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(path)})
            self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights
        self.version = version
        for d in self.weights_dir.glob("v*"):  # the previous versions are no longer needed
            if d.name != folder.name:
                shutil.rmtree(d, ignore_errors=True)

    # -- sleep / wake (GPU shared with the trainer) ---------------------------------------------
    def _sleep(self) -> None:
        if not self.asleep:
            # level 1 keeps the weights in CPU memory (LoRA adapters stay valid); level 2 would drop them
            self.llm.sleep(level=1)
            self.asleep = True

    def _wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            shutdown = getattr(llm.llm_engine, "shutdown", None)
            if callable(shutdown):
                shutdown()
            self.llm = None
            del llm
            gc.collect()
