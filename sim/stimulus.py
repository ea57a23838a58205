"""Random core images and stimuli for tests that compare implementations of the core.

Registers are drawn within their legal ranges (mostly from ranges where learning is lively),
neuron parameters are biased so that neurons fire, synapse words include frozen, disabled,
tagged and above-``W_MAX`` ones, and the initial state includes rails and tick counters near the
wrap-around. The same seed gives the same image on every machine.
"""

from __future__ import annotations

import numpy as np

from ..config import NEURON_PARAM_FIELDS, REGISTERS, CoreConfig
from ..image import CoreImage, NeuronState

__all__ = ["random_registers", "random_image", "random_stimulus"]

_PARAM = {f.name: f for f in NEURON_PARAM_FIELDS}
_REG = {r.name: r for r in REGISTERS}


def _pick(rng, lo, hi, active=None, p_active=0.75):
    """An int in lo..hi; with probability p_active from the narrower ``active`` range."""
    if active is not None and rng.random() < p_active:
        lo, hi = max(lo, active[0]), min(hi, active[1])
    return int(rng.integers(lo, hi + 1))


def random_registers(rng) -> dict:
    regs = {}
    gates = [_pick(rng, 0, 15, (0, 3)) for _ in range(7)]
    for p, g in enumerate(gates):
        regs[f"GATE_SHIFT_{p}"] = g
    # SHIFT + max(GATE) <= 24 keeps updates lively. Larger totals are legal (the shift clamps at
    # 24, docs/core-model.md section 3.3); the tests that exercise them set them on purpose.
    room = _REG["SHIFT_PLUS"].hi - max(gates)
    regs["SHIFT_PLUS"] = _pick(rng, 0, room, (0, min(room, 9)))
    regs["SHIFT_MINUS"] = _pick(rng, 0, room, (0, min(room, 10)))
    regs["SEED"] = int(rng.integers(0, 2**32, dtype=np.uint64))
    regs["W_MAX"] = _pick(rng, 1, 255, (100, 255))
    regs["LTP_EN"] = int(rng.random() < 0.85)
    regs["LTD_EN"] = int(rng.random() < 0.85)
    regs["SOFT_BOUNDS"] = int(rng.integers(0, 2))
    regs["A_PLUS"] = _pick(rng, 0, 255, (32, 255))
    regs["A_MINUS"] = _pick(rng, 0, 255, (32, 255))
    regs["X_DECAY_SHIFT"] = _pick(rng, 0, 15, (1, 4))
    regs["Y_DECAY_SHIFT"] = _pick(rng, 0, 15, (1, 4))
    regs["X_INC"] = _pick(rng, 0, 255, (64, 255))
    regs["Y_INC"] = _pick(rng, 0, 255, (64, 255))
    regs["TRACE_ALL_TO_ALL"] = int(rng.integers(0, 2))
    regs["CONSOL_EN"] = int(rng.random() < 0.85)
    regs["CONSOL_Q0"] = _pick(rng, 0, 15, (0, 2))
    regs["CONSOL_QS"] = _pick(rng, 0, 3)
    regs["CONSOL_C_MAX"] = _pick(rng, 1, 8, (1, 3))
    regs["P_LEARN_MAX"] = _pick(rng, 0, 6, (2, 6))
    regs["TH_SHIFT"] = _pick(rng, 0, 15, (0, 4))
    regs["TH_DECAY_SHIFT"] = _pick(rng, 0, 16, (0, 6))
    regs["TH_DECAY_PERIOD"] = _pick(rng, 0, 15, (0, 2))
    assert set(regs) == set(_REG), set(_REG) ^ set(regs)
    for name, value in regs.items():
        r = _REG[name]
        assert r.lo <= value <= r.hi, (name, value)
    return regs


