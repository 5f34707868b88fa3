"""``kill -9`` at the worst moments, with real subprocesses: index builds, training checkpoints, event replay.

Each child process installs a hook that writes a marker file and sleeps at a chosen point (so the
kill lands exactly there), or runs without hooks and is killed at a random point. The parent
then checks what a restarted process sees. Graph ingest has the same tests in
``tests/kg/test_kg_ingest.py``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.pg import postgres_url

REPO = Path(__file__).resolve().parents[1]
__all__ = ["postgres_url"]  # the fixture, re-exported for pytest


def run_child(
    code: str, args: list[str], marker: Path | None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.Popen[bytes]:
    """Start ``code`` in a fresh interpreter; when ``marker`` is given, wait for it, then ``kill -9``.

    Returns:
        the finished (killed) process.
    """
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if marker is None:
        return proc
    try:
        deadline = time.monotonic() + timeout
        while not marker.exists():
            if proc.poll() is not None:
                _, err = proc.communicate()
                raise AssertionError(f"child ended ({proc.returncode}) before the hook:\n{err.decode()[-3000:]}")
            assert time.monotonic() < deadline, "child never reached the hook"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.returncode
    return proc


def kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float = 300) -> None:
    """``kill -9`` the child as soon as ``ready()`` holds (it must still be running then)."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                _, err = proc.communicate()
                raise AssertionError(f"child ended ({proc.returncode}) before the kill:\n{err.decode()[-3000:]}")
            assert time.monotonic() < deadline, "condition never held"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"child finished before the kill ({proc.returncode})"


# --------------------------------------------------------------------------- atomic_dir
def test_atomic_dir_swaps_in_one_step_and_recovers_a_half_swap(tmp_path: Path) -> None:
    from kgnlp.files import _exchange, atomic_dir, recover_dir

    final = tmp_path / "idx"
    with atomic_dir(final) as t:
        (t / "v").write_text("1")
    with atomic_dir(final) as t:
        (t / "v").write_text("2")
    assert (final / "v").read_text() == "2" and [p.name for p in tmp_path.iterdir()] == ["idx"]
    assert _exchange(tmp_path / "idx", tmp_path / "idx")  # Linux: the one-step swap is what runs here
    # what the two-rename fallback leaves when killed between its renames: only the old copy
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    os.replace(final, tmp_path / f".idx.old-{int(dead.stdout)}")
    assert recover_dir(final) and (final / "v").read_text() == "2"
    assert not recover_dir(final)  # nothing to do now
    os.replace(final, tmp_path / f".idx.old-{os.getpid()}")  # a live process is still finishing its swap
    assert not recover_dir(final) and not final.exists()


# --------------------------------------------------------------------------- index build
INDEX_CHILD = """
import os, sys, time
from pathlib import Path
import kgnlp.files as files

home, source, model, stage, marker = sys.argv[1:6]

def pause():
    Path(marker).write_text(stage)
    time.sleep(600)

real_exchange, real_replace = files._exchange, os.replace
if stage == "before_swap":
    def exchange(a, b):
        if Path(b).name == "crashy":
            pause()
        return real_exchange(a, b)
    files._exchange = exchange
elif stage == "after_swap":
    def exchange(a, b):
        done = real_exchange(a, b)
        if Path(b).name == "crashy":
            pause()
        return done
    files._exchange = exchange
elif stage == "between_renames":  # the fallback of file systems without RENAME_EXCHANGE
    files._exchange = lambda a, b: False
    def replace(src, dst):
        real_replace(src, dst)
        if Path(src).name == "crashy" and ".old-" in Path(dst).name:
            pause()
    files.os.replace = replace

from apps.cli import app
app(["index", "build", "--corpus", "crashy", "--source", source, "--model", model, "--no-graph", "--force",
     "--home", home])
"""


