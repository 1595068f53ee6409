"""Inference engines (kind ``engine``): token ids in, completions + sampling logprobs out."""
