"""Known answers and properties of the core's integer primitives (docs/core-model.md, section 3)."""

import numpy as np
import pytest

from plasticore.sim.arith import (ceilsh, coin, decay, hash32, leak, rand, rounding_shift, sr,
                                   tick_key)


@pytest.mark.parametrize("x, expected", [
    (0, 0x5F1CA58D), (1, 0x8F92950D), (0x12345678, 0x09F82BDF), (0xFFFFFFFF, 0x210F9AE1)])
def test_hash_known_answers(x, expected):
    assert int(hash32(x)) == expected


def test_tick_key_and_draw_known_answers():
    assert int(tick_key(1, 0)) == 0xA9E1E107
    assert int(tick_key(1, 1)) == 0xE535009F
    assert int(rand(tick_key(1, 5), 2, 3, 7)) == 0xD4883601


def test_hash_is_a_permutation_on_a_block():
    # A permutation cannot collide: 2^16 consecutive inputs must give 2^16 distinct outputs.
    outputs = hash32(np.arange(1 << 16) + 0xABC0000)
    assert np.unique(outputs).size == 1 << 16


def test_hash_vectorised_equals_scalar():
    xs = np.random.default_rng(3).integers(0, 2**32, 200, dtype=np.int64)
    assert [int(h) for h in hash32(xs)] == [int(hash32(int(x))) for x in xs]


def test_draws_are_uniform_and_distinct_per_index():
    key = tick_key(7, 123)
    s, j = np.meshgrid(np.arange(128), np.arange(128), indexing="ij")
    r = rand(key, 2, s, j).ravel()
    assert np.unique(r).size == r.size
    # Each of the 32 bits is set in half the draws, within 5 standard deviations.
    bits = (r[:, None] >> np.arange(32)) & 1
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 5 * 0.5 / np.sqrt(r.size))


def test_draws_differ_between_streams_ticks_and_seeds():
    base = int(rand(tick_key(1, 5), 2, 3, 7))
    assert base != int(rand(tick_key(1, 5), 1, 3, 7))
    assert base != int(rand(tick_key(1, 6), 2, 3, 7))
    assert base != int(rand(tick_key(2, 5), 2, 3, 7))
    assert base != int(rand(tick_key(1, 5), 2, 7, 3))


def test_draw_rejects_indices_beyond_14_bits():
    with pytest.raises(ValueError, match="0..16383"):
        rand(0, 1, 16384, 0)


@pytest.mark.parametrize("n, s, r, expected", [
    (5, 2, 0, 2), (5, 2, 1, 1), (5, 2, 2, 1), (5, 2, 3, 1), (5, 2, 4, 2),
    (8, 2, 0, 2), (8, 2, 3, 2), (7, 0, 0xFFFFFF, 7), (0, 5, 0, 0),
    (1, 24, 0, 1), (1, 24, 1, 0), (0xFFFF, 16, 0xFFFE, 1), (0xFFFF, 16, 0xFFFF, 0)])
def test_stochastic_rounding_known_answers(n, s, r, expected):
    assert int(sr(n, s, r)) == expected


def test_stochastic_rounding_is_unbiased():
    # Over all 2^s values of the low random bits, SR rounds up exactly n mod 2^s times.
    for n in (0, 1, 37, 255, 1000):
        for s in (0, 1, 3, 6):
            total = int(sr(n, s, np.arange(1 << s)).sum())
            assert total == n, (n, s)


def test_stochastic_rounding_rejects_bad_arguments():
    # SR itself is defined for shifts up to 24 only; an update's shift is clamped before it.
    with pytest.raises(ValueError, match="0 <= sh <= 24"):
        sr(1, 25, 0)
    with pytest.raises(ValueError, match="num >= 0"):
        sr(-1, 2, 0)


@pytest.mark.parametrize("shift, gate, expected", [
    (0, 0, 0), (12, 6, 18), (18, 6, 24), (20, 4, 24), (20, 6, 24), (24, 1, 24), (24, 15, 24),
    (9, 15, 24), (0, 15, 15)])
def test_rounding_shift_is_the_sum_clamped_at_24(shift, gate, expected):
    assert int(rounding_shift(shift, gate)) == expected


def test_rounding_shift_broadcasts():
    gates = np.array([0, 4, 5, 6, 15])
    assert rounding_shift(20, gates).tolist() == [20, 24, 24, 24, 24]


def test_a_clamped_shift_rounds_as_24_not_as_the_literal_shift():
    # docs/core-model.md 3.3: from 16 on the quotient is 0, and at 24 the step is 1 exactly when
    # the draw's low 24 bits are below the product, whatever the top 8 bits (the coin's).
    n = 255 * 255
    draws = np.array([0, n - 1, n, 0xFFFFFF, 0xFF000000 | (n - 1), 0xFF000000 | n, 1 << 24])
    clamped = sr(n, rounding_shift(20, 6), draws)
    assert clamped.tolist() == [1, 1, 0, 0, 1, 0, 1]
    assert clamped.tolist() == sr(n, 24, draws).tolist()
    # A literal shift of 26 would compare the draw's low 26 bits: 1 << 24 would not round up.
    assert (draws[-1] & ((1 << 26) - 1)) >= n


def test_coin_probabilities_are_exact_over_the_top_byte():
    tops = np.arange(256) << 24
    for k in range(9):
        assert int(coin(k, tops).sum()) == 256 >> k
    for k in (9, 10, 15):
        assert not np.any(coin(k, tops))


def test_ceilsh_decay_leak():
    assert [int(ceilsh(a, 2)) for a in (0, 1, 4, 5)] == [0, 1, 1, 2]
    # Decay reaches zero (the floor version would stall at 2^s - 1).
    x, steps = 255, 0
    while x:
        x, steps = int(decay(x, 3)), steps + 1
    assert steps < 60
    assert int(decay(200, 0)) == 0
    assert [int(leak(v, 4)) for v in (100, -100, 1, -1, 0)] == [93, -93, 0, 0, 0]
    assert int(leak(-32768, 0)) == 0
    assert int(leak(1234, 15)) == 1234  # 15 is "no leak"
