"""BPR matrix factorisation (Rendle et al. 2009): free user and item vectors."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BPRMF"]


class BPRMF(nn.Module):
    """Matrix factorisation trained with the BPR loss (see :func:`train_bpr`)."""

    def __init__(self, n_users: int, n_items: int, dim: int = 64) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.item.weight, std=0.1)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user.weight, self.item.weight
