"""Built-in task sources (``[data] source``): synthetic, math, jsonl, reasoning_gym, hf."""
