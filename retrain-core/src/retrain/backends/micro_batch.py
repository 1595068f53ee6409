"""``[backend] micro_batch_size = "auto"`` on a GPU: the whole batch when its activations fit, else the most rows that do.

Training a batch whole is fastest on a GPU, since each micro-batch pays the Python and kernel-launch
cost again (docs/default-run.md). But a batch of long rows does not fit. On one H100, a
Qwen2.5-0.5B-shaped model ran out of memory with 32 rows of 1,152 tokens (docs/performance.md).

The estimate is the memory that autograd keeps per trained token:
``layers x (18 x hidden + 6 x intermediate)`` elements of the compute dtype. Fitted to four measured
allocator peaks of whole training steps (bf16, LoRA), it comes within 7% of each (and within 7.2% of a fifth,
measured later: the first micro-batch size that "auto" chose on a GPU):

| model | rows x tokens | estimate | measured peak |
|---|---|---|---|
| Qwen2.5-0.5B shape, 32 x 384 | 12,288 | 24.9 GiB | 26.6 GiB (H100) |
| Qwen2.5-0.5B shape, 128 x 384 | 49,152 | 99.6 GiB | 100.6 GiB (H200) |
| Qwen2.5-0.5B shape, 32 x 1,152 | 36,864 | 74.7 GiB | out of memory with 74.5 GiB allocated (H100) |
| Qwen2.5-0.5B shape, 25 x 1,152 (rows chosen by "auto") | 28,800 | 58.3 GiB | 62.5 GiB (H100) |
| SmolLM2-135M, 128 x ~49 (shared prompt prefix run once) | ~6,300 | 6.9 GiB | 7.2 GiB (H100) |

The rows are then split evenly: 128 rows that fit 25 at a time run as 6 micro-batches of 21-22
rows, not 5 of 25 and one of 3 (same number of micro-batches, a lower peak). A fixed
``micro_batch_size`` keeps its plain split (``micro_token_mean`` averages per micro-batch, so the
split is part of what the config means).

It is applied with a margin. The budget is 80% of the memory the device can still give (free,
plus what torch's allocator holds unused). Rows are counted at their full prompt plus completion
width, which is larger than what the shared-prefix forward trains.

The estimate serves the first step only. Each step measures what its first micro-batch actually
holds once its forward is done (the CUDA allocator's count before and after: no synchronisation),
per token of that width, and the next step sizes its micro-batches from that figure plus 10%
(``ActivationMeter``). The estimate was fitted before LoRA adapters ran in bf16 and before the
logprobs lost their fp32 copies; since then a Qwen2.5-0.5B-shaped step holds less than half of it
(H100, 8 x 16 x 256: the estimate splits the 128 rows in two, and a step of two 64-row micro-batches
peaked at 28 GiB of the 80), and prompts that rows share are run once. Measuring keeps "auto" right
as the code and the workload change: on that H100 the measured figure took the next steps to the whole
128 rows (50.6 GiB peak), and at 1,024 tokens from the estimate's 22 rows to 32 (51.0 GiB; 32 rows ran
out of memory before these changes). docs/performance.md, calls e and f.
"""

from __future__ import annotations

from typing import Any

#: share of the device's available memory that one micro-batch's activations may take
BUDGET_FRACTION = 0.8
#: headroom on a measured figure: backward's transients above what the forward left held
MEASURED_MARGIN = 1.1


def activation_bytes_per_token(model_config: Any, element_size: int) -> int:
    """Bytes autograd keeps per trained token (module docstring); 0 when the config lacks the sizes."""
    layers = getattr(model_config, "num_hidden_layers", 0) or 0
    hidden = getattr(model_config, "hidden_size", 0) or 0
    inter = getattr(model_config, "intermediate_size", 0) or 4 * hidden
    return int(layers * (18 * hidden + 6 * inter) * element_size)


def rows_that_fit(rows: int, row_tokens: int, bytes_per_token: float, budget_bytes: float) -> int:
    """Rows per micro-batch: all ``rows`` when they fit ``budget_bytes``, else the most that do (at least 1)."""
    if bytes_per_token <= 0 or row_tokens <= 0:
        return rows
    fit = int(budget_bytes // (bytes_per_token * row_tokens))
    return max(1, min(rows, fit))


def available_bytes(device: Any) -> float:
    """Memory a new allocation on ``device`` can use: the driver's free memory plus torch's cached, unused blocks."""
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return float(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def allocated_bytes(device: Any) -> float:
    """Bytes torch's allocator has handed out on ``device`` (a host-side counter: no synchronisation)."""
    import torch

    return float(torch.cuda.memory_allocated(device))


class ActivationMeter:
    """Bytes per token (of the rows' full width) that the last measured micro-batch held after its forward."""

    def __init__(self) -> None:
        self.bytes_per_token = 0.0

    def observe(self, held_bytes: float, tokens: int) -> None:
        if tokens > 0 and held_bytes > 0:
            self.bytes_per_token = held_bytes / tokens

    def per_token(self, estimate: float) -> float:
        """What to size the next micro-batches by: the measurement with its margin, else ``estimate``."""
        return MEASURED_MARGIN * self.bytes_per_token if self.bytes_per_token > 0 else estimate


def auto_rows(model: Any, rows: int, row_tokens: int, element_size: int, device: Any,
              meter: ActivationMeter | None = None) -> int:
    """``micro_batch_size = "auto"`` for a CUDA step of ``rows`` rows, ``row_tokens`` tokens each."""
    estimate = activation_bytes_per_token(getattr(model, "config", None), element_size)
    per_token = meter.per_token(estimate) if meter is not None else estimate
    return rows_that_fit(rows, row_tokens, per_token, BUDGET_FRACTION * available_bytes(device))


def even_slices(rows: int, most: int) -> list[slice]:
    """``rows`` in as few micro-batches of at most ``most`` rows as possible, their sizes differing by at most one."""
    k = -(-rows // max(1, most))
    return [slice(rows * i // k, rows * (i + 1) // k) for i in range(k)]
