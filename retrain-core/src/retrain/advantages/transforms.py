"""The token-transform contract (``TransformSpec``) and the built-in transforms none, gtpo, gtpo_sepa.

A transform factory (kind ``transform``, selected by ``[algorithm] transform_mode``) returns a
:class:`TransformSpec`. The seed's contract is kept verbatim: the fields ``name``, ``use_gtpo``,
``needs_planning``, ``uses_sepa_controller`` and ``entropy_transform(entropies, planning_mask,
sepa_lambda)``, where ``entropy_transform`` works on ONE row: ``entropies`` is a list of floats
(the row's per-token uncertainty, valid tokens only), ``planning_mask`` a list of 0/1 of the same
length, ``sepa_lambda`` a float; it returns a list of floats of the same length.

Optional fields added after the seed (all defaulted, so seed specs keep working):

- ``token_advantage_transform(token_adv [N, T], planning_mask [N, T] bool, valid [N, T] bool)``
  -> ``[N, T]``: runs after GTPO weighting (HICRA uses it). Must not modify its inputs.
- ``batched_entropy_transform(entropies [N, T], planning_mask [N, T] bool, valid [N, T] bool,
  sepa_lambda)`` -> ``[N, T]``: a tensor version of ``entropy_transform``; when set it is used
  instead (the built-ins use it; it must agree with the per-row function on valid tokens).
- ``gtpo_beta``: the GTPO strength for this spec; ``None`` = ``[gtpo] beta``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

EntropyTransform = Callable[[list[float], list[int], float], list[float]]


@dataclass(frozen=True)
class TransformSpec:
    """What a token-level transform does, as flags plus optional functions (seed contract)."""

    name: str
    use_gtpo: bool = False
    needs_planning: bool = False
    uses_sepa_controller: bool = False
    entropy_transform: EntropyTransform | None = None
    # -- added after the seed; optional --------------------------------------------------------
    token_advantage_transform: Callable[..., Any] | None = None
    batched_entropy_transform: Callable[..., Any] | None = None
    gtpo_beta: float | None = None


def make_none() -> TransformSpec:
    """No token transform: every token of a completion gets its episode advantage."""
    return TransformSpec(name="none")


def make_gtpo(beta: float = 0.1) -> TransformSpec:
    """GTPO: weight each token's advantage by its relative uncertainty, w_t = max(0, 1 + beta*(h_t/mean(h) - 1))."""
    return TransformSpec(name="gtpo", use_gtpo=True, gtpo_beta=beta)


make_gtpo.config_section = "gtpo"  # type: ignore[attr-defined]


def make_gtpo_sepa(beta: float = 0.1) -> TransformSpec:
    """GTPO after SEPA: execution-token uncertainty pooled toward its mean with the [sepa] controller's lambda."""
    from retrain.advantages.sepa import sepa_pool_row, sepa_pool_tensor

    return TransformSpec(name="gtpo_sepa", use_gtpo=True, needs_planning=True, uses_sepa_controller=True,
                         entropy_transform=sepa_pool_row, batched_entropy_transform=sepa_pool_tensor,
                         gtpo_beta=beta)


make_gtpo_sepa.config_section = "gtpo"  # type: ignore[attr-defined]
