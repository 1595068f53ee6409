"""Credit assignment: rewards [N] -> token advantages [N, T] (docs/advantages.md).

One object per run, built from the config through the plugin registry::

    credit = build_credit(ctx)
    token_adv, metrics = credit.compute(rewards, rollouts, step)   # [N, T], {"adv/zero_frac": ...}

Per step: episode advantages ``[B, G]`` from ``[algorithm] advantage_mode``; if the transform
needs them, planning tokens from ``[planning] detector``; per-token uncertainty h
(``[algorithm] uncertainty_kind``); SEPA's lambda from its controller; the spec's entropy
transform; GTPO weighting; the spec's token-advantage hook (HICRA); zero where ``mask`` is 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.advantages.episode import equal_groups
from retrain.advantages.sepa import CORRECT_THRESHOLD, SEPAController
from retrain.advantages.transforms import TransformSpec
from retrain.errors import PluginError, RetrainError
from retrain.train.guards import check_advantage_signs

if TYPE_CHECKING:
    import torch

    from retrain.types import Rollouts, RunContext


def ensure_importable(ctx: RunContext) -> None:
    """Dotted paths are looked up in the config file's folder too (after installed modules, see
    ``retrain.components.load_dotted``); sys.path itself is left alone."""
    dirs = getattr(ctx.registry, "search_dirs", None)
    folder = Path(ctx.config_path).resolve().parent if ctx.config_path else None
    if folder is not None and dirs is not None and folder not in dirs:
        dirs.append(folder)


def build_advantage(ctx: RunContext) -> Any:
    """The episode advantage selected by ``[algorithm] advantage_mode``: ``adv(rewards [B, G]) -> [B, G]``."""
    cfg = ctx.config
    name = cfg.algorithm.advantage_mode
    where = f"{cfg.source} [algorithm] advantage_mode"
    if "." in name or ":" in name:
        ensure_importable(ctx)
    adv = ctx.registry.build("advantage", name, where=where, ctx=ctx)  # a plain function comes back as is
    if not callable(adv):
        raise PluginError(f'{where} = "{name}": the factory returned {type(adv).__name__}, expected a callable '
                          "adv(rewards [B, G]) -> advantages [B, G].")
    return adv


def build_transform(ctx: RunContext) -> TransformSpec:
    """The TransformSpec selected by ``[algorithm] transform_mode`` (a name or module.function)."""
    cfg = ctx.config
    name = cfg.algorithm.transform_mode
    where = f"{cfg.source} [algorithm] transform_mode"
    if "." in name or ":" in name:
        ensure_importable(ctx)
    spec = ctx.registry.build("transform", name, where=where, ctx=ctx)
    if not isinstance(spec, TransformSpec):
        raise PluginError(f'{where} = "{name}": returned {type(spec).__name__}, expected a TransformSpec '
                          "(from retrain.advantages import TransformSpec).")
    return spec


def build_credit(ctx: RunContext) -> Credit:
    """Build the run's credit assigner from its config."""
    cfg = ctx.config
    spec = build_transform(ctx)
    detector = None
    if spec.needs_planning:
        detector = ctx.registry.build("planning_detector", cfg.planning.detector,
                                      where=f"{cfg.source} [planning] detector", ctx=ctx)
    controller = None
    if spec.uses_sepa_controller:
        controller = SEPAController(**cfg.section("sepa"), where=f"{cfg.source} [sepa]")
    beta = cfg.gtpo.beta if spec.gtpo_beta is None else spec.gtpo_beta
    return Credit(build_advantage(ctx), spec, detector=detector, controller=controller,
                  uncertainty_kind=cfg.algorithm.uncertainty_kind, gtpo_beta=beta, ctx=ctx)


