"""The gateware datapath against the rules of docs/core-model.md, in Amaranth's simulator.

Three units: the hash pipeline behind every random draw (section 3.2), one synapse update of the
learning engine (phases B and D for one synapse, section 4) and one neuron update (phase C up to
the spike decision); plus the trace helpers (phase A decay, spike bumps) the core takes from the
datapath module. Each is driven with a new vector every clock cycle (fixed numpy seeds) plus
directed corner cases, and compared bit for bit with an expected-value function written here from
the document, using the integer primitives of :mod:`plasticore.sim.arith`.
"""

from collections import Counter

import numpy as np
import pytest
from amaranth import Module
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from plasticore.config import (LEAK_OFF, NEURON_PARAM_FIELDS, PLASTICITY_FROZEN, REGISTERS,
                               REGISTERS_BY_NAME, SR_RANDOM_BITS, SYNAPSE_FIELDS, TH_MAX,
                               TRACE_MAX, V_MAX, V_MIN, WEIGHT_MAX, default_registers)
from plasticore.hdl.datapath import NeuronUpdate, SynapseUpdate, current_bits
from plasticore.hdl.datapath import bump as bump_hdl
from plasticore.hdl.datapath import decay as decay_hdl
from plasticore.hdl.layouts import register_field
from plasticore.hdl.rng import HashPipeline
from plasticore.sim.arith import ceilsh, coin, decay, hash32, leak, saturate, sr

CLOCK_PERIOD = 1e-6
MAX_CURRENT = 16384 * WEIGHT_MAX   # 16384 sources of weight 255
GATES = [f"GATE_SHIFT_{p}" for p in range(PLASTICITY_FROZEN)]
SYN = {f.name: f for f in SYNAPSE_FIELDS}
MISMATCHES_SHOWN = 8


# --- Helpers ----------------------------------------------------------------------------------

def simulate(dut, testbench, clocked=True):
    sim = Simulator(dut)
    if clocked:
        sim.add_clock(CLOCK_PERIOD)
    sim.add_testbench(testbench)
    sim.run()


def hw_registers(regs):
    """The register dict (config names) as a value for the ``Registers`` struct port."""
    return {register_field(name): value for name, value in regs.items()}


def pack_word(w, p, c, tag, en):
    fields = dict(w=w, p=p, c=c, tag=tag, en=en)
    word = 0
    for name, value in fields.items():
        f = SYN[name]
        assert 0 <= value <= f.mask, f"synapse field {name} = {value} does not fit"
        word |= value << f.lsb
    return word


def unpack_word(word):
    return {name: (word >> f.lsb) & f.mask for name, f in SYN.items()}


def show_word(word):
    f = unpack_word(word)
    return f"0x{word:04X}(w={f['w']} p={f['p']} c={f['c']} tag={f['tag']} en={f['en']})"


def check_registers(regs):
    """The register values are legal (each in its own range; any sum of shifts is)."""
    assert set(regs) == set(REGISTERS_BY_NAME)
    for name, value in regs.items():
        reg = REGISTERS_BY_NAME[name]
        assert reg.lo <= value <= reg.hi, f"{name} = {value} outside {reg.lo}..{reg.hi}"


def registers_with(**overrides):
    regs = default_registers()
    for name in overrides:
        assert name in regs, name
    regs.update(overrides)
    check_registers(regs)
    return regs


def report(mismatches, total, what):
    shown = "\n".join(mismatches[:MISMATCHES_SHOWN])
    more = len(mismatches) - MISMATCHES_SHOWN
    tail = f"\n... and {more} more" if more > 0 else ""
    return f"{len(mismatches)} of {total} {what} differ from the expected values:\n{shown}{tail}"


# --- 1. The hash pipeline ---------------------------------------------------------------------

HASH_KNOWN_ANSWERS = {0: 0x5F1CA58D, 1: 0x8F92950D, 0x12345678: 0x09F82BDF,
                      0xFFFFFFFF: 0x210F9AE1}


@pytest.mark.parametrize("rounds_per_stage", [1, 2, 4, 8])
def test_hash_pipeline_matches_hash32(rounds_per_stage):
    dut = HashPipeline(rounds_per_stage)
    latency = dut.latency
    assert latency == 8 // rounds_per_stage
    rng = np.random.default_rng(100 + rounds_per_stage)
    edges = list(HASH_KNOWN_ANSWERS)
    xs = edges + [int(x) for x in rng.integers(0, 2**32, 1500, dtype=np.int64)] + edges
    expected = [int(hash32(x)) for x in xs]
    for x, h in HASH_KNOWN_ANSWERS.items():   # the reference itself, pinned by the document
        assert int(hash32(x)) == h
    mismatches = []

    async def testbench(ctx):
        # The value presented before clock edge k is on y after edge k + latency - 1.
        for i in range(len(xs) + latency - 1):
            if i < len(xs):
                ctx.set(dut.x, xs[i])
            await ctx.tick()
            k = i - (latency - 1)
            if k >= 0:
                got = ctx.get(dut.y)
                if got != expected[k]:
                    mismatches.append(f"x=0x{xs[k]:08X}: HDL y=0x{got:08X}, "
                                      f"hash32=0x{expected[k]:08X}")

    simulate(dut, testbench)
    assert not mismatches, report(mismatches, len(xs),
                                  f"hashes (rounds_per_stage={rounds_per_stage}, "
                                  f"latency={latency})")


# --- 2. The synapse update --------------------------------------------------------------------

