"""The project's peer baseline for GPU benchmarks: TRL GRPOTrainer (HF generate, no vLLM) on one GPU.

Needs on the GPU machine, carried as wheels (Python 3.12): trl==1.16.0, datasets==4.8.5, dill, multiprocess.
Run it in the same call as retrain's own benchmark on the same workload and report the ratio.
Env: PROMPTS (8), G (16), L (256), STEPS (4), LORA (1).

Random-init Qwen2.5-0.5B-shaped model (vocab 151936), fixed-length completions
(min_new_tokens = max_completion_length) so throughput does not depend on weights.
Prints seconds per optimizer step and generated tokens/s.
"""
import os, sys, time, json
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, AutoModelForCausalLM, TrainerCallback
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer
from peft import LoraConfig

V = 151936
PROMPTS = int(os.environ.get("PROMPTS", 8))      # prompts per step
G = int(os.environ.get("G", 16))                 # completions per prompt
L = int(os.environ.get("L", 256))                # completion length
STEPS = int(os.environ.get("STEPS", 4))
LORA = os.environ.get("LORA", "1") == "1"

vocab = {f"t{i}": i for i in range(V)}
tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t0"))
tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="t1", eos_token="t2", unk_token="t0")
tok.padding_side = "left"

cfg = Qwen2Config(vocab_size=V, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096,
                  tie_word_embeddings=True, dtype="bfloat16")
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
print("params", sum(p.numel() for p in model.parameters()) / 1e6, "M", flush=True)

import random
random.seed(0)
rows = [{"prompt": " ".join(f"t{random.randrange(10, V)}" for _ in range(128))} for _ in range(PROMPTS * (STEPS + 2))]
ds = Dataset.from_list(rows)

def reward(completions, **kw):
    return [float(len(c) % 3 == 0) for c in completions]

kw = dict(output_dir=__import__("tempfile").mkdtemp(), per_device_train_batch_size=PROMPTS * G, num_generations=G,
          gradient_accumulation_steps=1, max_completion_length=L,
          generation_kwargs={"min_new_tokens": L}, bf16=True, use_vllm=False, logging_steps=1,
          max_steps=STEPS, beta=0.0, learning_rate=1e-5, report_to=[], save_strategy="no", temperature=1.0)
import inspect
ok = set(inspect.signature(GRPOConfig.__init__).parameters)
kw = {k: v for k, v in kw.items() if k in ok}
args = GRPOConfig(**kw)

times = []
class T(TrainerCallback):
    def on_step_begin(self, a, s, c, **k): torch.cuda.synchronize(); self.t = time.perf_counter()
    def on_step_end(self, a, s, c, **k):
        torch.cuda.synchronize(); times.append(time.perf_counter() - self.t)
        print(f"step {s.global_step} {times[-1]:.2f}s", flush=True)

peft_cfg = LoraConfig(r=32, lora_alpha=64, target_modules="all-linear", task_type="CAUSAL_LM") if LORA else None
tr = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok,
                 peft_config=peft_cfg, callbacks=[T()])
tr.train()
steady = times[1:] if len(times) > 1 else times
s = sum(steady) / len(steady)
out = {"peer": "trl", "trl": __import__("trl").__version__, "lora": LORA, "prompts": PROMPTS, "G": G, "L": L,
       "s_per_step": round(s, 2), "gen_tok_per_s_incl_train": round(PROMPTS * G * L / s, 1),
       "gpu": torch.cuda.get_device_name(0), "peak_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 1)}
print(json.dumps(out))