class Credit:
    """Turns a step's rewards into token advantages aligned with ``rollouts.completion_ids``."""

    def __init__(self, advantage: Any, spec: TransformSpec, *, detector: Any = None,
                 controller: SEPAController | None = None, uncertainty_kind: str = "surprisal",
                 gtpo_beta: float = 0.1, ctx: RunContext | None = None, tokenizer: Any = None) -> None:
        self.advantage = advantage
        self.spec = spec
        self.detector = detector
        self.controller = controller
        self.uncertainty_kind = uncertainty_kind
        self.gtpo_beta = gtpo_beta
        self.ctx = ctx
        self._tokenizer = tokenizer

    @property
    def advantage_name(self) -> str:
        cfg = getattr(self.ctx, "config", None)
        return cfg.algorithm.advantage_mode if cfg is not None else getattr(
            self.advantage, "__name__", type(self.advantage).__name__)

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Controller state for checkpoints (JSON-serialisable; empty without a SEPA controller)."""
        return {"sepa": self.controller.state_dict()} if self.controller is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.controller is not None and state.get("sepa") is not None:
            self.controller.load_state_dict(state["sepa"])

    # -- inputs ---------------------------------------------------------------------------------
    def tokenizer(self) -> Any:
        tok = self._tokenizer or getattr(self.ctx, "tokenizer", None) or getattr(
            getattr(self.ctx, "backend", None), "tokenizer", None)
        if tok is None:
            raise RetrainError(f'transform "{self.spec.name}" needs planning tokens, but no tokenizer is available '
                               "(RunContext.tokenizer and backend.tokenizer are unset).")
        return tok

    def uncertainty(self, rollouts: Rollouts) -> torch.Tensor:
        """Per-token uncertainty ``[N, T]``: surprisal (-log p of the sampled token) or entropy."""
        if self.uncertainty_kind == "surprisal":
            # a non-finite engine logprob is train/guards.py's to report (the update is skipped); 0 keeps
            # the transform finite meanwhile
            surprisal = (-rollouts.logprobs).detach().float().nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)  # [N, T]
            return surprisal * rollouts.mask  # [N, T]
        if rollouts.entropy is not None:
            return rollouts.entropy.detach().float() * rollouts.mask  # [N, T]
        backend = getattr(self.ctx, "backend", None)
        token_entropy = getattr(backend, "token_entropy", None)
        if token_entropy is None:
            raise RetrainError('[algorithm] uncertainty_kind = "entropy": the engine returned no entropy and the '
                               f"backend ({type(backend).__name__}) has no token_entropy(rollouts). Use "
                               'uncertainty_kind = "surprisal" or an engine that reports entropy.')
        return token_entropy(rollouts).detach().float().to(rollouts.mask.device) * rollouts.mask  # [N, T]

    # -- the step -------------------------------------------------------------------------------
    def compute(self, rewards: torch.Tensor, rollouts: Rollouts, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Token advantages ``[N, T]`` (0 where ``rollouts.mask`` is 0) and metrics for this step."""
        import torch

        spec = self.spec
        n, g = rewards.shape[0], rollouts.group_size
        if n % g or n != rollouts.completion_ids.shape[0]:
            raise RetrainError(f"credit: {n} rewards do not form groups of {g} matching "
                               f"{rollouts.completion_ids.shape[0]} rollouts.")
        grouped = rewards.detach().float().cpu().view(-1, g)  # [B, G]
        adv = torch.as_tensor(self.advantage(grouped), dtype=torch.float)  # [B, G]
        if adv.shape != grouped.shape:
            raise PluginError(f"advantage mode returned shape {tuple(adv.shape)} for rewards {tuple(grouped.shape)}.")
        check_advantage_signs(grouped, adv, step, where=f'advantage mode "{self.advantage_name}"')
        device = rollouts.mask.device
        episode = adv.reshape(-1).to(device)  # [N]
        valid = rollouts.mask > 0  # [N, T]
        metrics: dict[str, float] = {
            "adv/zero_frac": equal_groups(grouped).float().mean().item(),
            "adv/mean_abs": episode.abs().mean().item(),
        }

        planning = torch.zeros_like(valid)  # [N, T] bool
        if self.detector is not None:
            planning = self.detector.detect(rollouts, self.tokenizer()).to(device) & valid  # [N, T]
            metrics["planning/frac"] = planning.sum().item() / max(1, int(valid.sum()))

        transforms_h = spec.use_gtpo or spec.entropy_transform is not None or spec.batched_entropy_transform is not None
        h = self.uncertainty(rollouts) if transforms_h or self.uncertainty_kind == "surprisal" or \
            rollouts.entropy is not None else None  # [N, T]
        if h is not None:
            metrics.update(_uncertainty_metrics(h, valid, planning, self.detector is not None))

        sepa_lambda = 0.0
        if self.controller is not None:
            self.controller.observe_correct_rate((rewards >= CORRECT_THRESHOLD).float().mean().item())
            execution = valid & ~planning  # [N, T]
            if h is not None and execution.sum() > 1:
                self.controller.observe_execution_variance(h[execution].var().item())
            sepa_lambda = self.controller.lambda_at(step)
            metrics["sepa/lambda"] = sepa_lambda
            metrics["sepa/gate_open"] = float(self.controller.gate_open)

        if h is None:  # not needed by this transform
            h = torch.zeros_like(rollouts.mask)  # [N, T]
        token_adv = self.token_advantages(episode, h, planning, valid, sepa_lambda)  # [N, T]
        if not torch.isfinite(token_adv).all():
            raise RetrainError(f'transform "{spec.name}" produced non-finite token advantages at step {step}.')
        metrics.update(_token_metrics(token_adv, valid))
        return token_adv, metrics

    def token_advantages(self, episode: torch.Tensor, h: torch.Tensor, planning: torch.Tensor,
                         valid: torch.Tensor, sepa_lambda: float) -> torch.Tensor:
        """The transform itself, given everything it needs: episode advantages ``[N]``,
        uncertainty ``h [N, T]``, bool ``planning``/``valid [N, T]`` -> token advantages ``[N, T]``."""
        import torch

        spec = self.spec
        h = self._transform_uncertainty(h, planning, valid, sepa_lambda)  # [N, T]
        if spec.use_gtpo:
            from retrain.advantages.gtpo import gtpo_weights

            token_adv = episode.unsqueeze(1) * gtpo_weights(h, valid, self.gtpo_beta)  # [N, T]
        else:
            token_adv = episode.unsqueeze(1).expand(h.shape).clone().float()  # [N, T]
        if spec.token_advantage_transform is not None:
            token_adv = torch.as_tensor(spec.token_advantage_transform(token_adv, planning, valid),
                                        dtype=torch.float, device=h.device)  # [N, T]
        return token_adv.masked_fill(~valid, 0.0)  # [N, T]

    def transform_batch(self, rewards: torch.Tensor, group_size: int, h: torch.Tensor, planning: torch.Tensor,
                        valid: torch.Tensor, sepa_lambda: float) -> torch.Tensor:
        """Rewards ``[N]`` -> token advantages ``[N, T]`` without rollouts or a controller (for tests)."""
        import torch

        episode = torch.as_tensor(self.advantage(rewards.float().view(-1, group_size)), dtype=torch.float)  # [B, G]
        return self.token_advantages(episode.reshape(-1), h, planning, valid, sepa_lambda)  # [N, T]

    def _transform_uncertainty(self, h: torch.Tensor, planning: torch.Tensor, valid: torch.Tensor,
                               sepa_lambda: float) -> torch.Tensor:
        import torch

        spec = self.spec
        if spec.batched_entropy_transform is not None:
            return torch.as_tensor(spec.batched_entropy_transform(h, planning, valid, sepa_lambda),
                                   dtype=torch.float, device=h.device)  # [N, T]
        if spec.entropy_transform is None:
            return h
        out = h.clone()  # [N, T]
        for i in range(h.shape[0]):
            idx = valid[i].nonzero().squeeze(1)  # [T_i]
            row = spec.entropy_transform(h[i, idx].tolist(), planning[i, idx].int().tolist(), float(sepa_lambda))
            row = torch.as_tensor(row, dtype=torch.float)
            if row.shape != idx.shape:
                raise PluginError(f'transform "{spec.name}": entropy_transform returned {row.numel()} values for a '
                                  f"row of {idx.numel()} tokens; it must return one value per token.")
            out[i, idx] = row.to(h.device)
        return out


def _uncertainty_metrics(h: torch.Tensor, valid: torch.Tensor, planning: torch.Tensor,
                         has_planning: bool) -> dict[str, float]:
    out = {}
    if valid.any():
        out["uncertainty/mean"] = h[valid].mean().item()
    if has_planning:
        execution = valid & ~planning  # [N, T]
        if planning.any():
            out["uncertainty/planning_mean"] = h[planning].mean().item()
        if execution.any():
            out["uncertainty/execution_mean"] = h[execution].mean().item()
    return out


def _token_metrics(token_adv: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    if not valid.any():
        return {}
    vals = token_adv[valid]  # [K]
    return {"adv/token_mean": vals.mean().item(), "adv/token_std": vals.std().item() if vals.numel() > 1 else 0.0,
            "adv/token_min": vals.min().item(), "adv/token_max": vals.max().item(),
            "adv/token_mean_abs": vals.abs().mean().item()}
