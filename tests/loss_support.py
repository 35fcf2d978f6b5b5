"""Random inputs of the training loss, shared by the loss tests.

Importable as ``loss_support`` from any test (pytest's "prepend" import mode puts ``tests/`` on
``sys.path``, as for ``cli_support``).
"""

from __future__ import annotations

import torch


def random_loss_batch(
    shape: tuple[int, ...], extra: dict[str, tuple[int, ...]], seed: int = 0
) -> dict[str, torch.Tensor]:
    """Keyword arguments of ``AGSDLoss``: logits ``z_t``, ``z_t1`` (normal) and anchors
    ``a_pos_t``, ``a_neg_t``, ``a_pos_t1``, ``a_neg_t1`` (uniform) of ``shape``, then each
    ``extra`` name (uniform, its own shape), drawn in that order from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    batch = {"z_t": torch.randn(shape, generator=g), "z_t1": torch.randn(shape, generator=g)}
    for name in ("a_pos_t", "a_neg_t", "a_pos_t1", "a_neg_t1"):
        batch[name] = torch.rand(shape, generator=g)
    for name, extra_shape in extra.items():
        batch[name] = torch.rand(extra_shape, generator=g)
    return batch
