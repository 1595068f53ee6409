"""An OpenAI-compatible model client for verifiers, backed by any retrain engine, in-process.

verifiers' interception server (the endpoint every harness calls) hands each chat request to a
``vf.Client``. :class:`EngineClient` answers it with the selected retrain engine: it turns the
conversation into exact token ids (``tokens.TokenLedger``), batches the requests of all
concurrent episodes into one ``engine.generate`` call (``GenerationBatcher``), and returns the
reply with its token ids and sampling logprobs (``Response.tokens``), as verifiers' own
``TrainClient`` does for a vLLM server. No network: the engine runs in this process (or is
itself a client of a server, e.g. the ``openai`` engine).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from retrain.types import SamplingParams
from verifiers.v1.clients import Client, EvalClientConfig
from verifiers.v1.clients.train import serialize_completion
from verifiers.v1.dialects.chat import message_to_wire
from verifiers.v1.types import AssistantMessage, Response, TurnTokens, Usage

from retrain_verifiers.tokens import TokenLedger

#: The endpoint config that names the retrain engine. The interception server keys its clients by
#: config; retrain registers an ``EngineClient`` under this key, so nothing ever dials this URL.
ENGINE_CLIENT_CONFIG = EvalClientConfig(base_url="http://retrain-engine.invalid/v1", api_key_var="RETRAIN_NO_API_KEY")
POLICY_MODEL = "retrain-policy"


@dataclass
class Sample:
    completion_ids: list[int]
    logprobs: list[float]
    finish_reason: str
    text: str


class GenerationBatcher:
    """Collects concurrent generation requests and runs them as one batched engine call.

    A batch is flushed once no new request arrived for ``quiet`` seconds (all episodes that can
    ask have asked); one engine call runs at a time, in a worker thread so the event loop (and
    the environments' own code) keeps going.
    """

    def __init__(self, engine: Any, params: SamplingParams, quiet: float = 0.02) -> None:
        self.engine = engine
        self.params = params
        self.quiet = quiet
        self.pending: list[tuple[list[int], asyncio.Future[Sample]]] = []
        self.calls = 0
        self.batch_sizes: list[int] = []
        self.policy_version: int | None = None
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, prompt_ids: list[int]) -> Sample:
        future: asyncio.Future[Sample] = asyncio.get_running_loop().create_future()
        self.pending.append((prompt_ids, future))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            while self.pending:
                seen = -1
                while seen != len(self.pending):  # wait until the requests stop coming
                    seen = len(self.pending)
                    await asyncio.sleep(self.quiet)
                batch, self.pending = self.pending, []
                params = dataclasses.replace(self.params, n=1, seed=self.params.seed + self.calls)
                self.calls += 1
                self.batch_sizes.append(len(batch))
                try:
                    gen = await asyncio.to_thread(self.engine.generate, [ids for ids, _ in batch], params)
                except BaseException as e:  # every waiting episode sees the engine's failure
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                self.policy_version = gen.policy_version
                for i, (_, fut) in enumerate(batch):
                    if not fut.done():
                        fut.set_result(Sample(list(gen.completion_ids[i]), list(gen.logprobs[i]),
                                              gen.finish_reasons[i], gen.texts[i]))
        finally:
            self._runner = None


class EngineClient(Client):
    """``vf.Client`` over a retrain engine: chat request in, sampled reply with token ids out."""

    def __init__(self, batcher: GenerationBatcher, ledger: TokenLedger) -> None:
        self.batcher = batcher
        self.ledger = ledger

    async def get_response(self, dialect: Any, body: dict, sampling: Any, session_id: str | None = None,
                           turn: Any = None, headers: Mapping[str, str] | None = None) -> Response:
        if session_id is None:
            raise RuntimeError("retrain-verifiers: a model call without a rollout session id")
        request = dialect.parse_request(body)
        messages = [message_to_wire(m) for m in request.messages]
        prompt_ids = self.ledger.prompt_for(session_id, messages)
        sample = await self.batcher.submit(prompt_ids)
        self.ledger.record(session_id, sample.completion_ids, sample.logprobs, sample.finish_reason)
        model = body.get("model") or POLICY_MODEL
        response = Response(
            id=f"retrain-{session_id}-{self.ledger.rows[session_id].turns}",
            created=0,
            model=model,
            message=AssistantMessage(content=sample.text),
            finish_reason="length" if sample.finish_reason == "length" else "stop",
            usage=Usage(prompt_tokens=len(prompt_ids), completion_tokens=len(sample.completion_ids)),
            tokens=TurnTokens(prompt_ids=prompt_ids, completion_ids=sample.completion_ids,
                              completion_logprobs=sample.logprobs),
        )
        response.raw = serialize_completion(response, model)
        return response
