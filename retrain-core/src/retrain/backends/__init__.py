"""Trainers (kind ``backend``): own the policy weights, tokenizer and optimizer."""
