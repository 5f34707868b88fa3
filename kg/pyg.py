"""Export a graph store to PyTorch Geometric (``Data`` or ``HeteroData``) with id maps.

Works on any ``GraphStore`` through ``iter_entities``/``iter_triples``, so both
backends export the same tensors. torch and torch_geometric are imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kg.store import GraphStore
from kgnlp.errors import StoreError

__all__ = ["PygExport", "to_pyg"]


@dataclass(slots=True)
class PygExport:
    """A PyG graph plus the maps from store ids to tensor indices.

    For ``Data``: ``entity_index[id]`` is the node index and
    ``relation_index[type]`` the value in ``data.edge_type``. For ``HeteroData``:
    ``entity_index[id]`` is the index within the node type ``entity_type[id]``.
    """

    data: Any
    entity_index: dict[str, int]
    relation_index: dict[str, int]
    entity_type: dict[str, str]

    @property
    def index_to_entity(self) -> list[str]:
        """Entity ids ordered by index (homogeneous export)."""
        out = [""] * len(self.entity_index)
        for k, i in self.entity_index.items():
            if i < len(out):
                out[i] = k
        return out


def to_pyg(store: GraphStore, *, hetero: bool = False) -> PygExport:
    """Build a PyG graph from every entity and relation in ``store``.

    Args:
        store: The graph store.
        hetero: ``False`` for ``Data`` (``edge_index``, ``edge_type``,
            ``num_nodes``); ``True`` for ``HeteroData`` with one node type per
            entity type and one edge type per ``(head type, relation, tail type)``.

    Returns:
        The graph and its id maps (entity ids sorted, relation types sorted).
    """
    try:
        import torch
        from torch_geometric.data import Data, HeteroData
    except ImportError as e:  # pragma: no cover - core dependency
        raise StoreError("PyG export needs 'torch' and 'torch-geometric'") from e
    etype: dict[str, str] = {e.id: e.type for e in store.iter_entities()}
    triples = list(store.iter_triples())
    rel_index = {r: i for i, r in enumerate(sorted({t[1] for t in triples}))}
    if not hetero:
        ent_index = {eid: i for i, eid in enumerate(sorted(etype))}
        if triples:
            src = [ent_index[h] for h, _, _ in triples]
            dst = [ent_index[t] for _, _, t in triples]
            rel = [rel_index[r] for _, r, _ in triples]
        else:
            src, dst, rel = [], [], []
        data = Data(
            edge_index=torch.tensor([src, dst], dtype=torch.long).reshape(2, -1),
            edge_type=torch.tensor(rel, dtype=torch.long),
            num_nodes=len(ent_index),
        )
        return PygExport(data, ent_index, rel_index, etype)
    hd = HeteroData()
    local: dict[str, int] = {}
    counts: dict[str, int] = {}
    for eid in sorted(etype):
        t = etype[eid]
        local[eid] = counts.get(t, 0)
        counts[t] = local[eid] + 1
    for t, n in counts.items():
        hd[t].num_nodes = n
    edges: dict[tuple[str, str, str], tuple[list[int], list[int]]] = {}
    for h, r, t in triples:
        s_list, d_list = edges.setdefault((etype[h], r, etype[t]), ([], []))
        s_list.append(local[h])
        d_list.append(local[t])
    for key, (s_list, d_list) in edges.items():
        hd[key].edge_index = torch.tensor([s_list, d_list], dtype=torch.long)
    return PygExport(hd, local, rel_index, etype)
