"""The ``openai`` engine: samples from any OpenAI-compatible server, token ids in and out.

One request per prompt (``n`` samples each, except for MAX), ``max_concurrency`` at a time on
threads; failed requests are retried with exponential backoff (``retries``). Prompts go as
token ids and completions come back as token ids with the logprob of each sampled token, so
nothing is re-tokenised.

Weight sync is versioned (``retrain.engines.openai_flavours``): ``sync(backend, version)``
writes the adapter (or full weights) to a folder the server can read, asks the server to load
it through its own endpoint, then checks that the server serves exactly that version. Every
``generate`` checks again first, and every ``Generation`` carries the version it was sampled
from; a stale or unloaded adapter raises :class:`StaleWeightsError` instead of silently
sampling from other weights.

For the logprobs to be the exact sampling logprobs (what the trainer compares against), a vLLM
server must run with ``--logprobs-mode processed_logprobs`` (temperature applied); with the
default ``raw_logprobs`` they are the temperature-1 logprobs, which only match at temperature 1.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.engines.openai_flavours import FLAVOURS, Flavour, Sample, StaleWeightsError, served_models, detect_flavour
from retrain.http_client import JSONClient
from retrain.errors import ConfigError
from retrain.types import Generation, SamplingParams

if TYPE_CHECKING:
    from retrain.types import RunContext

__all__ = ["OpenAIEngine", "StaleWeightsError", "server_root"]


def server_root(url: str) -> str:
    """``http://h:p/v1`` or ``http://h:p`` -> ``http://h:p`` (endpoint paths are added per call)."""
    root = url.strip().rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def vocab_size(ctx: Any) -> int | None:
    """The trainer's vocabulary size (embedding rows, or the tokenizer's length); None when unknown."""
    model = getattr(getattr(ctx, "backend", None), "model", None)
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    tokenizer = getattr(ctx, "tokenizer", None)
    sizes = [s for s in (size, len(tokenizer) if tokenizer is not None else None) if isinstance(s, int)]
    return max(sizes) if sizes else None


class OpenAIEngine:
    """Any OpenAI-compatible server ([inference] url); weight sync for vLLM, SGLang and MAX servers."""

    config_section = "inference"

    def __init__(self, url: str = "", flavour: str = "auto", api_key_env: str = "", max_concurrency: int = 8,
                 timeout: float = 600.0, retries: int = 3, ctx: RunContext | None = None) -> None:
        where = f"{ctx.config.source} [inference]" if ctx is not None and ctx.config is not None else "[inference]"
        if not url:
            raise ConfigError(f"{where} url is empty: the openai engine needs a server, e.g. "
                              "url = \"http://127.0.0.1:8000/v1\" (or use engine = \"vllm\" to start one).")
        if flavour not in ("auto", *FLAVOURS):
            raise ConfigError(f"{where} flavour = {flavour!r}: must be one of auto, {', '.join(FLAVOURS)}.")
        api_key = ""
        if api_key_env:
            api_key = os.environ.get(api_key_env, "")
            if not api_key:
                raise ConfigError(f"{where} api_key_env = {api_key_env!r}: that environment variable is not set.")
        self.ctx = ctx
        self.url = url
        self.max_concurrency = max(1, max_concurrency)
        self.client = JSONClient(server_root(url), api_key=api_key, timeout=timeout, retries=retries,
                                 label="inference server")
        self.base_model = self._base_model()
        name = detect_flavour(self.client) if flavour == "auto" else flavour
        self.flavour: Flavour = FLAVOURS[name](self.client, self.base_model)
        self.flavour.vocab_size = vocab_size(ctx)
        run_dir = getattr(ctx, "run_dir", None)
        # adapters / weights go where the server can read them (same machine for a local server)
        self.weights_dir = Path(run_dir) / "engine_weights" if run_dir else Path(tempfile.mkdtemp(prefix="retrain-sync-"))

    @property
    def version(self) -> int:
        """The policy version the server samples from (0 = the server's own weights)."""
        return self.flavour.version

    @property
    def syncs_weights(self) -> bool:
        """False for plain OpenAI servers: training never reaches them."""
        return self.flavour.syncs_weights

    def _base_model(self) -> str:
        bases = [m["id"] for m in served_models(self.client) if not m.get("parent")]
        if not bases:
            raise ConfigError(f"{self.client.shown_root}/v1/models lists no model; is this an OpenAI-compatible server?")
        return bases[0]

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Generation:
        """B prompts -> N = B*n rows (groups contiguous), sampled concurrently from the synced version."""
        self.flavour.check()
        version = self.flavour.version
        first = params.row_offset or 0  # distributed runs: global prompt index, same seeds on any number of ranks
        seeds = [(params.seed * 100_003 + (first + i) * params.n) % 2**31 for i in range(len(prompt_ids))]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, max(1, len(prompt_ids)))) as pool:
            groups: list[list[Sample]] = list(pool.map(
                lambda a: self.flavour.complete(a[0], params, a[1]), zip(prompt_ids, seeds)))
        rows = [s for g in groups for s in g]
        texts = [s.text for s in rows]  # detokenised by the server, special tokens skipped
        return Generation(completion_ids=[s.token_ids for s in rows], logprobs=[s.logprobs for s in rows],
                          finish_reasons=[s.finish_reason for s in rows], texts=texts, policy_version=version)

    def sync(self, backend: Any, version: int) -> None:
        """Load the backend's current adapter/weights into the server as ``version`` and check it."""
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        self.flavour.sync(backend, version, self.weights_dir)

    def close(self) -> None:
        pass
