"""Prometheus metrics. With several worker processes, every worker writes to PROMETHEUS_MULTIPROC_DIR and
the parent serves the sum (prometheus_client's multiprocess mode); gauges that describe the store
(open escalations, pending and dead effects) are read from the store at scrape time."""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.record import DecisionRecord

DECISIONS = Counter("baton_decisions", "Decisions made", ["ruleset", "outcome"])
LATENCY = Histogram("baton_decision_latency_seconds", "Decision latency, engine and calls", ["ruleset"],
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
FIRED = Counter("baton_rule_fired", "Rule firings", ["ruleset", "rule"])
MODEL_CALLS = Counter("baton_model_calls", "Model calls", ["group", "model", "status"])
TOKENS = Counter("baton_model_tokens", "Model tokens", ["ruleset", "model"])
COST = Counter("baton_model_cost_usd", "Model cost in USD", ["ruleset", "model"])
TOOL_CALLS = Counter("baton_tool_calls", "Tool calls", ["action", "status"])
STORE_WRITE = Histogram("baton_store_write_seconds", "Store batch write latency",
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
CIRCUIT_STATE = Gauge("baton_circuit_state", "Connector circuit: 0 closed, 1 open, 2 half-open", ["connector"],
                      multiprocess_mode="max")
CIRCUIT_TRIPS = Counter("baton_circuit_trips", "Times a connector's circuit opened", ["connector"])
CONNECTOR_REFUSED = Counter("baton_connector_refused", "Calls failed fast by a connector's limits",
                            ["connector", "reason"])
WORKER_RESTARTS = Counter("baton_worker_restarts", "Worker processes started to replace one that died", ["worker"])
WORKER_RECYCLES = Counter("baton_worker_recycles", "Workers replaced, and drained, because their resident memory "
                          "went above memory.max_mb", ["worker"])
SECRET_ROTATIONS = Counter("baton_secret_rotations", "Secret re-reads that changed a value")
CHECKPOINTS = Counter("baton_checkpoints", "Signed checkpoints of the decision log handed to a witness, by result: "
                      "kept, failed, or refused (the log no longer extends the last checkpoint; docs/audit.md)",
                      ["witness", "result"])
EFFECT_ATTEMPTS = Counter("baton_effect_attempts", "Effect deliveries tried, by result: delivered, failed (retried "
                          "later) or dead (given up)", ["effect", "result"])
INTAKE = Counter("baton_intake_messages", "Decision requests taken from a broker", ["consumer", "result"])
SHADOW_EVALUATIONS = Counter("baton_shadow_evaluations", "Live decisions evaluated against a shadow version",
                             ["changed"])
SHADOW_DROPPED = Counter("baton_shadow_dropped", "Shadow evaluations dropped because the queue was full")
LOOP_LAG = Histogram("baton_event_loop_lag_seconds", "How late a worker's event loop runs queued work (sampled every "
                     "10 ms): the wait before a request's handler starts",
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
SQLITE_MEMORY = Gauge("baton_sqlite_memory_bytes", "Memory the SQLite library holds (page caches, statements)",
                      multiprocess_mode="livesum")
HEAP_IN_USE = Gauge("baton_heap_in_use_bytes", "Bytes a worker's allocator has handed out, all arenas "
                    "(glibc malloc_info)", multiprocess_mode="liveall")
HEAP_FREE = Gauge("baton_heap_free_bytes", "Bytes free inside a worker's malloc arenas, not yet given back",
                  multiprocess_mode="liveall")
PYTHON_BLOCKS = Gauge("baton_python_allocated_blocks", "Python's small-object blocks a worker holds "
                      "(sys.getallocatedblocks(): objects of 512 bytes or less, outside the malloc heap)",
                      multiprocess_mode="liveall")
ENGINE_NETWORKS = Gauge("baton_engine_networks", "durable-rules networks a worker holds registered",
                        multiprocess_mode="liveall")
ENGINE_NETWORK_BYTES = Gauge("baton_engine_network_bytes", "What a worker's registered networks hold, estimated from "
                             "their rules (engine/driver.py), held to versions.networks_max_mb when it is set",
                             multiprocess_mode="liveall")
ENGINE_NETWORK_REGISTRATIONS = Counter("baton_engine_network_registrations", "durable-rules networks a worker "
                                       "registered: on first use, and again after an eviction")
ENGINE_NETWORK_EVICTIONS = Counter("baton_engine_network_evictions", "Networks a worker freed to stay within "
                                   "versions.networks_max_mb (the least recently used no decision was on)")
VERSION_UNLOADS = Counter("baton_version_unloads", "Ruleset versions a worker unloaded after versions.idle_unload_s "
                          "unused (never a version in effect)")
VERSION_RELOADS = Counter("baton_version_reloads", "Unloaded ruleset versions a worker compiled again on demand")
HEAP_TRIMS = Counter("baton_heap_trims_total", "Times a worker gave its arenas' free pages back to the system")
START_GROUPS = Counter("baton_start_groups", "Groups of decisions the start gate let start together under load")
START_GROUPED = Counter("baton_start_grouped_decisions", "Decisions that waited at the start gate and started in "
                        "a group (over baton_start_groups: the mean group size)")
INFLIGHT = Gauge("baton_inflight_decisions", "Decisions in flight", multiprocess_mode="livesum")


_children: dict[tuple[object, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """A labelled child, cached: prometheus_client's labels() lookup was most of observe()'s cost."""
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def observe(record: DecisionRecord) -> None:
    observe_many((record,))


def observe_many(records: Iterable[DecisionRecord]) -> None:
    """Count stored decisions: their latencies one by one, and every counter once per label set with the
    sum of its records' increments (a batch's hundred decisions of one ruleset move each counter once; in
    a multi-process service every increment is a locked write to a shared file)."""
    sums: dict[tuple[Any, ...], float] = {}
    latencies: dict[str, list[float]] = {}
    get = sums.get
    for record in records:
        ruleset = record["ruleset"]
        latencies.setdefault(ruleset, []).append(record["latency_ms"] / 1000)
        key: tuple[Any, ...] = (DECISIONS, ruleset, record["outcome"])
        sums[key] = get(key, 0.0) + 1.0
        for rule in record["fired"]:
            key = (FIRED, ruleset, rule)
            sums[key] = get(key, 0.0) + 1.0
        for event in record["trace"]:
            if event["kind"] != "call" or event.get("carried"):  # carried: counted with the escalated decision
                continue
            meta = event.get("meta") or {}
            if event["type"] != "model":
                key = (TOOL_CALLS, event["action"], event["status"])
                sums[key] = get(key, 0.0) + 1.0
                continue
            model = str(meta.get("model") or "")
            key = (MODEL_CALLS, str(event["request"].get("group", "")), model, event["status"])
            sums[key] = get(key, 0.0) + 1.0
            for metric, field in ((TOKENS, "total_tokens"), (COST, "cost_usd")):
                if meta.get(field):
                    key = (metric, ruleset, model)
                    sums[key] = get(key, 0.0) + float(meta[field])
    for (metric, *labels), amount in sums.items():
        _child(metric, *labels).inc(amount)
    for ruleset, amounts in latencies.items():
        observe_all(_child(LATENCY, ruleset), amounts)


def observe_all(histogram: Any, amounts: list[float]) -> None:
    """``histogram.observe(a)`` for each amount, with each bucket and the sum moved once: in multi-process mode
    every move is a locked write to a shared file, and observing a batch's latencies one at a time was most of
    counting it. The result is what observing them one by one gives (tests/adapters/test_metrics.py)."""
    bounds, buckets, total = (getattr(histogram, name, None) for name in ("_upper_bounds", "_buckets", "_sum"))
    if bounds is None or buckets is None or total is None or len(amounts) == 1:  # not prometheus_client's own
        for amount in amounts:
            histogram.observe(amount)
        return
    counts: dict[int, int] = {}
    for amount in amounts:
        if amount != amount:  # NaN: observe() moves the sum only
            continue
        i = bisect.bisect_left(bounds, amount)  # the first bound >= amount, as observe() finds it
        counts[i] = counts.get(i, 0) + 1
    total.inc(sum(amounts))
    for i, n in counts.items():
        if i < len(buckets):
            buckets[i].inc(n)


class StoreGauges(Collector):
    """Open escalations, and effects not yet delivered by status (pending, sending, dead), read from the
    store when scraped (cached 5 s). Delivered effects are counted as they are delivered
    (``baton_effect_attempts{result="delivered"}``), not by counting rows: the outbox keeps every
    delivered effect, and counting them on each scrape would cost more every day."""

    def __init__(self, db: str | None) -> None:
        self.db = db
        self.cached: tuple[float, list[GaugeMetricFamily]] = (0.0, [])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.monotonic()
        if now - self.cached[0] > 5:
            self.cached = (now, self._read())
        yield from self.cached[1]

    def _read(self) -> list[GaugeMetricFamily]:
        from adapters.infra.store.sql import SqlStore

        store = SqlStore(self.db, migrate=False)
        try:
            escalations = store.open_escalations_by_queue()
            effects = store.effects_by_status()
        finally:
            store.close()
        open_gauge = GaugeMetricFamily("baton_escalations_open", "Open escalations", labels=["queue"])
        for queue, n in escalations:
            open_gauge.add_metric([queue], n)
        effect_gauge = GaugeMetricFamily("baton_effects", "Effects in the outbox", labels=["status"])
        for status, n in effects:
            effect_gauge.add_metric([status], n)
        return [open_gauge, effect_gauge]


def serve_metrics(address: str, db: str | None) -> None:
    """Start the /metrics endpoint (in this process; in the parent when there are worker processes)."""
    host, _, port = address.rpartition(":")
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    registry.register(StoreGauges(db))
    start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
