"""Graph embeddings: filtered evaluator, score functions, training, fold-in, save/load."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from kg.embeddings.artifacts import EmbeddingArtifact, find_embeddings
from kg.embeddings.data import KGData
from kg.embeddings.evaluation import FilterIndex, evaluate, filtered_ranks, metrics_from_ranks
from kg.embeddings.foldin import fold_in
from kg.embeddings.models import MODELS, build_model
from kg.embeddings.training import TrainConfig, train
from kgnlp.errors import ConfigurationError, NotFoundError, ValidationError

torch.set_num_threads(1)


def test_filtered_ranks_hand_computed() -> None:
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.7, 0.5], [1.0, 1.0, 1.0, 1.0, 1.0]])
    targets = torch.tensor([1, 2])
    # raw: two higher (0.9, 0.7), two ties -> 1 + 2 + 2/2 = 4; a constant scorer gets (N + 1) / 2 = 3
    assert filtered_ranks(scores, targets).tolist() == [4.0, 3.0]
    # filtering the other true answer 0 (the target itself is listed but never filtered)
    known = [torch.tensor([0, 1]), torch.tensor([2])]
    assert filtered_ranks(scores, targets, known).tolist() == [3.0, 3.0]
    m = metrics_from_ranks(torch.tensor([3.0, 3.0, 1.0, 12.0]))
    assert m.mrr == pytest.approx((1 / 3 + 1 / 3 + 1 + 1 / 12) / 4)
    assert (m.mr, m.hits1, m.hits3, m.hits10, m.n) == (4.75, 0.25, 0.75, 0.75, 4)
    assert filtered_ranks(torch.tensor([[float("nan"), 0.0, 1.0]]), torch.tensor([0])).tolist() == [3.0]


def test_evaluate_both_directions_with_filter() -> None:
    train_t = torch.tensor([[0, 0, 1]])
    test_t = torch.tensor([[0, 0, 2]])
    table = {"tail": torch.tensor([0.1, 0.9, 0.5]), "head": torch.tensor([0.8, 0.8, 0.1])}

    def score(anchor: torch.Tensor, rel: torch.Tensor, direction: str) -> torch.Tensor:
        return table[direction].expand(len(anchor), -1)

    filt = FilterIndex(torch.cat([train_t, test_t]))
    m = evaluate(score, test_t, filt)
    # tail (0, 0, ?) -> 2: entity 1 (0.9) is a known answer, filtered -> rank 1
    # head (?, 0, 2) -> 0: entity 1 ties at 0.8 -> rank 1.5
    assert (m.tail_mrr, m.head_mrr, m.n) == (1.0, pytest.approx(2 / 3), 2)
    assert m.mrr == pytest.approx((1 + 2 / 3) / 2) and m.mr == 1.25 and m.hits1 == 0.5
    raw = evaluate(score, test_t, None)
    assert raw.tail_mrr == 0.5 and raw.mrr == pytest.approx((0.5 + 2 / 3) / 2)


def _set(model: torch.nn.Module, ent: list[list[float]], rel: list[list[float]]) -> None:
    with torch.no_grad():
        model.entity.weight.copy_(torch.tensor(ent))
        model.relation.weight[: len(rel)].copy_(torch.tensor(rel))


def test_score_functions_match_formulas() -> None:
    h, r, t = torch.tensor([0]), torch.tensor([0]), torch.tensor([1])
    m = build_model("transe", 2, 1, 2, reciprocal=False, gamma=0.0, p_norm=1.0)
    _set(m, [[1.0, 0.0], [1.0, 2.0]], [[0.0, 1.0]])
    assert m.score_hrt(h, r, t).item() == pytest.approx(-1.0)  # -(|1+0-1| + |0+1-2|)
    m = build_model("distmult", 2, 1, 2, reciprocal=False)
    _set(m, [[1.0, 2.0], [3.0, 4.0]], [[0.5, -1.0]])
    assert m.score_hrt(h, r, t).item() == pytest.approx(1 * 0.5 * 3 + 2 * -1 * 4)
    ent = [[1.0, 2.0, 0.5, -1.0], [0.3, -2.0, 1.5, 0.7]]
    m = build_model("complex", 2, 1, 4, reciprocal=False)
    _set(m, ent, [[0.2, 1.0, -0.4, 0.6]])
    c = lambda v: torch.complex(torch.tensor(v[:2]), torch.tensor(v[2:]))  # noqa: E731
    want = (c(ent[0]) * c([0.2, 1.0, -0.4, 0.6]) * c(ent[1]).conj()).sum().real
    assert m.score_hrt(h, r, t).item() == pytest.approx(want.item(), rel=1e-6)
    m = build_model("rotate", 2, 1, 4, reciprocal=False, gamma=3.0)
    _set(m, ent, [[0.3, -1.2]])
    rot = torch.polar(torch.ones(2), torch.tensor([0.3, -1.2]))
    want = 3.0 - (c(ent[0]) * rot - c(ent[1])).abs().sum()
    assert m.score_hrt(h, r, t).item() == pytest.approx(want.item(), rel=1e-6)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("reciprocal", [False, True])
def test_score_all_agrees_with_triple_scores(name: str, reciprocal: bool) -> None:
    torch.manual_seed(0)
    kw = (
        {
            "features": torch.randn(7, 5),
            "edge_index": torch.tensor([[0, 1, 2], [1, 2, 3]]),
            "edge_type": torch.tensor([0, 1, 0]),
            "dropout": 0.0,
        }
        if name == "rgcn"
        else {"init_scale": 0.5}
    )
    m = build_model(name, 7, 2, 8, reciprocal=reciprocal, **kw).eval()
    if name in ("transe", "rotate"):
        m.reset_parameters()
    h, r, t = torch.tensor([0, 3, 6]), torch.tensor([1, 0, 1]), torch.tensor([2, 2, 5])
    with torch.no_grad():
        s = m.score_hrt(h, r, t)
        tails = m.score_all(h, r, "tail")
        assert tails.shape == (3, 7)
        assert torch.allclose(tails[torch.arange(3), t], s, atol=1e-5)
        heads = m.score_all(t, r, "head")
        if not reciprocal:  # same triple scored from the tail side
            assert torch.allclose(heads[torch.arange(3), h], s, atol=1e-5)
        else:  # the inverse relation's parameters answer head queries
            q = m.query(m.encode(), t, r + 2, "tail")
            assert torch.allclose(heads, m.match_all(q, m.encode()), atol=1e-6)


def test_model_and_config_validation() -> None:
    with pytest.raises(ConfigurationError, match="model must be one of"):
        build_model("conve", 3, 1, 4)
    with pytest.raises(ConfigurationError, match="even dim"):
        build_model("complex", 3, 1, 5)
    with pytest.raises(ConfigurationError, match="rgcn needs"):
        build_model("rgcn", 3, 1, 4)
    with pytest.raises(ConfigurationError, match=r"TrainConfig.optimizer.*'sgd'"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ConfigurationError, match="batch_size"):
        TrainConfig(batch_size=0)


def ring_data(n: int = 12) -> KGData:
    """Entity i -next-> i+1 and -skip-> i+2 (mod n); a few held-out triples."""
    e = [f"e{i:02d}" for i in range(n)]
    triples = [(e[i], "next", e[(i + 1) % n]) for i in range(n)] + [(e[i], "skip", e[(i + 2) % n]) for i in range(n)]
    valid, test = [triples[3], triples[n + 7]], [triples[5], triples[n + 9]]
    train_t = [x for x in triples if x not in valid and x not in test]
    return KGData.from_splits(train_t, valid, test, name="ring")


FAST = {
    "epochs": 30,
    "batch_size": 64,
    "lr": 0.5,
    "eval_every": 10,
    "patience": 0,
    "reg_weight": 1e-3,
    "threads": 1,
    "device": "cpu",
}


def test_training_learns_is_deterministic_and_resumes(tmp_path: Path) -> None:
    data = ring_data()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = build_model("complex", data.num_entities, data.num_relations, 16, init_scale=0.1)
        res = train(m, data, TrainConfig(**FAST), progress=False)
        runs.append(m.entity.weight.detach().clone())
    assert torch.equal(runs[0], runs[1])
    assert res.best_valid is not None and res.best_valid.mrr > 0.5
    assert evaluate(m, data.train, FilterIndex(data.all_triples())).mrr > 0.9
    torch.manual_seed(0)
    m = build_model("complex", data.num_entities, data.num_relations, 16, init_scale=0.1)
    part = train(m, data, TrainConfig(**{**FAST, "epochs": 20}), checkpoint_dir=tmp_path, progress=False)
    assert (tmp_path / "last.pt").exists() and (tmp_path / "best.pt").exists() and part.epochs_run == 20
    m2 = build_model("complex", data.num_entities, data.num_relations, 16, init_scale=0.1)
    res2 = train(m2, data, TrainConfig(**FAST), checkpoint_dir=tmp_path, resume=True, progress=False)
    assert res2.epochs_run == 30 and len(res2.history) == 30 and res2.history[0]["epoch"] == 1


def test_negative_sampling_rotate_learns() -> None:
    data = ring_data()
    torch.manual_seed(0)
    m = build_model("rotate", data.num_entities, data.num_relations, 16, gamma=4.0, reciprocal=False)
    cfg = TrainConfig(
        **{**FAST, "loss": "negative", "optimizer": "adam", "lr": 0.05, "regularizer": "none", "num_negatives": 8}
    )
    train(m, data, cfg, progress=False)
    assert evaluate(m, data.train, FilterIndex(data.all_triples())).mrr > 0.6


def test_fold_in_rgcn_uses_text_and_neighbours() -> None:
    data = ring_data()
    torch.manual_seed(0)
    feats = torch.randn(data.num_entities, 6)
    tr = data.train
    m = build_model(
        "rgcn",
        data.num_entities,
        data.num_relations,
        8,
        features=feats,
        edge_index=tr[:, [0, 2]].t(),
        edge_type=tr[:, 1],
        layers=1,
        dropout=0.0,
    )
    train(m, data, TrainConfig(**{**FAST, "epochs": 5, "optimizer": "adam", "lr": 0.01}), progress=False)
    ids = data.entities
    # "new" copies e03's text and in-edges: with one layer it must land on e03's vector
    copy_triples = [("new", data.relations[r], ids[t]) for h, r, t in tr.tolist() if h == 3]
    copy_triples += [(ids[h], data.relations[r], "new") for h, r, t in tr.tolist() if t == 3]
    out = fold_in(m, ids, data.relations, ["new"], copy_triples, feats[3:4].numpy())
    with torch.no_grad():
        want = m.encode()[3].numpy()
    assert np.allclose(out["new"], want, atol=1e-5)
    other = fold_in(m, ids, data.relations, ["lonely"], [], feats[5:6].numpy())["lonely"]
    assert not np.allclose(other, want, atol=1e-3)  # text alone gives a different vector
    with pytest.raises(ValidationError, match="text features"):
        fold_in(m, ids, data.relations, ["x"], [], None)


def test_fold_in_shallow_fits_new_entity_to_its_triples() -> None:
    data = ring_data()
    torch.manual_seed(0)
    m = build_model("complex", data.num_entities, data.num_relations, 16, init_scale=0.1)
    train(m, data, TrainConfig(**FAST), progress=False)
    before = m.entity.weight.detach().clone()
    facts = [("new", "next", "e05"), ("e02", "skip", "new"), ("new", "skip", "e06")]
    v = torch.from_numpy(fold_in(m, data.entities, data.relations, ["new", "ghost"], facts)["new"])
    assert torch.equal(before, m.entity.weight)  # model untouched
    ents = m.encode().detach()
    q = m.make_query(v[None], m.rel(torch.tensor([data.relation_index["next"]])), "tail")
    assert m.match_all(q, ents).argmax().item() == data.entity_index["e05"]


def test_artifact_round_trip_and_similarity(tmp_path: Path) -> None:
    data = ring_data()
    torch.manual_seed(0)
    m = build_model("rotate", data.num_entities, data.num_relations, 8, reciprocal=False)
    art = EmbeddingArtifact.from_model(m, data.entities, data.relations, {"model": "rotate", "fingerprint": "abc"})
    folder = art.publish(tmp_path / "g")
    assert folder == tmp_path / "g" / "embeddings" / "rotate-abc" and find_embeddings(tmp_path / "g") == folder
    back = EmbeddingArtifact.load(folder)
    assert np.array_equal(back.vectors, art.vectors) and back.entity_ids == data.entities
    assert back.relations == data.relations and back.meta["fingerprint"] == "abc"
    assert [s.id for s in back.similar("e03", 4)] == [s.id for s in art.similar("e03", 4)]
    assert "e03" not in {s.id for s in back.similar("e03", 20)} and len(back.similar("e03", 20)) == 11
    m2 = back.load_model()
    h, r, t = data.test[:, 0], data.test[:, 1], data.test[:, 2]
    assert torch.allclose(m2.score_hrt(h, r, t), m.score_hrt(h, r, t))
    v = back.vector("e03")
    back.add({"twin": v})
    assert back.similar("e03", 1)[0].id == "twin" and back.meta["folded_in"] == ["twin"]
    with pytest.raises(NotFoundError):
        back.vector("nope")
    with pytest.raises(ValidationError):
        back.similar("e03", 0)
    with pytest.raises(NotFoundError):
        find_embeddings(tmp_path / "none")
    assert math.isfinite(back.similar("twin", 1)[0].score)
