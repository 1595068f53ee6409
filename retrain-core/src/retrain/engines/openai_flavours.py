"""Server flavours of the ``openai`` engine: how each server samples token ids and takes new weights.

=========  ==========================================  ==============================================
flavour    sampling                                    weight sync (versioned, checked)
=========  ==========================================  ==============================================
vllm       ``/v1/completions`` (``n``, logprobs,       LoRA: ``/v1/load_lora_adapter`` as
           ``return_token_ids``)                       ``retrain-v<N>`` (load_inplace), old one
                                                       unloaded; check: ``/v1/models`` lists it with
                                                       ``root`` = the adapter folder. Full weights:
                                                       ``/collective_rpc reload_weights`` +
                                                       ``/update_weight_version`` (server started with
                                                       ``VLLM_SERVER_DEV_MODE=1``); check ``/weight_info``.
sglang     native ``/generate`` (``input_ids``,        LoRA: ``/load_lora_adapter`` / ``/unload_lora_adapter``;
           ``return_logprob``; token ids in            full: ``/update_weights_from_disk`` with
           ``meta_info.output_token_logprobs``)        ``weight_version``; check ``/get_model_info``.
max        ``/v1/completions``, one request per        LoRA: ``/v1/load_lora_adapter`` (MAX serves LoRA
           sample (MAX ignores ``n``)                  with ``--enable-lora``); full weights: not
                                                       supported (error at the first sync).
openai     ``/v1/completions``; needs token ids in     none: a one-time warning says training does
           the answer (``token_ids``)                  not reach the server.
=========  ==========================================  ==============================================
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrain.http_client import HTTPStatusError, JSONClient
from retrain.errors import ConfigError, RetrainError
from retrain.types import SamplingParams


class StaleWeightsError(RetrainError):
    """The server does not serve the policy version the engine synced last (stale or unloaded weights)."""


@dataclass
class Sample:
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str
    text: str


def adapter_name(version: int) -> str:
    return f"retrain-v{version}"


def _completion_payload(model: str, prompt: list[int], params: SamplingParams, n: int, seed: int) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": model, "prompt": prompt, "n": n, "max_tokens": params.max_tokens,
        "temperature": params.temperature, "top_p": params.top_p, "logprobs": 0,
        "return_token_ids": True, "seed": seed,
    }
    return payload


def reply_object(data: Any, where: str) -> dict[str, Any]:
    """``data`` if it is a JSON object; otherwise one line saying what the server sent instead."""
    if not isinstance(data, dict):
        raise RetrainError(f"{where}: the server replied with a JSON {type(data).__name__} where an object was "
                           f"expected ({json.dumps(data)[:80]}); is [inference] url an OpenAI-compatible server, "
                           "and [inference] flavour the right one?")
    return data


def token_ids(ids: Any, vocab_size: int | None, where: str) -> list[int]:
    """The completion's token ids, checked: a list of integers inside the model's vocabulary."""
    if not isinstance(ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
        raise RetrainError(f"{where}: the server's token ids are not a list of integers "
                           f"({json.dumps(ids)[:80]}); retrain cannot train on them.")
    bad = [t for t in ids if t < 0 or (vocab_size is not None and t >= vocab_size)]
    if bad:
        raise RetrainError(f"{where}: the server returned token id {bad[0]}, outside this model's vocabulary "
                           f"(0..{(vocab_size or 0) - 1}): it serves another model or tokenizer than [model] model.")
    return ids


def logprob_values(lp: Any, n: int, where: str) -> list[float]:
    """One sampling logprob (a number) per token."""
    if not isinstance(lp, list) or len(lp) != n:
        raise RetrainError(f"{where}: the server returned {len(lp) if isinstance(lp, list) else 0} logprobs for "
                           f"{n} tokens; retrain needs one sampling logprob per token.")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in lp):
        raise RetrainError(f"{where}: the server's logprobs are not all numbers ({json.dumps(lp)[:80]}).")
    return [float(x) for x in lp]


def _parse_completion_choice(choice: Any, where: str, vocab_size: int | None = None) -> Sample:
    choice = reply_object(choice, where)
    ids = choice.get("token_ids")
    if ids is None:
        raise ConfigError(f"{where}: the server returned no token ids (`token_ids`), and retrain never "
                          "re-tokenises completions. Use a server that supports `return_token_ids` (vLLM >= 0.10) "
                          "or [inference] flavour = \"sglang\" for SGLang.")
    ids = token_ids(ids, vocab_size, where)
    logprobs = choice.get("logprobs")
    lp = logprob_values(logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None, len(ids), where)
    text = choice.get("text", "")
    return Sample(ids, lp, str(choice.get("finish_reason") or "length"), text if isinstance(text, str) else "")


def _choices(data: Any, where: str) -> list[Any]:
    choices = reply_object(data, where).get("choices")
    if not isinstance(choices, list):
        raise RetrainError(f"{where}: the reply has no list of choices ({json.dumps(data)[:80]}).")
    return sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) and isinstance(
        c.get("index", 0), int) else 0)


def served_models(client: JSONClient) -> list[dict[str, Any]]:
    """The entries of ``/v1/models`` (objects with an ``id``)."""
    where = f"{client.shown_root}/v1/models"
    data = reply_object(client.get("/v1/models"), where).get("data", [])
    if not isinstance(data, list):
        raise RetrainError(f"{where}: `data` is not a list ({json.dumps(data)[:80]}).")
    return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]


class Flavour:
    """Base: sampling through ``/v1/completions``; subclasses add weight sync."""

    name = "openai"
    syncs_weights = False

    def __init__(self, client: JSONClient, base_model: str) -> None:
        self.client = client
        self.base_model = base_model
        self.served = base_model  # the model name requests use: base model or the current adapter
        self.version = 0
        self.vocab_size: int | None = None  # set by the engine: token ids at or above it are refused
        self._warned = False

    # -- sampling -------------------------------------------------------------------------------
    def complete(self, prompt: list[int], params: SamplingParams, seed: int) -> list[Sample]:
        """``params.n`` samples for one prompt."""
        payload = _completion_payload(self.served, prompt, params, params.n, seed)
        where = f"{self.client.shown_root}/v1/completions"
        choices = _choices(self._post_completion(payload), where)
        if len(choices) != params.n:
            raise RetrainError(f"{where} returned {len(choices)} choices for n = "
                               f"{params.n}; set [inference] flavour to match the server (max ignores n).")
        return [_parse_completion_choice(c, where, self.vocab_size) for c in choices]

    def _post_completion(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.client.post("/v1/completions", payload)
        except HTTPStatusError as e:
            if e.status == 404 and self.served != self.base_model:
                raise StaleWeightsError(
                    f"{self.client.shown_root}: adapter {self.served!r} (policy version {self.version}) is not loaded "
                    f"on the server ({e}). The server restarted or the adapter was unloaded; rollouts would "
                    "come from other weights. Restart the run with --resume latest.") from None
            raise

    # -- weight sync ----------------------------------------------------------------------------
    def sync(self, backend: Any, version: int, weights_dir: Path) -> None:
        # No endpoint to push weights: say so once, loudly, and keep going (the user chose this).
        # The version follows the trainer so the loop runs; ``syncs_weights = False`` tells the truth.
        if not self._warned:
            warnings.warn(f"[inference] flavour = \"openai\": the server at {self.client.shown_root} gets no weight "
                          "updates, so training does not reach the sampler (every rollout comes from the "
                          "server's own model, importance-corrected off-policy data). Use flavour "
                          "vllm/sglang/max, or engine = \"pytorch\" / \"vllm\".", RuntimeWarning, stacklevel=3)
            self._warned = True
        self.version = version

    def check(self) -> None:
        """Raise :class:`StaleWeightsError` when the server does not serve ``self.version``."""


class VLLMFlavour(Flavour):
    name = "vllm"
    syncs_weights = True

    def __init__(self, client: JSONClient, base_model: str) -> None:
        super().__init__(client, base_model)
        self.adapter_path = ""  # folder of the adapter the server must serve
        self.weight_tag = ""  # weight_version the server must report (full weights)

    def sync(self, backend: Any, version: int, weights_dir: Path) -> None:
        folder = weights_dir / f"v{version}"
        if getattr(backend, "lora", True):
            path = Path(backend.save_adapter(folder) or folder)
            self._load_adapter(version, path)
        else:
            path = Path(backend.save_weights(folder) or folder)
            self._reload_weights(version, path)
        self.version = version
        self.check()
        _prune(weights_dir, keep=f"v{version}")

    def _load_adapter(self, version: int, path: Path) -> None:
        name = adapter_name(version)
        try:
            self.client.post("/v1/load_lora_adapter",
                             {"lora_name": name, "lora_path": str(path), "load_inplace": True})
        except HTTPStatusError as e:
            if e.status in (404, 405):
                raise ConfigError(f"{self.client.shown_root} has no /v1/load_lora_adapter: start vLLM with "
                                  "--enable-lora --max-lora-rank R and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True.") from None
            raise
        old = self.served
        self.served, self.adapter_path = name, str(path)
        if old not in (name, self.base_model):
            self._unload(old)

    def _unload(self, name: str) -> None:
        try:
            self.client.post("/v1/unload_lora_adapter", {"lora_name": name})
        except HTTPStatusError:
            pass  # already gone: nothing to free

    def _reload_weights(self, version: int, path: Path) -> None:
        tag = adapter_name(version)
        try:
            self.client.post("/collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": str(path)}})
            self.client.post("/update_weight_version", {"new_version": tag})
        except HTTPStatusError as e:
            if e.status in (404, 405):
                raise ConfigError(f"{self.client.shown_root}: full-weight sync ([model] lora_rank = 0) needs vLLM's "
                                  "weight-reload endpoints: start the server with VLLM_SERVER_DEV_MODE=1, or "
                                  "train LoRA (lora_rank > 0).") from None
            raise
        self.weight_tag = tag

    def check(self) -> None:
        if self.adapter_path:
            models = served_models(self.client)
            entry = next((m for m in models if m.get("id") == self.served), None)
            if entry is None:
                raise StaleWeightsError(
                    f"{self.client.shown_root} does not serve adapter {self.served!r} (policy version {self.version}); "
                    f"it serves {[m.get('id') for m in models]}. The server restarted or the adapter was "
                    "unloaded: rollouts would come from other weights. Resume with --resume latest.")
            root = entry.get("root")
            if root and Path(root) != Path(self.adapter_path):
                raise StaleWeightsError(
                    f"{self.client.shown_root} serves {self.served!r} from {root}, not from {self.adapter_path} "
                    f"(policy version {self.version}): a stale adapter. Resume with --resume latest.")
        elif self.weight_tag:
            got = reply_object(self.client.get("/weight_info"), f"{self.client.shown_root}/weight_info").get(
                "weight_version")
            if got != self.weight_tag:
                raise StaleWeightsError(
                    f"{self.client.shown_root} reports weight_version {got!r}, expected {self.weight_tag!r} "
                    f"(policy version {self.version}): the server's weights are stale. Resume with --resume latest.")


class MaxFlavour(VLLMFlavour):
    """Modular MAX: OpenAI-compatible completions without ``n``; LoRA adapters only."""

    name = "max"

    def complete(self, prompt: list[int], params: SamplingParams, seed: int) -> list[Sample]:
        out = []
        for j in range(params.n):  # MAX ignores n: one request per sample, distinct seeds
            where = f"{self.client.shown_root}/v1/completions"
            choices = _choices(self._post_completion(_completion_payload(self.served, prompt, params, 1, seed + j)), where)
            if not choices:
                raise RetrainError(f"{where} returned no choices.")
            out.append(_parse_completion_choice(choices[0], where, self.vocab_size))
        return out

    def _reload_weights(self, version: int, path: Path) -> None:
        raise ConfigError("[inference] flavour = \"max\": MAX has no endpoint to reload full weights; train LoRA "
                          "([model] lora_rank > 0) or use flavour vllm/sglang.")

    def check(self) -> None:
        if self.adapter_path:
            ids = [m["id"] for m in served_models(self.client)]
            if self.served not in ids:
                raise StaleWeightsError(f"{self.client.shown_root} does not serve adapter {self.served!r} (policy "
                                        f"version {self.version}); it serves {ids}. Resume with --resume latest.")


class SGLangFlavour(Flavour):
    """SGLang: native ``/generate`` (exact token ids and logprobs) and its weight-update endpoints."""

    name = "sglang"
    syncs_weights = True

    def __init__(self, client: JSONClient, base_model: str) -> None:
        super().__init__(client, base_model)
        self.lora_name = ""
        self.weight_tag = ""

    def complete(self, prompt: list[int], params: SamplingParams, seed: int) -> list[Sample]:
        n = params.n
        payload: dict[str, Any] = {
            "input_ids": [prompt] * n,
            "sampling_params": {"temperature": params.temperature, "top_p": params.top_p,
                                "max_new_tokens": params.max_tokens, "skip_special_tokens": False},
            "return_logprob": True,
        }
        if params.temperature > 0:
            payload["sampling_params"]["sampling_seed"] = seed
        if self.lora_name:
            payload["lora_path"] = [self.lora_name] * n
        try:
            data = self.client.post("/generate", payload)
        except HTTPStatusError as e:
            if self.lora_name and "lora" in str(e).lower():
                raise StaleWeightsError(f"{self.client.shown_root}: adapter {self.lora_name!r} (policy version "
                                        f"{self.version}) is not loaded ({e}). Resume with --resume latest.") from None
            raise
        where = f"{self.client.shown_root}/generate"
        rows = data if isinstance(data, list) else [data]
        if len(rows) != n:
            raise RetrainError(f"{where} returned {len(rows)} rows for {n} samples.")
        out = []
        for row in rows:
            meta = reply_object(reply_object(row, where).get("meta_info", {}), where)
            if self.weight_tag and meta.get("weight_version") not in (None, self.weight_tag):
                raise StaleWeightsError(f"{self.client.shown_root} sampled with weight_version "
                                        f"{meta.get('weight_version')!r}, expected {self.weight_tag!r}.")
            triples = meta.get("output_token_logprobs") or []
            if not isinstance(triples, list) or not all(isinstance(t, list) and len(t) >= 2 for t in triples):
                raise RetrainError(f"{where}: output_token_logprobs is not a list of [logprob, token id, ...] "
                                   f"({json.dumps(triples)[:80]}).")
            ids = token_ids([t[1] for t in triples], self.vocab_size, where)
            lps = logprob_values([t[0] for t in triples], len(ids), where)
            fr = meta.get("finish_reason") or {}
            reason = fr.get("type", "length") if isinstance(fr, dict) else str(fr)
            text = row.get("text", "")
            out.append(Sample(ids, lps, "stop" if reason == "stop" else reason, text if isinstance(text, str) else ""))
        return out

    def sync(self, backend: Any, version: int, weights_dir: Path) -> None:
        folder = weights_dir / f"v{version}"
        tag = adapter_name(version)
        if getattr(backend, "lora", True):
            path = Path(backend.save_adapter(folder) or folder)
            self._post_ok("/load_lora_adapter", {"lora_name": tag, "lora_path": str(path)})
            old, self.lora_name = self.lora_name, tag
            if old and old != tag:
                try:
                    self.client.post("/unload_lora_adapter", {"lora_name": old})
                except HTTPStatusError:
                    pass
        else:
            path = Path(backend.save_weights(folder) or folder)
            self._post_ok("/update_weights_from_disk", {"model_path": str(path), "weight_version": tag})
            self.weight_tag = tag
        self.version = version
        self.check()
        _prune(weights_dir, keep=f"v{version}")

    def _post_ok(self, path: str, payload: dict[str, Any]) -> None:
        data = self.client.post(path, payload)
        if isinstance(data, dict) and data.get("success") is False:
            raise RetrainError(f"{self.client.shown_root}{path} failed: {data.get('message', data)}")

    def check(self) -> None:
        if self.weight_tag:
            got = reply_object(self.client.get("/get_model_info"), f"{self.client.shown_root}/get_model_info").get(
                "weight_version")
            if got != self.weight_tag:
                raise StaleWeightsError(f"{self.client.shown_root} reports weight_version {got!r}, expected "
                                        f"{self.weight_tag!r} (policy version {self.version}): stale weights.")


FLAVOURS: dict[str, type[Flavour]] = {"vllm": VLLMFlavour, "sglang": SGLangFlavour, "max": MaxFlavour,
                                      "openai": Flavour}


def detect_flavour(client: JSONClient) -> str:
    """Guess the server kind: vLLM answers ``/version``, SGLang ``/get_model_info``; else plain openai."""
    for path, name in (("/get_model_info", "sglang"), ("/version", "vllm")):
        try:
            client.get(path, retries=0, timeout=10)
            return name
        except RetrainError:
            continue
    return "openai"


def _prune(weights_dir: Path, keep: str) -> None:
    """Delete older synced versions (the server already loaded the new one)."""
    for d in weights_dir.glob("v*"):
        if d.is_dir() and d.name != keep:
            shutil.rmtree(d, ignore_errors=True)
