"""Schema-driven fuzzing (schemathesis) of every operation in the service's OpenAPI, over real HTTP.

The service runs without its generator, so generation routes answer 503 ``model_unavailable``
at once. Whatever the input — valid per the schema (positive) or not (negative) — the service
must never answer 5xx other than 503, and every error must carry our JSON error body
``{"error": {"message", "type", "param", "code"}, "request_id"}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.apps.conftest import Service

ALLOWED_5XX = {503: {"model_unavailable", "overloaded"}}


@dataclass(frozen=True)
class Problem:
    operation: str
    mode: str
    status: int
    why: str
    request: str

    def __str__(self) -> str:
        return f"{self.operation} [{self.mode}] -> {self.status}: {self.why}\n    request: {self.request}"


def error_shape_problem(status: int, content_type: str, body: bytes) -> str | None:
    """What is wrong with an error response (None: a well-formed error, or not an error)."""
    if status < 400:
        return None
    if "application/json" not in content_type:
        return f"error body is {content_type!r}, not JSON"
    try:
        data = json.loads(body)
    except ValueError:
        return "error body is not valid JSON"
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return f"no 'error' object in {data!r:.200}"
    if not isinstance(err.get("message"), str) or not err["message"].strip():
        return f"error.message missing or empty in {data!r:.200}"
    if not isinstance(err.get("type"), str) or not err["type"]:
        return f"error.type missing in {data!r:.200}"
    if "request_id" not in data or not data["request_id"]:
        return f"request_id missing in {data!r:.200}"
    if err.get("code") != status:
        return f"error.code {err.get('code')!r} differs from the status {status}"
    if status >= 500 and err["type"] not in ALLOWED_5XX.get(status, set()):
        return f"server error {err['type']}: {err['message'][:200]}"
    return None


def fuzz(
    url: str,
    max_examples: int,
    seconds: float,
    derandomize: bool,
    headers: dict[str, str] | None = None,
    schema_headers: dict[str, str] | None = None,
) -> tuple[list[Problem], dict[str, int]]:
    """Run positive and negative cases for every operation; collect problems rather than stopping at one.

    ``headers`` go with every request (an ``Authorization`` header: fuzzing as that key's holder);
    ``schema_headers`` (default: ``headers``) with the request for the OpenAPI document.

    Returns:
        the problems found and how many requests each status got.
    """
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.core.result import Err

    wanted = schema_headers or headers
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", **({"headers": wanted} if wanted else {}))
    problems: list[Problem] = []
    statuses: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # an operation whose schema schemathesis cannot read: a bug in our OpenAPI
            raise AssertionError(f"invalid OpenAPI operation: {result.err()}")
        operations.append(result.ok())
    assert len(operations) >= 20, [op.label for op in operations]
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if time.monotonic() > deadline:
                problems.append(Problem(op.label, mode.value, 0, f"time budget of {seconds} s spent", ""))
                return problems, statuses

            run = settings(
                max_examples=max_examples,
                deadline=None,
                database=None,
                derandomize=derandomize,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(
                given(case=op.as_strategy(generation_mode=mode))(
                    _caller(url, op.label, mode.value, problems, statuses, headers or {})
                )
            )
            try:
                run()
            except Unsatisfiable:  # no invalid input exists (an operation without parameters or body)
                assert mode is GenerationMode.NEGATIVE, op.label
    return problems, statuses


def _caller(
    url: str, label: str, mode: str, problems: list[Problem], statuses: dict[str, int], headers: dict[str, str]
) -> Callable[[Any], None]:
    def call(case: Any) -> None:
        try:
            response = case.call(base_url=url, timeout=60, headers=headers)
        except Exception as e:  # the server dropped the connection: as bad as a 500
            problems.append(Problem(label, mode, 0, f"no response: {e!r}", repr(case)))
            return
        key = f"{response.status_code}"
        statuses[key] = statuses.get(key, 0) + 1
        why = error_shape_problem(response.status_code, response.headers.get("content-type", ""), response.content)
        if why:
            req = f"{case.method} {case.formatted_path} query={case.query!r} body={case.body!r:.300}"
            problems.append(Problem(label, mode, response.status_code, why, req))
        elif response.status_code < 300:
            from schemathesis.checks import response_schema_conformance
            from schemathesis.core.failures import FailureGroup

            try:  # a success must match the documented response model
                case.validate_response(response, checks=[response_schema_conformance])
            except (AssertionError, FailureGroup) as e:
                req = f"{case.method} {case.formatted_path} query={case.query!r} body={case.body!r:.300}"
                problems.append(Problem(label, mode, response.status_code, f"response schema: {e}"[:600], req))

    return call


def _report(problems: list[Problem]) -> str:
    seen: dict[tuple[str, int, str], Problem] = {}
    for p in problems:
        seen.setdefault((p.operation, p.status, p.why[:80]), p)
    return f"{len(problems)} problem(s), {len(seen)} distinct:\n" + "\n".join(str(p) for p in seen.values())


def test_schema_fuzz_fast(nogen_service: Service) -> None:
    """10 examples per operation and mode, derandomized (the same cases every run), under 60 s."""
    t0 = time.monotonic()
    problems, statuses = fuzz(nogen_service.url, max_examples=10, seconds=90, derandomize=True)
    assert not problems, _report(problems)
    assert sum(statuses.values()) > 200, statuses
    assert any(s.startswith("2") for s in statuses) and any(s.startswith("4") for s in statuses), statuses
    print(f"fuzz: {sum(statuses.values())} requests in {time.monotonic() - t0:.1f}s: {statuses}")


def test_schema_fuzz_with_auth_on(tmp_path: Path) -> None:
    """The same fuzzing on a service that wants keys: as a read key's holder (admin and write routes
    answer 403, the rest as before) and with no key (401 everywhere but the probes), every answer in
    the error shape, never a 5xx."""
    from apps.core.services import build_services
    from apps.core.settings import load_settings
    from apps.main import create_app
    from tests.conftest import LiveServer

    settings = load_settings(
        home=tmp_path, models={"load_generator": False, "load_embedder": False},
        auth={"enabled": True}, limits={"rate": "100000/minute"},
    )  # fmt: skip
    app = create_app(settings, services=build_services(settings))
    _, read = app.state.keys.create("fuzz", "read")
    with LiveServer(app) as live:
        reader = {"Authorization": f"Bearer {read}"}
        problems, statuses = fuzz(live.url, 4, 120, True, headers=reader)
        assert not problems, _report(problems)
        assert "403" in statuses and any(s.startswith("2") for s in statuses), statuses
        problems, anonymous = fuzz(live.url, 2, 60, True, schema_headers=reader)
        assert not problems, _report(problems)
        assert set(anonymous) <= {"200", "401", "503"} and anonymous.get("401", 0) > 50, anonymous
    app.state.keys.close()


@pytest.mark.slow
def test_schema_fuzz_long(nogen_service: Service) -> None:
    """200 random examples per operation and mode (new cases every run)."""
    problems, statuses = fuzz(nogen_service.url, max_examples=200, seconds=1800, derandomize=False)
    assert not problems, _report(problems)
    print(f"fuzz: {sum(statuses.values())} requests: {statuses}")


def test_error_shape_check_catches_bad_bodies() -> None:
    """The check itself can fail."""
    ok = json.dumps({"error": {"message": "m", "type": "t", "param": None, "code": 422}, "request_id": "r"}).encode()
    assert error_shape_problem(422, "application/json", ok) is None
    assert error_shape_problem(200, "text/plain", b"fine") is None
    assert "not JSON" in (error_shape_problem(404, "text/plain", b"Not Found") or "")
    assert "no 'error'" in (error_shape_problem(422, "application/json", b'{"detail": []}') or "")
    assert "request_id" in (error_shape_problem(422, "application/json", ok.replace(b'"r"', b"null")) or "")
    boom = json.dumps({"error": {"message": "x", "type": "server_error", "code": 500}, "request_id": "r"}).encode()
    assert "server error" in (error_shape_problem(500, "application/json", boom) or "")
    gone = json.dumps({"error": {"message": "x", "type": "model_unavailable", "code": 503}, "request_id": "r"})
    assert error_shape_problem(503, "application/json", gone.encode()) is None
