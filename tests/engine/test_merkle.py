"""engine.merkle against a deliberately naive reference written straight from RFC 9162 section 2.1 (MTH, PATH,
PROOF/SUBPROOF as recursive functions over lists of leaves): random trees, every leaf, every pair of sizes;
and proofs that must fail once a hash, an index or a size is changed."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import merkle


# -- the reference: RFC 9162 2.1.1, 2.1.3.1, 2.1.4.1, word for word ----------------------------------------
def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def k_of(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return sha(b"")
    if n == 1:
        return sha(b"\x00" + d[0])
    k = k_of(n)
    return sha(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = k_of(n)
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = k_of(n)
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    return subproof(m, d, True)


# -- the module under test ----------------------------------------------------------------------------------
def built(leaves: list[bytes], keep_from: int) -> merkle.Tree:
    tree = merkle.Tree(keep_from)
    for leaf in leaves:
        tree.append(merkle.leaf_hash(leaf))
    return tree


leaf_lists = st.lists(st.binary(min_size=0, max_size=8), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(leaf_lists, st.integers(0, 4))
def test_roots_paths_and_proofs_match_the_rfc_text(leaves: list[bytes], keep_from: int) -> None:
    tree = built(leaves, keep_from)
    assert tree.root() == mth(leaves)
    for n in range(0, len(leaves) + 1):
        assert merkle.root(n, tree.node) == mth(leaves[:n]) == tree.root(n)
        for m in range(n):  # every leaf of every prefix
            p = merkle.inclusion_proof(m, n, tree.node)
            assert p == path(m, leaves[:n])
            assert merkle.verify_inclusion(merkle.leaf_hash(leaves[m]), m, n, p, mth(leaves[:n]))
        for m in range(1, n):  # every pair of sizes 0 < m < n
            c = merkle.consistency_proof(m, n, tree.node)
            assert c == proof(m, leaves[:n])
            assert merkle.verify_consistency(m, n, mth(leaves[:m]), mth(leaves[:n]), c)


def test_every_pair_of_sizes_up_to_70_against_the_reference() -> None:
    leaves = [i.to_bytes(2, "big") for i in range(70)]
    tree = built(leaves, 3)
    roots = [mth(leaves[:n]) for n in range(71)]
    for n in range(1, 71):
        for m in range(1, n):
            c = merkle.consistency_proof(m, n, tree.node)
            assert c == proof(m, leaves[:n]), (m, n)
            assert merkle.verify_consistency(m, n, roots[m], roots[n], c)
            assert not merkle.verify_consistency(m, n, roots[m - 1], roots[n], c)
            assert not merkle.verify_consistency(m, n, roots[m], roots[n - 1], c)


@settings(max_examples=60, deadline=None)
@given(leaf_lists, st.data())
def test_a_changed_proof_index_size_or_leaf_fails(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    tree = built(leaves, 2)
    r = mth(leaves)
    m = data.draw(st.integers(0, n - 1))
    p = merkle.inclusion_proof(m, n, tree.node)
    leaf = merkle.leaf_hash(leaves[m])
    if p:
        i = data.draw(st.integers(0, len(p) - 1))
        bad = [*p[:i], sha(p[i]), *p[i + 1:]]
        assert not merkle.verify_inclusion(leaf, m, n, bad, r)
        assert not merkle.verify_inclusion(leaf, m, n, p[:-1], r)
    assert not merkle.verify_inclusion(leaf, m, n, [*p, r], r)
    assert not merkle.verify_inclusion(sha(leaf), m, n, p, r)
    if leaves.count(leaves[m]) == 1:
        other = data.draw(st.integers(0, n - 1))
        if other != m:
            assert not merkle.verify_inclusion(leaf, other, n, p, r)
    assert not merkle.verify_inclusion(leaf, m, n + 1, p, mth([*leaves, b"x"]))
    assert not merkle.verify_inclusion(leaf, n, n, p, r)
    if n > 1:
        old = data.draw(st.integers(1, n - 1))
        c = merkle.consistency_proof(old, n, tree.node)
        assert not merkle.verify_consistency(old, n, sha(mth(leaves[:old])), r, c)
        assert not merkle.verify_consistency(old, n, mth(leaves[:old]), r, [sha(c[0]), *c[1:]])
        assert not merkle.verify_consistency(old, n, mth(leaves[:old]), r, [])
        if old + 1 < n:
            assert not merkle.verify_consistency(old + 1, n, mth(leaves[:old]), r, c)


def test_edge_sizes() -> None:
    tree = built([b"a", b"b", b"c"], 1)
    assert merkle.root(0, tree.node) == merkle.EMPTY_ROOT == sha(b"")
    assert merkle.consistency_proof(0, 3, tree.node) == [] == merkle.consistency_proof(3, 3, tree.node)
    assert merkle.verify_consistency(0, 3, merkle.EMPTY_ROOT, tree.root(), [])
    assert merkle.verify_consistency(3, 3, tree.root(), tree.root(), [])
    assert not merkle.verify_consistency(3, 3, tree.root(2), tree.root(), [])
    assert not merkle.verify_consistency(3, 2, tree.root(), tree.root(2), [])
    with pytest.raises(ValueError):
        merkle.inclusion_proof(3, 3, tree.node)
    with pytest.raises(ValueError):
        merkle.consistency_proof(4, 3, tree.node)
    with pytest.raises(ValueError):
        tree.node(2, 0)  # leaves 0-3: not complete in a tree of 3


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=4), max_size=70))
def test_the_frontier_round_trips_and_appends_like_a_fresh_tree(leaves: list[bytes]) -> None:
    f = merkle.Frontier()
    for i, leaf in enumerate(leaves):
        f = merkle.Frontier.from_hex(f.size, f.to_hex())
        done = f.append(merkle.leaf_hash(leaf))
        assert done[0] == (0, i, merkle.leaf_hash(leaf))
        for level, index, h in done:
            assert h == mth(leaves[index << level:(index + 1) << level])
        assert f.root() == mth(leaves[:i + 1])
    with pytest.raises(ValueError):
        merkle.Frontier(3, [merkle.EMPTY_ROOT])


# Certificate Transparency's reference test data (RFC 6962/9162 trees share the hashing): the roots of the
# first 1..8 of these leaves
CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_known_roots_of_certificate_transparency() -> None:
    tree = built([bytes.fromhex(x) for x in CT_LEAVES], 1)
    assert [tree.root(n).hex() for n in range(1, 9)] == CT_ROOTS
