"""A scalar, loop-by-loop reference of the plasticore core, written only from docs/core-model.md.

This is an independent reading of sections 3 (primitive operations) and 4 (one tick) of the
document, transcribed one synapse at a time with plain Python ints: no numpy arithmetic. It is
deliberately *not* derived from ``sim/model.py`` or ``sim/arith.py``; the tests compare the two.

Where the document says the order of synapses or neurons does not matter, this reference walks
them in the opposite order from the natural one (sources descending, neurons descending), so that
a comparison with the golden model also checks the document's order-independence claim.

Only the register names, field layouts and widths are taken from ``plasticore.config`` (the
single source of truth for them) and the data layout from ``plasticore.image``.
"""

from __future__ import annotations

from collections import Counter

from plasticore.config import NEURON_PARAM_FIELDS, SYNAPSE_FIELDS

__all__ = [
    "MASK16", "MASK32", "rotr16", "rotl16", "hash32", "key", "rand", "ceilsh", "decay", "leak",
    "sr", "coin", "sat", "syn_unpack", "syn_pack", "ScalarCore",
]

MASK16 = 0xFFFF
MASK32 = 0xFFFFFFFF

_SYN = {f.name: f for f in SYNAPSE_FIELDS}


# --- §3.2 random numbers ----------------------------------------------------------------------

def rotr16(x: int, n: int) -> int:
    x &= MASK16
    return ((x >> n) | (x << (16 - n))) & MASK16


def rotl16(x: int, n: int) -> int:
    x &= MASK16
    return ((x << n) | (x >> (16 - n))) & MASK16


def hash32(x: int) -> int:
    """H(x) of §3.2: eight add-rotate-xor rounds, round index as round key."""
    x &= MASK32
    hi = x >> 16
    lo = x & MASK16
    for i in range(8):
        hi = ((rotr16(hi, 7) + lo) % 65536) ^ i
        lo = rotl16(lo, 2) ^ hi
    return hi * 65536 + lo


def key(t: int, seed: int) -> int:
    """KEY(t) = H(H(t) XOR SEED)."""
    return hash32(hash32(t & MASK32) ^ (seed & MASK32))


def rand(k: int, stream: int, a: int, b: int) -> int:
    """RAND(stream, a, b) = H(KEY(t) XOR (stream * 2^28 + a * 2^14 + b)), given K = KEY(t)."""
    assert 0 <= stream < 16 and 0 <= a < 2**14 and 0 <= b < 2**14
    return hash32(k ^ (stream * 2**28 + a * 2**14 + b))


# --- §3.1 shifts, §3.3 stochastic rounding and coins ------------------------------------------

def ceilsh(a: int, s: int) -> int:
    """CEILSH(a, s) = (a + 2^s - 1) >> s."""
    return (a + 2**s - 1) >> s


def decay(x: int, s: int) -> int:
    """DECAY(x, s) = x - CEILSH(x, s)."""
    return x - ceilsh(x, s)


def leak(v: int, L: int) -> int:
    """LEAK(v, L): v if L = 15, else v - sign(v) * CEILSH(|v|, L)."""
    if L == 15:
        return v
    sign = (v > 0) - (v < 0)
    return v - sign * ceilsh(abs(v), L)


def sr(n: int, s: int, r: int) -> int:
    """SR(n, s, r) = q + (1 if (r mod 2^s) < (n - q * 2^s) else 0), q = n >> s."""
    assert n >= 0 and 0 <= s <= 24
    q = n >> s
    return q + (1 if (r % 2**s) < (n - q * 2**s) else 0)


def coin(k: int, r: int) -> bool:
    """COIN(k, r) = (r >> 24) < (256 >> k) for k <= 8; false for k > 8."""
    if k > 8:
        return False
    return (r >> 24) < (256 >> k)


def sat(x: int, lo: int, hi: int) -> int:
    return min(max(x, lo), hi)


# --- §2.1 synapse word ------------------------------------------------------------------------

def syn_unpack(word: int) -> dict:
    return {name: (word >> f.lsb) & f.mask for name, f in _SYN.items()}


def syn_pack(fields: dict) -> int:
    word = 0
    for name, f in _SYN.items():
        value = fields[name]
        assert 0 <= value <= f.mask, (name, value)
        word |= value << f.lsb
    return word


def _plastic(syn: dict) -> bool:
    return syn["en"] == 1 and syn["p"] != 7


# --- §4 one tick ------------------------------------------------------------------------------

