"""Thousands of malformed Decide requests: every one is INVALID_ARGUMENT, the server stays up, nothing
is stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.doors.grpc.gen.baton.v1 import decision_pb2
from adapters.infra.store.sql import SqlStore
from tests.e2e.server import Server, metadata, start

pytestmark = pytest.mark.slow  # a real server, browser or broker per module

VALID = {"claim_ref": "C-1", "amount": 800, "policy_ref": "P-1", "description": "d", "customer_tier": "gold"}
COUNT = {"n": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start(tmp_path_factory.mktemp("fuzz"))
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def raw_decide(server: Server) -> Iterator[Any]:
    channel = server.channel()
    yield channel.unary_unary("/baton.v1.DecisionService/Decide", request_serializer=lambda b: b,
                              response_deserializer=decision_pb2.DecideResponse.FromString)
    channel.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8)


def _fact(type_: str, values: dict[str, Any]) -> decision_pb2.Fact:
    s = struct_pb2.Struct()
    s.update(values)
    return decision_pb2.Fact(type=type_, values=s)


def _valid_value(name: str, value: Any) -> bool:
    if name in ("claim_ref", "policy_ref", "description"):
        return isinstance(value, str) and len(value) < 4000
    if name == "amount":
        return isinstance(value, float) and value >= 0
    return value in ("gold", "standard")


def broken_facts() -> st.SearchStrategy[list[decision_pb2.Fact]]:
    field = st.sampled_from(list(VALID))
    wrong_type = st.tuples(field, json_values).filter(lambda t: not _valid_value(*t)).map(
        lambda t: {**VALID, t[0]: t[1]})
    missing = field.map(lambda f: {k: v for k, v in VALID.items() if k != f})
    unknown = st.text(min_size=1, max_size=10).filter(lambda k: k not in VALID).map(lambda k: {**VALID, k: 1})
    huge = st.just({**VALID, "description": "x" * 5000})
    negative = st.floats(max_value=-0.001, allow_nan=False, allow_infinity=False).map(lambda a: {**VALID, "amount": a})
    claim = st.one_of(wrong_type, missing, unknown, huge, negative).map(lambda v: [_fact("claim", v)])
    other_type = st.sampled_from(["", "policy", "assessment", "risk", "failure", "nope", "claim "]).map(
        lambda t: [_fact(t, VALID)])
    return st.one_of(claim, other_type, st.just([]),
                     st.tuples(claim, other_type).map(lambda t: t[0] + t[1]))


def _len_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, written by hand (the library refuses to build deep nesting)."""
    size, out = len(payload), bytearray()
    while True:
        byte, size = size & 0x7F, size >> 7
        out.append(byte | (0x80 if size else 0))
        if not size:
            break
    return bytes([number << 3 | 2]) + bytes(out) + payload


def nested(depth: int) -> bytes:
    value = _len_field(3, b"x")  # Value.string_value
    for _ in range(depth):
        value = _len_field(6, _len_field(1, value))  # Value.list_value = ListValue{values: [value]}
    entry = _len_field(1, b"claim_ref") + _len_field(2, value)  # Struct.fields map entry
    fact = _len_field(1, b"claim") + _len_field(2, _len_field(1, entry))
    return _len_field(1, b"claims-triage") + _len_field(3, fact)


def bad_utf8(text_bytes: bytes) -> bytes:
    good = decision_pb2.DecideRequest(ruleset="claims-triage", facts=[_fact("claim", {**VALID, "claim_ref": "AAAA"})])
    return good.SerializeToString().replace(b"AAAA", text_bytes[:4].ljust(4, b"\xff"))


def expect_invalid(raw_decide: Any, payload: bytes) -> None:
    COUNT["n"] += 1
    with pytest.raises(grpc.RpcError) as info:
        raw_decide(payload, metadata=metadata("caller"), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()


@settings(max_examples=1900, deadline=None, suppress_health_check=list(HealthCheck))
@given(facts=broken_facts())
def test_malformed_facts_are_invalid_argument(raw_decide: Any, facts: list[decision_pb2.Fact]) -> None:
    expect_invalid(raw_decide, decision_pb2.DecideRequest(ruleset="claims-triage", facts=facts).SerializeToString())


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(min_size=1, max_size=4).filter(lambda b: not _is_utf8(b)) | st.sampled_from(
    [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80"]))
def test_bad_utf8_in_strings_is_invalid_argument(raw_decide: Any, data: bytes) -> None:
    expect_invalid(raw_decide, bad_utf8(data))


def _is_utf8(b: bytes) -> bool:
    try:
        b.ljust(4, b"\xff").decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_deep_nesting_and_garbage_bytes(raw_decide: Any) -> None:
    for payload in (nested(30), nested(200), nested(2000), b"\x0a\xff\xff\xff\xff\x0f", b"\xff" * 64):
        expect_invalid(raw_decide, payload)


def test_server_survived_and_stored_nothing(server: Server) -> None:
    assert COUNT["n"] >= 2000
    channel = server.channel()
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    channel.close()
    assert SqlStore(str(Path(server.db)), migrate=False).count() == 0
