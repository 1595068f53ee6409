"""The training loop: loss, loop (the recipe), runner (run dir, resume, SIGINT), checkpoints."""
