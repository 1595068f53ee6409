"""One RL step over W ranks: whole groups per rank, everything else computed on the global batch.

:class:`StepShards` is the shard plan (``retrain.protocols.ShardPlan``, ``parts.shards``) of a
torchrun run; ``retrain.train.loop.train_step`` calls the same methods on the one-process plan
(``retrain.train.shards.OneProcess``, the identity)::

    tasks  = environment.sample(B)              every rank samples the same B tasks (same data cursor)
    mine   = dist.share(tasks)                  B/W whole prompts (groups) of this rank, in order
    gen    = engine.generate(mine, G)           rank r samples rows r*N/W .. (r+1)*N/W - 1
    gen    = dist.gather_generation(...)        all N rows on every rank, in global order
    result = dist.score(reward, rollouts)       each rank scores its rows; results all-gathered
    credit.compute(rewards, rollouts)           on the global batch: identical on every rank
    backend.train_step(*dist.rows(...))         this rank's rows; loss normalised by the global
                                                token count, gradients summed (fsdp.py)

Computing credit and metrics on the gathered batch keeps every stateful piece (SEPA controller,
data cursor, metrics rows) identical on every rank and equal to a one-process run, for the price
of sending token ids, logprobs and texts (a few MB) once per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrain.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from retrain.distributed.world import World
    from retrain.types import Generation, Rollouts


def check_batch(batch_size: int, world_size: int, where: str = "[training] batch_size") -> None:
    """Every rank samples whole groups: B must be a multiple of the number of processes."""
    w = world_size
    if batch_size % w:
        raise ConfigError(f"{where} = {batch_size} is not divisible by the {w} processes of this run: each rank "
                          f"samples whole groups, so use a multiple of {w} (e.g. {batch_size + w - batch_size % w}) "
                          "or another number of devices.")


@dataclass
class StepShards:
    """This rank's share of a step (``parts.shards`` under torchrun)."""

    world: World

    @property
    def is_main(self) -> bool:
        return self.world.is_main

    @property
    def processes(self) -> int:
        return self.world.size

    def check_batch(self, batch_size: int, where: str = "[training] batch_size") -> None:
        check_batch(batch_size, self.world.size, where)

    def span(self, count: int) -> tuple[int, int]:
        """[start, stop) of this rank's share of ``count`` prompts."""
        self.check_batch(count)
        per = count // self.world.size
        return self.world.rank * per, (self.world.rank + 1) * per

    def share(self, tasks: list[Any]) -> list[Any]:
        """This rank's whole prompts (B/W of them), in global order."""
        start, stop = self.span(len(tasks))
        return tasks[start:stop]

    def row_offset(self, count: int) -> int:
        """Global index of this rank's first prompt (keys the row-invariant sampler)."""
        return self.span(count)[0]

    def gather_generation(self, prompt_ids: list[list[int]], gen: Generation) -> tuple[list[list[int]], Generation]:
        """Every rank's prompts and rows, concatenated in rank order (= global order)."""
        from retrain.types import Generation

        parts = self.world.all_gather_object((prompt_ids, gen))
        merged = Generation.concat([g for _, g in parts], what="ranks")
        return [p for ids, _ in parts for p in ids], merged

    def score(self, reward: Any, rollouts: Rollouts) -> Any:
        """Each rank scores its own rows; the RewardResult of all N rows (rank order)."""
        from retrain.protocols import RewardResult

        start, stop = self._rows(rollouts)
        refs = rollouts.references
        mine = reward.score(rollouts.texts[start:stop], refs[start:stop])
        parts = self.world.all_gather_object(mine)
        terms = {k: [x for p in parts for x in p.terms.get(k, [])] for k in parts[0].terms}
        return RewardResult(rewards=[x for p in parts for x in p.rewards], terms=terms,
                            errors=sum(p.errors for p in parts), timeouts=sum(p.timeouts for p in parts),
                            unparsed_refs=sum(getattr(p, "unparsed_refs", 0) for p in parts))

    def agree(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any (a plugin asking to stop, Ctrl-C)."""
        return self.world.all_reduce_sum([float(flag)])[0] > 0

    def _rows(self, rollouts: Rollouts) -> tuple[int, int]:
        per = rollouts.n // self.world.size
        return self.world.rank * per, (self.world.rank + 1) * per

    def rows(self, rollouts: Rollouts, token_adv: torch.Tensor) -> tuple[Rollouts, torch.Tensor]:
        """This rank's rows of the global batch: (rollouts [N/W, T], token advantages [N/W, T])."""
        from dataclasses import replace

        start, stop = self._rows(rollouts)
        g = rollouts.group_size
        ent = rollouts.entropy[start:stop] if rollouts.entropy is not None else None  # [N/W, T]
        mine = replace(rollouts, tasks=rollouts.tasks[start // g:stop // g], prompt_ids=rollouts.prompt_ids[start:stop],
                       completion_ids=rollouts.completion_ids[start:stop],  # [N/W, T]
                       mask=rollouts.mask[start:stop], logprobs=rollouts.logprobs[start:stop],  # [N/W, T] x2
                       entropy=ent, finish_reasons=rollouts.finish_reasons[start:stop],
                       texts=rollouts.texts[start:stop])
        return mine, token_adv[start:stop]  # [N/W, T]
