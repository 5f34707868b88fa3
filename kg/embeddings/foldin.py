"""Fold-in: embeddings for entities added after training, without retraining.

- R-GCN (text features): the new entity's vector is the encoder's output for its
  text features and its edges to known entities (one forward pass).
- Shallow models (TransE, DistMult, ComplEx, RotatE): only the new entity's vector
  is optimised, against its known triples with 1-N cross-entropy, every other
  parameter frozen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from kg.embeddings.models import KGEModel, RGCNModel
from kgnlp.errors import ValidationError

__all__ = ["fold_in", "fold_in_rgcn", "fold_in_shallow"]

Triple = tuple[str, str, str]


def fold_in_shallow(
    model: KGEModel,
    facts: Sequence[tuple[bool, int, int]],
    *,
    steps: int = 100,
    lr: float = 0.05,
    reg_weight: float = 1e-3,
    seed: int = 0,
) -> torch.Tensor:
    """Fit one new entity vector to its facts with the model frozen.

    Args:
        model: A trained shallow model.
        facts: ``(new_is_head, relation index, other entity index)`` per known triple.
        steps: Optimisation steps (Adam, full batch).
        lr: Learning rate.
        reg_weight: N3 weight on the new vector.
        seed: Initialisation seed.

    Returns:
        ``(D,)`` vector.
    """
    if not facts:
        raise ValidationError("fold-in needs at least one triple linking the new entity to known entities")
    with torch.no_grad():
        ents = model.encode().detach()
    gen = torch.Generator().manual_seed(seed)
    others = torch.tensor([o for _, _, o in facts])
    init = ents[others].mean(0) + 1e-3 * torch.randn(ents.shape[1], generator=gen)
    v = torch.nn.Parameter(init.clone())
    rel = torch.tensor([r for _, r, _ in facts])
    # the new entity is the anchor: (new, r, ?) asks for the tail, (?, r, new) for the head
    dirs = ["tail" if is_head else "head" for is_head, _, _ in facts]
    opt = torch.optim.Adam([v], lr=lr)
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.zeros(())
            for d in ("tail", "head"):
                sel = torch.tensor([i for i, x in enumerate(dirs) if x == d], dtype=torch.long)
                if not len(sel):
                    continue
                r, direction = model._resolve(rel[sel], d)
                q = model.make_query(v.expand(len(sel), -1), model.rel(r), direction)
                loss = loss + F.cross_entropy(model.match_all(q, ents), others[sel], reduction="sum")
            loss = loss / len(facts) + reg_weight * v.abs().pow(3).sum()
            loss.backward()
            opt.step()
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return v.detach()


@torch.no_grad()
def fold_in_rgcn(model: RGCNModel, features: torch.Tensor, triples: Sequence[tuple[int, int, int]]) -> torch.Tensor:
    """Encode new entities from their features and edges with a trained R-GCN.

    Args:
        model: The trained model (its graph and features are the known entities ``0..N-1``).
        features: ``(K, F)`` features of the new entities, which get indices ``N..N+K-1``.
        triples: ``(h, r, t)`` index triples touching new entities (forward relation indices).

    Returns:
        ``(K, D)`` vectors of the new entities.
    """
    n = model.num_entities
    if features.ndim != 2 or features.shape[1] != model.feature_dim:
        raise ValidationError(f"features must be (K, {model.feature_dim}), got {tuple(features.shape)}")
    model.eval()
    x = torch.cat([model.features, features.float()], 0)
    extra = torch.tensor(triples, dtype=torch.long).reshape(-1, 3)
    ei = torch.cat([model.edge_index, extra[:, [0, 2]].t()], 1)
    et = torch.cat([model.edge_type, extra[:, 1]])
    free = None
    if model.entity is not None:
        free = torch.cat([model.entity.weight, torch.zeros(len(features), model.dim)], 0)
    return model.encode_with(x, ei, et, free)[n:]


def fold_in(
    model: KGEModel,
    entity_ids: Sequence[str],
    relations: Sequence[str],
    new_ids: Sequence[str],
    triples: Sequence[Triple],
    features: np.ndarray | None = None,
    *,
    steps: int = 100,
) -> dict[str, np.ndarray]:
    """Vectors for ``new_ids`` from their triples (and features for R-GCN).

    Triples with unknown relation types or between two unknown entities are
    ignored by shallow models; R-GCN uses every triple among known and new entities.

    Args:
        model: The trained model.
        entity_ids: Entity id per model index (the known entities).
        relations: Relation type per index.
        new_ids: Entities to embed.
        triples: ``(head, type, tail)`` triples touching the new entities.
        features: ``(len(new_ids), F)`` features (required for R-GCN with features).
        steps: Optimisation steps for shallow models.

    Returns:
        ``{entity id: vector}``; shallow entities without usable triples are left out.
    """
    known = {e: i for i, e in enumerate(entity_ids)}
    rel = {r: i for i, r in enumerate(relations)}
    new_ids = [e for e in new_ids if e not in known]
    if not new_ids:
        return {}
    if isinstance(model, RGCNModel):
        n = len(entity_ids)
        idx = {**known, **{e: n + i for i, e in enumerate(new_ids)}}
        tri = [(idx[h], rel[r], idx[t]) for h, r, t in triples if h in idx and t in idx and r in rel]
        if features is None:
            if model.feature_dim:
                raise ValidationError("R-GCN fold-in needs text features for the new entities")
            features = np.zeros((len(new_ids), 0), dtype=np.float32)
        out = fold_in_rgcn(model, torch.as_tensor(np.asarray(features, dtype=np.float32)), tri)
        return {e: out[i].numpy() for i, e in enumerate(new_ids)}
    res: dict[str, np.ndarray] = {}
    for i, e in enumerate(new_ids):
        facts = [(True, rel[r], known[t]) for h, r, t in triples if h == e and t in known and r in rel]
        facts += [(False, rel[r], known[h]) for h, r, t in triples if t == e and h in known and r in rel]
        if facts:
            res[e] = fold_in_shallow(model, facts, steps=steps, seed=i).numpy()
    return res
