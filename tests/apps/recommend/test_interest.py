"""The LLM interest scorer on the real SmolLM2-135M-Instruct from the local cache (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from apps.recommend.interest import DEFAULT_MODEL, InterestScorer, prompt_parts
from kgnlp.files import default_home

MODEL_DIR = default_home() / "models" / DEFAULT_MODEL

HISTORY = [
    "Metallica (thrash metal, heavy metal)",
    "Slayer (thrash metal, speed metal)",
    "Iron Maiden (heavy metal, NWOBHM)",
    "Megadeth (thrash metal, heavy metal)",
]
CANDIDATES = [
    "Anthrax (thrash metal, heavy metal)",
    "Johann Sebastian Bach (classical, baroque)",
    "Madonna (pop, dance)",
    "Pantera (groove metal, heavy metal)",
    "Miles Davis (jazz, trumpet)",
]


@pytest.fixture(scope="module")
def scorer() -> InterestScorer:
    if not (Path(MODEL_DIR) / "config.json").is_file():
        pytest.skip(f"SmolLM2 not in the local cache ({MODEL_DIR}); `kgnlp models fetch` prepares it")
    import torch

    torch.set_num_threads(1)
    return InterestScorer(MODEL_DIR, max_history=10, batch_size=2)


def test_prompt_is_short_and_split_at_the_candidate() -> None:
    prefix, suffix = prompt_parts(HISTORY, "Anthrax (thrash metal)")
    assert "Metallica" in prefix and "Anthrax" not in prefix
    assert suffix.startswith(" Anthrax") and suffix.endswith("Answer:")
    assert prompt_parts([f"a{i}" for i in range(30)], "x", max_history=10)[0].count(";") == 9


def test_scores_finite_shaped_deterministic(scorer: InterestScorer) -> None:
    n = len(CANDIDATES)
    a = scorer.score([HISTORY] * n, CANDIDATES)
    assert a.shape == (n,) and a.dtype == np.float32 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, scorer.score([HISTORY] * n, CANDIDATES))
    assert a.std() > 1e-4  # the candidate matters


def test_batched_equals_single_and_full_sequence(scorer: InterestScorer) -> None:
    """Shared-prefix batches (with right padding) give the same log-odds as one pair at a time."""
    import torch

    batched = scorer.score([HISTORY] * len(CANDIDATES), CANDIDATES)
    single = np.array([scorer.score([HISTORY], [c])[0] for c in CANDIDATES])
    np.testing.assert_allclose(batched, single, atol=1e-3)
    prefix, suffix = prompt_parts(HISTORY, CANDIDATES[1])
    ids = scorer.encode([prefix])[0] + scorer.encode([suffix])[0]
    with torch.inference_mode():
        lg = scorer.model(input_ids=torch.tensor([ids])).logits[0, -1]
    assert abs(float(lg[scorer.yes_id] - lg[scorer.no_id]) - batched[1]) < 1e-3


def test_mixed_histories_keep_row_order(scorer: InterestScorer) -> None:
    other = ["Mozart (classical, opera)", "Chopin (classical, piano)"]
    hs = [HISTORY, other, HISTORY, other]
    cs = [CANDIDATES[0], CANDIDATES[1], CANDIDATES[1], CANDIDATES[0]]
    got = scorer.score(hs, cs)
    want = np.array([scorer.score([h], [c])[0] for h, c in zip(hs, cs, strict=True)])
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_missing_model_folder_is_reported(tmp_path: Path) -> None:
    from kgnlp.errors import NotFoundError

    with pytest.raises(NotFoundError):
        InterestScorer(tmp_path / "nothing")
