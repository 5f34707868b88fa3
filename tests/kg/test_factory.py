"""``kg.open_store``: the backend factory above the ``GraphStore`` protocol."""

from __future__ import annotations

from pathlib import Path

import pytest

from kg import Entity, GraphStore, open_store
from kgnlp.errors import ConfigurationError


def test_opens_the_embedded_backend_and_refuses_unknown_ones(tmp_path: Path) -> None:
    with open_store("ladybug", tmp_path / "g") as store:
        assert isinstance(store, GraphStore)
        store.upsert([Entity("e:1", "Thing", "one")], [])
        assert store.get("e:1").name == "one"
    with pytest.raises(ConfigurationError, match="needs a database path"):
        open_store("ladybug", None)
    with pytest.raises(ConfigurationError, match="'ladybug' or 'neo4j'"):
        open_store("sqlite", tmp_path / "x")
