"""Knowledge-graph embedding models with 1-N scoring: TransE, DistMult, ComplEx, RotatE, R-GCN.

``torch_geometric.nn.kge`` scores one ``(h, r, t)`` triple at a time and has no
reciprocal relations or N3 factors, so the shallow models are written here with
the same parameterisation, plus ``score_all`` (a query against every entity in
one matrix product, "1-N"). The R-GCN model uses PyG's ``RGCNConv`` as encoder
over entity text features and a DistMult/ComplEx decoder.

Conventions: entity representations ``E`` are ``(N, D)``; complex models store
``[real | imaginary]`` halves. A *query* is ``(anchor entity, relation,
direction)``: ``"tail"`` asks ``(anchor, r, ?)``, ``"head"`` asks ``(?, r, anchor)``.
With ``reciprocal=True`` a head query becomes the tail query of the inverse
relation ``r + R`` (relation parameters are doubled).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from kgnlp.errors import ConfigurationError

__all__ = [
    "MODELS",
    "ComplEx",
    "DistMult",
    "KGEModel",
    "RGCNModel",
    "RotatE",
    "TransE",
    "build_model",
]

Direction = Literal["tail", "head"]


class KGEModel(nn.Module):
    """Base class: entity encoder + relation-specific query + matching against entities.

    Args:
        num_entities: Number of entities ``N``.
        num_relations: Number of forward relation types ``R``.
        dim: Width of an entity vector ``D`` (complex models: ``D/2`` complex numbers).
        reciprocal: Learn inverse relations and answer head queries through them.
    """

    kind = "base"
    bilinear = True  # score = <query, entity>; otherwise a negative distance

    def __init__(self, num_entities: int, num_relations: int, dim: int, *, reciprocal: bool = True) -> None:
        super().__init__()
        if num_entities < 1 or num_relations < 1 or dim < 2:
            raise ConfigurationError(
                f"need num_entities >= 1, num_relations >= 1, dim >= 2; got {num_entities}, {num_relations}, {dim}"
            )
        self.num_entities = num_entities
        self.num_relations = num_relations
        self.dim = dim
        self.reciprocal = reciprocal
        self.num_rel_params = 2 * num_relations if reciprocal else num_relations

    # --- to implement -------------------------------------------------------------------
    def encode(self) -> Tensor:
        """Return the entity representations ``(N, D)``."""
        raise NotImplementedError

    def rel(self, r: Tensor) -> Tensor:
        """Relation parameters for indices ``r`` (``(B, ·)``)."""
        raise NotImplementedError

    def make_query(self, anchor: Tensor, rel: Tensor, direction: Direction) -> Tensor:
        """Combine anchor vectors ``(B, D)`` and relation parameters into query vectors ``(B, D)``."""
        raise NotImplementedError

    def match(self, q: Tensor, cand: Tensor) -> Tensor:
        """Score queries ``(B, D)`` against candidates ``(B, K, D)`` -> ``(B, K)``."""
        return torch.einsum("bd,bkd->bk", q, cand)

    def match_all(self, q: Tensor, ents: Tensor) -> Tensor:
        """Score queries ``(B, D)`` against every entity ``(N, D)`` -> ``(B, N)``."""
        return q @ ents.t()

    def constructor_args(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this model (saved with checkpoints)."""
        return {
            "num_entities": self.num_entities,
            "num_relations": self.num_relations,
            "dim": self.dim,
            "reciprocal": self.reciprocal,
        }

    # --- shared ---------------------------------------------------------------------------
    def _resolve(self, rel: Tensor, direction: Direction) -> tuple[Tensor, Direction]:
        if direction not in ("tail", "head"):
            raise ConfigurationError(f"direction must be 'tail' or 'head', got {direction!r}")
        if direction == "head" and self.reciprocal:
            return rel + self.num_relations, "tail"
        return rel, direction

    def query(self, ents: Tensor, anchor: Tensor, rel: Tensor, direction: Direction) -> Tensor:
        """Query vectors for anchor indices ``(B,)`` and relation indices ``(B,)``.

        Args:
            ents: Entity representations from ``encode()``.
            anchor: Anchor entity indices.
            rel: Forward relation indices (``0..R-1``).
            direction: ``"tail"`` for ``(anchor, r, ?)``, ``"head"`` for ``(?, r, anchor)``.

        Returns:
            ``(B, D)`` query vectors.
        """
        rel, direction = self._resolve(rel, direction)
        return self.make_query(ents[anchor], self.rel(rel), direction)

    def score_all(
        self, anchor: Tensor, rel: Tensor, direction: Direction = "tail", ents: Tensor | None = None
    ) -> Tensor:
        """1-N scores of every entity as the answer of each query.

        Args:
            anchor: Anchor entity indices ``(B,)``.
            rel: Forward relation indices ``(B,)``.
            direction: ``"tail"`` or ``"head"``.
            ents: Precomputed ``encode()`` output (computed when ``None``).

        Returns:
            ``(B, N)`` scores, higher is more plausible.
        """
        ents = self.encode() if ents is None else ents
        return self.match_all(self.query(ents, anchor, rel, direction), ents)

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor, ents: Tensor | None = None) -> Tensor:
        """Score triples ``(B,)`` (tail direction).

        Args:
            h: Head indices ``(B,)``.
            r: Relation indices ``(B,)``.
            t: Tail indices ``(B,)``.
            ents: Precomputed ``encode()`` output.

        Returns:
            ``(B,)`` scores.
        """
        ents = self.encode() if ents is None else ents
        q = self.query(ents, h, r, "tail")
        return self.match(q, ents[t].unsqueeze(1)).squeeze(1)

    def factors(self, ents: Tensor, anchor: Tensor, rel: Tensor, answer: Tensor, direction: Direction) -> list[Tensor]:
        """Per-example factors for N3 regularisation: ``[anchor, relation, answer]`` moduli ``(B, ·)``."""
        rel, _ = self._resolve(rel, direction)
        return [self._modulus(ents[anchor]), self._modulus(self.rel(rel)), self._modulus(ents[answer])]

    def _modulus(self, x: Tensor) -> Tensor:
        return x.abs()

    @torch.no_grad()
    def entity_vectors(self) -> Tensor:
        """Detached entity representations for similarity search ``(N, D)``."""
        return self.encode().detach().float().cpu()


