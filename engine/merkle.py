"""RFC 9162 (Certificate Transparency 2.0) Merkle trees, section 2.1: tree heads, inclusion proofs and
consistency proofs over a log of leaves, and their verification.

A leaf's hash is SHA-256(0x00 || leaf), an interior node's SHA-256(0x01 || left || right); the tree over
n leaves splits at the largest power of two below n, so every subtree of 2**level leaves starts at a
multiple of 2**level and is never rebuilt once complete. The functions here read a tree through a
``NodeSource``: (level, index) -> the hash of the complete subtree of leaves
[index * 2**level, (index + 1) * 2**level). A source may keep every level or only some and compute the
rest (``Tree`` keeps the leaves and the levels from ``keep_from`` up; the store keeps the same in its
tables); proofs then read O(log n) nodes.

``Frontier`` is the compact form a writer keeps: the roots of the complete subtrees that make up the
tree, one per set bit of its size, enough to append leaves and compute the root without the leaves."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}): the root of the empty tree
NodeSource = Callable[[int, int], bytes]


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hash(start: int, end: int, node: NodeSource) -> bytes:
    """MTH(D[start:end]) for a subtree of RFC 9162's shape: ``start`` a multiple of the smallest power of
    two not below end - start (every subtree the recursion of section 2.1.1 meets is)."""
    n = end - start
    if n <= 0:
        raise ValueError(f"empty subtree [{start}:{end}]")
    if n & (n - 1) == 0:
        level = n.bit_length() - 1
        return node(level, start >> level)
    k = _split(n)
    return node_hash(subtree_hash(start, start + k, node), subtree_hash(start + k, end, node))


def root(size: int, node: NodeSource) -> bytes:
    """The tree head of the first ``size`` leaves."""
    if size < 0:
        raise ValueError(f"tree size {size} is negative")
    return EMPTY_ROOT if size == 0 else subtree_hash(0, size, node)


def inclusion_proof(index: int, size: int, node: NodeSource) -> list[bytes]:
    """PATH(index, D[0:size]) (section 2.1.3.1), leaf side first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(subtree_hash(start + k, end, node))
            end = start + k
        else:
            path.append(subtree_hash(start, start + k, node))
            start += k
    path.reverse()
    return path


def consistency_proof(old: int, new: int, node: NodeSource) -> list[bytes]:
    """PROOF(old, D[0:new]) (section 2.1.4.1): empty when old is 0 or equal to new."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from a tree of {old} to one of {new}")
    if old in (0, new):
        return []
    proof: list[bytes] = []
    start, end, m, whole = 0, new, old, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(subtree_hash(start + k, end, node))
            end = start + k
        else:
            proof.append(subtree_hash(start, start + k, node))
            start, m, whole = start + k, m - k, False
    if not whole:
        proof.append(subtree_hash(start, end, node))
    proof.reverse()
    return proof


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes) -> bool:
    """Whether ``proof`` shows the leaf hash ``leaf`` at ``index`` in the tree of ``size`` with root
    ``expected_root`` (section 2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == expected_root


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` shows the tree of ``old`` leaves (root ``old_root``) is a prefix of the tree of
    ``new`` leaves (root ``new_root``) (section 2.1.4.2; sizes 0 and equal sizes need an empty proof)."""
    if not 0 <= old <= new:
        return False
    if old == 0:
        return not proof
    if old == new:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0


class Frontier:
    """The roots of the complete subtrees a tree of ``size`` leaves is made of, largest first (one per set
    bit of the size). Appending a leaf returns the subtrees it completes as (level, index, hash)."""

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} frontier hashes, not {len(hashes)}")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; the complete subtrees it closes, level 0 (the leaf) first."""
        index, h = self.size, leaf
        done = [(0, index, h)]
        level = 0
        while index & 1:
            h = node_hash(self.hashes.pop(), h)
            index >>= 1
            level += 1
            done.append((level, index, h))
        self.hashes.append(h)
        self.size += 1
        return done

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = node_hash(h, r)
        return r

    def to_hex(self) -> str:
        return "".join(h.hex() for h in self.hashes)

    @classmethod
    def from_hex(cls, size: int, text: str) -> Frontier:
        return cls(size, [bytes.fromhex(text[i:i + 64]) for i in range(0, len(text), 64)])


class Tree:
    """A tree in memory: its leaf hashes and its complete subtrees of level ``keep_from`` and up; the levels
    between are computed from the leaves when a proof needs them (at most 2**keep_from leaves each)."""

    def __init__(self, keep_from: int = 6) -> None:
        self.keep_from = keep_from
        self.leaves = bytearray()
        self.frontier = Frontier()
        self.nodes: dict[tuple[int, int], bytes] = {}

    @property
    def size(self) -> int:
        return self.frontier.size

    def append(self, leaf: bytes) -> None:
        self.leaves += leaf
        for level, index, h in self.frontier.append(leaf):
            if level >= self.keep_from and level:
                self.nodes[(level, index)] = h

    def node(self, level: int, index: int) -> bytes:
        if level == 0:
            if not 0 <= index < self.size:
                raise ValueError(f"leaf {index} is not in a tree of {self.size}")
            return bytes(self.leaves[32 * index:32 * index + 32])
        kept = self.nodes.get((level, index))
        if kept is not None:
            return kept
        if (index + 1) << level > self.size:
            raise ValueError(f"the subtree ({level}, {index}) is not complete in a tree of {self.size}")
        return node_hash(self.node(level - 1, 2 * index), self.node(level - 1, 2 * index + 1))

    def root(self, size: int | None = None) -> bytes:
        return self.frontier.root() if size is None or size == self.size else root(size, self.node)
