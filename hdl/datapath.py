"""The arithmetic of the core: one synapse update and one neuron update.

Both implement ``docs/core-model.md`` exactly; :mod:`plasticore.sim.arith` and
:mod:`plasticore.sim.model` are their references, and ``tests/test_hdl_datapath.py`` compares them
on random vectors in Amaranth's simulator.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import (COIN_NEVER, COIN_RANDOM_BITS, LEAK_OFF, PLASTICITY_FROZEN, SR_RANDOM_BITS,
                      TH_MAX, TRACE_MAX, V_MAX, V_MIN, WEIGHT_MAX)
from .layouts import NeuronParams, Registers, SynapseWord

__all__ = ["SynapseUpdate", "NeuronUpdate", "CURRENT_BITS", "current_bits", "decay", "bump",
           "saturate", "ceilsh", "low_mask", "lt_const", "feature_value_ok"]

#: Width of the signed input-current accumulator of the largest core: 16384 sources of weight
#: 255 fit. A core sizes its own with :func:`current_bits`.
CURRENT_BITS = 24


def current_bits(n_sources: int) -> int:
    """Width of a signed accumulator of ``n_sources`` weights of either sign."""
    return (n_sources * WEIGHT_MAX).bit_length() + 1


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


def _saturate_signed(value, width: int):
    """A signed ``value`` clamped to the range of ``signed(width)``, decided by its top bits
    alone (no comparator)."""
    top = value[width - 1:]
    fits = (top == 0) | (top == (1 << len(top)) - 1)
    lowest = Const(-(1 << (width - 1)), signed(width))
    highest = Const((1 << (width - 1)) - 1, signed(width))
    return Mux(fits, value[:width].as_signed(), Mux(value[-1], lowest, highest))


def lt_const(value, limit: int):
    """``value < limit`` for an unsigned ``value`` and a constant ``limit``, as plain logic.

    Yosys maps a comparison to a carry chain whose cells hold nothing else (on iCE40 a logic cell
    per bit); against a constant, a chain of AND/OR terms packs into a few LUT4s instead.
    """
    width = len(value)
    if limit <= 0:
        return Const(0)
    if limit >= 1 << width:
        return Const(1)
    below = Const(0)                # value[:i] < limit[:i]
    for i in range(width):
        if (limit >> i) & 1:
            below = ~value[i] | below
        else:
            below = ~value[i] & below
    return below


def low_mask(shift, width: int):
    """``(1 << shift) - 1`` on ``width`` bits for an unsigned ``shift`` (all ones from
    ``shift >= width`` on): a table, one LUT per bit, no shifter or adder."""
    table = 0
    entries = 1 << len(shift)
    for s in range(entries):
        table |= ((1 << min(s, width)) - 1) << (s * width)
    return Const(table, entries * width).word_select(shift, width)


def shift_right(m, value, shift, name):
    """``value >> shift`` for an unsigned ``value`` of at most 16 bits and a 4-bit ``shift``,
    as the product ``value * 2**(15 - shift) >> 15``: on iCE40 a DSP and a 4-to-16 decoder
    instead of a barrel shifter."""
    assert len(value) <= 16 and len(shift) == 4
    table = 0
    for s in range(16):
        table |= (1 << (15 - s)) << (16 * s)
    scale = Signal(16, name=f"{name}_scale")
    m.d.comb += scale.eq(Const(table, 256).word_select(shift, 16))
    product = Signal(32, name=f"{name}_product")
    m.d.comb += product.eq(value * scale)
    return product[15:15 + len(value)]


def ceilsh(value, shift, max_shift=None):
    """``(value + 2**shift - 1) >> shift`` for an unsigned ``value``.

    ``shift`` must not exceed ``max_shift`` (default ``len(value)``), the widest mask built.
    """
    if max_shift is None:
        max_shift = len(value)
    return (value + low_mask(shift, max_shift)) >> shift


def decay(value, shift):
    """Trace decay ``x - ceilsh(x, s)``: reaches 0.

    For ``s >= len(x)`` the quotient is ``x > 0``, which a shift of ``len(x)`` gives too, so the
    shift is clamped to ``len(x)`` (a power of two) and the sum is one bit wider than ``x``.
    """
    width = len(value)
    top = _log2_exact(width)
    if len(shift) > top:
        clamped = Mux(shift[top:].any(), width, shift[:top])
    else:
        clamped = shift
    return (value - ceilsh(value, clamped, width))[:width]


def _log2_exact(n):
    assert n & (n - 1) == 0, n
    return n.bit_length() - 1


def bump(trace, increment, all_to_all):
    """A trace at a spike: set to ``increment``, or incremented and saturated at 255."""
    total = trace + increment
    return Mux(all_to_all, Mux(total[8], TRACE_MAX, total[:8]), increment)


def feature_value_ok(space_is_nparam, space_is_nstate, half, value, *, wta: bool,
                     adaptive_threshold: bool):
    """Whether a word written to the neuron parameters or state needs only the features a core
    was built with: ``wta`` clear without the winner-take-all pool, ``th_plus`` and ``th`` zero
    without the adaptive threshold. ``half`` selects the word of the neuron's 64 bits (see
    ``Space.NPARAM`` and ``Space.NSTATE`` in :mod:`.core`). Constant 1 when nothing is left out."""
    ok = Const(1)
    if not wta:
        ok = ok & ~(space_is_nparam & ~half & value[15])                 # wta: bit 15
    if not adaptive_threshold:
        ok = ok & ~(space_is_nparam & half & (value[24:32] != 0))        # th_plus: bits 56..63
        ok = ok & ~(space_is_nstate & ~half & (value[16:32] != 0))       # th: bits 16..31
    return ok


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
        room = Signal(9)            # w_max - w; bit 8 set when w > w_max
        m.d.comb += room.eq(w_max - word.w)
        headroom = Mux(room[8], 0, room[:8])
        base = Signal(8)
        m.d.comb += base.eq(Mux(regs.soft_bounds, Mux(self.ltp, headroom, word.w),
                                Mux(self.ltp, regs.a_plus, regs.a_minus)))
        # The total shift: at most 39 from the registers' ranges, but a shift of 24 or more
        # gives what 24 gives (a zero quotient, every random bit compared), so it is clamped.
        total_shift = Signal(range(39 + 1))
        m.d.comb += total_shift.eq(Mux(self.ltp, regs.shift_plus, regs.shift_minus) + gate)

        s1_product = Signal(16)
        s1_shift = Signal(range(SR_RANDOM_BITS + 1))
        s1_apply = Signal()
        s1_word = Signal(SynapseWord)
        s1_ltp = Signal()
        s1_draw = Signal(32)
        s1_above = Signal()         # w > w_max
        m.d.sync += [
            s1_product.eq(self.trace * base),
            s1_shift.eq(Mux(lt_const(total_shift, SR_RANDOM_BITS + 1), total_shift,
                            SR_RANDOM_BITS)),
            s1_apply.eq(self.enable & word.en & (word.p != PLASTICITY_FROZEN)
                        & (self.trace != 0)),
            s1_word.eq(word),
            s1_ltp.eq(self.ltp),
            s1_draw.eq(self.draw),
            s1_above.eq(room[8]),
        ]

        # Stage 2: stochastic rounding, bounds, consolidation.
        mask = low_mask(s1_shift, SR_RANDOM_BITS)
        round_up = (s1_draw[:SR_RANDOM_BITS] & mask) < (s1_product & mask)
        # The quotient is zero from a shift of 16 on. A step of 256 or more moves any weight
        # to a bound, so the step saturates at 256 (9 bits).
        quotient = Signal(16)
        m.d.comb += quotient.eq(Mux(s1_shift[4:] != 0, 0,
                                    shift_right(m, s1_product, s1_shift[:4], "quotient")))
        step_full = Signal(17)
        m.d.comb += step_full.eq(quotient + round_up)
        step = Signal(9)
        m.d.comb += step.eq(Mux(step_full[8:] != 0, 256, step_full[:8]))
        step_nonzero = step != 0

        w = s1_word.w
        raised = Signal(10)
        m.d.comb += raised.eq(w + step)
        over = Signal(11)           # w_max - raised; bit 10 set when raised > w_max
        m.d.comb += over.eq(w_max - raised)
        w_ltp = Mux(~over[10], raised[:8], Mux(s1_above, w, w_max))
        lowered = Signal(10)        # w - step; bit 9 set when step > w
        m.d.comb += lowered.eq(w - step)
        w_ltd = Mux(lowered[9], 0, lowered[:8])

        # coin: the top 8 bits of the draw below 2**(8 - e), i.e. their top e bits zero.
        coin_exponent = Signal(7)
        m.d.comb += coin_exponent.eq(regs.consol_q0 + regs.consol_qs * s1_word.p)
        coin_top = s1_draw[32 - COIN_RANDOM_BITS:]
        coin = (lt_const(coin_exponent, COIN_NEVER)
                & ((coin_top & _top_mask(coin_exponent[:4], COIN_RANDOM_BITS)) == 0))
        counting = (regs.consol_en & step_nonzero & (s1_word.p < regs.p_learn_max) & coin)
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
                with m.If(regs.consol_en & step_nonzero & (s1_word.c != 0)):
                    m.d.comb += updated.c.eq(s1_word.c - 1)

        m.d.sync += [
            self.new_word.eq(updated),
            self.changed.eq(updated.as_value() != s1_word.as_value()),
        ]
        return m


def _top_mask(exponent, width):
    """The top ``min(exponent, width)`` bits of ``width`` set, for a small unsigned exponent:
    a table, as :func:`low_mask`."""
    entries = 1 << len(exponent)
    table = 0
    for e in range(entries):
        k = min(e, width)
        table |= (((1 << k) - 1) << (width - k)) << (e * width)
    return Const(table, entries * width).word_select(exponent, width)


class NeuronUpdate(wiring.Component):
    """Phase C of one neuron, before the spike decision: leak, integrate, threshold.

    Contract
    --------
    Combinational (latency 0). The spike decision (and the winner-take-all pool) belongs to the
    caller, which then writes either the ``*_rest`` or the ``*_fire`` values.

    Parameters
    ----------
    current_bits : int
        Width of ``current``: enough for the core's sources (:func:`current_bits`); the default
        fits any core.
    adaptive_threshold : bool
        Build the adaptive threshold. Without it ``th`` passes through unchanged (``th_rest`` and
        ``th_fire`` equal ``th``) and the threshold is the base threshold alone: the same
        results as with it for every neuron with ``th = 0`` and ``th_plus = 0``, which a core
        built without it requires (see :func:`feature_value_ok`).

    Members
    -------
    params : In(NeuronParams)
    v : In(signed(16))
    th : In(16)
    ref : In(4)
    current : In(signed(current_bits))
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

    def __init__(self, current_bits: int = CURRENT_BITS, *, adaptive_threshold: bool = True):
        if not isinstance(current_bits, int) or not 9 < current_bits <= CURRENT_BITS:
            raise ValueError(f"current_bits must be an int from 10 to {CURRENT_BITS}, not "
                             f"{current_bits!r}")
        self._current_bits = current_bits
        self._adaptive_threshold = bool(adaptive_threshold)
        super().__init__({
            "params": In(NeuronParams),
            "v": In(signed(16)),
            "th": In(16),
            "ref": In(4),
            "current": In(signed(current_bits)),
            "learn": In(1),
            "decay_now": In(1),
            "regs": In(Registers),
            "v_rest": Out(signed(16)),
            "ref_rest": Out(4),
            "th_rest": Out(16),
            "candidate": Out(1),
            "margin": Out(signed(19)),
            "v_fire": Out(signed(16)),
            "ref_fire": Out(4),
            "th_fire": Out(16),
        })

    @property
    def current_bits(self) -> int:
        return self._current_bits

    def elaborate(self, platform):
        m = Module()
        prm, regs = self.params, self.regs
        v = self.v

        # Leak: v - sign(v) * ceil(|v| / 2**s). For v < 0 that is v - floor(v / 2**s); for
        # v >= 0, v - floor(v / 2**s) - (v mod 2**s != 0). floor(v / 2**s) is
        # ((v + 2**15) >> s) - 2**(15 - s), the shift of an unsigned word (a DSP).
        negative = v[15]
        s = prm.leak_shift
        offset = Cat(v[:15], ~v[15])                   # v + 2**15
        scale = Signal(16)
        table = 0
        for k in range(16):
            table |= (1 << (15 - k)) << (16 * k)
        m.d.comb += scale.eq(Const(table, 256).word_select(s, 16))
        product = Signal(32)
        m.d.comb += product.eq(offset * scale)
        inexact = ~negative & ((v[:15] & low_mask(s, 15)) != 0)
        leaked = Signal(signed(17))
        m.d.comb += leaked.eq(Mux(s == LEAK_OFF, v,
                                  v - product[15:31] + scale - inexact))

        refractory = self.ref != 0
        total = Signal(signed(max(self._current_bits, 17) + 2))
        m.d.comb += total.eq(leaked + self.current + prm.bias)
        integrated = _saturate_signed(total, 16)
        m.d.comb += [
            self.v_rest.eq(Mux(refractory, leaked, integrated)),
            self.ref_rest.eq(Mux(refractory, self.ref - 1, self.ref)),
        ]

        if not self._adaptive_threshold:
            margin = Signal(signed(19))
            m.d.comb += [
                self.th_rest.eq(self.th), self.th_fire.eq(self.th),
                margin.eq(self.v_rest - prm.threshold),
                self.margin.eq(margin), self.candidate.eq(~refractory & ~margin[18]),
                self.v_fire.eq(prm.reset), self.ref_fire.eq(prm.refractory),
            ]
            return m

        decays = self.learn & self.decay_now & ~regs.th_decay_shift[4]
        th_decayed = Signal(16)
        th_shift = regs.th_decay_shift[:4]
        th_inexact = (self.th[:15] & low_mask(th_shift, 15)) != 0
        m.d.comb += th_decayed.eq(self.th - shift_right(m, self.th, th_shift, "th_decay")
                                  - th_inexact)
        m.d.comb += self.th_rest.eq(Mux(decays, th_decayed, self.th))
        threshold = Signal(17)
        m.d.comb += threshold.eq(prm.threshold
                                 + shift_right(m, self.th_rest, regs.th_shift, "th_scaled"))
        margin = Signal(signed(19))
        m.d.comb += margin.eq(self.v_rest - threshold)
        m.d.comb += [
            self.margin.eq(margin),
            self.candidate.eq(~refractory & ~margin[18]),
        ]

        raised = Signal(17)
        m.d.comb += raised.eq(self.th_rest + prm.th_plus)
        m.d.comb += [
            self.v_fire.eq(prm.reset),
            self.ref_fire.eq(prm.refractory),
            self.th_fire.eq(Mux(self.learn, Mux(raised[16], TH_MAX, raised[:16]), self.th_rest)),
        ]
        return m
