"""``retrain bench --contend``: a thread beside each training step that takes one resource only.

It tells which resource slows training when the one-step-off sampler runs beside it
(docs/performance.md, "Later H100 calls"): the GPU's SMs or Python's GIL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def contention(kind: str) -> Iterator[None]:
    """A thread beside the training step that takes only what ``kind`` names, to tell which one slows
    one-step-off training down: ``gil`` (pure Python, holds the GIL, no GPU), ``gpu`` (bf16 matmuls on
    its own CUDA stream, waiting with the GIL released), ``""`` nothing."""
    import threading

    import torch

    if not kind:
        yield
        return
    stop = threading.Event()

    def gil() -> None:
        while not stop.is_set():
            sum(range(10_000))

    def gpu() -> None:
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)  # [4096, 4096]
            while not stop.is_set():
                for _ in range(8):
                    a = (a @ a).clamp_(-1, 1)
                stream.synchronize()  # waits with the GIL released

    thread = threading.Thread(target={"gil": gil, "gpu": gpu}[kind], name=f"contend-{kind}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
