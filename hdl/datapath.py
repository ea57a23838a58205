"""The arithmetic of the core: one synapse update and one neuron update.

Both implement ``docs/core-model.md`` exactly; :mod:`plasticore.sim.arith` and
:mod:`plasticore.sim.model` are their references, and ``tests/test_hdl_datapath.py`` compares them
on random vectors in Amaranth's simulator.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import (COIN_NEVER, COIN_RANDOM_BITS, LEAK_OFF, PLASTICITY_FROZEN, SR_RANDOM_BITS,
                      TH_MAX, TRACE_MAX, V_MAX, V_MIN)
from .layouts import NeuronParams, Registers, SynapseWord

__all__ = ["SynapseUpdate", "NeuronUpdate", "CURRENT_BITS", "decay", "bump", "saturate",
           "ceilsh"]

#: Width of the signed input-current accumulator: 16384 sources of weight 255 fit.
CURRENT_BITS = 24


def saturate(m, value, lo: int, hi: int, shape):
    """A signal of ``shape`` holding ``value`` clamped to ``lo .. hi``."""
    result = Signal(shape)
    with m.If(value < lo):
        m.d.comb += result.eq(lo)
    with m.Elif(value > hi):
        m.d.comb += result.eq(hi)
    with m.Else():
        m.d.comb += result.eq(value)
    return result


def ceilsh(value, shift):
    """``(value + 2**shift - 1) >> shift`` for an unsigned ``value``."""
    return (value + (Const(1, unsigned(17)) << shift) - 1) >> shift


def decay(value, shift):
    """Trace decay ``x - ceilsh(x, s)``: reaches 0."""
    return (value - ceilsh(value, shift))[:len(value)]


def bump(trace, increment, all_to_all):
    """A trace at a spike: set to ``increment``, or incremented and saturated at 255."""
    total = trace + increment
    return Mux(all_to_all, Mux(total > TRACE_MAX, TRACE_MAX, total), increment)


class SynapseUpdate(wiring.Component):
    """One lane of the learning engine: the updated value of one synapse word.

    Implements phase B (depression, ``ltp = 0``) and phase D (potentiation, ``ltp = 1``) of
    ``docs/core-model.md`` for one synapse, including plasticity-level gating, stochastic
    rounding and consolidation.

    Contract
    --------
    A fixed two-cycle pipeline with no handshake: the inputs of cycle ``n`` produce
    ``new_word`` and ``changed`` in cycle ``n + 2``; a new synapse may enter every cycle.
    ``regs`` must hold steady while an update is in flight. Registers reset to 0.

    Members
    -------
    ltp : In(1)
        1 for potentiation at a postsynaptic spike, 0 for depression at a presynaptic event.
    enable : In(1)
        ``learn`` and the rule's enable register; 0 passes the word through unchanged.
    word : In(SynapseWord)
    trace : In(8)
        ``x[s]`` for potentiation, ``y[j]`` for depression.
    draw : In(32)
        ``RAND(stream, s, j)`` of this synapse in this tick.
    regs : In(Registers)
    new_word : Out(SynapseWord)
    changed : Out(1)
        ``new_word`` differs from ``word``.
    """

    ltp: In(1)
    enable: In(1)
    word: In(SynapseWord)
    trace: In(8)
    draw: In(32)
    regs: In(Registers)
    new_word: Out(SynapseWord)
    changed: Out(1)

    latency = 2

    def elaborate(self, platform):
        m = Module()
        regs, word = self.regs, self.word

        # Stage 1: the product, the total shift, and whether the synapse may change.
        gate = Signal(4)
        with m.Switch(word.p):
            for p in range(PLASTICITY_FROZEN):
                with m.Case(p):
                    m.d.comb += gate.eq(getattr(regs, f"gate_shift_{p}"))
        w_max = regs.w_max
        headroom = Mux(word.w < w_max, w_max - word.w, 0)[:8]
        base = Signal(8)
        m.d.comb += base.eq(Mux(regs.soft_bounds, Mux(self.ltp, headroom, word.w),
                                Mux(self.ltp, regs.a_plus, regs.a_minus)))

        s1_product = Signal(16)
        s1_shift = Signal(range(SR_RANDOM_BITS + 16))
        s1_apply = Signal()
        s1_word = Signal(SynapseWord)
        s1_ltp = Signal()
        s1_draw = Signal(32)
        m.d.sync += [
            s1_product.eq(self.trace * base),
            s1_shift.eq(Mux(self.ltp, regs.shift_plus, regs.shift_minus) + gate),
            s1_apply.eq(self.enable & word.en & (word.p != PLASTICITY_FROZEN)
                        & (self.trace != 0)),
            s1_word.eq(word),
            s1_ltp.eq(self.ltp),
            s1_draw.eq(self.draw),
        ]

        # Stage 2: stochastic rounding, bounds, consolidation.
        mask = Signal(SR_RANDOM_BITS)
        m.d.comb += mask.eq((Const(1, unsigned(SR_RANDOM_BITS + 1)) << s1_shift) - 1)
        round_up = (s1_draw[:SR_RANDOM_BITS] & mask) < (s1_product & mask)
        step = Signal(17)
        m.d.comb += step.eq((s1_product >> s1_shift) + round_up)

        w = s1_word.w
        raised = Signal(18)
        m.d.comb += raised.eq(w + step)
        w_ltp = Mux(raised <= w_max, raised, Mux(w > w_max, w, w_max))
        w_ltd = Mux(step > w, 0, w - step)

        coin_exponent = Signal(7)
        m.d.comb += coin_exponent.eq(regs.consol_q0 + regs.consol_qs * s1_word.p)
        coin_top = s1_draw[32 - COIN_RANDOM_BITS:]
        coin = ((coin_exponent < COIN_NEVER)
                & (coin_top < (Const(1 << COIN_RANDOM_BITS, 9) >> coin_exponent)))
        counting = (regs.consol_en & (step != 0) & (s1_word.p < regs.p_learn_max) & coin)
        promote = counting & (s1_word.c + 1 >= regs.consol_c_max)

        updated = Signal(SynapseWord)
        m.d.comb += updated.eq(s1_word)
        with m.If(s1_apply):
            with m.If(s1_ltp):
                m.d.comb += updated.w.eq(w_ltp)
                with m.If(promote):
                    m.d.comb += [updated.c.eq(0), updated.p.eq(s1_word.p + 1)]
                with m.Elif(counting):
                    m.d.comb += updated.c.eq(s1_word.c + 1)
            with m.Else():
                m.d.comb += updated.w.eq(w_ltd)
                with m.If(regs.consol_en & (step != 0) & (s1_word.c != 0)):
                    m.d.comb += updated.c.eq(s1_word.c - 1)

        m.d.sync += [
            self.new_word.eq(updated),
            self.changed.eq(updated.as_value() != s1_word.as_value()),
        ]
        return m


class NeuronUpdate(wiring.Component):
    """Phase C of one neuron, before the spike decision: leak, integrate, threshold.

    Contract
    --------
    Combinational (latency 0). The spike decision (and the winner-take-all pool) belongs to the
    caller, which then writes either the ``*_rest`` or the ``*_fire`` values.

    Members
    -------
    params : In(NeuronParams)
    v : In(signed(16))
    th : In(16)
    ref : In(4)
    current : In(signed(CURRENT_BITS))
        Sum of the signed weights of this tick's presynaptic events onto the neuron.
    learn : In(1)
    decay_now : In(1)
        This tick is one on which theta decays (``t mod 2**TH_DECAY_PERIOD == 0``).
    regs : In(Registers)
    v_rest : Out(signed(16))
        ``v`` after leak and (when not refractory) integration.
    ref_rest : Out(4)
    th_rest : Out(16)
        ``th`` after this tick's decay.
    candidate : Out(1)
        Not refractory and ``v_rest >= threshold + (th_rest >> TH_SHIFT)``.
    margin : Out(signed(19))
        ``v_rest - threshold - (th_rest >> TH_SHIFT)``: the winner-take-all key.
    v_fire, ref_fire, th_fire : Out
        The state after a spike: the reset potential, the refractory period, and theta raised
        by ``th_plus`` when learning.
    """

    params: In(NeuronParams)
    v: In(signed(16))
    th: In(16)
    ref: In(4)
    current: In(signed(CURRENT_BITS))
    learn: In(1)
    decay_now: In(1)
    regs: In(Registers)
    v_rest: Out(signed(16))
    ref_rest: Out(4)
    th_rest: Out(16)
    candidate: Out(1)
    margin: Out(signed(19))
    v_fire: Out(signed(16))
    ref_fire: Out(4)
    th_fire: Out(16)

    def elaborate(self, platform):
        m = Module()
        prm, regs = self.params, self.regs

        magnitude = Signal(17)
        m.d.comb += magnitude.eq(Mux(self.v < 0, -self.v, self.v))
        leak_step = Signal(17)
        m.d.comb += leak_step.eq(ceilsh(magnitude, prm.leak_shift))
        leaked = Signal(signed(17))
        with m.If(prm.leak_shift == LEAK_OFF):
            m.d.comb += leaked.eq(self.v)
        with m.Elif(self.v < 0):
            m.d.comb += leaked.eq(self.v + leak_step)
        with m.Else():
            m.d.comb += leaked.eq(self.v - leak_step)

        refractory = self.ref != 0
        total = Signal(signed(CURRENT_BITS + 2))
        m.d.comb += total.eq(leaked + self.current + prm.bias)
        integrated = saturate(m, total, V_MIN, V_MAX, signed(16))
        m.d.comb += [
            self.v_rest.eq(Mux(refractory, leaked, integrated)),
            self.ref_rest.eq(Mux(refractory, self.ref - 1, self.ref)),
        ]

        decays = self.learn & self.decay_now & (regs.th_decay_shift < 16)
        m.d.comb += self.th_rest.eq(Mux(decays, decay(self.th, regs.th_decay_shift[:4]),
                                        self.th))
        threshold = Signal(17)
        m.d.comb += threshold.eq(prm.threshold + (self.th_rest >> regs.th_shift))
        m.d.comb += [
            self.margin.eq(self.v_rest - threshold),
            self.candidate.eq(~refractory & (self.v_rest >= threshold)),
        ]

        raised = Signal(17)
        m.d.comb += raised.eq(self.th_rest + prm.th_plus)
        m.d.comb += [
            self.v_fire.eq(prm.reset),
            self.ref_fire.eq(prm.refractory),
            self.th_fire.eq(Mux(self.learn, Mux(raised > TH_MAX, TH_MAX, raised), self.th_rest)),
        ]
        return m
