"""Full-weight sync of a model with tied embeddings (as SmolLM2): vLLM must sample from the weights
the trainer holds after every sync. Before retrain_vllm/tied.py, vLLM's reload skipped the tied
output layer (``ParallelLMHead: Failed to load weights``) and the gap grew every step; the
post-sync check (retrain.train.guards.check_sync) turns that into an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from retrain.errors import NumericsError
from retrain.train.guards import check_sync
from retrain.types import SamplingParams
from test_train_runs import run_config, train
from vllm_helpers import make_ctx, train_once

PROMPTS = [[2, 10, 11, 12], [2, 20, 21, 22, 23]]
PARAMS = SamplingParams(n=3, max_tokens=8, temperature=1.0, seed=7)


@pytest.fixture(scope="module")
def tied_model(tmp_path_factory) -> Path:
    from retrain.testing import tiny_model_dir

    return tiny_model_dir(tmp_path_factory.mktemp("vllm_tied"), hidden=64, heads=2, layers=2, tied=True)


def test_untie_folder_adds_the_output_layer(tied_model, tmp_path):
    import shutil

    from retrain_vllm.tied import untie_folder
    from safetensors.torch import load_file

    folder = tmp_path / "copy"
    shutil.copytree(tied_model, folder)
    assert json.loads((folder / "config.json").read_text())["tie_word_embeddings"] is True
    untie_folder(folder)
    assert json.loads((folder / "config.json").read_text())["tie_word_embeddings"] is False
    head = load_file(str(folder / "lm_head.safetensors"))["lm_head.weight"]
    embed = load_file(str(folder / "model.safetensors"))["model.embed_tokens.weight"]
    assert head.shape == embed.shape and bool((head == embed).all())


def test_three_steps_in_process_tied_full_weights(tied_model, tmp_path):
    rows = train(run_config(tied_model, tmp_path, "tied", {"engine": "vllm"}, {"max_model_len": 128}, lora_rank=0))
    for r in rows:  # after every sync: the probe and the step's own tokens agree with the trainer
        assert r["sync/logprob_gap"] < 1e-5, r
        assert r["mismatch/abs_logprob_delta"] < 1e-4, r
    assert (tmp_path / "tied" / "vllm" / "base-untied" / "lm_head.safetensors").is_file()


def test_the_check_catches_a_stale_output_layer(tied_model, tmp_path):
    """Reload a folder written the old way (tied, no lm_head): vLLM keeps the old output layer."""
    ctx = make_ctx(tied_model, tmp_path / "run", model={"lora_rank": 0}, training={"lr": 0.05},
                   inference={"engine": "vllm"}, vllm={"max_model_len": 128})
    engine = ctx.registry.build("engine", "vllm", ctx=ctx)
    try:
        backend = ctx.backend
        train_once(backend, engine.generate(PROMPTS, PARAMS), PROMPTS, PARAMS.n)
        folder = backend.save_weights(tmp_path / "tied-v1")  # what a sync wrote before the fix
        engine.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(folder)})
        engine.llm.reset_prefix_cache()
        engine.version = backend.version
        with pytest.raises(NumericsError, match=r"^step 1: after the weight sync, the engine's logprobs differ"):
            check_sync(ctx, engine, backend, 1, PROMPTS)
        engine.sync(backend, backend.version)  # the fixed sync (untied folder) repairs it
        assert check_sync(ctx, engine, backend, 1, PROMPTS)["sync/logprob_gap"] < 1e-5
    finally:
        engine.close()
