"""Compile time of the trained decoder, whole or one layer at a time ("regional"), against the layer count (CPU).

A lead for ``[backend] compile`` (docs/performance.md): a random Llama (hidden 64, LoRA r8 through peft) with
LAYERS layers, forward + backward at two shapes under ``torch.compile(dynamic=True)``, 1 torch thread.
``whole`` compiles the decoder (retrain's earlier form); ``regional`` compiles each layer's call and
swaps it in only for the call (``retrain.backends.compiled.RegionalDecoder``, what ``[backend] compile``
runs). Prints wall and dynamo seconds, graphs compiled, and the largest difference from the eager forward.

    TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) python benchmarks/compile_regional_cpu.py 6 regional inductor
"""

import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from torch._dynamo.utils import calculate_time_spent, counters
from transformers import AutoModelForCausalLM, LlamaConfig

torch.set_num_threads(1)
layers, mode, backend = int(sys.argv[1]), sys.argv[2], sys.argv[3]
cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2)
torch.manual_seed(0)
model = get_peft_model(AutoModelForCausalLM.from_config(cfg), LoraConfig(r=8, target_modules="all-linear"))
dec = model.get_base_model().model
if mode == "whole":
    run = torch.compile(dec, backend=backend, dynamic=True)
else:  # what [backend] compile runs
    from retrain.backends.compiled import RegionalDecoder

    run = RegionalDecoder(dec, backend)
t = time.perf_counter()
for rows, width in ((4, 20), (6, 33)):
    x = torch.randint(0, 300, (rows, width))  # [rows, width]
    hidden = run(input_ids=x).last_hidden_state  # [rows, width, 64]
    hidden.sum().backward()
eager = dec(input_ids=x).last_hidden_state
print(layers, mode, backend, f"wall {time.perf_counter() - t:.1f}s",
      f"dynamo {calculate_time_spent().get('total_wall_time', 0):.1f}s", "graphs", counters["stats"]["unique_graphs"],
      f"maxdiff {(hidden - eager).abs().max().item():.2e}")