def expected_synapse(ltp, enable, word, trace, draw, regs, events=None):
    """The word after phase D (``ltp``) or phase B (not ``ltp``) of docs/core-model.md section 4
    for one synapse whose draw is ``draw``; ``enable`` stands for ``learn and LTP_EN`` or
    ``learn and LTD_EN``. ``events`` (a Counter) records which branches the vector took."""
    ev = events if events is not None else Counter()
    f = unpack_word(word)
    w, p, c = f["w"], f["p"], f["c"]
    plastic = f["en"] == 1 and p != PLASTICITY_FROZEN
    if not (enable and plastic and trace > 0):
        ev["untouched"] += 1
        return word
    w_max = regs["W_MAX"]
    # Section 3.3: the shift is min(SHIFT_x + GATE(p), 24).
    total = (regs["SHIFT_PLUS"] if ltp else regs["SHIFT_MINUS"]) + regs[f"GATE_SHIFT_{p}"]
    shift = min(total, SR_RANDOM_BITS)
    if total > SR_RANDOM_BITS:
        ev["shift clamped"] += 1
    if ltp:
        base = max(w_max - w, 0) if regs["SOFT_BOUNDS"] else regs["A_PLUS"]
        step = int(sr(trace * base, shift, draw))
        if w + step <= w_max:
            new_w = w + step
        else:
            new_w = max(w, w_max)
            ev["ltp above W_MAX kept" if w > w_max else "ltp clamped at W_MAX"] += 1
        if (regs["CONSOL_EN"] and step > 0 and p < regs["P_LEARN_MAX"]
                and bool(coin(regs["CONSOL_Q0"] + regs["CONSOL_QS"] * p, draw))):
            if c + 1 >= regs["CONSOL_C_MAX"]:
                c, p = 0, p + 1
                ev["promotion"] += 1
            else:
                c += 1
                ev["count"] += 1
    else:
        base = w if regs["SOFT_BOUNDS"] else regs["A_MINUS"]
        step = int(sr(trace * base, shift, draw))
        new_w = max(w - step, 0)
        if w - step < 0:
            ev["ltd clamped at 0"] += 1
        if regs["CONSOL_EN"] and step > 0 and c > 0:
            c -= 1
            ev["ltd count down"] += 1
    num = trace * base
    if step != num >> shift:
        ev["rounded up"] += 1
    elif num & ((1 << shift) - 1):
        ev["rounded down"] += 1
    ev["ltp" if ltp else "ltd"] += 1
    ev["step 0" if step == 0 else "step > 0"] += 1
    return pack_word(new_w, p, c, f["tag"], f["en"])


def random_registers(rng):
    """A legal register set, skewed toward values where the synapse rules do something."""
    regs = {r.name: int(rng.integers(r.lo, r.hi + 1)) for r in REGISTERS}
    gate_hi = int(rng.choice([0, 1, 3, 6, 15]))
    for g in GATES:
        regs[g] = int(rng.integers(0, gate_hi + 1))
    gate_max = max(regs[g] for g in GATES)
    for name in ("SHIFT_PLUS", "SHIFT_MINUS"):
        # Half the sets use shifts of at most 16, where the 16-bit product gives steps > 0;
        # a quarter may reach past 24 with the largest gate (the shift is clamped there).
        u = rng.random()
        limit = (min(SR_RANDOM_BITS - gate_max, 16) if u < 0.5
                 else SR_RANDOM_BITS - gate_max if u < 0.75 else SR_RANDOM_BITS)
        regs[name] = int(rng.integers(0, max(limit, 0) + 1))
    if rng.random() < 0.3:
        regs["W_MAX"] = WEIGHT_MAX
    if rng.random() < 0.7:
        regs["CONSOL_Q0"] = int(rng.integers(0, 5))     # coins that do come up
    if rng.random() < 0.8:
        regs["CONSOL_EN"] = 1
    check_registers(regs)
    return regs


def random_synapse_vector(rng):
    """(ltp, enable, word, trace, draw)."""
    w = int(rng.choice([0, 1, 254, 255])) if rng.random() < 0.1 else int(rng.integers(0, 256))
    p = int(rng.integers(0, 8))                        # includes p = 7 (frozen)
    c = int(rng.integers(0, 8))                        # includes c at and above CONSOL_C_MAX
    en = int(rng.random() < 0.85)
    tag = int(rng.integers(0, 2))
    u = rng.random()
    trace = 0 if u < 0.07 else TRACE_MAX if u < 0.17 else int(rng.integers(1, 256))
    draw = int(rng.integers(0, 2**32, dtype=np.int64))
    if rng.random() < 0.1:                             # a coin top byte of 0 or 255
        draw = (draw & 0x00FFFFFF) | (int(rng.choice([0, 255])) << 24)
    ltp = int(rng.integers(0, 2))
    enable = int(rng.random() < 0.9)
    return ltp, enable, pack_word(w, p, c, tag, en), trace, draw


