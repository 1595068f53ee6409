"""``[backend] compile`` on a real tiny model (CPU): the compiled trainer step equals the eager one,
its checkpoints are the plain module's and resume exactly into an uncompiled run, a compiler failure
costs one warning line, and ``auto`` compiles only where it pays.

Inductor on this CPU takes over a minute for the tiny model, so these tests compile with the cheap
``aot_eager`` backend (dynamo's graph capture and AOT autograd's forward/backward split, kernels run
eagerly) through the internal hook ``RETRAIN_COMPILE_BACKEND``; inductor itself is measured on the GPU
(docs/performance.md).
"""

from __future__ import annotations

import pytest
import torch
from retrain.backends.compiled import wants_compile
from retrain.config import config_from_dict
from retrain.types import Rollouts, RunContext, SamplingParams, Task
from safetensors.torch import load_file


@pytest.fixture
def aot_eager(monkeypatch):
    import torch._dynamo

    monkeypatch.setenv("RETRAIN_COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()  # compile here, not from graphs an earlier test left in the cache
    yield
    torch._dynamo.reset()


def _backend(tiny_model, lora_rank, compile, max_steps=100):
    from retrain.backends.local import LocalBackend

    cfg = config_from_dict({"model": {"model": str(tiny_model), "lora_rank": lora_rank},
                            "training": {"temperature": 0.7, "lr": 1e-2, "max_steps": max_steps}})
    ctx = RunContext(config=cfg, registry=None)
    torch.manual_seed(0)  # same LoRA init in every backend
    backend = LocalBackend(ctx=ctx, devices="cpu", micro_batch_size=2, compile=compile)
    ctx.backend = backend
    return backend, ctx


def _batches(tiny_model):
    """Three steps' rollouts of different lengths (6 rows: 3 prompts x G = 2) with fixed advantages."""
    from retrain.engines.pytorch import PytorchEngine

    backend, ctx = _backend(tiny_model, 4, False)
    engine = PytorchEngine(ctx=ctx)
    tok = backend.tokenizer
    prompts = []
    for text in ("hi", "what is 2+2?", "x"):
        ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True)
        prompts.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    out = []
    for step, length in enumerate((7, 11, 9)):  # none equal to N = 6 (duck sizing would tie T to N)
        gen = engine.generate(prompts, SamplingParams(n=2, max_tokens=length, temperature=0.7, seed=step))
        r = Rollouts.from_generation([Task(prompt=str(i), answer="") for i in range(3)], prompts, gen, 2)
        adv = torch.linspace(-1, 1, r.n).unsqueeze(1) * r.mask  # [N, T]
        out.append((r, adv))
    return out


