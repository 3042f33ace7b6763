"""Counting decisions in bulk gives what counting them one at a time gives."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from adapters.infra.metrics import observe_all

BUCKETS = (0.001, 0.005, 0.01, 0.1, 1.0)


def samples(h: Histogram) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for m in h.collect() for s in m.samples if not s.name.endswith("_created")]


def pair() -> tuple[Histogram, Histogram]:
    return (Histogram("one_by_one", "", ["r"], buckets=BUCKETS, registry=CollectorRegistry()),
            Histogram("one_by_one", "", ["r"], buckets=BUCKETS, registry=CollectorRegistry()))


@given(st.lists(st.one_of(st.sampled_from([0.0, 0.001, 0.005, 1.0, -1.0, math.inf]),
                          st.floats(min_value=-10, max_value=10, allow_nan=False)), max_size=40))
def test_observe_all_moves_buckets_and_sum_as_observe_does(amounts: list[float]) -> None:
    single, bulk = pair()
    one = single.labels("x")
    for a in amounts:
        one.observe(a)
    observe_all(bulk.labels("x"), amounts)
    got, want = samples(bulk), samples(single)
    assert [(n, lbl) for n, lbl, _ in got] == [(n, lbl) for n, lbl, _ in want]
    for (_, _, g), (_, _, w) in zip(got, want, strict=True):
        assert g == w or math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-12)


def test_a_nan_latency_moves_only_the_sum_as_observe_does() -> None:
    single, bulk = pair()
    single.labels("x").observe(math.nan)
    single.labels("x").observe(0.002)
    observe_all(bulk.labels("x"), [math.nan, 0.002])
    assert str(samples(bulk)) == str(samples(single))