def run_synapse_batches(batches):
    """Stream ``batches`` of (registers, [vectors]) through one SynapseUpdate, one vector per
    cycle; ``regs`` changes only between batches, after the last update of a batch has left the
    pipeline (the component's contract). Returns the mismatch descriptions and the vector count."""
    dut = SynapseUpdate()
    latency = dut.latency
    assert latency == 2
    mismatches = []
    count = sum(len(vectors) for _, vectors in batches)

    async def testbench(ctx):
        for regs, vectors in batches:
            ctx.set(dut.regs, hw_registers(regs))
            # Inputs presented before clock edge k leave the pipeline after edge k + 1.
            presented = []
            for i in range(len(vectors) + latency - 1):
                if i < len(vectors):
                    ltp, enable, word, trace, draw = vectors[i]
                    ctx.set(dut.ltp, ltp)
                    ctx.set(dut.enable, enable)
                    ctx.set(dut.word.as_value(), word)
                    ctx.set(dut.trace, trace)
                    ctx.set(dut.draw, draw)
                    presented.append(vectors[i])
                else:                   # drain with an idle input, regs still steady
                    ctx.set(dut.enable, 0)
                await ctx.tick()
                k = i - (latency - 1)
                if k < 0:
                    continue
                ltp, enable, word, trace, draw = presented[k]
                want = expected_synapse(ltp, enable, word, trace, draw, regs)
                got = ctx.get(dut.new_word.as_value())
                got_changed = ctx.get(dut.changed)
                if got != want or got_changed != int(want != word):
                    gate = regs[f"GATE_SHIFT_{unpack_word(word)['p']}"]
                    mismatches.append(
                        f"ltp={ltp} enable={enable} word={show_word(word)} trace={trace} "
                        f"draw=0x{draw:08X} | regs: W_MAX={regs['W_MAX']} "
                        f"SOFT_BOUNDS={regs['SOFT_BOUNDS']} A_PLUS={regs['A_PLUS']} "
                        f"A_MINUS={regs['A_MINUS']} SHIFT_PLUS={regs['SHIFT_PLUS']} "
                        f"SHIFT_MINUS={regs['SHIFT_MINUS']} GATE(p)={gate} "
                        f"CONSOL_EN={regs['CONSOL_EN']} Q0={regs['CONSOL_Q0']} "
                        f"QS={regs['CONSOL_QS']} C_MAX={regs['CONSOL_C_MAX']} "
                        f"P_LEARN_MAX={regs['P_LEARN_MAX']}\n"
                        f"    HDL new_word={show_word(got)} changed={got_changed}; "
                        f"expected new_word={show_word(want)} changed={int(want != word)}")

    simulate(dut, testbench)
    return mismatches, count


def test_synapse_update_random_vectors():
    rng = np.random.default_rng(2024)
    batches = [(default_registers(), [random_synapse_vector(rng) for _ in range(100)])]
    batches += [(random_registers(rng), [random_synapse_vector(rng) for _ in range(25)])
                for _ in range(160)]
    # The vectors must exercise every branch of the rule, or the comparison proves little.
    events = Counter()
    for regs, vectors in batches:
        for vector in vectors:
            expected_synapse(*vector, regs, events)
    for event in ("untouched", "ltp", "ltd", "step 0", "step > 0", "rounded up", "rounded down",
                  "ltp clamped at W_MAX", "ltp above W_MAX kept", "ltd clamped at 0",
                  "count", "promotion", "ltd count down", "shift clamped"):
        assert events[event] >= 10, f"random synapse vectors hit {event!r} only " \
                                    f"{events[event]} times: {dict(events)}"
    mismatches, count = run_synapse_batches(batches)
    assert not mismatches, report(mismatches, count, "synapse updates")


def _directed(name, ltp, word, trace, draw, expect, enable=1, **regs):
    """A directed case: inputs, registers (defaults with every gate 0, plus ``regs``) and the
    expected word's fields (a dict of the fields that change; the others keep their values)."""
    regs = {**{g: 0 for g in GATES}, **regs}
    return pytest.param(registers_with(**regs), (ltp, enable, pack_word(**word), trace, draw),
                        {**word, **expect}, id=name)