def _docs(path: Path, version: int, n: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    with (path / "documents.jsonl").open("w") as f:
        for i in range(n):
            text = f"version {version} answer {i}: to get a refund for order {i}, open your orders page"
            f.write(json.dumps({"id": f"v{version}-doc-{i}", "text": text}) + "\n")
    return path


def _index_docs(home: Path) -> set[str]:
    from retrieval.corpus import Corpus

    corpus = Corpus.load(home / "indexes" / "crashy")
    assert len(corpus.passages) == len(corpus.vectors[0])
    return {p.doc_id for p in corpus.passages.values()}


@pytest.mark.parametrize("stage", ["before_swap", "after_swap", "between_renames"])
def test_kill_9_mid_index_build(tmp_path: Path, embedder_path: Path, stage: str) -> None:
    from retrieval.corpus import build_corpus

    home = tmp_path / "home"
    v1 = {f"v1-doc-{i}" for i in range(30)}
    build_corpus("crashy", home, embedder_path, _docs(tmp_path / "v1", 1, 30))
    assert _index_docs(home) == v1
    src2 = _docs(tmp_path / "v2", 2, 40)
    marker = tmp_path / "marker"
    run_child(INDEX_CHILD, [str(home), str(src2), str(embedder_path), stage, str(marker)], marker)
    v2 = {f"v2-doc-{i}" for i in range(40)}
    assert _index_docs(home) == (v2 if stage == "after_swap" else v1)  # whole old or whole new, never neither
    # the next build completes and replaces it
    rep = build_corpus("crashy", home, embedder_path, src2, force=True)
    assert rep["status"] == "built" and _index_docs(home) == v2
    assert not list((home / "indexes").glob(".crashy.old-*"))


# --------------------------------------------------------------------------- training checkpoints
TRAIN_CHILD = """
import json, sys, time
from pathlib import Path
import models.finetune as ft
from models.config import build_config

raw, stage, marker = json.loads(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
real = ft.atomic_write_json

def hooked(path, obj):
    # trainer.json is written into the checkpoint's temporary folder, after the accelerate
    # state and before the rename: a kill here leaves a half-written checkpoint behind
    if stage == "mid_checkpoint" and Path(path).name == "trainer.json" and obj.get("global_step", 0) >= 6:
        marker.write_text(stage)
        time.sleep(600)
    real(path, obj)

ft.atomic_write_json = hooked
ft.finetune(build_config(raw), log=lambda m: print(m, flush=True))
"""


def _train_config(tmp_path: Path, embedder_path: Path) -> dict[str, Any]:
    from tests.models.test_toolbox_finetune import tiny_bert, toy_csv

    tiny_bert(embedder_path, tmp_path / "base")
    data = toy_csv(tmp_path / "toy.csv", 40)
    return {
        "task": "classify", "model": str(tmp_path / "base"), "output_dir": str(tmp_path / "run"),
        "data": {"train": str(data)}, "method": {"kind": "full"},
        "train": {"epochs": 6, "batch_size": 8, "lr": 1e-3, "max_len": 16, "eval_every": 2, "keep_checkpoints": 2},
    }  # fmt: skip


def _check_resume(tmp_path: Path, raw: dict[str, Any]) -> None:
    from models.config import build_config
    from models.finetune import _latest_checkpoint, finetune

    ckpts = tmp_path / "run" / "checkpoints"
    latest = _latest_checkpoint(ckpts)
    assert latest is not None, list(ckpts.iterdir())
    state = json.loads((latest / "trainer.json").read_text())
    assert state["global_step"] == int(latest.name.split("-")[1])
    assert {"model.safetensors", "optimizer.bin", "scheduler.bin"} <= {p.name for p in latest.iterdir()}
    # the resumed run loads that checkpoint (accelerate state: weights, optimizer, scheduler, RNG)
    lines: list[str] = []
    result = finetune(build_config(raw), log=lines.append)
    assert any("resumed" in x and latest.name in x for x in lines), lines
    assert result["steps"] == 24  # 32 training rows (20 % held out) / batch 8 × 6 epochs: the whole plan
    assert (tmp_path / "run" / "metrics.json").is_file() and (tmp_path / "run" / "model").is_dir()
    assert not list(ckpts.glob(".step-*"))  # the half-written checkpoint was replaced or cleaned


def test_kill_9_mid_checkpoint_then_resume(tmp_path: Path, embedder_path: Path) -> None:
    raw = _train_config(tmp_path, embedder_path)
    marker = tmp_path / "marker"
    run_child(TRAIN_CHILD, [json.dumps(raw), "mid_checkpoint", str(marker)], marker)
    ckpts = tmp_path / "run" / "checkpoints"
    assert list(ckpts.glob(".step-6.tmp")), "the kill should have left a half-written checkpoint"
    assert sorted(p.name for p in ckpts.glob("step-*")) == ["step-2", "step-4"]
    _check_resume(tmp_path, raw)


@pytest.mark.slow
def test_kill_9_training_at_random_times(tmp_path: Path, embedder_path: Path) -> None:
    raw = _train_config(tmp_path, embedder_path)
    rng = random.Random(0)
    for _ in range(3):  # three runs, each killed at a random moment (or finished by then)
        proc = run_child(TRAIN_CHILD, [json.dumps(raw), "none", str(tmp_path / "unused")], None)
        deadline = time.monotonic() + rng.uniform(4.0, 12.0)
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    _check_resume(tmp_path, raw)


# --------------------------------------------------------------------------- sentiment replay
REPLAY_CHILD = """
import sys, time
from pathlib import Path
import apps.sentiment.store as store

stage, marker = sys.argv[1], Path(sys.argv[2])
real_insert, calls = store.insert, {"mentions": 0}

def insert(table):
    # the events of this batch are inserted (uncommitted) when its mentions are built
    if table is store.mentions:
        calls["mentions"] += 1
        if stage == "mid_transaction" and calls["mentions"] == 4:
            marker.write_text(stage)
            time.sleep(600)
    return real_insert(table)

store.insert = insert
from apps.cli import app
app(["sentiment", "replay", sys.argv[3], "--batch", "5"])
"""

TICKERS = ["AAPL", "MSFT", "NVDA", "AMZN", "XOM", "JPM"]


def _replay_file(path: Path, n: int) -> Path:
    verbs = ["shares slump as sales fall", "beats earnings estimates", "faces a lawsuit", "raises its dividend"]
    rows = [
        {"id": f"r{i}", "text": f"${TICKERS[i % 6]} {verbs[i % 4]} ({i})", "timestamp": 1735812000 + 600 * i}
        for i in range(n)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _db_state(url: str) -> tuple[set[str], set[tuple[str, str, str]]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as c:
            ids = {r[0] for r in c.execute(text("SELECT id FROM sentiment_events"))}
            mentions = {tuple(r) for r in c.execute(text("SELECT event_id, scope, key FROM sentiment_mentions"))}
            orphans = c.execute(
                text(
                    "SELECT count(*) FROM sentiment_mentions m"
                    " WHERE m.event_id NOT IN (SELECT id FROM sentiment_events)"
                )
            ).scalar()
    finally:
        engine.dispose()
    assert orphans == 0
    return ids, mentions


def _replay_env(model_home: Path, graphs: Path, url: str) -> dict[str, str]:
    return {"KGNLP_HOME": str(model_home), "KGNLP_GRAPH__PATH": str(graphs), "KGNLP_DATABASE_URL": url}


@pytest.fixture(scope="module")
def finance_graphs(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from apps.sentiment.training import ensure_default_model
    from kg.demo import build_demo
    from kg.registry import GraphRegistry

    ensure_default_model(model_home, model_home / "models" / "all-minilm-l6-v2")
    graphs = tmp_path_factory.mktemp("graphs")
    with GraphRegistry(graphs) as registry:
        build_demo("finance", registry.get("finance", create=True))
    return graphs


def _replay(env: dict[str, str], events: Path) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from apps.cli import app; app(sys.argv[1:])",
            "sentiment",
            "replay",
            str(events),
            "--batch",
            "5",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _replay_kill_test(tmp_path: Path, model_home: Path, graphs: Path, url: str, ref_url: str, stage: str) -> None:
    events = _replay_file(tmp_path / "events.jsonl", 40)
    # the reference: an uninterrupted replay into another database
    assert "inserted=40 duplicates=0" in _replay(_replay_env(model_home, graphs, ref_url), events)
    ref_ids, ref_mentions = _db_state(ref_url)
    assert len(ref_ids) == 40 and {e for e, _, _ in ref_mentions} == ref_ids  # every event has mentions
    env = _replay_env(model_home, graphs, url)
    marker = tmp_path / "marker"
    if stage == "mid_transaction":
        run_child(REPLAY_CHILD, [stage, str(marker), str(events)], marker, env)
    else:  # no hook: kill once some batches are committed
        proc = run_child(REPLAY_CHILD, ["none", str(marker), str(events)], None, env)

        def some_stored() -> bool:
            try:
                return 0 < len(_db_state(url)[0]) < 40
            except Exception:  # tables not created yet
                return False

        kill_when(proc, some_stored)
    ids, mentions = _db_state(url)
    assert 0 < len(ids) < 40, len(ids)
    if stage == "mid_transaction":
        assert len(ids) == 15  # three committed batches of 5; the fourth rolled back whole
    # consistent: exactly the mentions an uninterrupted run stores for these events, no more, no less
    assert mentions == {m for m in ref_mentions if m[0] in ids}
    out = _replay(env, events)
    assert f"inserted={40 - len(ids)} duplicates={len(ids)}" in out, out
    assert _db_state(url) == (ref_ids, ref_mentions)
    assert "inserted=0 duplicates=40" in _replay(env, events)  # idempotent from here on


@pytest.mark.parametrize("stage", ["mid_transaction", pytest.param("after_commits", marks=pytest.mark.slow)])
def test_kill_9_mid_replay_sqlite(tmp_path: Path, model_home: Path, finance_graphs: Path, stage: str) -> None:
    url, ref = f"sqlite:///{tmp_path / 'state.sqlite'}", f"sqlite:///{tmp_path / 'ref.sqlite'}"
    _replay_kill_test(tmp_path, model_home, finance_graphs, url, ref, stage)


@pytest.mark.postgres
def test_kill_9_mid_replay_postgres(tmp_path: Path, model_home: Path, finance_graphs: Path, postgres_url: str) -> None:
    """The killed client's open transaction is rolled back by the server; the rest is the same."""
    ref = f"sqlite:///{tmp_path / 'ref.sqlite'}"
    _replay_kill_test(tmp_path, model_home, finance_graphs, postgres_url, ref, "mid_transaction")
