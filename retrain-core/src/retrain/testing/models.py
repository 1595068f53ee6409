"""Tiny random-init models with a character-level tokenizer and a ChatML template, built locally.

    path = tiny_model_dir(tmp_path)              # a folder transformers / peft / vLLM can load
    model = AutoModelForCausalLM.from_pretrained(path)
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]
#: printable ASCII minus a few whitespace variants; every character is one token.
CHARS = sorted(set(string.printable) - set("\x0b\x0c\r"))


def tiny_tokenizer() -> Any:
    """A character-level PreTrainedTokenizerFast (vocab ~101) with ChatML special tokens.

    ``<|im_end|>`` is the EOS token, as in ChatML models.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL + CHARS)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # one token per character; special tokens are matched whole by the added-tokens pass
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>",
                                  eos_token="<|im_end|>", bos_token="<|im_start|>",
                                  additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tok.chat_template = CHATML_TEMPLATE
    return tok


def tiny_model_dir(path: str | Path, *, hidden: int = 64, layers: int = 2, heads: int = 4,
                   intermediate: int = 128, seed: int = 0, arch: str = "llama", tied: bool = False,
                   kv_heads: int | None = None) -> Path:
    """Write a random-init causal LM + tokenizer to ``path`` (idempotent) and return it.

    ``tied``: the output layer shares the input embedding (as SmolLM2 and small Qwen models do).
    ``kv_heads``: fewer key/value heads than query heads (grouped-query attention, as SmolLM2)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    path = Path(path)
    marker = path / "retrain_tiny.json"
    spec = {"hidden": hidden, "layers": layers, "heads": heads, "intermediate": intermediate, "seed": seed,
            "arch": arch, **({"tied": True} if tied else {}), **({"kv_heads": kv_heads} if kv_heads else {})}
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return path
    tok = tiny_tokenizer()
    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch]
    cfg = cls(vocab_size=len(tok), hidden_size=hidden, intermediate_size=intermediate,
              num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads or heads,
              max_position_embeddings=1024, tie_word_embeddings=tied,
              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    marker.write_text(json.dumps(spec))
    return path
