"""retrain-vllm: vLLM engines for retrain (in-process ``vllm.LLM`` and a managed OpenAI server)."""

__version__ = "0.1.0"
