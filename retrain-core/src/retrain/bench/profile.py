"""``retrain bench --profile DIR``: one more step after the timed ones, its generation and its training each
under ``torch.profiler``, written as tables (where the time goes, kernel by kernel).

Per phase, ``DIR/profile-<phase>.txt`` holds: the wall time, the summed time of device kernels and their
count (kernels replayed from a CUDA graph included; busy = kernel time / wall time), the top ops by self
device time (by self CPU time on a machine without CUDA), and the top ops grouped by input shape. The step
is not counted in the timed steps (the profiler slows the host).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROWS = 40  #: rows of each table


def profiled(path: Path, label: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` under ``torch.profiler``; write ``path`` (the tables); return what ``fn`` returned."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    with profile(activities=acts, record_shapes=True) as prof:
        out = fn()
        if cuda:
            torch.cuda.synchronize()
    wall = time.perf_counter() - t
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    kernel_s = sum(e.self_device_time_total for e in kernels) / 1e6
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    head = (f"{label}: wall {wall:.3f}s, device kernels {kernel_s:.3f}s in {len(kernels)} launches "
            f"(busy {100 * kernel_s / wall:.0f}%)\n" if cuda else f"{label}: wall {wall:.3f}s (no CUDA device)\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + "\n== by op\n" + prof.key_averages().table(sort_by=sort, row_limit=ROWS, max_name_column_width=70)
                    + "\n== by op and input shape\n"
                    + prof.key_averages(group_by_input_shape=True).table(sort_by=sort, row_limit=ROWS,
                                                                         max_name_column_width=50,
                                                                         max_shapes_column_width=70))
    print(head.rstrip(), f"-> {path}", flush=True)
    return out
