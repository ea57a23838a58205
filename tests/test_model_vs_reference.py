"""The golden model against an independent scalar reading of docs/core-model.md.

``tests/scalar_reference.py`` transcribes §3 and §4 of the document one synapse at a time with
plain Python ints, walking synapses and neurons in reverse order. Here both run on random core
images (random registers within their legal ranges, random neuron parameters biased so that
neurons fire, random synapse words including frozen, disabled, tagged and above-W_MAX ones, random
initial state) with random input spikes and learn flags, and every tick's spikes, neuron state,
traces, tick counter and every synapse word are compared. A coverage test checks that the runs
exercise spikes, LTP, LTD, consolidation, WTA, refractoriness, recurrent delivery and θ
adaptation and decay, so that agreement is not vacuous.
"""

from __future__ import annotations

import functools
from collections import Counter

import numpy as np
import pytest

from plasticore.config import CoreConfig
from plasticore.image import CoreImage
from plasticore.sim.model import GoldenModel

from plasticore.sim.stimulus import random_image, random_stimulus
from scalar_reference import ScalarCore, coin, hash32, key, rand, sr, syn_unpack

SEEDS = list(range(12))
TICKS = 60



# --- Known answers of §3.2 and §3.3 -----------------------------------------------------------

@pytest.mark.parametrize("x, expected", [
    (0x00000000, 0x5F1CA58D),
    (0x00000001, 0x8F92950D),
    (0x12345678, 0x09F82BDF),
    (0xFFFFFFFF, 0x210F9AE1),
])
def test_hash_known_answers(x, expected):
    assert hash32(x) == expected, f"H({x:#010x}) = {hash32(x):#010x}, doc says {expected:#010x}"


@pytest.mark.parametrize("t, expected", [(0, 0xA9E1E107), (1, 0xE535009F)])
def test_key_known_answers(t, expected):
    assert key(t, 1) == expected, f"KEY({t}) = {key(t, 1):#010x}, doc says {expected:#010x}"


def test_rand_known_answer():
    got = rand(key(5, 1), 2, 3, 7)
    assert got == 0xD4883601, f"RAND(2, 3, 7) at t = 5 = {got:#010x}, doc says 0xD4883601"


def test_hash_is_a_permutation_on_a_sample():
    rng = np.random.default_rng(99)
    xs = {int(a) for a in rng.integers(0, 2**32, 20000, dtype=np.uint64)}
    assert len({hash32(x) for x in xs}) == len(xs)


def test_sr_and_coin_known_answers():
    for r in range(64):
        assert sr(5, 2, r) == (2 if r % 4 == 0 else 1)
        assert sr(8, 2, r) == 2
        assert sr(37, 0, r) == 37
    # SR is exactly unbiased over a full period of its random bits
    for n in (0, 1, 5, 77, 65025):
        for s in (0, 1, 3, 8):
            assert sum(sr(n, s, r) for r in range(2**s)) == n
    # COIN(k) comes up for exactly 256 >> k of the 256 top bytes; never for k > 8
    for k in range(12):
        ups = sum(coin(k, top << 24) for top in range(256))
        assert ups == (256 >> k if k <= 8 else 0)


# --- Random images ----------------------------------------------------------------------------

# --- Comparison -------------------------------------------------------------------------------

def _describe_word(word: int) -> str:
    f = syn_unpack(int(word))
    return f"{int(word):#06x} (w={f['w']} p={f['p']} c={f['c']} tag={f['tag']} en={f['en']})"


def first_difference(tick: int, model, model_spikes, ref: ScalarCore, ref_spikes) -> str | None:
    """The first mismatch between the model and the reference after ``tick``, or None."""
    n = ref.n_neurons
    ms = [bool(b) for b in np.asarray(model_spikes).tolist()]
    rs = [j in set(ref_spikes) for j in range(n)]
    if len(ms) != n:
        return f"tick {tick}: spikes has length {len(ms)}, expected {n}"
    for j in range(n):
        if ms[j] != rs[j]:
            return f"tick {tick}: field spike, neuron {j}: model={ms[j]} reference={rs[j]}"
    st = model.state
    for name, what in (("v", "neuron"), ("th", "neuron"), ("ref", "neuron"), ("y", "neuron"),
                       ("x", "source"), ("last_spikes", "neuron")):
        mv = [int(a) for a in np.asarray(getattr(st, name)).tolist()]
        rv = [int(a) for a in getattr(ref, name)]
        if len(mv) != len(rv):
            return f"tick {tick}: field {name} has length {len(mv)}, expected {len(rv)}"
        for i, (a, b) in enumerate(zip(mv, rv)):
            if a != b:
                return f"tick {tick}: field {name}, {what} {i}: model={a} reference={b}"
    if int(st.t) != ref.t:
        return f"tick {tick}: field t: model={int(st.t)} reference={ref.t}"
    msyn = np.asarray(model.synapses)
    if msyn.shape != (ref.n_sources, n):
        return f"tick {tick}: synapses has shape {msyn.shape}, expected {(ref.n_sources, n)}"
    rows = msyn.tolist()
    for s in range(ref.n_sources):
        for j in range(n):
            a, b = int(rows[s][j]), ref.synapses[s][j]
            if a != b:
                return (f"tick {tick}: field synapse, synapse (s={s}, j={j}): "
                        f"model={_describe_word(a)} reference={_describe_word(b)}")
    return None


