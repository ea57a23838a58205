"""Integer primitives of the core: the arithmetic the HDL implements, bit for bit.

Every function accepts Python ints or numpy integer arrays (broadcast together) and computes in
``int64`` with explicit masks, so nothing overflows and nothing depends on numpy's casting rules.
``docs/core-model.md`` defines each one; the known-answer tests in ``tests/test_arith.py`` pin them.
"""

from __future__ import annotations

import numpy as np

from ..config import (COIN_NEVER, COIN_RANDOM_BITS, HASH_ROT_HI, HASH_ROT_LO, HASH_ROUNDS,
                      LEAK_OFF, MAX_INDEX, RAND_A_SHIFT, RAND_STREAM_SHIFT, SR_RANDOM_BITS)

__all__ = ["ceilsh", "decay", "leak", "saturate", "hash32", "tick_key", "rand", "rounding_shift",
           "sr", "coin"]

_M16 = 0xFFFF
_M32 = 0xFFFFFFFF


def _i64(x):
    return np.asarray(x, dtype=np.int64)


def saturate(x, lo, hi):
    """``min(max(x, lo), hi)``."""
    return np.clip(_i64(x), lo, hi)


def ceilsh(a, s):
    """``ceil(a / 2**s)`` for ``a >= 0``, as ``(a + 2**s - 1) >> s``."""
    a, s = _i64(a), _i64(s)
    return (a + (np.left_shift(1, s) - 1)) >> s


def decay(x, s):
    """One tick of trace decay: ``x - ceilsh(x, s)``. Reaches 0; ``s = 0`` clears at once."""
    x = _i64(x)
    return x - ceilsh(x, s)


def leak(v, s):
    """One tick of membrane leak toward 0: ``v - sign(v) * ceilsh(|v|, s)``; none if s is LEAK_OFF."""
    v, s = _i64(v), _i64(s)
    step = ceilsh(np.abs(v), np.minimum(s, LEAK_OFF - 1))
    return np.where(s >= LEAK_OFF, v, v - np.sign(v) * step)


def _rotr16(x, r):
    return ((x >> r) | (x << (16 - r))) & _M16


def _rotl16(x, r):
    return ((x << r) | (x >> (16 - r))) & _M16


def hash32(x):
    """The 32-bit permutation behind every random draw.

    Eight rounds of a Speck32-style add-rotate-xor round on the halves ``hi = x[31:16]``,
    ``lo = x[15:0]``, with the round index as round key::

        hi = ((rotr16(hi, 7) + lo) mod 2**16) ^ i
        lo = rotl16(lo, 2) ^ hi

    It needs no multiplier: each round is one 16-bit adder and two rows of xors.
    """
    x = _i64(x) & _M32
    hi, lo = x >> 16, x & _M16
    for i in range(HASH_ROUNDS):
        hi = ((_rotr16(hi, HASH_ROT_HI) + lo) & _M16) ^ i
        lo = _rotl16(lo, HASH_ROT_LO) ^ hi
    return (hi << 16) | lo


def tick_key(seed, t):
    """The key of tick ``t``: ``hash32(hash32(t mod 2**32) ^ seed)``, computed once per tick."""
    return hash32(hash32(_i64(t) & _M32) ^ (_i64(seed) & _M32))


def rand(key, stream, a, b):
    """Draw ``RAND(stream, a, b)`` of the tick whose key is ``key``: a uniform 32-bit value.

    The draw is ``hash32(key ^ (stream << 28 | a << 14 | b))``: it depends only on the seed, the
    tick and (stream, a, b), so the order in which the hardware walks synapses cannot change it.
    """
    stream, a, b = _i64(stream), _i64(a), _i64(b)
    if np.any((a < 0) | (a > MAX_INDEX) | (b < 0) | (b > MAX_INDEX)):
        raise ValueError(f"random draw indices must be in 0..{MAX_INDEX}")
    word = (stream << RAND_STREAM_SHIFT) | (a << RAND_A_SHIFT) | b
    return hash32((_i64(key) & _M32) ^ word)


def rounding_shift(shift, gate):
    """The shift of one synapse update: ``min(shift + gate, 24)``.

    ``shift`` is ``SHIFT_PLUS`` or ``SHIFT_MINUS`` and ``gate`` the ``GATE_SHIFT`` of the
    synapse's level; their sum (up to 39) saturates at the 24 random bits that :func:`sr` compares.
    A total of 24 or more rounds as 24 does (a zero quotient, a mean step of ``num / 2**24``),
    which is not what a literal longer shift would give (``docs/core-model.md`` section 3.3).
    """
    return np.minimum(_i64(shift) + _i64(gate), SR_RANDOM_BITS)


def sr(num, sh, r):
    """Stochastic rounding of ``num / 2**sh`` for ``num >= 0``, ``0 <= sh <= 24``.

    ``q = num >> sh``; the result is ``q + 1`` when the low ``sh`` bits of the draw ``r`` are
    below the remainder ``num - (q << sh)``, else ``q``. Its mean is exactly ``num / 2**sh``.
    """
    num, sh, r = _i64(num), _i64(sh), _i64(r)
    if np.any(sh > SR_RANDOM_BITS) or np.any(sh < 0) or np.any(num < 0):
        raise ValueError(f"sr needs num >= 0 and 0 <= sh <= {SR_RANDOM_BITS}")
    mask = np.left_shift(1, sh) - 1
    q = num >> sh
    return q + ((r & mask) < (num & mask))


def coin(k, r):
    """A coin that comes up with probability ``2**-k``: ``r[31:24] < 256 >> k``; never for k > 8."""
    k, r = _i64(k), _i64(r)
    top = (r >> (32 - COIN_RANDOM_BITS)) & ((1 << COIN_RANDOM_BITS) - 1)
    limit = np.right_shift(1 << COIN_RANDOM_BITS, np.minimum(k, COIN_NEVER))
    return (k < COIN_NEVER) & (top < limit)
