"""``POST /retrieve`` over real HTTP and the ``kgnlp index`` commands."""

from __future__ import annotations

import json
import types
from pathlib import Path

import httpx
from fastapi import FastAPI
from typer.testing import CliRunner

from apps.cli.index import app as index_app
from apps.retrieve.router import router
from tests.conftest import LiveServer, local_client


def _app(retrievers: dict[str, object]) -> FastAPI:
    app = FastAPI()
    app.include_router(router)
    app.state.services = types.SimpleNamespace(retrievers=retrievers)
    return app


def test_retrieve_endpoint(retail_retriever: object) -> None:
    with LiveServer(_app({"retail": retail_retriever})) as srv:
        r = httpx.post(
            f"{srv.url}/retrieve",
            json={"query": "how do I cancel my order", "k": 3, "mode": "hybrid+graph"},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        ev = r.json()["evidence"]
        assert ev[0]["kind"] == "passage" and ev[0]["metadata"]["intent"] == "cancel_order"
        assert ev[0]["metadata"]["category"] == "ORDER" and ev[0]["citation"] == 1
        assert {e["kind"] for e in ev} == {"passage", "fact"}
        assert set(ev[0]) == {"kind", "text", "score", "source_id", "citation", "metadata"}
        bad = [
            {"query": "", "k": 3},
            {"query": "x", "k": 0},
            {"query": "x", "k": 51},
            {"query": "x", "mode": "magic"},
            {"query": "x" * 2001},
            {"query": "x", "corpus": "../a"},
            {"k": 3},
            {"query": "   "},
        ]
        for body in bad:
            assert httpx.post(f"{srv.url}/retrieve", json=body, timeout=30).status_code == 422, body
        r = httpx.post(f"{srv.url}/retrieve", json={"query": "x", "corpus": "nope"}, timeout=30)
        assert r.status_code == 404 and "nope" in r.text


def test_retrieve_unavailable_mode_and_no_corpus(retail_retriever: object) -> None:
    from retrieval.retriever import Retriever

    rr = retail_retriever
    assert isinstance(rr, Retriever)
    plain = Retriever(rr.passages, rr.embedder, rr.dense, rr.lexical, name="plain")
    with local_client(_app({"plain": plain})) as c:
        r = c.post("/retrieve", json={"query": "refund", "corpus": "plain", "mode": "graph"})
        assert r.status_code == 422 and "not available" in r.text
        assert c.post("/retrieve", json={"query": "refund", "corpus": "plain"}).status_code == 200
    with local_client(_app({})) as c:
        assert c.post("/retrieve", json={"query": "refund"}).status_code == 503


def test_cli_build_and_query(tmp_path: Path, embedder_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    docs = [
        {"id": "a", "text": "Our stores open at nine in the morning.", "metadata": {"topic": "hours"}},
        {"id": "b", "text": "Refunds reach your card within five days.", "metadata": {"topic": "refund"}},
    ]
    (src / "documents.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    home = tmp_path / "home"
    runner = CliRunner()
    args = ["build", "--corpus", "faq", "--source", str(src), "--model", str(embedder_path), "--home", str(home)]
    r = runner.invoke(index_app, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["status"] == "built"
    r = runner.invoke(index_app, args)
    assert json.loads(r.stdout)["status"] == "unchanged"
    r = runner.invoke(
        index_app,
        [
            "query",
            "when will I get my refund",
            "--corpus",
            "faq",
            "-k",
            "1",
            "--json",
            "--model",
            str(embedder_path),
            "--home",
            str(home),
        ],
    )
    assert r.exit_code == 0, r.output
    [ev] = json.loads(r.stdout)
    assert ev["source_id"] == "b" and ev["metadata"]["topic"] == "refund"
    r = runner.invoke(
        index_app, ["query", "x", "--corpus", "missing", "--home", str(home), "--model", str(embedder_path)]
    )
    assert r.exit_code == 1 and "kgnlp index build" in r.output
