"""The stand-in's binary wire format: the SDK's own protobuf messages (``tinker.proto``), read and written.

The SDK sends ``/api/v1/forward_backward`` as a protobuf ``ForwardBackwardRequest`` and accepts
``SampleResponse`` / ``ForwardBackwardOutput`` futures only as protobuf (``Accept:
application/x-protobuf``). Everything else is JSON. Only dense tensors and token chunks are
supported (what the SDK sends for token-only data): images, audio and sparse (CSR) tensors are refused
with a user error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tinker.proto import tinker_public_pb2 as pb

_NUMPY = {pb.DTYPE_FLOAT32: np.float32, pb.DTYPE_INT64: np.int64, pb.DTYPE_INT32: np.int32}


class WireError(ValueError):
    """A request the stand-in cannot read (reported to the SDK as a user error)."""


@dataclass
class Datum:
    tokens: list[int]  # model_input, [L]
    inputs: dict[str, np.ndarray] = field(default_factory=dict)  # loss_fn_inputs, each [L]


@dataclass
class ForwardBackward:
    model_id: str
    seq_id: int
    loss_fn: str
    config: dict[str, float]
    forward_only: bool
    data: list[Datum]


def _tensor(msg: pb.Tensor, name: str) -> np.ndarray:
    if msg.HasField("sparse_csr") or msg.dtype not in _NUMPY:
        raise WireError(f"loss_fn_inputs[{name!r}]: the stand-in reads dense float32/int64 tensors only "
                        "(pass 1-D arrays)")
    return np.frombuffer(msg.dense, dtype=_NUMPY[msg.dtype]).copy()


def read_forward_backward(body: bytes) -> ForwardBackward:
    """Parse the protobuf body of ``/api/v1/forward_backward``."""
    msg = pb.ForwardBackwardRequest()
    msg.ParseFromString(body)
    config = {k: float(v) for k, v in msg.loss_fn_config.items()}
    for k, v in msg.loss_fn_config_v2.items():
        if v.WhichOneof("value") == "number":
            config[k] = float(v.number)
    data = []
    for i, d in enumerate(msg.data):
        tokens: list[int] = []
        for chunk in d.model_input:
            if chunk.WhichOneof("chunk") != "encoded_text":
                raise WireError(f"datum {i}: only token chunks are supported by the stand-in "
                                f"(got {chunk.WhichOneof('chunk')})")
            tokens.extend(np.frombuffer(chunk.encoded_text.tokens, dtype=np.int32).tolist())
        inputs = {name: _tensor(t, name) for name, t in d.loss_fn_inputs.items()}
        data.append(Datum(tokens, inputs))
    return ForwardBackward(msg.model_id, msg.seq_id, msg.loss_fn, config, msg.forward_only, data)


def forward_backward_output(logprobs: list[np.ndarray], metrics: dict[str, float]) -> bytes:
    """``ForwardBackwardOutput`` with one ``logprobs`` float32 array per datum."""
    out = pb.ForwardBackwardOutput()
    out.loss_fn_output_type = "ArrayRecord"
    for k, v in metrics.items():
        out.metrics[k] = float(v)
    record = out.loss_fn_outputs.add()
    record.type_tag = "ArrayRecord"
    record.num_datums = len(logprobs)
    arrays = [np.asarray(x, dtype=np.float32) for x in logprobs]
    offsets = np.cumsum([0] + [a.nbytes for a in arrays]).astype(np.int64)
    field_ = record.fields["logprobs"]
    field_.dtype = pb.DTYPE_FLOAT32
    field_.data = b"".join(a.tobytes() for a in arrays)
    field_.offsets = offsets.tobytes()
    return out.SerializeToString()


def sample_response(sequences: list[tuple[list[int], list[float], str]]) -> bytes:
    """``SampleResponse``: (tokens, logprobs, "stop" | "length") per sample."""
    out = pb.SampleResponse()
    for tokens, logprobs, reason in sequences:
        seq = out.sequences.add()
        seq.stop_reason = pb.STOP_REASON_STOP if reason == "stop" else pb.STOP_REASON_LENGTH
        seq.tokens = np.asarray(tokens, dtype=np.int32).tobytes()
        seq.logprobs = np.asarray(logprobs, dtype=np.float32).tobytes()
    return out.SerializeToString()
