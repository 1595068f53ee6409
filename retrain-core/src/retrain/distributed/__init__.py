"""Beyond one GPU: torchrun + FSDP2 for the ``local`` backend (docs/distributed.md).

Modules: ``world`` (process group from torchrun's variables), ``launch`` (``[backend] devices =
"gpu:0,1"`` / ``"cpu:2"`` re-executes the command under torchrun), ``fsdp`` (sharding, global
token-mean loss, the sampling replica), ``step`` (whole groups per rank, gathered rollouts and
rewards), ``sampling`` (row-keyed sampling: the same tokens on any number of ranks),
``checkpoint`` (torch.distributed.checkpoint, resumable on any number of ranks), ``run`` (what
the runner does differently under torchrun), ``bench`` (the GRPO benchmark on N GPUs).
Nothing here is imported by a one-process run beyond ``world.launched_by_torchrun``.
"""