def random_image(seed: int, sizes: tuple | None = None, ticks: int = 60) -> CoreImage:
    """A random valid image; ``sizes`` = (n_inputs, n_neurons, n_recurrent) overrides the draw."""
    rng = np.random.default_rng(seed)
    n_inputs = int(rng.integers(3, 13))
    n_neurons = int(rng.integers(2, 11))
    n_recurrent = int(rng.integers(0, n_neurons + 1))
    if sizes is not None:
        n_inputs, n_neurons, n_recurrent = sizes
    cfg = CoreConfig(n_inputs=n_inputs, n_neurons=n_neurons, n_recurrent=n_recurrent)
    n, s = cfg.n_neurons, cfg.n_sources

    regs = random_registers(rng)

    def field(name, lo, hi, p_full=0.15):
        f = _PARAM[name]
        full = rng.integers(f.lo, f.hi + 1, n)
        narrow = rng.integers(max(f.lo, lo), min(f.hi, hi) + 1, n)
        return np.where(rng.random(n) < p_full, full, narrow).astype(np.int64)

    params = {
        "threshold": field("threshold", 0, 400),
        "wta": (rng.random(n) < 0.5).astype(np.int64),
        "reset": field("reset", -300, 100),
        "bias": field("bias", -40, 200, p_full=0.1),
        "leak_shift": field("leak_shift", 0, 15, p_full=0.0),
        "refractory": field("refractory", 0, 4),
        "th_plus": field("th_plus", 0, 255, p_full=0.0),
    }
    assert set(params) == set(_PARAM)

    inhibitory = rng.random(s) < 0.25
    w = rng.integers(0, 256, (s, n))
    p = np.where(rng.random((s, n)) < 0.12, 7, rng.integers(0, 7, (s, n)))
    c = rng.integers(0, 8, (s, n))
    tag = rng.integers(0, 2, (s, n))
    en = (rng.random((s, n)) < 0.85).astype(np.int64)
    words = (w << 8) | (p << 5) | (c << 2) | (tag << 1) | en
    synapses = words.astype(np.uint16)

    v = np.where(rng.random(n) < 0.2, rng.integers(-32768, 32768, n),
                 rng.integers(-200, 400, n))
    th = np.where(rng.random(n) < 0.2, rng.integers(0, 65536, n), rng.integers(0, 300, n))
    # "extreme" neurons: out of reach thresholds, no leak, v at a rail and a small bias pulling
    # away from it, theta near the top, so that saturation of v (and whether it is applied
    # before or after the bias) and of theta is exercised
    extreme = rng.random(n) < 0.2
    rail = rng.choice([-1, 1], n)
    params["threshold"] = np.where(extreme, rng.integers(20000, 32768, n), params["threshold"])
    params["leak_shift"] = np.where(extreme, 15, params["leak_shift"])
    params["bias"] = np.where(extreme, -rail * rng.integers(1, 300, n), params["bias"])
    v = np.where(extreme, rail * rng.integers(32000, 32768, n), v)
    th = np.where(extreme | (rng.random(n) < 0.1), rng.integers(65000, 65536, n), th)
    t0 = int(rng.choice([0, int(rng.integers(0, 2**32, dtype=np.uint64)), 2**32 - ticks // 2]))
    state = NeuronState(
        v=v.astype(np.int64), th=th.astype(np.int64),
        ref=rng.integers(0, 16, n).astype(np.int64),
        y=rng.integers(0, 256, n).astype(np.int64),
        x=rng.integers(0, 256, s).astype(np.int64),
        last_spikes=rng.random(n) < 0.5, t=t0)

    return CoreImage(config=cfg, registers=regs, neuron_params=params,
                     source_inhibitory=inhibitory, synapses=synapses, state=state).validate()


def random_stimulus(seed: int, n_inputs: int, ticks: int = 60):
    rng = np.random.default_rng(10_000 + seed)
    rate = rng.uniform(0.15, 0.6)
    spikes = rng.random((ticks, n_inputs)) < rate
    learn = rng.random(ticks) < 0.8
    return spikes, learn