def _saved_tensors(folder):
    out = {}
    for f in sorted(folder.rglob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


@pytest.mark.parametrize("lora_rank", [4, 0])
def test_compiled_step_equals_eager_and_its_checkpoint_resumes_uncompiled(tiny_model, tmp_path, capfd, aot_eager,
                                                                         lora_rank):
    batches = _batches(tiny_model)
    capfd.readouterr()
    eager, _ = _backend(tiny_model, lora_rank, False)
    compiled, _ = _backend(tiny_model, lora_rank, True)
    assert eager.compiled is None and compiled.compiled is not None
    for step, (r, adv) in enumerate(batches[:2]):
        a, b = eager.train_step(r, adv), compiled.train_step(r, adv)
        for key in ("loss/objective", "loss/policy", "train/grad_norm", "mismatch/kl"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), (step, key)
        # compile time: reported on the step that compiled; a new length does not recompile (dynamic shapes)
        assert ("train/compile_s" in b) == (step == 0) and "train/compile_s" not in a
    assert b["train/grad_norm"] > 0
    for (name, p), q in zip(eager.model.named_parameters(), compiled.model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6), name
    err = capfd.readouterr().err
    reports = [line for line in err.splitlines() if line.startswith("compile:")]
    assert len(reports) == 1 and reports[0].startswith("compile: the trained decoder compiled in "), err
    assert "(torch.compile of each decoder layer, backend aot_eager" in reports[0]  # regional: one graph per layer
    decoder = compiled.model.get_base_model().model if lora_rank else compiled.model.model
    assert all(layer._compiled_call_impl is None for layer in decoder.layers)  # swapped in only inside the step
    assert "warning" not in err and "Traceback" not in err

    # the checkpoint holds the plain module's names, as an eager run's does
    eager.save_checkpoint(tmp_path / "eager")
    compiled.save_checkpoint(tmp_path / "compiled")
    saved = _saved_tensors(tmp_path / "compiled")
    assert saved.keys() == _saved_tensors(tmp_path / "eager").keys()
    assert not any("_orig_mod" in k for k in saved) and saved
    # ... and resumes exactly into an uncompiled backend: same weights, same next step
    resumed, _ = _backend(tiny_model, lora_rank, False)
    resumed.load_checkpoint(tmp_path / "compiled")
    assert resumed.version == compiled.version == 2
    for (name, p), q in zip(compiled.model.named_parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q), name
    r, adv = batches[2]
    a, b = resumed.train_step(r, adv), compiled.train_step(r, adv)
    assert b["loss/objective"] == pytest.approx(a["loss/objective"], rel=1e-5, abs=1e-7)
    assert b["train/grad_norm"] == pytest.approx(a["train/grad_norm"], rel=1e-5)


def test_a_compiler_failure_is_one_warning_and_the_step_runs_eagerly(tiny_model, capfd, monkeypatch):
    import torch._dynamo

    @torch._dynamo.register_backend(name="retrain_test_broken_compiler")
    def broken(gm, example_inputs):  # a real dynamo backend that cannot compile anything
        raise RuntimeError("no code generator for this machine\nsecond line of a long compiler report")

    monkeypatch.setenv("RETRAIN_COMPILE_BACKEND", "retrain_test_broken_compiler")
    torch._dynamo.reset()
    batches = _batches(tiny_model)
    eager, _ = _backend(tiny_model, 4, False)
    compiled, _ = _backend(tiny_model, 4, True)
    capfd.readouterr()
    for step, (r, adv) in enumerate(batches[:2]):
        a, b = eager.train_step(r, adv), compiled.train_step(r, adv)
        assert b == a, step  # the failed attempt left nothing behind: the eager step, bit for bit
    for p, q in zip(eager.model.parameters(), compiled.model.parameters(), strict=True):
        assert torch.equal(p, q)
    err = capfd.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ['warning: [backend] compile: torch.compile of the trained decoder failed (BackendCompilerFailed: '
                     "RuntimeError: no code generator for this machine); training goes on uncompiled (set [backend] "
                     "compile = false to skip the attempt)"], err
    assert compiled.compiled.failed
    torch._dynamo.reset()


def test_out_of_memory_retrain_errors_and_eager_errors_are_not_compiler_failures():
    from retrain.backends.compiled import is_compile_failure
    from retrain.errors import NumericsError

    assert not is_compile_failure(torch.OutOfMemoryError("CUDA out of memory"))
    assert not is_compile_failure(NumericsError("step 3: loss is nan"))
    try:
        torch.zeros(2) @ torch.zeros(3)  # an error of the model's own code: no compiler frame
    except RuntimeError as e:
        assert not is_compile_failure(e)


@pytest.mark.parametrize("setting, device, steps, distributed, expected", [
    ("auto", "cuda", 10_000, False, False),  # no GPU measurement shows the compile paying back yet
    ("auto", "cpu", 10_000, False, False),
    ("auto", "cuda", 1000, True, False),
    (True, "cpu", 1, False, True),
    (True, "cuda", 1, False, True),
    (False, "cuda", 10_000, False, False),
])
def test_auto_compiles_nothing_true_compiles_everywhere(setting, device, steps, distributed, expected):
    assert wants_compile(setting, device, steps, distributed) is expected


def test_cpu_default_builds_no_compiled_decoder(tiny_model):
    backend, _ = _backend(tiny_model, 4, "auto", max_steps=10_000)
    assert backend.compiled is None


def test_each_of_more_layers_than_dynamos_recompile_limit_runs_compiled(aot_eager):
    """The layers share one forward code object, and dynamo keeps 8 graphs per code object by default:
    a 10-layer decoder, forward and backward with a KV-cache prefix as the shared-prefix path runs it,
    compiles a graph for every layer, and the hidden states equal the eager ones."""
    from peft import LoraConfig, get_peft_model
    from retrain.backends.compiled import CompiledDecoder
    from torch._dynamo.utils import counters
    from transformers import AutoModelForCausalLM, DynamicCache, LlamaConfig

    cfg = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=10,
                      num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_config(cfg), LoraConfig(r=4, target_modules="all-linear"))
    decoder = model.get_base_model().model
    compiled = CompiledDecoder(decoder)
    assert compiled.form == "each decoder layer"
    prefix, ids = torch.randint(0, 300, (1, 5)), torch.randint(0, 300, (1, 7))  # [1, 5], [1, 7]
    hidden = []
    for run in (compiled.decoder, decoder):
        cache = DynamicCache(config=cfg)
        with torch.no_grad():
            run(input_ids=prefix, past_key_values=cache, use_cache=True)
        out = run(input_ids=ids, past_key_values=cache, use_cache=True).last_hidden_state  # [1, 7, 32]
        out.sum().backward()
        hidden.append(out)
    assert counters["stats"]["unique_graphs"] >= 10
    assert torch.allclose(hidden[0], hidden[1], atol=1e-5)