W = dict(tag=1, en=1)          # a plastic word with the tag set: the tag must survive updates
HARD = dict(SOFT_BOUNDS=0, CONSOL_EN=0)
DIRECTED_SYNAPSE_CASES = [
    # Stochastic rounding: 3 * 3 / 4 = 2 remainder 1; round up iff the draw's low 2 bits < 1.
    _directed("sr-up", 1, dict(w=10, p=0, c=0, **W), 3, 0xFFFFFFFC, dict(w=13),
              A_PLUS=3, SHIFT_PLUS=2, GATE_SHIFT_0=0, **HARD),
    _directed("sr-down", 1, dict(w=10, p=0, c=0, **W), 3, 0x00000001, dict(w=12),
              A_PLUS=3, SHIFT_PLUS=2, GATE_SHIFT_0=0, **HARD),
    _directed("sr-exact-never-up", 1, dict(w=10, p=0, c=0, **W), 4, 0, dict(w=12),
              A_PLUS=2, SHIFT_PLUS=2, GATE_SHIFT_0=0, **HARD),
    _directed("sr-shift-0", 1, dict(w=100, p=0, c=0, **W), 1, 0xFFFFFFFF, dict(w=105),
              A_PLUS=5, SHIFT_PLUS=0, GATE_SHIFT_0=0, **HARD),
    # The longest shift, 24 = SHIFT + GATE: 65025 / 2^24 rounds up iff draw[23:0] < 65025.
    _directed("sr-shift-24-up", 1, dict(w=7, p=0, c=0, **W), 255, 0xFF00FE00, dict(w=8),
              A_PLUS=255, SHIFT_PLUS=24, GATE_SHIFT_0=0, **HARD),
    _directed("sr-shift-24-down", 1, dict(w=7, p=0, c=0, **W), 255, 0x0000FE01, dict(w=7),
              A_PLUS=255, SHIFT_PLUS=24, GATE_SHIFT_0=0, **HARD),
    _directed("sr-shift-9-gate-15-up", 0, dict(w=7, p=6, c=0, **W), 255, 0x0000FE00, dict(w=6),
              A_MINUS=255, SHIFT_MINUS=9, SHIFT_PLUS=9, GATE_SHIFT_6=15, **HARD),
    # Totals above 24 round as 24 (section 3.3): the draw's low 24 bits only, whatever the bits
    # above them (a literal shift of 26 or 39 would compare those too and not round up here).
    _directed("sr-shift-20-gate-6-up", 1, dict(w=7, p=0, c=0, **W), 255, 0xFF00FE00, dict(w=8),
              A_PLUS=255, SHIFT_PLUS=20, GATE_SHIFT_0=6, **HARD),
    _directed("sr-shift-20-gate-6-down", 1, dict(w=7, p=0, c=0, **W), 255, 0x0000FE01, dict(w=7),
              A_PLUS=255, SHIFT_PLUS=20, GATE_SHIFT_0=6, **HARD),
    _directed("sr-shift-24-gate-15-up", 1, dict(w=7, p=5, c=0, **W), 255, 0x0300FE00, dict(w=8),
              A_PLUS=255, SHIFT_PLUS=24, GATE_SHIFT_5=15, **HARD),
    _directed("sr-shift-24-gate-15-down", 1, dict(w=7, p=5, c=0, **W), 255, 0x03FFFFFF, dict(w=7),
              A_PLUS=255, SHIFT_PLUS=24, GATE_SHIFT_5=15, **HARD),
    _directed("sr-ltd-shift-24-gate-15-up", 0, dict(w=7, p=6, c=0, **W), 255, 0x0200FE00,
              dict(w=6), A_MINUS=255, SHIFT_MINUS=24, GATE_SHIFT_6=15, **HARD),
    _directed("sr-ltd-shift-16-gate-12-down", 0, dict(w=7, p=6, c=0, **W), 255, 0x00FFFFFF,
              dict(w=7), A_MINUS=255, SHIFT_MINUS=16, GATE_SHIFT_6=12, **HARD),
    _directed("sr-gate-by-level", 1, dict(w=0, p=3, c=0, **W), 64, 0xFFFFFFFF, dict(w=8),
              A_PLUS=128, SHIFT_PLUS=7, GATE_SHIFT_3=3, **HARD),   # 8192 >> 10 = 8 exactly
    # Bounds of potentiation.
    _directed("ltp-clamp-at-wmax", 1, dict(w=250, p=0, c=0, **W), 255, 0, dict(w=255),
              A_PLUS=255, SHIFT_PLUS=12, GATE_SHIFT_0=0, **HARD),   # step 16
    _directed("ltp-clamp-at-low-wmax", 1, dict(w=95, p=0, c=0, **W), 255, 0, dict(w=100),
              W_MAX=100, A_PLUS=255, SHIFT_PLUS=12, GATE_SHIFT_0=0, **HARD),
    _directed("ltp-exactly-to-wmax", 1, dict(w=85, p=0, c=0, **W), 255, 0xFFFFFFFF,
              dict(w=100), W_MAX=100, A_PLUS=255, SHIFT_PLUS=12, GATE_SHIFT_0=0, **HARD),
    _directed("ltp-at-wmax-hard", 1, dict(w=255, p=0, c=0, **W), 255, 0, dict(),
              A_PLUS=255, SHIFT_PLUS=12, GATE_SHIFT_0=0, **HARD),
    _directed("ltp-above-wmax-kept", 1, dict(w=200, p=0, c=0, **W), 255, 0, dict(),
              W_MAX=150, A_PLUS=255, SHIFT_PLUS=12, GATE_SHIFT_0=0, **HARD),
    _directed("ltp-soft-at-wmax-step-0", 1, dict(w=150, p=0, c=0, **W), 255, 0, dict(),
              W_MAX=150, SHIFT_PLUS=0, GATE_SHIFT_0=0, CONSOL_Q0=0),
    _directed("ltp-soft-above-wmax-step-0", 1, dict(w=151, p=0, c=0, **W), 255, 0, dict(),
              W_MAX=150, SHIFT_PLUS=0, GATE_SHIFT_0=0, CONSOL_Q0=0),
    _directed("ltp-soft-headroom", 1, dict(w=55, p=0, c=0, **W), 255, 0xFFFFFFFF, dict(w=154),
              W_MAX=155, SHIFT_PLUS=8, GATE_SHIFT_0=0, CONSOL_EN=0),   # 255 * 100 >> 8 = 99
    # Bounds of depression.
    _directed("ltd-clamp-at-0", 0, dict(w=3, p=0, c=0, **W), 255, 0, dict(w=0),
              A_MINUS=255, SHIFT_MINUS=8, GATE_SHIFT_0=0, **HARD),
    _directed("ltd-at-0-hard-counts-down", 0, dict(w=0, p=0, c=2, **W), 255, 0, dict(c=1),
              SOFT_BOUNDS=0, A_MINUS=255, SHIFT_MINUS=8, GATE_SHIFT_0=0),
    _directed("ltd-soft-at-0-step-0", 0, dict(w=0, p=0, c=2, **W), 255, 0, dict(),
              SHIFT_MINUS=0, GATE_SHIFT_0=0),
    _directed("ltd-soft", 0, dict(w=200, p=1, c=0, **W), 128, 0xFFFFFFFF, dict(w=150),
              SHIFT_MINUS=8, GATE_SHIFT_1=1),   # 128 * 200 >> 9 = 50 exactly
    _directed("ltd-count-down", 0, dict(w=200, p=1, c=5, **W), 128, 0, dict(w=150, c=4),
              SHIFT_MINUS=8, GATE_SHIFT_1=1),
    _directed("ltd-count-stays-0", 0, dict(w=200, p=1, c=0, **W), 128, 0, dict(w=150),
              SHIFT_MINUS=8, GATE_SHIFT_1=1),
    _directed("ltd-step-0-no-count-down", 0, dict(w=200, p=0, c=3, **W), 1, 0xFFFFFFFF,
              dict(), SHIFT_MINUS=8, GATE_SHIFT_0=0),   # 200 / 256 rounds down to 0
    _directed("ltd-consol-off-no-count-down", 0, dict(w=200, p=0, c=3, **W), 255, 0,
              dict(w=0), A_MINUS=255, SHIFT_MINUS=0, GATE_SHIFT_0=0, **HARD),
    # Consolidation coin: exponent 8 comes up only for a top byte of 0, exponent 9 never.
    _directed("coin-exp-8-top-0", 1, dict(w=0, p=0, c=0, **W), 16, 0x00000000, dict(w=1, c=1),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_0=0, CONSOL_Q0=8),
    _directed("coin-exp-8-top-1", 1, dict(w=0, p=0, c=0, **W), 16, 0x01000000, dict(w=1),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_0=0, CONSOL_Q0=8),
    _directed("coin-exp-9-top-0", 1, dict(w=0, p=0, c=0, **W), 16, 0x00000000, dict(w=1),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_0=0, CONSOL_Q0=9),
    _directed("coin-exp-8-by-level", 1, dict(w=0, p=2, c=0, **W), 16, 0x00000000,
              dict(w=1, c=1), SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_2=0,
              CONSOL_Q0=2, CONSOL_QS=3, P_LEARN_MAX=6),
    _directed("coin-exp-11-by-level", 1, dict(w=0, p=3, c=0, **W), 16, 0x00000000, dict(w=1),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_3=0,
              CONSOL_Q0=2, CONSOL_QS=3, P_LEARN_MAX=6),
    _directed("coin-exp-36-max", 1, dict(w=0, p=6, c=0, **W), 16, 0x00000000, dict(w=1),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_6=0,
              CONSOL_Q0=15, CONSOL_QS=3, P_LEARN_MAX=6),
    _directed("coin-exp-0-top-255", 1, dict(w=0, p=0, c=0, **W), 16, 0xFF000000,
              dict(w=1, c=1), SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_0=0,
              CONSOL_Q0=0),
    _directed("coin-exp-1-top-127", 1, dict(w=0, p=0, c=0, **W), 16, 0x7F000000,
              dict(w=1, c=1), SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_0=0,
              CONSOL_Q0=1),
    _directed("coin-exp-1-top-128", 1, dict(w=0, p=0, c=0, **W), 16, 0x80000000, dict(w=1),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_0=0, CONSOL_Q0=1),
    # A step of 0 never counts, even with the coin up.
    _directed("ltp-step-0-no-count", 1, dict(w=0, p=0, c=0, **W), 255, 0xFFFFFFFF, dict(),
              SOFT_BOUNDS=0, A_PLUS=0, SHIFT_PLUS=0, GATE_SHIFT_0=0, CONSOL_Q0=0),
    # A hard-bounded synapse held at W_MAX still counts (the step before the bounds).
    _directed("ltp-at-wmax-still-counts", 1, dict(w=255, p=0, c=0, **W), 255, 0,
              dict(c=1), SOFT_BOUNDS=0, A_PLUS=255, SHIFT_PLUS=12, GATE_SHIFT_0=0,
              CONSOL_Q0=0),
    # Promotion at c + 1 == C_MAX, not before; c above C_MAX promotes too.
    _directed("count-below-c-max", 1, dict(w=0, p=1, c=2, **W), 16, 0, dict(w=1, c=3),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_1=0, CONSOL_Q0=0,
              CONSOL_QS=0, CONSOL_C_MAX=4),
    _directed("promote-at-c-max", 1, dict(w=0, p=1, c=3, **W), 16, 0, dict(w=1, c=0, p=2),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_1=0, CONSOL_Q0=0,
              CONSOL_QS=0, CONSOL_C_MAX=4),
    _directed("promote-above-c-max", 1, dict(w=0, p=1, c=6, **W), 16, 0, dict(w=1, c=0, p=2),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_1=0, CONSOL_Q0=0,
              CONSOL_QS=0, CONSOL_C_MAX=4),
    _directed("promote-c-max-1", 1, dict(w=0, p=0, c=0, **W), 16, 0, dict(w=1, p=1),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_0=0, CONSOL_Q0=0,
              CONSOL_C_MAX=1),
    _directed("promote-c-max-8", 1, dict(w=0, p=0, c=7, **W), 16, 0, dict(w=1, c=0, p=1),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_0=0, CONSOL_Q0=0,
              CONSOL_C_MAX=8),
    _directed("count-c-max-8", 1, dict(w=0, p=0, c=6, **W), 16, 0, dict(w=1, c=7),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_0=0, CONSOL_Q0=0,
              CONSOL_C_MAX=8),
    # P_LEARN_MAX: promotes up to it, never counts at or above it.
    _directed("promote-to-p-learn-max", 1, dict(w=0, p=2, c=3, **W), 16, 0, dict(w=1, c=0, p=3),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_2=0, CONSOL_Q0=0,
              CONSOL_QS=0, P_LEARN_MAX=3),
    _directed("at-p-learn-max-no-count", 1, dict(w=0, p=3, c=3, **W), 16, 0, dict(w=1),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_3=0, CONSOL_Q0=0,
              CONSOL_QS=0, P_LEARN_MAX=3),
    _directed("above-p-learn-max-no-count", 1, dict(w=0, p=5, c=3, **W), 16, 0, dict(w=1),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_5=0, CONSOL_Q0=0,
              CONSOL_QS=0, P_LEARN_MAX=3),
    _directed("p-learn-max-0-never", 1, dict(w=0, p=0, c=0, **W), 16, 0, dict(w=1),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_0=0, CONSOL_Q0=0,
              P_LEARN_MAX=0),
    _directed("promote-to-p-learn-max-6", 1, dict(w=0, p=5, c=3, **W), 16, 0,
              dict(w=1, c=0, p=6), SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_5=0,
              CONSOL_Q0=0, CONSOL_QS=0, P_LEARN_MAX=6),
    _directed("level-6-learns-never-promotes", 1, dict(w=0, p=6, c=7, **W), 16, 0, dict(w=1),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_6=0, CONSOL_Q0=0,
              CONSOL_QS=0, P_LEARN_MAX=6),
    _directed("consol-off-no-count", 1, dict(w=0, p=0, c=3, **W), 16, 0, dict(w=1),
              SOFT_BOUNDS=0, A_PLUS=16, SHIFT_PLUS=8, GATE_SHIFT_0=0, CONSOL_Q0=0,
              CONSOL_EN=0),
    # Words the learning engine must not touch.
    _directed("frozen-p-7", 1, dict(w=0, p=7, c=3, **W), 255, 0, dict(),
              SOFT_BOUNDS=0, A_PLUS=255, SHIFT_PLUS=0, CONSOL_Q0=0),
    _directed("frozen-p-7-ltd", 0, dict(w=200, p=7, c=3, **W), 255, 0, dict(),
              SOFT_BOUNDS=0, A_MINUS=255, SHIFT_MINUS=0),
    _directed("en-0", 1, dict(w=0, p=0, c=3, tag=1, en=0), 255, 0, dict(),
              SOFT_BOUNDS=0, A_PLUS=255, SHIFT_PLUS=0, GATE_SHIFT_0=0, CONSOL_Q0=0),
    _directed("en-0-ltd", 0, dict(w=200, p=0, c=3, tag=0, en=0), 255, 0, dict(),
              SOFT_BOUNDS=0, A_MINUS=255, SHIFT_MINUS=0, GATE_SHIFT_0=0),
    _directed("trace-0", 1, dict(w=0, p=0, c=3, **W), 0, 0, dict(),
              SOFT_BOUNDS=0, A_PLUS=255, SHIFT_PLUS=0, GATE_SHIFT_0=0, CONSOL_Q0=0),
    _directed("trace-0-ltd", 0, dict(w=200, p=0, c=3, **W), 0, 0, dict(),
              SOFT_BOUNDS=0, A_MINUS=255, SHIFT_MINUS=0, GATE_SHIFT_0=0),
    _directed("enable-0", 1, dict(w=0, p=0, c=3, **W), 255, 0, dict(), enable=0,
              SOFT_BOUNDS=0, A_PLUS=255, SHIFT_PLUS=0, GATE_SHIFT_0=0, CONSOL_Q0=0),
    _directed("enable-0-ltd", 0, dict(w=200, p=0, c=3, **W), 255, 0, dict(), enable=0,
              SOFT_BOUNDS=0, A_MINUS=255, SHIFT_MINUS=0, GATE_SHIFT_0=0),
]


