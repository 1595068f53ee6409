"""``python -m retrain.distributed.torchrun ...``: torchrun (``torch.distributed.run``) with its own
messages written to a file of the launcher's folder instead of stderr.

The ranks torchrun starts keep the terminal (they inherit the process's stderr file descriptor;
only torchrun's Python-level ``sys.stderr`` is redirected). So when every rank stops on a user
error (one ``error:`` line, exit 2), the launcher (``retrain.distributed.launch``) can print that
line once and exit 2, as one process does, instead of torchrun's failure report and exit code 1;
after any other failure it prints torchrun's messages.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

from retrain.distributed.launch import LAUNCH_DIR_ENV, TORCHRUN_LOG

if __name__ == "__main__":
    folder = os.environ.get(LAUNCH_DIR_ENV, "")
    if folder:  # before torch is imported: its loggers' handlers bind sys.stderr when they are made
        sys.stderr = Path(folder, TORCHRUN_LOG).open("a", buffering=1)
    sys.argv[0] = "torchrun"
    runpy.run_module("torch.distributed.run", run_name="__main__", alter_sys=True)
