"""Advantages: episode-level (rewards -> [B, G]) and token-level credit (GTPO, SEPA, planning).

Importing this package is cheap (no torch). The public contract for custom token transforms is
:class:`TransformSpec`::

    from retrain.advantages import TransformSpec

The training loop uses :func:`retrain.advantages.credit.build_credit`.
"""

from retrain.advantages.transforms import TransformSpec

__all__ = ["TransformSpec"]