def run_side_by_side(image: CoreImage, spikes, learn, label: str):
    """Run model and reference on ``image``; return (first mismatch or None, event counts)."""
    ref = ScalarCore(image.copy())
    model = GoldenModel(image.copy())
    # the initial state must already agree
    mismatch = first_difference(-1, model, np.zeros(image.config.n_neurons, bool), ref, [])
    if mismatch is not None:
        return f"{label}, before the first tick: {mismatch}", Counter(ref.events)
    for tick in range(len(learn)):
        ref_out = ref.tick(spikes[tick].tolist(), bool(learn[tick]))
        model_out = model.tick(spikes[tick].copy(), learn=bool(learn[tick]))
        mismatch = first_difference(tick, model, model_out, ref, ref_out)
        if mismatch is not None:
            cfg = image.config
            return (f"{label} ({cfg.n_inputs} inputs, {cfg.n_neurons} neurons, "
                    f"{cfg.n_recurrent} recurrent), learn={bool(learn[tick])}: {mismatch}",
                    Counter(ref.events))
    return None, Counter(ref.events)


@functools.lru_cache(maxsize=None)
def run_seed(seed: int, sizes: tuple | None = None):
    """The random image and stimulus of ``seed``, run side by side."""
    image = random_image(seed, sizes)
    spikes, learn = random_stimulus(seed, image.config.n_inputs)
    return run_side_by_side(image, spikes, learn, f"seed {seed}")


@pytest.mark.parametrize("seed", SEEDS)
def test_model_matches_scalar_reference(seed):
    mismatch, events = run_seed(seed)
    assert mismatch is None, mismatch
    assert events["spikes"] > 0, f"seed {seed}: no neuron ever spiked, the comparison is vacuous"


#: Events that must happen at least once across the seeds for the comparison to mean something.
REQUIRED_EVENTS = (
    "spikes", "ltp_weight_increase", "ltd_weight_decrease", "ltp_writes", "ltd_writes",
    "consol_count", "consol_promotion", "consol_decrement", "wta_competition",
    "wta_pool_reset_loser", "refractory_skip", "recurrent_events", "th_increase", "th_decay",
    "v_saturated", "v_saturation_order_matters", "th_saturated", "t_wrap",
)


def test_comparison_is_not_vacuous():
    total = Counter()
    for seed in SEEDS:
        total.update(run_seed(seed)[1])
    missing = [e for e in REQUIRED_EVENTS if total[e] == 0]
    assert not missing, f"events never exercised across seeds {SEEDS}: {missing}; counts {total}"



#: Edge sizes: no input axons (recurrent drive only), one neuron, every neuron recurrent, one
#: input and no recurrence.
EDGE_SIZES = [(0, 4, 4), (0, 1, 1), (5, 1, 0), (6, 1, 1), (4, 6, 6), (1, 3, 0)]


@pytest.mark.parametrize("sizes", EDGE_SIZES, ids=lambda z: "in%d-n%d-rec%d" % z)
@pytest.mark.parametrize("seed", [100, 101])
def test_model_matches_scalar_reference_edge_sizes(seed, sizes):
    mismatch, _ = run_seed(seed, sizes)
    assert mismatch is None, mismatch


def _tie_image(n_pool: int, first: int) -> CoreImage:
    """``n_pool`` identical WTA neurons from index ``first`` on, non-pool neurons around them:
    every pool candidate ties, every tick."""
    cfg = CoreConfig(n_inputs=2, n_neurons=first + n_pool + 1, n_recurrent=1)
    image = CoreImage.blank(cfg)
    n = cfg.n_neurons
    image.neuron_params["threshold"][:] = 10
    image.neuron_params["wta"][first:first + n_pool] = 1
    image.neuron_params["reset"][:] = -5
    image.neuron_params["refractory"][:] = 0
    image.neuron_params["th_plus"][:] = 0       # the winner's threshold must not move away
    image.synapses[:] = (50 << 8) | (1 << 5)    # en = 0: learning must not break the tie
    image.state.th[:] = 3
    image.state.y[:] = 100
    image.state.x[:] = 200
    assert n == first + n_pool + 1
    return image.validate()


@pytest.mark.parametrize("n_pool, first", [(2, 0), (3, 1), (4, 2)])
def test_wta_tie_goes_to_the_lowest_index(n_pool, first):
    """§4 C: the winner is the pool candidate with the largest v - thr, the lowest index on a tie.
    Ties are too rare in the random images to test this there."""
    image = _tie_image(n_pool, first)
    ticks = 6
    spikes = np.ones((ticks, image.config.n_inputs), bool)
    learn = np.ones(ticks, bool)
    mismatch, events = run_side_by_side(image, spikes, learn, f"tie n_pool={n_pool}")
    assert mismatch is None, mismatch
    assert events["wta_tie"] >= ticks, events
    ref = ScalarCore(image.copy())
    model = GoldenModel(image.copy())
    out = model.tick(spikes[0].copy(), learn=True)
    expected = list(range(first)) + [first, first + n_pool]   # non-pool neurons fire too
    assert ref.tick(spikes[0].tolist(), True) == expected
    assert np.flatnonzero(out).tolist() == expected


