"""The counter-based random number generator in gateware.

The permutation ``H`` of ``docs/core-model.md`` (section 3.2): eight Speck32-style
add-rotate-xor rounds with the round index as key. It needs no multiplier.
"""

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import HASH_ROT_HI, HASH_ROT_LO, HASH_ROUNDS

__all__ = ["hash_rounds", "HashPipeline", "HashHalves"]


def hash_rounds(hi, lo, first: int, count: int, m=None):
    """Rounds ``first .. first + count - 1`` of ``H`` on the 16-bit halves.

    With a module ``m``, every round's halves become combinational signals of ``m``. Pass one
    for more than a round or two: a round uses ``hi`` and ``lo`` twice each (``lo`` is xored with
    the new ``hi``, which contains the old ``lo``), so as plain expressions the tree grows about
    2.6 times a round, and eight rounds take minutes to simulate and to convert to Verilog.
    """
    for i in range(first, first + count):
        hi = ((hi.rotate_right(HASH_ROT_HI) + lo)[:16] ^ i)
        if m is not None:
            hi_r = Signal(unsigned(16), name=f"round{i}_hi")
            m.d.comb += hi_r.eq(hi)
            hi = hi_r
        lo = lo.rotate_left(HASH_ROT_LO) ^ hi
        if m is not None:
            lo_r = Signal(unsigned(16), name=f"round{i}_lo")
            m.d.comb += lo_r.eq(lo)
            lo = lo_r
    return hi, lo


class HashPipeline(wiring.Component):
    """``y = H(x)``, pipelined.

    Contract
    --------
    Fixed latency of :attr:`latency` cycles: the value presented on ``x`` in cycle ``n`` appears
    on ``y`` in cycle ``n + latency``. A new value may be presented every cycle; there is no
    handshake and no stall. With ``rounds_per_stage = 8`` the latency is 1 (one register at the
    output), or 0 without the output register. Registers reset to 0.

    Parameters
    ----------
    rounds_per_stage : int
        Rounds computed between two registers: 1, 2, 4 or 8. Fewer rounds per stage shorten the
        longest path (one 16-bit adder a round) at the cost of more flip-flops.
    registered_output : bool
        Whether the last stage ends in a register. Without it ``y`` is combinational from the
        last internal register (or from ``x``), for a user that registers it anyway.

    Members
    -------
    x : In(32)
    y : Out(32)
    """

    x: In(32)
    y: Out(32)

    def __init__(self, rounds_per_stage: int = 2, *, registered_output: bool = True):
        if rounds_per_stage not in (1, 2, 4, 8):
            raise ValueError(f"rounds_per_stage must be 1, 2, 4 or 8, not {rounds_per_stage!r}")
        self._rounds_per_stage = rounds_per_stage
        self._registered_output = bool(registered_output)
        super().__init__()

    @property
    def latency(self) -> int:
        return HASH_ROUNDS // self._rounds_per_stage - (not self._registered_output)

    def elaborate(self, platform):
        m = Module()
        hi, lo = self.x[16:], self.x[:16]
        stages = HASH_ROUNDS // self._rounds_per_stage
        for stage in range(stages):
            next_hi, next_lo = hash_rounds(hi, lo, stage * self._rounds_per_stage,
                                           self._rounds_per_stage, m)
            if stage == stages - 1 and not self._registered_output:
                hi, lo = next_hi, next_lo
                break
            hi = Signal(unsigned(16), name=f"hi{stage}")
            lo = Signal(unsigned(16), name=f"lo{stage}")
            m.d.sync += [hi.eq(next_hi), lo.eq(next_lo)]
        m.d.comb += self.y.eq(Cat(lo, hi))
        return m


class HashHalves(wiring.Component):
    """``y = H(x)`` in two passes through one unit of half the rounds, for a user that needs a
    value at most every other cycle (a single-ported synapse bank's learning walk).

    Contract
    --------
    In a cycle with ``first`` high, rounds 0 to 3 of ``x`` are computed and registered; in a
    cycle with ``first`` low, rounds 4 to 7 of that register appear on ``y``
    (combinationally). So ``y`` is ``H(x)`` in a cycle with ``first`` low if the cycle before
    had ``first`` high and this ``x``: a latency of 1, with ``first`` alternating. Each cycle's
    path is four rounds, against eight for :class:`HashPipeline` with
    ``rounds_per_stage = 8``, and there is one set of four rounds. The register resets to 0.

    Members
    -------
    x : In(32)
    first : In(1)
    y : Out(32)
    """

    x: In(32)
    first: In(1)
    y: Out(32)

    latency = 1

    def elaborate(self, platform):
        m = Module()
        half = HASH_ROUNDS // 2
        assert half == 4, "the round index of the second pass is the first's with bit 2 set"
        held = Signal(32)
        source = Signal(32)
        m.d.comb += source.eq(Mux(self.first, self.x, held))
        hi, lo = source[16:], source[:16]
        for k in range(half):
            index = Cat(Const(k, 2), ~self.first)         # k, or k + 4 in the second pass
            hi_next = Signal(unsigned(16), name=f"pass_round{k}_hi")
            m.d.comb += hi_next.eq((hi.rotate_right(HASH_ROT_HI) + lo)[:16] ^ index)
            lo_next = Signal(unsigned(16), name=f"pass_round{k}_lo")
            m.d.comb += lo_next.eq(lo.rotate_left(HASH_ROT_LO) ^ hi_next)
            hi, lo = hi_next, lo_next
        with m.If(self.first):
            m.d.sync += held.eq(Cat(lo, hi))
        m.d.comb += self.y.eq(Cat(lo, hi))
        return m
