"""Entry point of retrain-vllm: registers the ``vllm`` engine (vllm is imported only when it is built)."""

from __future__ import annotations

from retrain import hookimpl
from retrain_vllm.options import vllm_engine


@hookimpl
def retrain_register_engines(register):  # noqa: ANN001,ANN201
    register("vllm", vllm_engine)