def _complex_modulus(x: Tensor) -> Tensor:
    re, im = x.chunk(2, dim=-1)
    return torch.sqrt(re**2 + im**2 + 1e-12)


def _cmul(a: Tensor, b: Tensor, conj_b: bool = False) -> Tensor:
    a_re, a_im = a.chunk(2, dim=-1)
    b_re, b_im = b.chunk(2, dim=-1)
    if conj_b:
        b_im = -b_im
    return torch.cat([a_re * b_re - a_im * b_im, a_re * b_im + a_im * b_re], dim=-1)


class _Shallow(KGEModel):
    """Shallow model: one free vector per entity and per relation."""

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        dim: int,
        *,
        reciprocal: bool = True,
        init_scale: float = 1e-3,
        rel_dim: int | None = None,
    ) -> None:
        super().__init__(num_entities, num_relations, dim, reciprocal=reciprocal)
        self.init_scale = init_scale
        self.entity = nn.Embedding(num_entities, dim)
        self.relation = nn.Embedding(self.num_rel_params, rel_dim or dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal(0, init_scale) initialisation (1e-3 suits 1-N training with N3)."""
        nn.init.normal_(self.entity.weight, std=self.init_scale)
        nn.init.normal_(self.relation.weight, std=self.init_scale)

    def encode(self) -> Tensor:
        return self.entity.weight

    def rel(self, r: Tensor) -> Tensor:
        return self.relation(r)

    def constructor_args(self) -> dict[str, Any]:
        return {**super().constructor_args(), "init_scale": self.init_scale}


class TransE(_Shallow):
    """TransE (Bordes et al. 2013): ``score = gamma - ||h + r - t||_p`` (``gamma``: margin)."""

    kind = "transe"
    bilinear = False

    def __init__(self, *args: Any, p_norm: float = 1.0, gamma: float = 12.0, **kw: Any) -> None:
        self.p_norm = p_norm
        self.gamma = gamma
        super().__init__(*args, **kw)

    def reset_parameters(self) -> None:
        bound = 6.0 / math.sqrt(self.dim)
        nn.init.uniform_(self.entity.weight, -bound, bound)
        nn.init.uniform_(self.relation.weight, -bound, bound)
        with torch.no_grad():
            self.relation.weight.div_(self.relation.weight.norm(p=self.p_norm, dim=-1, keepdim=True))

    def make_query(self, anchor: Tensor, rel: Tensor, direction: Direction) -> Tensor:
        return anchor + rel if direction == "tail" else anchor - rel

    def match(self, q: Tensor, cand: Tensor) -> Tensor:
        return self.gamma - (q.unsqueeze(1) - cand).norm(p=self.p_norm, dim=-1)

    def match_all(self, q: Tensor, ents: Tensor) -> Tensor:
        return self.gamma - torch.cdist(q, ents, p=self.p_norm)

    def constructor_args(self) -> dict[str, Any]:
        return {**super().constructor_args(), "p_norm": self.p_norm, "gamma": self.gamma}


class DistMult(_Shallow):
    """DistMult (Yang et al. 2015): ``score = <h, r, t>`` (symmetric in h and t)."""

    kind = "distmult"

    def make_query(self, anchor: Tensor, rel: Tensor, direction: Direction) -> Tensor:
        return anchor * rel


class ComplEx(_Shallow):
    """ComplEx (Trouillon et al. 2016): ``score = Re(<h, r, conj(t)>)``; ``dim`` = 2 x rank."""

    kind = "complex"

    def __init__(self, num_entities: int, num_relations: int, dim: int, **kw: Any) -> None:
        if dim % 2:
            raise ConfigurationError(f"complex models need an even dim, got {dim}")
        super().__init__(num_entities, num_relations, dim, **kw)

    def make_query(self, anchor: Tensor, rel: Tensor, direction: Direction) -> Tensor:
        # tail: h*r ; head: t*conj(r)   (then Re(q . conj(e)) == [q_re|q_im] . [e_re|e_im])
        return _cmul(anchor, rel, conj_b=direction == "head")

    def _modulus(self, x: Tensor) -> Tensor:
        return _complex_modulus(x)


class RotatE(_Shallow):
    """RotatE (Sun et al. 2019): ``score = gamma - sum_k |h_k r_k - t_k|`` with ``|r_k| = 1``.

    Relations are phases ``(R', D/2)``; ``gamma`` is the margin.
    """

    kind = "rotate"
    bilinear = False

    def __init__(self, num_entities: int, num_relations: int, dim: int, *, gamma: float = 9.0, **kw: Any) -> None:
        if dim % 2:
            raise ConfigurationError(f"complex models need an even dim, got {dim}")
        self.gamma = gamma
        super().__init__(num_entities, num_relations, dim, rel_dim=dim // 2, **kw)

    def reset_parameters(self) -> None:
        bound = (self.gamma + 2.0) / (self.dim // 2)
        nn.init.uniform_(self.entity.weight, -bound, bound)
        nn.init.uniform_(self.relation.weight, -math.pi, math.pi)

    def rel(self, r: Tensor) -> Tensor:
        phase = self.relation(r)
        return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)

    def make_query(self, anchor: Tensor, rel: Tensor, direction: Direction) -> Tensor:
        return _cmul(anchor, rel, conj_b=direction == "head")  # |r| = 1 so t*conj(r) inverts the rotation

    def match(self, q: Tensor, cand: Tensor) -> Tensor:
        diff = q.unsqueeze(1) - cand
        return self.gamma - _complex_modulus(diff).sum(-1)

    def match_all(self, q: Tensor, ents: Tensor) -> Tensor:
        k = ents.shape[1] // 2
        chunk = max(1, int(2e7 // max(1, q.shape[0] * k)))
        parts = [
            self.match(q, ents[i : i + chunk].unsqueeze(0).expand(q.shape[0], -1, -1))
            for i in range(0, ents.shape[0], chunk)
        ]
        return torch.cat(parts, dim=1)

    def _modulus(self, x: Tensor) -> Tensor:
        return _complex_modulus(x)

    def constructor_args(self) -> dict[str, Any]:
        return {**super().constructor_args(), "gamma": self.gamma}


class RGCNModel(KGEModel):
    """R-GCN encoder over entity features + DistMult/ComplEx decoder (Schlichtkrull et al. 2018).

    Entity representations are computed from input features (e.g. MiniLM vectors
    of name + description) by message passing over the training graph, so a new
    entity gets a vector from its text and its edges without retraining
    (``encode_with``). Optionally a free per-entity vector is added (transductive
    boost; new entities get zeros there).

    Args:
        num_entities: Number of entities.
        num_relations: Number of forward relation types.
        dim: Output width (even for the ComplEx decoder).
        features: ``(N, F)`` input features, or ``None`` (then ``learn_entity`` must be true).
        edge_index: ``(2, M)`` message-passing edges (training triples, head -> tail).
        edge_type: ``(M,)`` relation indices of those edges.
        decoder: ``"complex"`` or ``"distmult"``.
        layers: Number of R-GCN layers.
        num_bases: Basis decomposition size (``None``: full weights).
        learn_entity: Add a free embedding per entity.
        dropout: Dropout on hidden states during training.
        reciprocal: Use inverse relations in the decoder.
    """

    kind = "rgcn"
    features: Tensor
    edge_index: Tensor
    edge_type: Tensor

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        dim: int,
        *,
        features: Tensor | None = None,
        edge_index: Tensor | None = None,
        edge_type: Tensor | None = None,
        feature_dim: int | None = None,
        decoder: str = "complex",
        layers: int = 1,
        num_bases: int | None = 8,
        learn_entity: bool = False,
        dropout: float = 0.1,
        reciprocal: bool = True,
        init_scale: float = 1e-3,
    ) -> None:
        from torch_geometric.nn import RGCNConv

        super().__init__(num_entities, num_relations, dim, reciprocal=reciprocal)
        if decoder not in ("complex", "distmult"):
            raise ConfigurationError(f"rgcn decoder must be 'complex' or 'distmult', got {decoder!r}")
        if decoder == "complex" and dim % 2:
            raise ConfigurationError(f"complex decoder needs an even dim, got {dim}")
        if features is None and feature_dim is None and not learn_entity:
            raise ConfigurationError("rgcn needs entity features or learn_entity=True")
        fdim = int(features.shape[1]) if features is not None else int(feature_dim or 0)
        self.decoder, self.layers, self.num_bases = decoder, layers, num_bases
        self.learn_entity, self.dropout_p, self.feature_dim = learn_entity, dropout, fdim
        self.init_scale = init_scale
        self.register_buffer("features", features.float() if features is not None else torch.zeros(num_entities, fdim))
        ei = edge_index if edge_index is not None else torch.zeros(2, 0, dtype=torch.long)
        et = edge_type if edge_type is not None else torch.zeros(0, dtype=torch.long)
        self.register_buffer("edge_index", ei.long())
        self.register_buffer("edge_type", et.long())
        self.inp = nn.Linear(fdim, dim) if fdim else None
        self.entity = nn.Embedding(num_entities, dim) if learn_entity else None
        if self.entity is not None:
            nn.init.normal_(self.entity.weight, std=0.1)
        # messages flow both ways: relation r for head->tail and r + R for tail->head
        self.convs = nn.ModuleList(
            RGCNConv(dim, dim, 2 * num_relations, num_bases=num_bases, aggr="mean") for _ in range(layers)
        )
        self.relation = nn.Embedding(self.num_rel_params, dim)
        nn.init.normal_(self.relation.weight, std=0.1)
        self.drop = nn.Dropout(dropout)

    def constructor_args(self) -> dict[str, Any]:
        return {
            **super().constructor_args(),
            "feature_dim": self.feature_dim,
            "decoder": self.decoder,
            "layers": self.layers,
            "num_bases": self.num_bases,
            "learn_entity": self.learn_entity,
            "dropout": self.dropout_p,
            "init_scale": self.init_scale,
        }

    def encode_with(
        self, features: Tensor, edge_index: Tensor, edge_type: Tensor, free: Tensor | None = None
    ) -> Tensor:
        """Run the encoder on an arbitrary graph (used for fold-in of new entities).

        Args:
            features: ``(N', F)`` input features.
            edge_index: ``(2, M')`` edges head -> tail.
            edge_type: ``(M',)`` forward relation indices.
            free: ``(N', D)`` free entity vectors (when ``learn_entity``), zeros for new entities.

        Returns:
            ``(N', D)`` entity representations.
        """
        x = self.inp(features) if self.inp is not None else torch.zeros(features.shape[0], self.dim)
        if free is not None:
            x = x + free
        ei = torch.cat([edge_index, edge_index.flip(0)], dim=1)
        et = torch.cat([edge_type, edge_type + self.num_relations])
        for conv in self.convs:
            x = x + torch.tanh(conv(self.drop(x), ei, et))  # residual keeps the input (text) signal
        return x

    def encode(self) -> Tensor:
        free = self.entity.weight if self.entity is not None else None
        return self.encode_with(self.features, self.edge_index, self.edge_type, free)

    def rel(self, r: Tensor) -> Tensor:
        return self.relation(r)

    def make_query(self, anchor: Tensor, rel: Tensor, direction: Direction) -> Tensor:
        if self.decoder == "distmult":
            return anchor * rel
        return _cmul(anchor, rel, conj_b=direction == "head")

    def _modulus(self, x: Tensor) -> Tensor:
        return _complex_modulus(x) if self.decoder == "complex" else x.abs()


MODELS: dict[str, type[KGEModel]] = {
    "transe": TransE,
    "distmult": DistMult,
    "complex": ComplEx,
    "rotate": RotatE,
    "rgcn": RGCNModel,
}


def build_model(name: str, num_entities: int, num_relations: int, dim: int, **kwargs: Any) -> KGEModel:
    """Instantiate a model by name.

    Args:
        name: One of ``transe``, ``distmult``, ``complex``, ``rotate``, ``rgcn``.
        num_entities: Number of entities.
        num_relations: Number of forward relation types.
        dim: Entity vector width.
        **kwargs: Model-specific options (``reciprocal``, ``init_scale``, ``gamma``, ``p_norm``,
            R-GCN: ``features``, ``edge_index``, ``edge_type``, ``decoder``, ...).

    Returns:
        The model.
    """
    cls = MODELS.get(name)
    if cls is None:
        raise ConfigurationError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    return cls(num_entities, num_relations, dim, **kwargs)
