"""Ingestion: formats, validation with file:line, idempotence, all-or-nothing (also under kill -9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kg.ingest import ingest_path, read_batch
from kg.ladybug_store import LadybugStore
from kgnlp.errors import IngestError

REPO = Path(__file__).resolve().parents[2]


def write(p: Path, text: str) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return p


def snapshot(s: LadybugStore) -> tuple[list, list]:
    return [(e.id, e.name, e.type) for e in s.iter_entities()], sorted(s.iter_triples())


@pytest.fixture
def db(tmp_path: Path):
    s = LadybugStore.open(tmp_path / "db")
    yield s
    s.close()


def test_csv_tables_directory(db: LadybugStore, tmp_path: Path) -> None:
    d = tmp_path / "in"
    write(
        d / "a_entities.csv",
        '''
        id,type,name,aliases,description,ticker
        c:1,Company,"Acme, Inc.",ACME|Acme Corp,"Makes ""anvils""",ACM
        c:2,Company,Beta,,,
    ''',
    )
    write(
        d / "b_relations.csv",
        """
        head,type,tail,weight,timestamp,source
        c:1,PEER_OF,c:2,0.5,2024-01-02T03:04:05,test
        c:2,SUPPLIES,c:3,,,
    """,
    )
    rep = ingest_path(db, d, "csv")
    assert (rep.entities, rep.relations, rep.result.entities_added) == (2, 2, 3)
    e = db.get("c:1")
    assert e.aliases == ["ACME", "Acme Corp"] and e.attributes == {"ticker": "ACM"}
    assert e.description == 'Makes "anvils"'
    assert [x.id for x in db.find("acme corp")] == ["c:1"]
    assert ingest_path(db, d, "csv").result.changed == 0


def test_tsv_jsonl_triples(db: LadybugStore, tmp_path: Path) -> None:
    write(tmp_path / "e.tsv", "id\tname\ttype\nx\tÉcole\tPlace\n")
    write(
        tmp_path / "r.jsonl",
        """
        {"id": "y", "name": "Why", "attributes": {"k": [1, 2]}}
        {"head": "x", "type": "NEAR", "tail": "y", "weight": 2}
    """,
    )
    write(tmp_path / "t.txt", "x\tKNOWS\tz\n# comment\n\ny KNOWS z\n")
    ingest_path(db, tmp_path / "e.tsv", "tsv")
    ingest_path(db, tmp_path / "r.jsonl", "jsonl")
    rep = ingest_path(db, tmp_path / "t.txt", "triples")
    assert rep.relations == 2 and rep.result.entities_added == 1
    assert db.get("y").attributes == {"k": [1, 2]}
    assert [e.id for e in db.find("ecole")] == ["x"]
    assert db.stats().relations == 3
    assert ingest_path(db, tmp_path / "t.txt", "triples").result.changed == 0


@pytest.mark.parametrize(
    ("fmt", "name", "text", "line"),
    [
        ("triples", "t.txt", "a\tr\tb\nc\tr\nd\tr\te\n", 2),
        ("triples", "t.txt", "a\tr\tb\nc\t\td\n", 2),
        ("csv", "r.csv", "head,type,tail,weight\na,r,b,1\nc,r,d,heavy\n", 3),
        ("csv", "r.csv", 'id,name\na,"multi\nline"\n,missing id\n', 4),
        ("csv", "e.csv", "id,name\na,A\nb,B,extra\n", 3),
        ("jsonl", "r.jsonl", '{"id": "a"}\n{"head": "a", "tail": "b"}\n', 2),
        ("jsonl", "r.jsonl", '{"id": "a"}\n{not json\n', 2),
        ("csv", "x.csv", "foo,bar\n1,2\n", 1),
    ],
)
def test_bad_row_aborts_batch_with_file_and_line(
    db: LadybugStore, tmp_path: Path, fmt: str, name: str, text: str, line: int
) -> None:
    db.upsert_triples([("old", "R", "older")])
    before = snapshot(db)
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    with pytest.raises(IngestError) as ei:
        ingest_path(db, f, fmt)  # type: ignore[arg-type]
    assert f"{f}:{line}:" in str(ei.value)
    assert snapshot(db) == before


def test_bad_file_in_directory_aborts_everything(db: LadybugStore, tmp_path: Path) -> None:
    write(tmp_path / "d" / "1.txt", "a\tr\tb\n" * 3)
    write(tmp_path / "d" / "2.txt", "a\tr\tb\nbroken line\n")
    with pytest.raises(IngestError, match=r"2\.txt:2:"):
        ingest_path(db, tmp_path / "d", "triples")
    assert db.stats().entities == 0


def test_missing_path_and_bad_format(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no such file"):
        read_batch(tmp_path / "nope.csv", "csv")
    with pytest.raises(IngestError, match="format"):
        read_batch(tmp_path, "xml")  # type: ignore[arg-type]


def test_many_errors_are_summarised(db: LadybugStore, tmp_path: Path) -> None:
    f = write(tmp_path / "t.txt", "bad\n" * 50)
    with pytest.raises(IngestError, match="50 invalid row") as ei:
        ingest_path(db, f, "triples")
    assert "and 30 more" in str(ei.value)


CHILD = """
import os, sys, time
from pathlib import Path
from kg.ingest import ingest_path
from kg.ladybug_store import LadybugStore

stage_to_stop = sys.argv[3]
marker = Path(sys.argv[4])

def progress(stage, done, total):
    if stage == stage_to_stop:
        marker.write_text(stage)
        time.sleep(60)

store = LadybugStore.open(Path(sys.argv[1]))
ingest_path(store, Path(sys.argv[2]), "triples", progress=progress)
print("finished")
"""


@pytest.mark.parametrize("stage", ["entities", "relations", "commit"])
def test_kill_9_mid_ingest_leaves_store_unchanged(tmp_path: Path, stage: str) -> None:
    dbdir = tmp_path / "db"
    with LadybugStore.open(dbdir) as s:
        s.upsert_triples([("e0", "R", "e1"), ("keep", "R", "e0")])
        before = snapshot(s)
    big = tmp_path / "big.txt"
    big.write_text("".join(f"e{i}\tR{i % 7}\te{(i * 7919) % 30000}\n" for i in range(60_000)))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    marker = tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(dbdir), str(big), stage, str(marker)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "child never reached the write stage"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with LadybugStore.open(dbdir) as s:
        assert snapshot(s) == before
        # the store is usable afterwards and the retried ingest succeeds
        rep = ingest_path(s, big, "triples")
        assert rep.result.relations_added == 60_000
        assert s.stats().relations == 60_002


def test_kill_9_at_random_time(tmp_path: Path) -> None:
    """No hook: kill after a delay; the store holds either nothing or everything."""
    dbdir = tmp_path / "db"
    big = tmp_path / "big.txt"
    big.write_text("".join(f"e{i}\tR\te{i + 1}\n" for i in range(100_000)))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(dbdir), str(big), "never", str(tmp_path / "m")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(2.0)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with LadybugStore.open(dbdir) as s:
        assert s.stats().relations in (0, 100_000)


def test_jsonl_attributes_must_be_object(db: LadybugStore, tmp_path: Path) -> None:
    f = write(tmp_path / "e.jsonl", json.dumps({"id": "a", "attributes": [1]}) + "\n")
    with pytest.raises(IngestError, match=r"e\.jsonl:1:"):
        ingest_path(db, f, "jsonl")
