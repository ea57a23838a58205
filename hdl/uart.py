"""UART receiver and transmitter (8 data bits, no parity, 1 stop bit) with stream interfaces.

The bit period is a whole number of clock cycles, the *divisor*: 104 for 115200 baud and 4 for
3 Mbaud on a 12 MHz iCEBreaker (``docs/protocol.md``; ``IdentifyInfo.baud_divisor`` reports it to
the host). The receiver tolerates a rate mismatch of at least ±2% at every legal divisor.
"""

import operator

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["MIN_DIVISOR", "UARTRx", "UARTTx"]

#: The smallest divisor (clock cycles per bit) the receiver supports: it needs a mid-bit sample
#: point at least one cycle away from either edge of a bit after the synchroniser's delay.
MIN_DIVISOR = 4

#: Consecutive cycles the receiver must see the line high, after reset or a framing error,
#: before it looks for a start bit: one more than the synchroniser's stages, so that after reset
#: at least one of them is a real sample of the line rather than the synchroniser's initial 1.
_IDLE_CYCLES = 3

def _check_divisor(divisor):
    if isinstance(divisor, bool):
        raise TypeError(f"Divisor must be an integer, not {divisor!r}")
    try:
        divisor = operator.index(divisor)
    except TypeError:
        raise TypeError(f"Divisor must be an integer, not {divisor!r}") from None
    if divisor < MIN_DIVISOR:
        raise ValueError(f"Divisor must be at least {MIN_DIVISOR} clock cycles per bit, "
                         f"not {divisor}")
    return divisor


class UARTRx(wiring.Component):
    """UART receiver, 8N1, one byte stream out.

    Contract
    --------
    ``rx`` passes through a two-flip-flop :class:`~amaranth.lib.cdc.FFSynchronizer` (reset-less,
    initialised to 1, the idle level). A low level seen while idle starts a character; it is
    checked again in the middle of the start bit (a shorter glitch is ignored), then the eight
    data bits (LSB first) and the stop bit are sampled at their middles, ``divisor`` cycles
    apart. Sample points are placed so that the synchroniser delay is compensated; the receiver
    accepts a transmitter whose rate differs from its own by ±2% (tested at divisors 4 and 12).

    * **Byte out.** A character with a good stop bit is offered on ``data`` from the cycle after
      the stop bit's sample, about 9.5 bit times after the start bit's falling edge on ``rx``.
      ``data`` follows the :mod:`amaranth.lib.stream` rules: ``valid`` and ``payload`` hold
      until the transfer, so the consumer has a whole character time (about 9.5 bit times) to
      take a byte.
    * **Overrun.** The line has no flow control. If a byte completes while the previous one is
      still offered (not taken, and not being taken in that cycle), the new byte is dropped, the
      offered one stays, and ``overrun`` is high for one cycle.
    * **Framing error.** If the stop bit is low, the byte is dropped, ``framing_error`` is high
      for one cycle, and the receiver waits for ``rx`` to be high (the line idle) for three
      consecutive cycles before it looks for the next start bit, so a break or a stuck-low line
      counts as one error.
    * **Reset.** After reset the receiver also waits for ``rx`` to be high for three cycles
      before looking for a start bit (a line held low from reset is not a character),
      ``data.valid`` is low and both pulses are low. The synchroniser has no reset.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR` (4).

    Members
    -------
    rx : In(1, init=1)
        The serial line (asynchronous to the clock; idle high).
    data : Out(stream.Signature(8))
        Received bytes.
    framing_error : Out(1)
        One-cycle pulse per character dropped for a missing stop bit.
    overrun : Out(1)
        One-cycle pulse per byte dropped because the previous byte had not been taken.

    Raises
    ------
    TypeError
        If *divisor* is not an integer.
    ValueError
        If *divisor* is less than 4.
    """

    def __init__(self, divisor):
        self._divisor = _check_divisor(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "data": Out(stream.Signature(8)),
            "framing_error": Out(1),
            "overrun": Out(1),
        })

    @property
    def divisor(self) -> int:
        """Clock cycles per bit."""
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor

        rx = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(self.rx, rx, init=1)

        # Through the synchroniser, the start bit's mid-bit check samples the line
        # 1.5 + first_wait cycles (+-0.5, where the edge falls in its cycle) after the edge;
        # make that as close to half a bit as whole cycles allow, rounding early.
        first_wait = (divisor - 3) // 2
        # Also the RESYNC state's count of high cycles. Its reset value covers the two cycles in
        # which the synchroniser still shows its initial 1 rather than the line.
        timer = Signal(range(divisor), init=_IDLE_CYCLES - 1)
        bits = Signal(range(8))
        shreg = Signal(8)

        m.d.sync += [self.framing_error.eq(0), self.overrun.eq(0)]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += self.data.valid.eq(0)

        with m.FSM(init="RESYNC"):
            with m.State("RESYNC"):
                with m.If(~rx):
                    m.d.sync += timer.eq(_IDLE_CYCLES - 1)
                with m.Elif(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.next = "IDLE"

            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(first_wait)
                    m.next = "START"

            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(divisor - 1), bits.eq(0)]
                    m.next = "DATA"

            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [
                        shreg.eq(Cat(shreg[1:], rx)),
                        timer.eq(divisor - 1),
                        bits.eq(bits + 1),
                    ]
                    with m.If(bits == 7):
                        m.next = "STOP"

            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    with m.If(self.data.valid & ~self.data.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.data.payload.eq(shreg), self.data.valid.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [self.framing_error.eq(1), timer.eq(_IDLE_CYCLES - 1)]
                    m.next = "RESYNC"

        return m


class UARTTx(wiring.Component):
    """UART transmitter, 8N1, one byte stream in.

    Contract
    --------
    A byte taken from ``data`` is sent as a start bit (low), eight data bits LSB first and one
    stop bit (high), each ``divisor`` cycles long. ``tx`` comes straight from a flip-flop, so it
    never glitches.

    * **Handshake.** ``data`` follows the :mod:`amaranth.lib.stream` rules. ``ready`` depends only
      on the transmitter's state (never on ``valid``): it is high while the transmitter is idle
      and in the last cycle of a stop bit, so a stream of bytes is sent back to back, one
      character every ``10 * divisor`` cycles, with no idle time between characters.
    * **Latency.** The start bit begins in the cycle after the transfer.
    * **Reset.** ``tx`` is high (idle) and ``ready`` is high; a character being sent is cut
      short, leaving the line high.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR` (4).

    Members
    -------
    data : In(stream.Signature(8))
        Bytes to send.
    tx : Out(1, init=1)
        The serial line (idle high).

    Raises
    ------
    TypeError
        If *divisor* is not an integer.
    ValueError
        If *divisor* is less than 4.
    """

    def __init__(self, divisor):
        self._divisor = _check_divisor(divisor)
        super().__init__({
            "data": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    @property
    def divisor(self) -> int:
        """Clock cycles per bit."""
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor

        shreg = Signal(10, init=(1 << 10) - 1)   # stop, data[7:0], start; bit 0 is on the line
        bits_left = Signal(range(11))
        timer = Signal(range(divisor))

        m.d.comb += [
            self.tx.eq(shreg[0]),
            self.data.ready.eq((bits_left == 0) | ((bits_left == 1) & (timer == 0))),
        ]
        with m.If(bits_left != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [
                    shreg.eq(Cat(shreg[1:], 1)),
                    bits_left.eq(bits_left - 1),
                    timer.eq(divisor - 1),
                ]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [
                shreg.eq(Cat(0, self.data.payload, 1)),
                bits_left.eq(10),
                timer.eq(divisor - 1),
            ]
        return m
