"""The GRPO benchmark runs end to end through the real local backend and pytorch engine (tiny, CPU)."""

from __future__ import annotations

import json


def test_bench_grpo_cpu_smoke(tmp_path, capsys):
    from retrain.bench.grpo import main

    out = tmp_path / "result.json"
    res = main(["--steps", "1", "--layers", "1", "--vocab", "300", "--prompts", "2", "--group", "2",
                "--tokens", "3", "--prompt-len", "5", "--usl", "", "--micro-batch", "2",
                "--model-dir", str(tmp_path / "model"), "--json", str(out)])
    r = res["retrain"]
    assert (r["prompts"], r["G"], r["L"], r["lora"]) == (2, 2, 3, 32)
    assert r["compiled_trainer"] is False and r["trainer_compile_s"] == 0
    assert r["s_per_step"] > 0 and r["gen_tok_per_s"] > 0 and r["train_tok_per_s"] > 0
    assert set(r["phases_s"]) == {"generate", "reward_credit", "train", "sync"}
    assert json.loads(out.read_text())["retrain"]["s_per_step"] == r["s_per_step"]
    printed = capsys.readouterr().out
    assert "retrain step 1:" in printed and "== GRPO step benchmark: cpu" in printed


def test_bench_compile_train_uses_the_backends_compile_option(tmp_path, monkeypatch):
    """``--compile-train`` is ``[backend] compile = true``: the trainer compiles once (aot_eager here:
    inductor on this CPU takes minutes; the GPU measures inductor) and reports the time it took."""
    import torch._dynamo
    from retrain.bench.grpo import main

    monkeypatch.setenv("RETRAIN_COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    res = main(["--steps", "1", "--layers", "1", "--vocab", "300", "--prompts", "2", "--group", "2",
                "--tokens", "3", "--prompt-len", "5", "--usl", "", "--micro-batch", "4", "--compile-train",
                "--model-dir", str(tmp_path / "model")])
    torch._dynamo.reset()
    r = res["retrain"]
    assert r["compiled_trainer"] is True and r["trainer_compile_s"] > 0


def test_bench_max_staleness_1_trains_each_batch_one_version_behind(tmp_path, capsys):
    """``--max-staleness 1``: step 0 trains on a batch of version 0 (nothing trained yet); every later step on a
    batch the engine sampled while the step before trained, one version behind, never more."""
    from retrain.bench.grpo import main

    res = main(["--steps", "2", "--layers", "1", "--vocab", "300", "--prompts", "2", "--group", "2",
                "--tokens", "3", "--prompt-len", "5", "--usl", "", "--micro-batch", "2", "--max-staleness", "1",
                "--model-dir", str(tmp_path / "model")])
    r = res["retrain"]
    assert r["max_staleness"] == 1 and r["phases_s"]["behind"] == 1.0  # steps 1 and 2: one version behind
    assert {"generate", "train", "wait", "sync"} <= set(r["phases_s"])
    printed = capsys.readouterr().out
    assert "retrain step 0:" in printed and "behind 0.00" in printed and "behind 1.00" in printed


def test_bench_contend_gil_and_micro_batch_auto_are_recorded(tmp_path):
    """``--contend gil`` runs a pure-Python thread beside each training step and stops it after; ``--micro-batch
    auto`` is ``[backend] micro_batch_size = "auto"``, whose rows per micro-batch each step records (on a CPU:
    the CPU's auto size, 16 rows, so this batch's 4 rows in one micro-batch)."""
    import threading

    from retrain.bench.grpo import main

    res = main(["--steps", "1", "--layers", "1", "--vocab", "300", "--prompts", "2", "--group", "2",
                "--tokens", "3", "--prompt-len", "5", "--usl", "", "--micro-batch", "auto", "--contend", "gil",
                "--model-dir", str(tmp_path / "model")])
    r = res["retrain"]
    assert r["contend"] == "gil" and r["micro_batch"] == "auto"
    assert r["micro_batch_rows"] == [4.0, 4.0]  # warm-up and timed step
    assert not [t for t in threading.enumerate() if t.name.startswith("contend")]  # each step's thread is gone


def test_bench_micro_batch_neither_rows_nor_auto_is_one_usage_error(capsys):
    import pytest
    from retrain.bench.grpo import main

    with pytest.raises(SystemExit) as exit_:
        main(["--micro-batch", "atuo"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        'error: argument --micro-batch: "atuo" is neither a number of rows nor "auto" (0 = the whole batch)')


def test_bench_contend_gpu_without_a_gpu_is_one_usage_error(capsys):
    import pytest
    import torch
    from retrain.bench.grpo import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(SystemExit) as exit_:
        main(["--contend", "gpu"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "error: --contend gpu: this machine has no CUDA device (the contending thread runs matmuls on one)")


def test_bench_profile_writes_one_table_per_phase(tmp_path, capsys):
    """``--profile DIR``: one more step after the timed ones, generation and training each profiled into a table
    whose rows name the ops that ran (on a CPU: sorted by self CPU time)."""
    from retrain.bench.grpo import main

    main(["--steps", "1", "--layers", "1", "--vocab", "300", "--prompts", "2", "--group", "2", "--tokens", "3",
          "--prompt-len", "5", "--usl", "", "--micro-batch", "2", "--model-dir", str(tmp_path / "model"),
          "--profile", str(tmp_path / "prof")])
    gen = (tmp_path / "prof" / "profile-generate.txt").read_text()
    train = (tmp_path / "prof" / "profile-train.txt").read_text()
    assert gen.startswith("generate: wall ") and "aten::" in gen and "== by op and input shape" in gen
    assert train.startswith("train: wall ") and "aten::mm" in train and "autograd::engine" in train
    assert "profile-train.txt" in capsys.readouterr().out


def test_bench_profile_with_max_staleness_is_one_usage_error(capsys):
    import pytest
    from retrain.bench.grpo import main

    with pytest.raises(SystemExit) as exit_:
        main(["--profile", "x", "--max-staleness", "1"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "--profile profiles a synchronous step: drop --max-staleness (or --profile)")
