"""retrain's loss -> Tinker's: the datum layout by hand, and the gradient identity behind the
choice of the SDK's `cispo` loss (docs/tinker.md), for every [algorithm] loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("tinker")

from retrain.train.loss import policy_loss, truncated_is_weight  # noqa: E402
from retrain.types import Rollouts, Task  # noqa: E402
from retrain_tinker.datums import loss_config, policy_batch  # noqa: E402
from retrain_tinker.standin.model import StandinModel  # noqa: E402
from retrain_tinker.standin.wire import Datum  # noqa: E402


def rollouts(prompts, completions, masks, logprobs):
    n, t = len(completions), max(len(c) for c in completions)
    ids, mask, lp = torch.zeros(n, t, dtype=torch.long), torch.zeros(n, t), torch.zeros(n, t)
    for i, (c, m, q) in enumerate(zip(completions, masks, logprobs, strict=True)):
        ids[i, :len(c)], mask[i, :len(m)], lp[i, :len(q)] = torch.tensor(c), torch.tensor(m, dtype=torch.float), torch.tensor(q)
    return Rollouts([Task("p", "a")], n, prompts, ids, mask, lp, None, ["stop"] * n, [""] * n, 0)


def test_datums_by_hand():
    ro = rollouts([[1, 2, 3], [1, 2, 3]], [[4, 5, 6], [7, 8]], [[1, 1, 0], [1, 1]], [[-1.0, -2.0, 0.0], [-0.5, -0.25]])
    adv = torch.tensor([[2.0, 2.0, 2.0], [-1.0, -1.0, 0.0]])  # [N, T]
    batch = policy_batch(ro, adv)
    assert batch.denom == 4.0  # trained tokens of the step
    first, second = batch.datums
    assert first.model_input.to_ints() == [1, 2, 3, 4]  # the untrained last token is dropped
    assert first.loss_fn_inputs["target_tokens"].tolist() == [2, 3, 4, 5]
    assert first.loss_fn_inputs["logprobs"].tolist() == [0.0, 0.0, -1.0, -2.0]
    assert first.loss_fn_inputs["advantages"].tolist() == [0.0, 0.0, 0.5, 0.5]  # 2 / 4 tokens
    assert second.model_input.to_ints() == [1, 2, 3, 7]
    assert second.loss_fn_inputs["advantages"].tolist() == [0.0, 0.0, -0.25, -0.25]
    assert (batch.rows, batch.starts, batch.lengths) == ([0, 1], [2, 2], [2, 2])
    assert loss_config(2.0) == {"clip_low_threshold": 0.0, "clip_high_threshold": 2.0}


@pytest.mark.parametrize("kind", ["ppo", "is", "gspo", "cispo"])
def test_tinker_cispo_has_the_gradient_of_retrains_importance_corrected_loss(kind):
    g = torch.Generator().manual_seed(0)
    n, t, cap = 4, 5, 2.0
    mask = (torch.rand(n, t, generator=g) > 0.2).float()  # [N, T]
    engine = -torch.rand(n, t, generator=g) * 3  # [N, T] sampler logprobs
    trainer = (engine + 0.8 * torch.randn(n, t, generator=g)).clamp(max=-0.01)  # [N, T] some weights truncate
    adv = torch.randn(n, t, generator=g)  # [N, T]
    denom = float(mask.sum())
    # retrain, local backend with a separate engine: ratio against the trainer itself, truncated IS weight
    lp_r = trainer.clone().requires_grad_(True)
    loss_r, _ = policy_loss(lp_r, lp_r.detach(), adv, mask, kind=kind, denom=denom,
                            is_weight=truncated_is_weight(lp_r, engine, cap))
    loss_r.backward()
    # Tinker's cispo as the SDK documents it (the stand-in's implementation), on the data retrain sends
    lp_t = trainer.clone().requires_grad_(True)
    weights = adv * mask / denom  # [N, T]
    data = [Datum(list(range(t)), {"advantages": weights[i].numpy(), "logprobs": engine[i].numpy()}) for i in range(n)]
    StandinModel._loss(lp_t, mask, data, "cispo", loss_config(cap)).backward()
    assert torch.allclose(lp_t.grad, lp_r.grad, atol=1e-7)
    assert (torch.exp(trainer - engine) > cap).any()  # the truncation is exercised
    assert np.abs(lp_r.grad.numpy()).max() > 0