@pytest.mark.parametrize("regs, vector, fields", DIRECTED_SYNAPSE_CASES)
def test_synapse_expected_function_on_directed_cases(regs, vector, fields):
    """The expected-value function gives the hand-computed answers of the directed cases."""
    got = expected_synapse(*vector, regs)
    assert got == pack_word(**fields), \
        f"expected_synapse: {show_word(got)}, hand-computed: {show_word(pack_word(**fields))}"


def test_synapse_update_directed_vectors():
    # The HDL against the expected function, which gives the hand-computed words (test above).
    batches = [(case.values[0], [case.values[1]]) for case in DIRECTED_SYNAPSE_CASES]
    mismatches, count = run_synapse_batches(batches)
    names = [case.id for case in DIRECTED_SYNAPSE_CASES]
    assert not mismatches, report(mismatches, count, f"directed synapse updates ({names})")


# --- 3. The neuron update ---------------------------------------------------------------------

NEURON_OUTPUTS = ("v_rest", "ref_rest", "th_rest", "candidate", "margin", "v_fire", "ref_fire",
                  "th_fire")


def expected_neuron(params, v, th, ref, current, learn, decay_now, regs):
    """Phase C of docs/core-model.md section 4 for one neuron, up to the spike decision.

    ``current`` is ``I[j]`` of phase B; ``decay_now`` stands for ``t mod 2^TH_DECAY_PERIOD = 0``.
    The ``*_rest`` values are the state if the neuron does not spike, the ``*_fire`` values the
    state if it does."""
    v_leaked = int(leak(v, params["leak_shift"]))
    if ref > 0:
        blocked, ref_rest, v_rest = True, ref - 1, v_leaked
    else:
        blocked, ref_rest = False, ref
        v_rest = int(saturate(v_leaked + current + params["bias"], V_MIN, V_MAX))
    th_rest = th
    if learn and regs["TH_DECAY_SHIFT"] < 16 and decay_now:
        th_rest = th - int(ceilsh(th, regs["TH_DECAY_SHIFT"]))
    threshold = params["threshold"] + (th_rest >> regs["TH_SHIFT"])
    th_fire = int(saturate(th_rest + params["th_plus"], 0, TH_MAX)) if learn else th_rest
    return dict(v_rest=v_rest, ref_rest=ref_rest, th_rest=th_rest,
                candidate=int(not blocked and v_rest >= threshold), margin=v_rest - threshold,
                v_fire=params["reset"], ref_fire=params["refractory"], th_fire=th_fire)


