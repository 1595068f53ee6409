"""``RetrainChatHarness``: a verifiers harness that runs the chat loop in-process.

verifiers' ``null`` chat harness launches a ``uv`` script (which syncs packages from the network
on first use); this one does the same job inside the training process: each segment is one
chat-completions call to the rollout's interception endpoint (so verifiers records the turn,
applies limits such as ``max_turns`` and ``@vf.stop`` hooks, and scores the trace), and resuming
a segment replays the conversation (``SUPPORTS_RESUME``). No tools, no code execution.
verifiers finds it under the harness id ``retrain_verifiers`` (see the package ``__init__``).
"""

from __future__ import annotations

from typing import Any

import httpx
import verifiers.v1 as vf
from verifiers.v1.dialects.chat import message_to_wire
from verifiers.v1.runtimes import ProgramResult


class RetrainChatHarnessConfig(vf.HarnessConfig):
    """Config of the in-process chat harness (no options of its own)."""


class RetrainChatHarness(vf.Harness[RetrainChatHarnessConfig]):
    """One model call per segment through the interception endpoint, in-process."""

    APPENDS_SYSTEM_PROMPT = True
    SUPPORTS_RESUME = True
    EXECUTES_CODE = False
    NEEDS_CONTAINER = False

    async def launch(self, ctx: Any, trace: Any, runtime: Any, endpoint: str, secret: str,
                     mcp_urls: dict[str, str], data: Any, tool_interception_url: str | None = None) -> ProgramResult:
        system, prompt = self.resolve_prompt(data)
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        if isinstance(prompt, str):
            messages.append({"role": "user", "content": prompt})
        elif prompt:
            messages += [message_to_wire(m) for m in prompt]
        # loopback http only: no proxy, and no TLS context (building one loads the CA bundle, ~70 ms)
        async with httpx.AsyncClient(timeout=None, trust_env=False, verify=False) as http:
            reply = await http.post(f"{endpoint.rstrip('/')}/chat/completions",
                                    json={"model": ctx.model, "messages": messages},
                                    headers={"Authorization": f"Bearer {secret}"})
        if reply.status_code != 200:
            return ProgramResult(exit_code=1, stdout="", stderr=f"HTTP {reply.status_code}: {reply.text[-2000:]}")
        choice = reply.json()["choices"][0]["message"]
        return ProgramResult(exit_code=0, stdout=choice.get("content") or "", stderr="")
