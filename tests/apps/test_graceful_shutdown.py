"""``kgnlp serve`` drains in-flight requests on SIGTERM: a real server process, a real generation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import free_port


def test_sigterm_lets_the_running_generation_finish_then_exits(model_home: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "KGNLP_HOME": str(model_home),
        "KGNLP_GRAPH__PATH": str(tmp_path / "graphs"),
        "KGNLP_DATABASE_URL": f"sqlite:///{tmp_path / 'state.sqlite'}",
        "KGNLP_AUTH__KEYS_PATH": str(tmp_path / "keys.sqlite"),
        "KGNLP_RETRIEVAL__CORPORA": "[]",
        "KGNLP_CUSTOMER_SERVICE__ENABLED": "false",
        "KGNLP_SENTIMENT__ENABLED": "false",
        "KGNLP_RECOMMEND__ENABLED": "false",
        "KGNLP_MODELS__LOAD_EMBEDDER": "false",
    }
    cmd = [sys.executable, "-c", "from apps.cli import main; main()", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.5)
        result: dict[str, object] = {}

        def ask() -> None:
            body = {"model": "smollm2-135m-instruct", "max_tokens": 600, "temperature": 0,
                    "messages": [{"role": "user", "content": "Write a long story about the sea."}]}  # fmt: skip
            r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
            result["done_at"] = time.monotonic()
            result["status"] = r.status_code
            result["tokens"] = r.json().get("usage", {}).get("completion_tokens")

        t = threading.Thread(target=ask)
        t.start()
        time.sleep(1.0)  # the generation is running now (600 tokens take seconds, llama.cpp included)
        assert "status" not in result, "the generation finished before the signal: the test proves nothing"
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        t.join(timeout=120)
        assert result.get("status") == 200, result  # the in-flight request was answered in full
        assert float(result["done_at"]) > sent_at  # ... after the signal
        assert isinstance(result.get("tokens"), int) and result["tokens"] > 8, result
        # then the server exited by itself (uvicorn re-raises the signal after its graceful shutdown)
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        try:
            httpx.get(f"{url}/health/live", timeout=2)
            raise AssertionError("the server still accepts connections after shutting down")
        except httpx.ConnectError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
