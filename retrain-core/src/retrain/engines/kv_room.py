"""A decode KV cache with room reserved for the whole completion (the ``pytorch`` engine on CPU).

transformers' ``DynamicCache`` grows each layer by concatenation: every decoded token
reallocates and copies every layer's keys and values, [N, kvH, L, D] each, so a generation
allocated (and the allocator kept) several copies of the cache. :func:`reserve_room` swaps each
layer for one with a buffer of length L + max_tokens, written in place; ``update`` returns views
of the filled part. Under autocast the buffers take the autocast dtype: attention under autocast
(SDPA, or eager matmuls) casts keys and values to it anyway, so the numbers are the same and the
cache is half the size (the default run: ~1 GB of fp32 cache -> ~0.5 GB).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transformers.cache_utils import DynamicLayer

if TYPE_CHECKING:
    import torch


class RoomLayer(DynamicLayer):
    """One layer's keys/values in a preallocated buffer [N, kvH, capacity, D]; ``keys``/``values`` are
    views of the filled length."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, extra: int, dtype: torch.dtype,
                 repeats: int = 1) -> None:
        super().__init__()
        self.dtype, self.device, self.is_initialized = dtype, keys.device, True
        self.filled = 0
        b, h, length, d = keys.shape  # [B, kvH, L, D]: each row becomes ``repeats`` consecutive rows
        self._k = self._v = keys.new_empty(0)
        self._grow((b * repeats, h, length, d), length + extra)
        for room, src in ((self._k, keys), (self._v, values)):
            room.view(b, repeats, h, -1, d)[:, :, :, :length] = src[:, None]  # [B, G, kvH, L, D] <- [B, 1, kvH, L, D]
        self.filled = length
        self.keys, self.values = self._k[:, :, :length], self._v[:, :, :length]

    def _grow(self, shape: Any, capacity: int) -> None:
        n, h, _, d = shape
        k = self._k.new_empty((n, h, capacity, d), dtype=self.dtype)  # [N, kvH, capacity, D]
        v = self._v.new_empty((n, h, capacity, d), dtype=self.dtype)  # [N, kvH, capacity, D]
        if self.filled:
            k[:, :, :self.filled] = self._k[:, :, :self.filled]
            v[:, :, :self.filled] = self._v[:, :, :self.filled]
        self._k, self._v = k, v

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        q = key_states.shape[-2]  # new positions: [N, kvH, q, D]
        if self.filled + q > self._k.shape[-2]:  # more tokens than reserved: double the room
            self._grow(self._k.shape, 2 * (self.filled + q))
        self._k[:, :, self.filled:self.filled + q] = key_states
        self._v[:, :, self.filled:self.filled + q] = value_states
        self.filled += q
        self.keys, self.values = self._k[:, :, :self.filled], self._v[:, :, :self.filled]  # [N, kvH, filled, D]
        return self.keys, self.values


def reserve_room(cache: Any, extra: int, repeats: int = 1) -> None:
    """Give every layer of a filled ``DynamicCache`` room for ``extra`` more tokens (in place), in the
    active autocast dtype of its device when there is one; ``repeats``: each row repeated that many
    times (``batch_repeat_interleave``, without a full-size copy in the old dtype)."""
    import torch

    if any(type(layer) is not DynamicLayer or not layer.is_initialized for layer in cache.layers):
        if repeats > 1:
            cache.batch_repeat_interleave(repeats)  # sliding windows, linear attention...: transformers' own way
        return
    for i, layer in enumerate(cache.layers):
        keys = layer.keys  # [N, kvH, L, D]
        kind = keys.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else keys.dtype
        cache.layers[i] = RoomLayer(keys, layer.values, extra, dtype if keys.is_floating_point() else keys.dtype,
                                    repeats)
