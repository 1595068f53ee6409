"""The ``tinker`` engine: samples through the SDK's sampling client, token ids in and out.

Versioned weight sync: ``sync(backend, version)`` asks the backend for a sampling client on a
snapshot of its current weights (``save_weights_and_get_sampling_client``) and tags it with that
version. ``generate`` refuses to sample when the backend has stepped since (a stale sampler would
train off-policy) and stamps every ``Generation`` with the sampler's version. Before the first
sync (a fresh run) it takes a sampler of the current version itself.

Each prompt is one ``sample(prompt, num_samples=G)`` request, all submitted before any result is
awaited (the SDK's futures run concurrently). The service returns each sampled token's logprob,
which retrain keeps for the importance weight; detokenisation is local (the backend's tokenizer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retrain.engines.openai_flavours import StaleWeightsError
from retrain.errors import ConfigError, RetrainError
from retrain.types import Generation, SamplingParams

if TYPE_CHECKING:
    from retrain.types import RunContext


class TinkerEngine:
    """Tinker sampling client: samples the tinker backend's current weights (versioned, stale = error)."""

    shares_weights = False  # the service's sampler is not the trainer: importance-corrected loss
    syncs_weights = True

    def __init__(self, ctx: RunContext | None = None) -> None:
        from retrain_tinker.backend import TinkerBackend

        backend = getattr(ctx, "backend", None)
        if not isinstance(backend, TinkerBackend):
            name = ctx.config.backend.backend if ctx is not None else "?"
            raise ConfigError(f'[inference] engine = "tinker" samples the weights the tinker backend trains on the '
                              f'service; set [backend] backend = "tinker" (it is "{name}").')
        self.backend = backend
        self.sampler: Any = None
        self.version = -1  # the policy version the sampler serves (-1: none yet)

    def sync(self, backend: Any, version: int) -> None:
        """Take a sampling client on the backend's weights of ``version`` (its current version)."""
        if backend is not self.backend:
            raise RuntimeError("tinker engine: sync from a different backend than the one it samples")
        if version != backend.version:
            raise StaleWeightsError(f"tinker engine: asked to sync version {version}, the backend is at "
                                    f"{backend.version}; a sampler can only snapshot the current weights.")
        self.sampler = backend.sampling_client()
        self.version = version

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Generation:
        """B prompts -> N = B*n rows (groups contiguous), from the sampler of the backend's current version."""
        import tinker

        if self.sampler is None:
            self.sync(self.backend, self.backend.version)
        if self.version != self.backend.version:
            raise StaleWeightsError(f"tinker engine: the sampler serves policy version {self.version}, the trainer "
                                    f"is at {self.backend.version}: weight sync was skipped (sampling now would "
                                    "train off-policy).")
        if params.min_tokens > 0:
            raise ConfigError("the tinker engine cannot force a minimum completion length (min_tokens).")
        first = params.row_offset or 0
        seeds = [(params.seed * 100_003 + (first + i) * params.n) % 2**31 for i in range(len(prompt_ids))]
        link, what = self.backend.link, f"sample from version {self.version}"
        with link.errors(what):  # every prompt in flight before the first wait
            futures = [self.sampler.sample(
                prompt=tinker.ModelInput.from_ints([int(x) for x in prompt]), num_samples=params.n,
                sampling_params=tinker.SamplingParams(max_tokens=params.max_tokens, temperature=params.temperature,
                                                      top_p=params.top_p, seed=seed))
                for prompt, seed in zip(prompt_ids, seeds, strict=True)]
        responses = [link.wait(f, what) for f in futures]
        ids, logprobs, reasons = [], [], []
        for response in responses:
            if len(response.sequences) != params.n:
                raise RetrainError(f"tinker: asked for {params.n} samples per prompt, the service returned "
                                   f"{len(response.sequences)}.")
            for seq in response.sequences:
                if seq.logprobs is None or len(seq.logprobs) != len(seq.tokens):
                    raise RetrainError("tinker: the service returned samples without per-token logprobs; "
                                       "retrain needs them for the importance weight.")
                ids.append([int(x) for x in seq.tokens])
                logprobs.append([float(x) for x in seq.logprobs])
                reasons.append("length" if seq.stop_reason == "length" else "stop")
        texts = self.backend.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return Generation(completion_ids=ids, logprobs=logprobs, finish_reasons=reasons, texts=texts,
                          policy_version=self.version)

    def close(self) -> None:
        self.sampler = None
