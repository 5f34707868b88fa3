"""Alert-rule maths on hand-made series."""

from __future__ import annotations

import math

import pytest

from apps.sentiment.rules import AlertPolicy, Bucket, EwmaRule, Reading, ShareRule, ZScoreRule, episodes


def series(counts: list[tuple[int, int]], width: int = 3600) -> list[Bucket]:
    return [Bucket(i * width, n, neg) for i, (n, neg) in enumerate(counts)]


def test_share_rule_judges_only_buckets_with_enough_volume() -> None:
    rule = ShareRule(name="s", threshold=0.5, min_volume=4)
    r = rule.readings(series([(10, 6), (10, 5), (3, 3), (0, 0)]))
    assert [x.breach for x in r] == [True, False, None, None]  # 0.6 > 0.5; 0.5 is not above; low volume
    assert r[0].value == pytest.approx(0.6)


def test_zscore_against_pooled_trailing_baseline() -> None:
    rule = ZScoreRule(name="z", z=3.0, window=3, min_volume=5, min_baseline=20, min_rate=0.05)
    s = series([(10, 1), (10, 1), (10, 2), (10, 6), (2, 2)])
    r = rule.readings(s)
    # buckets 0-1: baseline has < 20 texts -> not judged
    assert r[0].breach is None and r[1].breach is None
    # bucket 2: baseline 2/20 = 0.1, rate 0.2 -> z = 0.1 / sqrt(0.1*0.9/10)
    assert r[2].value == pytest.approx(0.1 / math.sqrt(0.09 / 10))
    assert r[2].breach is False
    # bucket 3: baseline (1+1+2)/30, rate 0.6
    p0 = 4 / 30
    assert r[3].value == pytest.approx((0.6 - p0) / math.sqrt(p0 * (1 - p0) / 10))
    assert r[3].breach is True
    assert r[4].breach is None  # 2 texts < min_volume


def test_zscore_floors_a_quiet_baseline() -> None:
    rule = ZScoreRule(name="z", z=3.0, window=4, min_volume=5, min_baseline=10, min_rate=0.1)
    r = rule.readings(series([(10, 0), (10, 0), (5, 1)]))
    # baseline rate 0 is floored at 0.1, so one negative in five is z = 0.1/sqrt(0.09/5), not infinite
    assert r[2].value == pytest.approx(0.1 / math.sqrt(0.09 / 5))
    assert r[2].breach is False


@pytest.mark.parametrize("rule", [ZScoreRule(name="z", window=2, min_volume=2, min_baseline=4),
                                  EwmaRule(name="e", window=2, min_volume=2, min_baseline=4)])  # fmt: skip
def test_an_all_negative_baseline_is_capped_not_a_division_by_zero(rule: ZScoreRule | EwmaRule) -> None:
    # every text of the history is negative (a crash, or a feed of bad news): p0 = 1 had sigma = 0
    r = rule.readings(series([(5, 5), (5, 5), (5, 5)]))
    assert r[2].breach is False and math.isfinite(r[2].value)


def test_ewma_control_limit() -> None:
    rule = EwmaRule(name="e", lam=0.5, width=2.0, window=2, min_volume=1, min_baseline=10, min_rate=0.05)
    r = rule.readings(series([(10, 2), (10, 2), (10, 8), (0, 0), (10, 8)]))
    assert r[0].breach is None  # warm-up: no baseline yet
    assert r[1].breach is False and r[1].value == pytest.approx(0.2)  # at the baseline
    p0 = 0.2
    sigma = math.sqrt(p0 * 0.8 / 10)
    limit = p0 + 2.0 * sigma * math.sqrt(0.5 / 1.5)
    z2 = 0.5 * 0.2 + 0.5 * 0.8
    assert r[2].value == pytest.approx(z2) and r[2].limit == pytest.approx(limit)
    assert r[2].breach is True
    assert r[3].breach is None  # empty bucket: not judged, EWMA carried
    # bucket 4: baseline over buckets 2-3 is 8/10 -> the chart re-centres on the new level
    p0b = 0.8
    assert r[4].value == pytest.approx(0.5 * z2 + 0.5 * 0.8)
    assert r[4].limit == pytest.approx(p0b + 2.0 * math.sqrt(p0b * 0.2 / 10) * math.sqrt(0.5 / 1.5))


def readings(flags: list[bool | None]) -> list[Reading]:
    return [Reading(i, float(i), 0.5, f) for i, f in enumerate(flags)]


def test_episode_fires_after_pending_and_resolves_after_normal_run() -> None:
    eps = episodes(
        readings([False, True, True, True, False, True, False, False, False]), AlertPolicy(pending=2, resolve_after=2)
    )
    assert len(eps) == 1
    e = eps[0]
    assert (e.started, e.fired, e.resolved) == (1, 2, 7)
    assert e.breach_buckets == 4 and e.peak == 5.0


def test_single_breach_shorter_than_pending_does_not_fire() -> None:
    assert episodes(readings([True, False, True, False]), AlertPolicy(pending=2)) == []


def test_unjudged_buckets_do_not_reset_a_pending_breach_but_resolve_an_open_one() -> None:
    eps = episodes(readings([True, None, True, True, None, False]), AlertPolicy(pending=2, resolve_after=2))
    # pending 0 -> (1 unjudged) -> fires at 2; the quiet bucket 4 and the normal bucket 5 resolve it
    assert [(e.started, e.fired, e.resolved) for e in eps] == [(0, 2, 5)]


def test_cooldown_suppresses_a_new_episode_then_allows_one() -> None:
    flags = [True, False, True, True, True, True]
    eps = episodes(readings(flags), AlertPolicy(pending=1, resolve_after=1, cooldown_buckets=2))
    # fires at 0, resolves at 1; 2 and 3 are in the cooldown; a new episode starts at 4
    assert [(e.started, e.resolved) for e in eps] == [(0, 1), (4, None)]


def test_open_episode_is_reported_unresolved() -> None:
    eps = episodes(readings([False, True, True]), AlertPolicy(pending=1))
    assert len(eps) == 1 and eps[0].resolved is None and eps[0].breach_buckets == 2


def test_span_pools_a_sliding_window() -> None:
    rule = ShareRule(name="s", threshold=0.5, min_volume=6, span=2)
    r = rule.readings(series([(4, 3), (4, 3), (4, 0)]))
    # bucket 0 alone has 4 texts (< 6): not judged; buckets 0+1: 6/8; buckets 1+2: 3/8
    assert [x.breach for x in r] == [None, True, False]
    assert r[1].value == pytest.approx(0.75) and r[1].start == 3600


def test_prior_lets_a_company_without_history_be_judged() -> None:
    strict = ZScoreRule(name="z", z=3.0, min_volume=5, min_baseline=30)
    shrunk = ZScoreRule(name="z", z=3.0, min_volume=5, min_baseline=10, prior_rate=0.15, prior_weight=20)
    s = series([(1, 0), (8, 8)])
    assert strict.readings(s)[1].breach is None  # one past text: no baseline
    r = shrunk.readings(s)[1]
    p0 = (0 + 0.15 * 20) / (1 + 20)
    assert r.value == pytest.approx((1.0 - p0) / math.sqrt(p0 * (1 - p0) / 8)) and r.breach is True
    # a normal bucket of the same company stays quiet
    assert shrunk.readings(series([(1, 0), (8, 1)]))[1].breach is False