def _pick(rng, corners, lo, hi, p_corner=0.15):
    if rng.random() < p_corner:
        return int(rng.choice(corners))
    return int(rng.integers(lo, hi + 1))


def random_neuron_vector(rng):
    params = {f.name: int(rng.integers(f.lo, f.hi + 1)) for f in NEURON_PARAM_FIELDS}
    params["leak_shift"] = _pick(rng, [0, 1, LEAK_OFF - 1, LEAK_OFF], 0, LEAK_OFF, 0.3)
    params["threshold"] = _pick(rng, [0, 1, 32767], 0, 32767)
    params["bias"] = _pick(rng, [-32768, 32767, 0], -32768, 32767) if rng.random() < 0.5 \
        else int(rng.integers(-200, 201))
    params["th_plus"] = _pick(rng, [0, 255], 0, 255)
    v = _pick(rng, [V_MIN, V_MIN + 1, -1, 0, 1, V_MAX], V_MIN, V_MAX, 0.2)
    th = _pick(rng, [0, 1, TH_MAX - 255, TH_MAX], 0, TH_MAX, 0.2)
    ref = 0 if rng.random() < 0.6 else int(rng.integers(1, 16))
    u = rng.random()
    if u < 0.1:
        current = int(rng.choice([-MAX_CURRENT, MAX_CURRENT, 0, -1, 1]))
    elif u < 0.6:
        current = int(rng.integers(-2000, 2001))
    else:
        current = int(rng.integers(-MAX_CURRENT, MAX_CURRENT + 1))
    learn = int(rng.integers(0, 2))
    decay_now = int(rng.random() < 0.7)
    regs = default_registers()
    regs["TH_SHIFT"] = _pick(rng, [0, 15], 0, 15)
    regs["TH_DECAY_SHIFT"] = _pick(rng, [0, 15, 16], 0, 16, 0.3)
    return params, v, th, ref, current, learn, decay_now, regs


