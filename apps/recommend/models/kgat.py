"""A KG-aware recommender: relation-aware attention propagation on the collaborative KG (KGAT-style).

Nodes are users ``0..U-1`` followed by the catalogue's entities (the first ``I`` of which are the
items). Edges: user–item interactions and KG triples, each in both directions with its own
relation id. Each layer aggregates neighbours with knowledge-aware attention
``π(s, r, t) = (e_s ⊙ w_r) · tanh(e_t ⊙ w_r + b_r)`` normalised over a node's incoming edges
(PyG ``softmax``/``scatter``), without transforms (LightGCN-style); the output is the mean over
layers. Entity vectors may start from the KG embeddings of ``kg.embeddings`` (projected to ``dim``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from apps.recommend.data import Interactions

__all__ = ["KGAttention", "build_ckg"]


def build_ckg(n_users: int, train: Interactions, triples: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The collaborative KG as ``(edge_index (2, E), edge_type (E,), n_relation_types)``.

    Relation ids: 0 user→item, 1 item→user, then ``2 + 2r`` head→tail and ``3 + 2r`` tail→head.
    """
    pairs = np.unique(np.stack([train.users, train.items + n_users], 1), axis=0)
    ui = torch.from_numpy(pairs.T.copy())
    h = torch.from_numpy(triples[:, 0] + n_users)
    r = torch.from_numpy(triples[:, 1])
    t = torch.from_numpy(triples[:, 2] + n_users)
    src = torch.cat([ui[0], ui[1], h, t])
    dst = torch.cat([ui[1], ui[0], t, h])
    typ = torch.cat([torch.zeros(ui.shape[1], dtype=torch.long), torch.ones(ui.shape[1], dtype=torch.long),
                     2 + 2 * r, 3 + 2 * r])  # fmt: skip
    n_rel = 2 + 2 * (int(triples[:, 1].max()) + 1 if len(triples) else 0)
    return torch.stack([src, dst]), typ, n_rel


class KGAttention(nn.Module):
    """Attention propagation over the collaborative KG (see the module docstring).

    Args:
        n_users: user count.
        n_items: item count (the first entities).
        n_entities: entity count (items included).
        edge_index: ``(2, E)`` from :func:`build_ckg`.
        edge_type: ``(E,)`` relation ids.
        n_relations: relation-type count.
        dim: embedding size.
        layers: propagation layers.
        entity_init: optional ``(n_entities, k)`` pretrained KG vectors (rows of zeros = unknown).
    """

    def __init__(self, n_users: int, n_items: int, n_entities: int, edge_index: torch.Tensor,
                 edge_type: torch.Tensor, n_relations: int, dim: int = 64, layers: int = 2,
                 entity_init: np.ndarray | None = None) -> None:  # fmt: skip
        super().__init__()
        self.n_users, self.n_items, self.layers = n_users, n_items, layers
        self.register_buffer("edge_index", edge_index)
        self.register_buffer("edge_type", edge_type)
        self.node = nn.Embedding(n_users + n_entities, dim)
        nn.init.normal_(self.node.weight, std=0.1)
        self.rel_w = nn.Embedding(n_relations, dim)
        self.rel_b = nn.Embedding(n_relations, dim)
        nn.init.normal_(self.rel_w.weight, mean=1.0, std=0.1)
        nn.init.zeros_(self.rel_b.weight)
        self.init_proj: nn.Linear | None = None
        if entity_init is not None:
            init = torch.from_numpy(np.asarray(entity_init, np.float32))
            self.register_buffer("entity_init", init)
            self.init_proj = nn.Linear(int(init.shape[1]), dim, bias=False)
            nn.init.normal_(self.init_proj.weight, std=0.01)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        from torch_geometric.utils import scatter, softmax

        x = self.node.weight
        if self.init_proj is not None:
            pre = self.init_proj(self.entity_init)
            x = torch.cat([x[: self.n_users], x[self.n_users :] + pre])
        edge_index: torch.Tensor = self.edge_index  # type: ignore[assignment]
        edge_type: torch.Tensor = self.edge_type  # type: ignore[assignment]
        src, dst = edge_index[0], edge_index[1]
        w, b = self.rel_w(edge_type), self.rel_b(edge_type)
        logits = ((x[src] * w) * torch.tanh(x[dst] * w + b)).sum(-1)
        att = softmax(logits, dst, num_nodes=x.shape[0])
        out, h = [x], x
        for _ in range(self.layers):
            h = scatter(h[src] * att.unsqueeze(-1), dst, dim=0, dim_size=x.shape[0], reduce="sum")
            out.append(h)
        final = torch.stack(out).mean(0)
        return final[: self.n_users], final[self.n_users : self.n_users + self.n_items]
