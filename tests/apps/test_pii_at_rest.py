"""Personal data at rest: masked turns, slots and names, and a state database only its owner reads."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.core.pii import mask_known, mask_pii, mask_slots
from apps.customer_service.sessions import SessionStore
from apps.sentiment.store import SentimentStore


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_state_database_and_its_wal_files_are_private(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    sessions = SessionStore(f"sqlite:///{db}").open()
    sessions.append(sessions.load("s"), "hello", "hi", None, failed=False)  # a write: -wal and -shm exist now
    events = SentimentStore(f"sqlite:///{db}").open()
    assert events.count_events() == 0
    for name in ("state.sqlite", "state.sqlite-wal", "state.sqlite-shm"):
        assert _mode(tmp_path / name) == 0o600, name
    sessions.close()
    events.close()
    # a database made world-readable before (an older version, a copy) is tightened on open
    (tmp_path / "state.sqlite").chmod(0o644)
    SessionStore(f"sqlite:///{db}").open().close()
    assert _mode(db) == 0o600


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Hi, my name is Ana Silva and I need help", "Hi, my name is [NAME] and I need help"),
        ("I'm Jo, order ORD-55123", "I'm [NAME], order [ORDER_ID]"),
        ("My name's Jean-Luc Picard.", "My name's [NAME]."),
        ("please call me Sam", "please call me [NAME]"),
        ("I am happy with it", "I am happy with it"),  # no capitalised name: nothing to mask
    ],
)
def test_self_introduced_names_are_masked(text: str, masked: str) -> None:
    assert mask_pii(text) == masked


def test_slots_are_masked_by_kind() -> None:
    slots = {"person_name": "Ana Silva", "email": "ana@example.org", "order_id": "ORD-55123",
             "invoice_id": "4111 1111 1111 1111", "refund_amount": "$45.50"}  # fmt: skip
    assert mask_slots(slots) == {"person_name": "[NAME]", "email": "[EMAIL]", "order_id": "ORD-55123",
                                 "invoice_id": "[CARD]", "refund_amount": "$45.50"}  # fmt: skip
    echoed = "Thanks, ana silva: we wrote to ANA@example.org. Anastasia is someone else."
    assert mask_known(echoed, slots) == "Thanks, [NAME]: we wrote to [EMAIL]. Anastasia is someone else."


def test_masking_stored_texts_is_the_default() -> None:
    from apps.core.settings import Settings

    assert Settings.model_fields["observability"].default.mask_pii_stored is True


def test_a_customer_service_turn_uses_real_values_but_stores_them_masked(nogen_service: Any) -> None:
    """Over HTTP on the real service with default settings: the answer and the response's slots carry
    what the customer gave; the state database, read directly, holds no name or email."""
    from apps.customer_service.sessions import ANONYMOUS, storage_key

    message = "Hi, my name is Ana Silva, my email is ana.silva@example.org. Where is my order ORD-55123?"
    r = httpx.post(f"{nogen_service.url}/cs/answer", json={"message": message}, timeout=60)
    assert r.status_code == 200, r.text
    sid = r.json()["session_id"]
    slots = r.json()["slots"]
    assert slots["person_name"] == "Ana Silva" and slots["email"] == "ana.silva@example.org"
    assert slots["order_id"] == "ORD-55123"
    db = Path(nogen_service.services.settings.database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(db) as c:
        rows = [str(v) for t in ("cs_sessions", "cs_turns") for row in c.execute(f"SELECT * FROM {t}") for v in row]
        mine = " ".join(v for v in rows)
    assert storage_key(ANONYMOUS, sid) in mine
    for secret in ("Ana", "Silva", "ana.silva@example.org"):
        assert secret not in mine, secret
    assert "[NAME]" in mine and "[EMAIL]" in mine
    assert _mode(db) == 0o600
    follow = httpx.post(
        f"{nogen_service.url}/cs/answer", json={"session_id": sid, "message": "when will it arrive?"}, timeout=60
    )
    assert follow.status_code == 200, follow.text
    assert follow.json()["known_slots"] == ["order_id"]  # kept across turns; no placeholders leak
    assert follow.json()["slots"] == {}  # and not sent back: this message gave none
    assert "[NAME]" not in follow.json()["answer"] and "[EMAIL]" not in follow.json()["answer"]