def directed_neuron_vectors():
    base = dict(threshold=100, wta=0, reset=-5, bias=0, leak_shift=LEAK_OFF, refractory=3,
                th_plus=10)
    regs = default_registers()
    vectors = []

    def add(v=0, th=0, ref=0, current=0, learn=1, decay_now=1, regs_over=None, **prm):
        r = dict(regs, **(regs_over or {}))
        vectors.append((dict(base, **prm), v, th, ref, current, learn, decay_now, r))

    for v in (V_MIN, V_MIN + 1, -3, -1, 0, 1, 3, V_MAX):
        for shift in (0, 1, 2, 13, 14, LEAK_OFF):
            add(v=v, leak_shift=shift, ref=1)                 # leak only
    add(v=V_MAX, current=MAX_CURRENT, bias=32767)             # saturate high
    add(v=V_MIN, current=-MAX_CURRENT, bias=-32768)           # saturate low
    add(v=V_MIN, current=MAX_CURRENT, bias=-32768)
    add(v=V_MAX, current=-MAX_CURRENT, bias=32767)
    add(v=32000, current=767)                                 # lands exactly on V_MAX
    add(v=32000, current=768)
    add(v=100, threshold=100)                                 # v == threshold: candidate
    add(v=99, threshold=100)
    add(v=100, threshold=100, ref=1)                          # refractory: never a candidate
    add(v=32767, threshold=0, ref=15, leak_shift=LEAK_OFF)
    add(v=100, th=8, threshold=96, regs_over=dict(TH_SHIFT=1, TH_DECAY_SHIFT=16))
    add(v=V_MIN, th=TH_MAX, threshold=32767,
        regs_over=dict(TH_SHIFT=0, TH_DECAY_SHIFT=16))        # the most negative margin
    add(v=V_MAX, th=0, threshold=0, regs_over=dict(TH_SHIFT=15))  # the largest margin
    for shift in (0, 1, 8, 15, 16):
        for learn in (0, 1):
            for decay_now in (0, 1):
                add(th=TH_MAX, learn=learn, decay_now=decay_now, th_plus=255,
                    regs_over=dict(TH_DECAY_SHIFT=shift))
                add(th=1, learn=learn, decay_now=decay_now, th_plus=0,
                    regs_over=dict(TH_DECAY_SHIFT=shift))
    add(th=TH_MAX - 5, th_plus=5, regs_over=dict(TH_DECAY_SHIFT=16))   # exactly TH_MAX
    add(th=TH_MAX - 5, th_plus=6, regs_over=dict(TH_DECAY_SHIFT=16))   # saturates
    add(reset=-32768, refractory=15, bias=-1)
    add(reset=32767, refractory=0, bias=1)
    return vectors


def test_neuron_expected_function_known_answers():
    params = dict(threshold=100, wta=0, reset=-5, bias=3, leak_shift=2, refractory=3, th_plus=10)
    regs = registers_with(TH_SHIFT=1, TH_DECAY_SHIFT=2)
    # v: LEAK(-10, 2) = -10 + ceil(10 / 4) = -7; then -7 + 200 + 3 = 196.
    # th: 30 - ceil(30 / 4) = 22; threshold 100 + 11 = 111; th_fire 22 + 10 = 32.
    assert expected_neuron(params, -10, 30, 0, 200, 1, 1, regs) == dict(
        v_rest=196, ref_rest=0, th_rest=22, candidate=1, margin=85, v_fire=-5, ref_fire=3,
        th_fire=32)
    # Refractory: leak only, ref counts down, no candidate; learn = 0 leaves theta alone.
    assert expected_neuron(params, 1000, 30, 2, 200, 0, 1, regs) == dict(
        v_rest=750, ref_rest=1, th_rest=30, candidate=0, margin=750 - 115, v_fire=-5,
        ref_fire=3, th_fire=30)


def run_neuron_vectors(vectors, current_bits=None, **kwargs):
    dut = (NeuronUpdate(**kwargs) if current_bits is None
           else NeuronUpdate(current_bits, **kwargs))
    mismatches = []

    async def testbench(ctx):
        for vector in vectors:
            params, v, th, ref, current, learn, decay_now, regs = vector
            ctx.set(dut.params, params)
            ctx.set(dut.v, v)
            ctx.set(dut.th, th)
            ctx.set(dut.ref, ref)
            ctx.set(dut.current, current)
            ctx.set(dut.learn, learn)
            ctx.set(dut.decay_now, decay_now)
            ctx.set(dut.regs, hw_registers(regs))
            await ctx.delay(CLOCK_PERIOD)    # one vector per time step, as if clocked
            got = {name: ctx.get(getattr(dut, name)) for name in NEURON_OUTPUTS}
            want = expected_neuron(*vector)
            if got != want:
                diff = ", ".join(f"{name}: HDL {got[name]} expected {want[name]}"
                                 for name in NEURON_OUTPUTS if got[name] != want[name])
                mismatches.append(
                    f"params={params} v={v} th={th} ref={ref} current={current} learn={learn} "
                    f"decay_now={decay_now} TH_SHIFT={regs['TH_SHIFT']} "
                    f"TH_DECAY_SHIFT={regs['TH_DECAY_SHIFT']}\n    {diff}")

    simulate(dut, testbench, clocked=False)
    return mismatches