@pytest.mark.parametrize("q0", [7, 8, 9])
def test_consolidation_coin_boundary(q0):
    """§3.3: COIN(k) comes up with probability 2^-k for k <= 8 and never for k > 8. The random
    images toss too few coins to tell k = 8 from k = 9 apart, so here every one of 64 x 16
    synapses is potentiated (hard bounds: a step > 0 every time) on every tick."""
    cfg = CoreConfig(n_inputs=64, n_neurons=16, n_recurrent=0)
    image = CoreImage.blank(cfg)
    regs = image.registers
    regs.update(SOFT_BOUNDS=0, A_PLUS=1, SHIFT_PLUS=0, LTD_EN=0, CONSOL_Q0=q0, CONSOL_QS=0,
                CONSOL_C_MAX=1, P_LEARN_MAX=6, SEED=12345)
    for p in range(7):
        regs[f"GATE_SHIFT_{p}"] = 0
    image.neuron_params["threshold"][:] = 0
    image.synapses[:] = (10 << 8) | 1
    ticks = 8
    spikes = np.ones((ticks, cfg.n_inputs), bool)
    mismatch, events = run_side_by_side(image.validate(), spikes, np.ones(ticks, bool),
                                        f"coin q0={q0}")
    assert mismatch is None, mismatch
    assert events["ltp_writes"] + events["consol_promotion"] > 0
    draws = ticks * cfg.n_inputs * cfg.n_neurons
    if q0 <= 8:
        assert events["consol_promotion"] > 0.25 * draws / 2**q0, events
    else:
        assert events["consol_promotion"] == 0, events


# --- Clamped shifts (§3.3) --------------------------------------------------------------------

def _large_shift_image(seed: int) -> CoreImage:
    """The random image of ``seed`` with every shift and gate drawn over its whole range, so that
    most totals SHIFT_x + GATE(p) are above 24 (clamped) and some are not."""
    image = random_image(seed)
    rng = np.random.default_rng(500 + seed)
    regs = image.registers
    for p in range(7):
        regs[f"GATE_SHIFT_{p}"] = int(rng.integers(0, 16))
    regs["SHIFT_PLUS"] = int(rng.integers(9, 25))
    regs["SHIFT_MINUS"] = int(rng.integers(9, 25))
    return image.validate()


@pytest.mark.parametrize("seed", range(6))
def test_model_matches_scalar_reference_with_clamped_shifts(seed):
    image = _large_shift_image(seed)
    spikes, learn = random_stimulus(seed, image.config.n_inputs)
    mismatch, events = run_side_by_side(image, spikes, learn, f"large shifts, seed {seed}")
    assert mismatch is None, mismatch
    assert events["shift_clamped"] > 0, events


def _dense_image(shift: int, gate: int) -> CoreImage:
    """32 inputs firing every tick onto 16 neurons that fire every tick, every synapse plastic,
    hard bounds with the largest product (255 · 255): 512 potentiations and depressions a tick."""
    cfg = CoreConfig(n_inputs=32, n_neurons=16, n_recurrent=0)
    image = CoreImage.blank(cfg)
    image.registers.update(SOFT_BOUNDS=0, A_PLUS=255, A_MINUS=255, X_INC=255, Y_INC=255,
                           SHIFT_PLUS=shift, SHIFT_MINUS=shift, SEED=777,
                           **{f"GATE_SHIFT_{p}": gate for p in range(7)})
    image.neuron_params["threshold"][:] = 0
    image.synapses[:] = (100 << 8) | ((np.arange(32 * 16).reshape(32, 16) % 7) << 5) | 1
    return image.validate()


def test_shift_20_plus_gate_6_steps_as_24_in_model_and_reference():
    """SHIFT_PLUS = SHIFT_MINUS = 20 with every gate 6 (a total of 26): the reference, written
    from the document's min(SHIFT_x + GATE(p), 24), agrees with the model tick by tick, clamped
    updates do step, and both end where a total of exactly 24 (18 + 6) ends."""
    ticks = 8
    spikes = np.ones((ticks, 32), bool)
    learn = np.ones(ticks, bool)
    image = _dense_image(20, 6)
    mismatch, events = run_side_by_side(image, spikes, learn, "SHIFT 20 + GATE 6")
    assert mismatch is None, mismatch
    assert events["shift_clamped_step"] > 10, events
    ref = ScalarCore(image.copy())
    for tick in range(ticks):
        ref.tick(spikes[tick].tolist(), True)
    at_24 = GoldenModel(_dense_image(18, 6))
    at_24.run(ticks, spikes)
    assert ref.synapses == at_24.synapses.astype(int).tolist()
