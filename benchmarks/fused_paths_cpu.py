"""Why the CUDA-only fused paths stay off on a CPU (docs/training.md, the ``local`` backend): each against the
path a CPU keeps, in this process, best of 5 after a warm-up, at the default run's shapes (SmolLM2-135M).

* logprobs of one bf16 logit chunk [1024, 49152] at temperature 0.7, forward and backward:
  ``fused_target_logprob`` (its eager form, what a CPU would run) against ``log_softmax``;
* one LoRA MLP (576 -> 1536 -> 576, rank 16) under bf16 autocast: ``adapters_fused`` (one addmm per adapter)
  against peft's multiply and add, 30 decode-sized forwards [16, 1, 576] and one training-sized forward and
  backward [16, 200, 576].

    python benchmarks/fused_paths_cpu.py     # prints ms and the ratio fused / kept
"""

from __future__ import annotations

import contextlib
import time

import torch


def best_ms(fn, reps: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times)


def logprob_chunk() -> tuple[float, float]:
    from retrain.backends.target_logprob import _log_softmax_path, fused_target_logprob

    torch.manual_seed(0)
    logits = (torch.randn(1024, 49152) * 3).to(torch.bfloat16)  # [C, V]
    targets = torch.randint(0, 49152, (1024,))  # [C]
    g = torch.randn(1024)  # [C]

    def run(path):
        x = logits.clone().requires_grad_(True)
        lp, _ = path(x, targets, 1 / 0.7, False)
        (lp * g).sum().backward()

    return best_ms(lambda: run(fused_target_logprob)), best_ms(lambda: run(_log_softmax_path))


def lora_mlp() -> list[tuple[str, float, float]]:
    from peft import LoraConfig, get_peft_model

    from retrain.backends.frozen import (
        adapter_inputs_uncast,
        adapters_fused,
        fusable_adapters,
        lora_layers,
        store_frozen_base,
    )

    class Mlp(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = torch.nn.Linear(576, 1536, bias=False)
            self.down = torch.nn.Linear(1536, 576, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.down(torch.nn.functional.silu(self.up(x)))

    torch.manual_seed(0)
    model = get_peft_model(Mlp(), LoraConfig(r=16, lora_alpha=32, target_modules=["up", "down"]))
    store_frozen_base(model, torch.bfloat16)
    layers = lora_layers(model)

    def run(shape, fused: bool, grad: bool):
        x = torch.randn(*shape)
        fuse = adapters_fused(fusable_adapters(layers)) if fused else contextlib.nullcontext()
        with torch.autocast("cpu", dtype=torch.bfloat16), adapter_inputs_uncast(layers), fuse:
            if grad:
                model(x).float().sum().backward()
            else:
                with torch.no_grad():
                    for _ in range(30):
                        model(x)

    out = []
    for name, shape, grad in (("decode x30 [16, 1, 576]", (16, 1, 576), False),
                              ("train fwd+bwd [16, 200, 576]", (16, 200, 576), True)):
        fused = best_ms(lambda s=shape, g=grad: run(s, True, g))
        kept = best_ms(lambda s=shape, g=grad: run(s, False, g))
        out.append((name, fused, kept))
    return out


def main() -> None:
    torch.set_num_threads(2)
    fused, kept = logprob_chunk()
    print(f"logprobs, bf16 chunk [1024, 49152], fwd+bwd: fused {fused:.0f} ms, log_softmax {kept:.0f} ms, "
          f"ratio {fused / kept:.2f}")
    for name, fused, kept in lora_mlp():
        print(f"LoRA MLP {name}: fused {fused:.1f} ms, peft {kept:.1f} ms, ratio {fused / kept:.2f}")


if __name__ == "__main__":
    main()