def test_neuron_update_random_vectors():
    rng = np.random.default_rng(77)
    vectors = [random_neuron_vector(rng) for _ in range(3000)]
    outcomes = Counter()
    for vector in vectors:
        want = expected_neuron(*vector)
        params, v, th, ref, current, learn, decay_now, regs = vector
        outcomes["candidate"] += want["candidate"]
        outcomes["refractory"] += ref > 0
        outcomes["saturated high"] += ref == 0 and want["v_rest"] == V_MAX
        outcomes["saturated low"] += ref == 0 and want["v_rest"] == V_MIN
        outcomes["theta decayed"] += want["th_rest"] != th
        outcomes["theta fire saturated"] += learn and want["th_fire"] == TH_MAX
        outcomes["no leak"] += params["leak_shift"] == LEAK_OFF
    for outcome, count in outcomes.items():
        assert count >= 20, f"random neuron vectors hit {outcome!r} only {count} times"
    mismatches = run_neuron_vectors(vectors)
    assert not mismatches, report(mismatches, len(vectors), "neuron updates")


def test_neuron_update_without_the_adaptive_threshold():
    """Built without the adaptive threshold, the update equals the model's for every neuron it
    accepts (th = 0, th_plus = 0), whatever the TH_* registers say."""
    rng = np.random.default_rng(79)
    vectors = []
    for _ in range(2000):
        params, v, th, ref, current, learn, decay_now, regs = random_neuron_vector(rng)
        params = dict(params, th_plus=0)
        vectors.append((params, v, 0, ref, current, learn, decay_now, regs))
    fired = sum(expected_neuron(*vector)["candidate"] for vector in vectors)
    assert fired >= 100 and len(vectors) - fired >= 100, fired
    mismatches = run_neuron_vectors(vectors, adaptive_threshold=False)
    assert not mismatches, report(mismatches, len(vectors), "neuron updates")


def test_neuron_update_with_the_current_width_of_a_core():
    """A core sizes the current from its sources (the UP5K preset: 256 sources, 17 bits);
    the largest currents of that core are exact."""
    sources = 256
    bits = current_bits(sources)
    assert bits == 17
    largest = sources * WEIGHT_MAX
    rng = np.random.default_rng(78)
    vectors = []
    for _ in range(600):
        params, v, th, ref, current, learn, decay_now, regs = random_neuron_vector(rng)
        current = int(rng.choice([-largest, largest, int(rng.integers(-largest, largest + 1))]))
        vectors.append((params, v, th, ref, current, learn, decay_now, regs))
    mismatches = run_neuron_vectors(vectors, bits)
    assert not mismatches, report(mismatches, len(vectors), "neuron updates")


def test_neuron_update_directed_vectors():
    vectors = directed_neuron_vectors()
    mismatches = run_neuron_vectors(vectors)
    assert not mismatches, report(mismatches, len(vectors), "directed neuron updates")


# --- The trace helpers the core uses (phase A decay, spike bumps) -------------------------------

class TraceHelpers(wiring.Component):
    """``datapath.decay`` and ``datapath.bump`` on ports, for the simulator."""
    trace: In(8)
    shift: In(4)
    increment: In(8)
    all_to_all: In(1)
    decayed: Out(8)
    bumped: Out(8)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [
            self.decayed.eq(decay_hdl(self.trace, self.shift)),
            self.bumped.eq(bump_hdl(self.trace, self.increment, self.all_to_all)),
        ]
        return m


def test_trace_decay_and_bump():
    """Phase A's ``DECAY`` for every trace and shift; a spike's trace (set, or incremented and
    saturated) for every trace at a spread of increments."""
    rng = np.random.default_rng(5)
    vectors = [(x, s, int(rng.integers(0, 256)), int(rng.integers(0, 2)))
               for x in range(TRACE_MAX + 1) for s in range(16)]
    vectors += [(x, 0, inc, a2a) for x in (0, 1, 127, 128, 254, 255)
                for inc in (0, 1, 127, 128, 254, 255) for a2a in (0, 1)]
    dut = TraceHelpers()
    mismatches = []

    async def testbench(ctx):
        for x, s, inc, a2a in vectors:
            ctx.set(dut.trace, x)
            ctx.set(dut.shift, s)
            ctx.set(dut.increment, inc)
            ctx.set(dut.all_to_all, a2a)
            want_decayed = int(decay(x, s))
            want_bumped = int(saturate(x + inc, 0, TRACE_MAX)) if a2a else inc
            got_decayed, got_bumped = ctx.get(dut.decayed), ctx.get(dut.bumped)
            if (got_decayed, got_bumped) != (want_decayed, want_bumped):
                mismatches.append(
                    f"trace={x} shift={s} increment={inc} all_to_all={a2a}: HDL decay="
                    f"{got_decayed} bump={got_bumped}; expected decay={want_decayed} "
                    f"bump={want_bumped}")

    simulate(dut, testbench, clocked=False)
    assert not mismatches, report(mismatches, len(vectors), "trace updates")


# --- 4. Conversion to Verilog -----------------------------------------------------------------

@pytest.mark.parametrize("make", [
    pytest.param(lambda: HashPipeline(1), id="HashPipeline-1"),
    pytest.param(lambda: HashPipeline(2), id="HashPipeline-2"),
    pytest.param(lambda: HashPipeline(4), id="HashPipeline-4"),
    pytest.param(lambda: HashPipeline(8), id="HashPipeline-8"),
    pytest.param(SynapseUpdate, id="SynapseUpdate"),
    pytest.param(NeuronUpdate, id="NeuronUpdate"),
    pytest.param(TraceHelpers, id="TraceHelpers"),
])
def test_converts_to_verilog(make):
    component = make()
    text = verilog.convert(component, name="top", emit_src=False)
    assert "module top" in text
    # A second conversion of the same instance works too (nothing is consumed by elaboration).
    assert verilog.convert(component, name="top", emit_src=False) == text

