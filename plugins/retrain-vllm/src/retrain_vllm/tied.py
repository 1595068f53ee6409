"""Full-weight sync of models with tied embeddings (SmolLM2, small Qwen and Llama models).

A tied model saves its embedding once (``model.embed_tokens.weight``); vLLM then skips
``lm_head`` when it loads, and its in-place ``reload_weights`` leaves the output layer with the
*old* weights (it logs ``ParallelLMHead: Failed to load weights``): the engine samples from a
model the trainer never held, and the gap grows every step (measured on a tiny tied Llama, lr
0.01: 5e-7 before the first sync, 0.35 and 0.68 max |logprob| gap after the next two).

The fix: vLLM serves an *untied* copy. Its base folder says ``tie_word_embeddings = false`` and
holds ``lm_head.weight`` (a copy of the embedding), and every synced folder gets the same
treatment, so ``reload_weights`` loads the output layer like any other. The trainer stays tied;
vLLM spends one more vocab x hidden matrix. LoRA runs need none of this (the adapter never
touches the embedding or the output layer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EMBED_KEYS = ("model.embed_tokens.weight", "transformer.wte.weight", "model.embed_in.weight")


def is_tied(backend: Any) -> bool:
    """True when the trainer's model shares its input embedding with its output layer."""
    model = getattr(backend, "model", None)
    config = getattr(model, "config", None)
    return bool(getattr(config, "tie_word_embeddings", False))


def untie_folder(folder: str | Path) -> Path:
    """Rewrite an HF folder written from a tied model so that it loads untied: ``lm_head.weight`` is
    added (a copy of the embedding) and config.json says ``tie_word_embeddings = false``."""
    from safetensors.torch import load_file, save_file

    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no .safetensors weights to untie")
    embed = None
    for f in files:
        tensors = load_file(str(f))
        if "lm_head.weight" in tensors:
            embed = None  # already untied
            break
        key = next((k for k in EMBED_KEYS if k in tensors), None)
        if key is not None:
            embed = tensors[key]
    if embed is not None:
        save_file({"lm_head.weight": embed.clone().contiguous()}, str(folder / "lm_head.safetensors"),
                  metadata={"format": "pt"})
        index = folder / "model.safetensors.index.json"
        if index.is_file():  # sharded: the index must name the new file
            data = json.loads(index.read_text())
            data.setdefault("weight_map", {})["lm_head.weight"] = "lm_head.safetensors"
            index.write_text(json.dumps(data, indent=2))
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text())
    config["tie_word_embeddings"] = False
    if isinstance(config.get("text_config"), dict):
        config["text_config"]["tie_word_embeddings"] = False
    config_file.write_text(json.dumps(config, indent=2))
    return folder


class UntiedExport:
    """The backend as a sync source, with ``save_weights`` writing untied folders (tied models only)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def __getattr__(self, name: str) -> Any:  # everything else is the backend's
        return getattr(self.backend, name)

    def save_weights(self, path: str | Path) -> Path:
        out = Path(self.backend.save_weights(path) or path)
        return untie_folder(out)


def sync_source(backend: Any, lora_rank: int) -> Any:
    """What the engine should save weights from: the backend, or its untied export for tied full-weight runs."""
    return UntiedExport(backend) if lora_rank == 0 and is_tied(backend) else backend
