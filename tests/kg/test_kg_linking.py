"""Entity linking: aliases, normalisation, cashtags, symbols, fuzzy fallback, disambiguation."""

from __future__ import annotations

import numpy as np
import pytest

from kg.linking import Linker
from kg.store import Entity
from kg.text import normalize_key, normalize_with_offsets


@pytest.fixture
def linker(small_graph) -> Linker:
    return Linker(small_graph[0])


def ids(mentions) -> list[str]:
    return [m.entity_id for m in mentions]


def test_normalisation_maps_offsets_back() -> None:
    text = "Société  Générale's results"
    norm, offs = normalize_with_offsets(text)
    assert norm == "societe generale results"
    assert text[offs[norm.index("generale")]] == "G"
    assert normalize_key("Apple’s iPhone") == "apple iphone"


def test_issue_example_cashtag_and_symbol(linker: Linker) -> None:
    ms = linker.link("Is $NVDA doing better than AMD?")
    assert ids(ms) == ["c:nvda", "c:amd"]
    assert [m.surface for m in ms] == ["$NVDA", "AMD"]
    assert ms[0].method == "cashtag" and ms[1].name == "Advanced Micro Devices"


def test_aliases_case_accents_possessives_and_spans(linker: Linker) -> None:
    text = "SOCIETE GENERALE and Nvidia Corp.'s chips; advanced micro devices too."
    ms = linker.link(text)
    assert ids(ms) == ["c:socgen", "c:nvda", "c:amd"]
    for m in ms:
        assert text[m.start : m.end] == m.surface
    assert ms[1].surface == "Nvidia Corp"  # trailing punctuation is not part of the span


def test_word_boundaries_and_lowercase_symbols(linker: Linker) -> None:
    assert linker.link("the amd64 build and nvdax") == []
    assert linker.link("i like amd") == []  # lower-case symbol is not a ticker mention


def test_fuzzy_fallback(linker: Linker) -> None:
    ms = linker.link("Results from Semiconductrs were weak.")
    assert ids(ms) == ["s:semis"] and ms[0].method == "fuzzy" and ms[0].score < 1
    assert Linker([Entity("s", "X", "Semiconductors")], fuzzy_threshold=None).link("Semiconductrs") == []


def test_disambiguation_by_type_prior_and_embedding() -> None:
    ents = [
        Entity("fruit", "Food", "Apple", description="a fruit that grows on trees"),
        Entity("co", "Company", "Apple", description="maker of the iphone and mac computers"),
    ]
    by_prior = Linker(ents, type_priors={"Company": 3.0, "Food": 1.0})
    m = by_prior.link("Apple announced results")[0]
    assert m.entity_id == "co" and len(m.candidates) == 2

    vocab = ["fruit", "trees", "iphone", "mac", "computers", "eat", "pie"]

    def embed(texts: list[str]) -> np.ndarray:  # bag-of-words fake embedder
        return np.array([[t.lower().count(w) for w in vocab] + [0.1] for t in texts], float)

    lk = Linker(ents, embedder=embed)
    assert lk.link("I want to eat an Apple pie, a fruit from trees")[0].entity_id == "fruit"
    assert lk.link("Apple shipped a new iphone and mac computers")[0].entity_id == "co"


def test_excluded_types_and_empty_input() -> None:
    lk = Linker([Entity("d1", "Document", "Refund policy"), Entity("x", "Topic", "Refund")])
    assert ids(lk.link("What is the refund policy?", min_score=0)) == ["x"]
    assert lk.link("") == []
    assert Linker([]).link("anything") == []


def test_linker_from_store(loaded) -> None:
    lk = Linker.from_store(loaded)
    assert len(lk) == 6
    assert ids(lk.link("Santa Clara hosts $AMD")) == ["city:sc", "c:amd"]
