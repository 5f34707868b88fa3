"""LightGCN (He et al. 2020) on the user–item graph, with PyG's ``LightGCN``."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from apps.recommend.data import Interactions

__all__ = ["LightGCNRec"]


class LightGCNRec(nn.Module):
    """PyG ``LightGCN`` over users ``0..U-1`` and items ``U..U+I-1`` (both edge directions).

    Args:
        n_users: user count.
        n_items: item count.
        train: the training events (the graph's edges).
        dim: embedding size.
        layers: propagation layers.
    """

    def __init__(self, n_users: int, n_items: int, train: Interactions, dim: int = 64, layers: int = 2) -> None:
        super().__init__()
        from torch_geometric.nn.models import LightGCN

        self.n_users = n_users
        pairs = np.unique(np.stack([train.users, train.items + n_users], 1), axis=0)
        e = torch.from_numpy(pairs.T.copy())
        self.register_buffer("edge_index", torch.cat([e, e.flip(0)], 1))
        self.gcn = LightGCN(n_users + n_items, dim, layers)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.gcn.get_embedding(self.edge_index)
        return emb[: self.n_users], emb[self.n_users :]