class ScalarCore:
    """One core, state held in plain Python lists of ints.

    Attributes
    ----------
    synapses : list of list of int
        ``synapses[s][j]`` is the 16-bit word ``MEM[s][j]``.
    v, th, ref, y : list of int, per neuron
    x : list of int, per source
    last_spikes : list of bool, per neuron
    t : int
    events : collections.Counter
        How often each interesting event happened (for non-vacuity checks of comparisons).
    """

    def __init__(self, image):
        cfg = image.config
        self.n_inputs = int(cfg.n_inputs)
        self.n_neurons = int(cfg.n_neurons)
        self.n_recurrent = int(cfg.n_recurrent)
        self.n_sources = self.n_inputs + self.n_recurrent
        self.reg = {name: int(value) for name, value in image.registers.items()}
        self.par = {f.name: [int(v) for v in list(image.neuron_params[f.name])]
                    for f in NEURON_PARAM_FIELDS}
        self.inhibitory = [bool(b) for b in list(image.source_inhibitory)]
        self.synapses = [[int(w) for w in list(row)] for row in list(image.synapses)]
        st = image.state
        self.v = [int(a) for a in list(st.v)]
        self.th = [int(a) for a in list(st.th)]
        self.ref = [int(a) for a in list(st.ref)]
        self.y = [int(a) for a in list(st.y)]
        self.x = [int(a) for a in list(st.x)]
        self.last_spikes = [bool(a) for a in list(st.last_spikes)]
        self.t = int(st.t)
        self.events = Counter()
        assert len(self.synapses) == self.n_sources
        assert all(len(row) == self.n_neurons for row in self.synapses)

    def gate(self, p: int) -> int:
        return self.reg[f"GATE_SHIFT_{p}"]

    def shift(self, register: str, p: int) -> int:
        """min(SHIFT_x + GATE(p), 24): the shift of an update in phases B and D (§3.3)."""
        return min(self.reg[register] + self.gate(p), 24)

    def _count_clamped(self, register: str, p: int, step: int) -> None:
        if self.reg[register] + self.gate(p) > 24:
            self.events["shift_clamped"] += 1
            if step > 0:
                self.events["shift_clamped_step"] += 1

    def tick(self, input_spikes, learn) -> list:
        """Run one tick; return the indices of the neurons that spiked, ascending."""
        R = self.reg
        learn = bool(learn)
        inputs = [bool(a) for a in list(input_spikes)]
        assert len(inputs) == self.n_inputs
        N, S = self.n_neurons, self.n_sources
        t = self.t
        K = key(t, R["SEED"])
        ev = self.events
        ev["ticks"] += 1

        # A. Trace decay (walked in reverse)
        for s in reversed(range(S)):
            self.x[s] = decay(self.x[s], R["X_DECAY_SHIFT"])
        for j in reversed(range(N)):
            self.y[j] = decay(self.y[j], R["Y_DECAY_SHIFT"])

        # B. Presynaptic events (row walks): sources descending, neurons descending
        pre = [s for s in range(self.n_inputs) if inputs[s]]
        pre += [self.n_inputs + k for k in range(self.n_recurrent) if self.last_spikes[k]]
        ev["recurrent_events"] += sum(1 for s in pre if s >= self.n_inputs)
        I = [0] * N
        for s in sorted(pre, reverse=True):
            for j in reversed(range(N)):
                word = self.synapses[s][j]
                syn = syn_unpack(word)
                I[j] += -syn["w"] if self.inhibitory[s] else syn["w"]
                if learn and R["LTD_EN"] and _plastic(syn) and self.y[j] > 0:
                    base = syn["w"] if R["SOFT_BOUNDS"] else R["A_MINUS"]
                    step = sr(self.y[j] * base, self.shift("SHIFT_MINUS", syn["p"]),
                              rand(K, 1, s, j))
                    self._count_clamped("SHIFT_MINUS", syn["p"], step)
                    old_w = syn["w"]
                    syn["w"] = max(syn["w"] - step, 0)
                    if syn["w"] < old_w:
                        ev["ltd_weight_decrease"] += 1
                    if R["CONSOL_EN"] and step > 0 and syn["c"] > 0:
                        syn["c"] -= 1
                        ev["consol_decrement"] += 1
                    new = syn_pack(syn)
                    if new != word:
                        ev["ltd_writes"] += 1
                    self.synapses[s][j] = new
        for s in sorted(pre, reverse=True):
            if R["TRACE_ALL_TO_ALL"]:
                self.x[s] = sat(self.x[s] + R["X_INC"], 0, 255)
            else:
                self.x[s] = R["X_INC"]

        # C. Leak, integrate, fire (neurons walked in reverse)
        P = self.par
        refractory = [False] * N
        for j in reversed(range(N)):
            v1 = leak(self.v[j], P["leak_shift"][j])
            if self.ref[j] > 0:
                self.ref[j] -= 1
                refractory[j] = True
                ev["refractory_skip"] += 1
            else:
                if sat(sat(v1 + I[j], -32768, 32767) + P["bias"][j], -32768, 32767) != \
                        sat(v1 + I[j] + P["bias"][j], -32768, 32767):
                    ev["v_saturation_order_matters"] += 1
                v1 = sat(v1 + I[j] + P["bias"][j], -32768, 32767)
                if v1 in (-32768, 32767):
                    ev["v_saturated"] += 1
            self.v[j] = v1
        if learn and R["TH_DECAY_SHIFT"] < 16 and t % 2**R["TH_DECAY_PERIOD"] == 0:
            for j in reversed(range(N)):
                d = ceilsh(self.th[j], R["TH_DECAY_SHIFT"])
                if d > 0:
                    ev["th_decay"] += 1
                self.th[j] -= d
        thr = [P["threshold"][j] + (self.th[j] >> R["TH_SHIFT"]) for j in range(N)]
        cand = [(not refractory[j]) and self.v[j] >= thr[j] for j in range(N)]
        wta = [bool(P["wta"][j]) for j in range(N)]

        spike = [cand[j] and not wta[j] for j in range(N)]
        pool_cands = [j for j in reversed(range(N)) if wta[j] and cand[j]]
        if pool_cands:
            winner = None
            best = None
            for j in pool_cands:   # descending; ">=" keeps the lowest index on a tie
                margin = self.v[j] - thr[j]
                if best is None or margin >= best:
                    if best is not None and margin == best:
                        ev["wta_tie"] += 1
                    best, winner = margin, j
            if len(pool_cands) > 1:
                ev["wta_competition"] += 1
            spike[winner] = True
            for j in reversed(range(N)):
                if wta[j]:
                    self.v[j] = P["reset"][j]
                    if j != winner:
                        ev["wta_pool_reset_loser"] += 1
        for j in reversed(range(N)):
            if spike[j]:
                ev["spikes"] += 1
                self.v[j] = P["reset"][j]
                self.ref[j] = P["refractory"][j]
                if learn:
                    new_th = sat(self.th[j] + P["th_plus"][j], 0, 65535)
                    if self.th[j] + P["th_plus"][j] > 65535:
                        ev["th_saturated"] += 1
                    if new_th > self.th[j]:
                        ev["th_increase"] += 1
                    self.th[j] = new_th

        # D. Potentiation (column walks): neurons descending, sources descending
        for j in reversed(range(N)):
            if not spike[j]:
                continue
            for s in reversed(range(S)):
                word = self.synapses[s][j]
                syn = syn_unpack(word)
                if learn and R["LTP_EN"] and _plastic(syn) and self.x[s] > 0:
                    base = max(R["W_MAX"] - syn["w"], 0) if R["SOFT_BOUNDS"] else R["A_PLUS"]
                    r = rand(K, 2, s, j)
                    step = sr(self.x[s] * base, self.shift("SHIFT_PLUS", syn["p"]), r)
                    self._count_clamped("SHIFT_PLUS", syn["p"], step)
                    old_w = syn["w"]
                    if syn["w"] + step <= R["W_MAX"]:
                        syn["w"] = syn["w"] + step
                    else:
                        syn["w"] = max(syn["w"], R["W_MAX"])
                    if syn["w"] > old_w:
                        ev["ltp_weight_increase"] += 1
                    if (R["CONSOL_EN"] and step > 0 and syn["p"] < R["P_LEARN_MAX"]
                            and coin(R["CONSOL_Q0"] + R["CONSOL_QS"] * syn["p"], r)):
                        if syn["c"] + 1 >= R["CONSOL_C_MAX"]:
                            syn["c"] = 0
                            syn["p"] += 1
                            ev["consol_promotion"] += 1
                        else:
                            syn["c"] += 1
                            ev["consol_count"] += 1
                    new = syn_pack(syn)
                    if new != word:
                        ev["ltp_writes"] += 1
                    self.synapses[s][j] = new
        for j in reversed(range(N)):
            if spike[j]:
                if R["TRACE_ALL_TO_ALL"]:
                    self.y[j] = sat(self.y[j] + R["Y_INC"], 0, 255)
                else:
                    self.y[j] = R["Y_INC"]

        # E. End of tick
        for j in reversed(range(N)):
            self.last_spikes[j] = spike[j]
        self.t = (t + 1) % 2**32
        if self.t < t:
            ev["t_wrap"] += 1
        return [j for j in range(N) if spike[j]]
