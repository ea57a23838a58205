"""cocotb bus functional models of a UART line (8 data bits, no parity, 1 or 2 stop bits).

:class:`UartSource` drives a serial line from a queue of bytes and :class:`UartSink` receives
one into a buffer, in the style of alexforencich's ``cocotbext-uart`` (a queue, a background
task, ``write``/``write_nowait``/``idle``/``wait`` and ``read``/``read_nowait``/``count``/
``empty``/``clear``), with two differences that matter for a link that must never lose data
silently: the sink re-checks the start bit in its middle and checks the stop bit, counting the
characters without one in :attr:`UartSink.framing_errors` instead of returning a wrong byte.

Timing is counted in cycles of the DUT clock, never in simulated time, so a BFM with the same
divisor as the gateware (:class:`plasticore.hdl.uart.UARTRx`, :class:`~plasticore.hdl.uart.UARTTx`)
matches it exactly, and Amaranth's Verilog (1 ps precision) needs no timescale. A non-integer
number of cycles per bit (``divisor * 1.02``, or ``baud_error=``) is allowed: bit boundaries are
then placed at the nearest cycle to their exact position, by accumulating the fractions, which
is how a test exercises a ±2% baud rate mismatch.

Both BFMs act at **falling** clock edges (the source drives there, the sink samples there), half
a period away from the rising edges where the DUT's registers change, so nothing depends on the
simulator's ordering of events within a timestep.
"""

from __future__ import annotations

import math
from collections import deque

import cocotb
from cocotb.triggers import (ClockCycles, Event, FallingEdge, RisingEdge, SimTimeoutError,
                             select)

from .cocotb_queue import QueuedSource

__all__ = ["UartSource", "UartSink"]


def _cycles_per_bit(divisor, baud_error):
    if isinstance(divisor, bool) or not isinstance(divisor, (int, float)):
        raise TypeError(f"Divisor must be a number of clock cycles per bit, not {divisor!r}")
    if isinstance(baud_error, bool) or not isinstance(baud_error, (int, float)):
        raise TypeError(f"Baud error must be a number, not {baud_error!r}")
    if not -0.5 < baud_error < 0.5:
        raise ValueError(f"Baud error must be a fraction between -0.5 and 0.5, not {baud_error!r}")
    cycles = divisor / (1 + baud_error)
    if not math.isfinite(cycles) or cycles < 2:
        raise ValueError(f"A bit must last at least 2 clock cycles, not {cycles!r} "
                         f"(divisor {divisor!r}, baud error {baud_error!r})")
    return cycles


def _check_stop_bits(stop_bits):
    if stop_bits not in (1, 2) or isinstance(stop_bits, bool):
        raise ValueError(f"Stop bits must be 1 or 2, not {stop_bits!r}")
    return stop_bits


class UartSource(QueuedSource):
    """Drives a UART line from a queue of bytes (queue methods:
    :class:`~.cocotb_queue.QueuedSource`).

    Contract
    --------
    The line is set high (idle) when the source is constructed. A background task sends the
    queued bytes in order, back to back: a start bit (0), eight data bits LSB first, and
    ``stop_bits`` stop bits (1), each ``divisor / (1 + baud_error)`` clock cycles long on
    average, every bit boundary falling on a falling edge of *clock*. A burst starts at the
    first falling clock edge after :meth:`write` queues its first byte.

    Parameters
    ----------
    signal : cocotb handle
        The line (one bit), e.g. the DUT's ``rx`` input.
    clock : cocotb handle
        The clock that times the bits.
    divisor : int or float
        Clock cycles per bit at the nominal rate.
    baud_error : float, optional
        Relative baud rate error of this source: ``0.02`` sends 2% fast (bits of
        ``divisor / 1.02`` cycles), ``-0.02`` 2% slow.
    stop_bits : int, optional
        1 (default) or 2.

    Attributes
    ----------
    sent : int
        Bytes sent completely (stop bits included).

    Raises
    ------
    TypeError, ValueError
        If the timing parameters are not numbers or give bits shorter than 2 cycles.
    """

    def __init__(self, signal, clock, divisor, *, baud_error=0.0, stop_bits=1):
        self._signal = signal
        self._clock = clock
        self._cycles_per_bit = _cycles_per_bit(divisor, baud_error)
        self._stop_bits = _check_stop_bits(stop_bits)
        super().__init__()
        self._fraction = 0.0
        self.sent = 0
        self._signal.value = 1
        self._task = cocotb.start_soon(self._run())

    @property
    def cycles_per_bit(self) -> float:
        """Clock cycles per bit, baud error included."""
        return self._cycles_per_bit

    async def write(self, data) -> None:
        """Queue *data* (bytes, a bytearray or an iterable of ints 0..255) for sending.

        The queue is unbounded, so this never waits; use :meth:`wait` to wait until it is sent.
        """
        self.write_nowait(data)

    def write_nowait(self, data) -> None:
        """Queue *data* for sending."""
        self._put(bytes(data))

    async def _bit(self, level: int) -> None:
        self._signal.value = level
        self._fraction += self._cycles_per_bit
        cycles = int(self._fraction)
        self._fraction -= cycles
        await ClockCycles(self._clock, cycles, rising=False)

    async def _run(self):
        while True:
            if self._queue.empty():
                self._active = False
                self._idle.set()
                byte = await self._queue.get()
                self._active = True
                # Woken by write(), which runs at any time: align the burst to the clock.
                self._fraction = 0.0
                await FallingEdge(self._clock)
            else:
                byte = self._queue.get_nowait()
            await self._bit(0)
            for i in range(8):
                await self._bit(byte >> i & 1)
            for _ in range(self._stop_bits):
                await self._bit(1)
            self.sent += 1


class UartSink:
    """Receives bytes from a UART line, checking start and stop bits.

    Contract
    --------
    A background task waits for the line to be high, then for a falling edge (a start bit).
    Half a bit later it checks the line again: if it is high, the edge was a glitch and is
    ignored (counted in :attr:`glitches`). It then samples the eight data bits and the stop bit
    at their middles, counted in falling edges of *clock* from the start edge (each character
    resynchronises, as a real receiver does). A character whose stop bit is low is dropped and
    counted in :attr:`framing_errors`; the task then waits for the line to return high, so a
    break counts once. Good bytes are appended to a buffer that :meth:`read` takes from.

    Parameters
    ----------
    signal : cocotb handle
        The line (one bit), e.g. the DUT's ``tx`` output.
    clock : cocotb handle
        The clock that times the bits.
    divisor : int or float
        Clock cycles per bit at the nominal rate.
    baud_error : float, optional
        Relative baud rate error of this sink: ``0.02`` expects bits 2% shorter.

    Attributes
    ----------
    received : int
        Good bytes received since construction.
    framing_errors : int
        Characters dropped for a low stop bit.
    glitches : int
        Falling edges rejected because the line was high again in the middle of the start bit.

    Raises
    ------
    TypeError, ValueError
        If the timing parameters are not numbers or give bits shorter than 2 cycles.
    """

    def __init__(self, signal, clock, divisor, *, baud_error=0.0):
        self._signal = signal
        self._clock = clock
        self._cycles_per_bit = _cycles_per_bit(divisor, baud_error)
        self._buffer: deque[int] = deque()
        self._arrived = Event()
        self.received = 0
        self.framing_errors = 0
        self.glitches = 0
        # Falling clock edges from the start edge to the middle of bit k (0: start, 9: stop).
        # The line changes at a rising edge (a DUT register), so the n-th falling edge after it
        # is n - 0.5 cycles later: n = floor(x) + 1 lands within half a cycle of the middle x.
        self._sample_points = [math.floor((k + 0.5) * self._cycles_per_bit) + 1
                               for k in range(10)]
        self._task = cocotb.start_soon(self._run())

    @property
    def cycles_per_bit(self) -> float:
        """Clock cycles per bit, baud error included."""
        return self._cycles_per_bit

    async def read(self, count: int = 1, *, timeout_cycles: int | None = None) -> bytes:
        """Take *count* bytes, waiting for them to arrive.

        Parameters
        ----------
        count : int
            Bytes to take.
        timeout_cycles : int, optional
            Give up after this many clock cycles. Nothing is taken then, so the bytes that did
            arrive are still in the buffer.

        Raises
        ------
        cocotb.triggers.SimTimeoutError
            If fewer than *count* bytes arrived within *timeout_cycles*.
        """
        if timeout_cycles is None:
            await self._until_buffered(count)
        else:
            index, _ = await select(self._until_buffered(count),
                                    ClockCycles(self._clock, timeout_cycles, rising=False))
            if index != 0:
                raise SimTimeoutError(
                    f"UART sink: {len(self._buffer)} of {count} bytes arrived within "
                    f"{timeout_cycles} clock cycles ({self.framing_errors} framing errors)")
        return self.read_nowait(count)

    def read_nowait(self, count: int | None = None) -> bytes:
        """Take up to *count* bytes that have arrived (all of them by default), without
        waiting."""
        if count is None:
            count = len(self._buffer)
        return bytes(self._buffer.popleft() for _ in range(min(count, len(self._buffer))))

    def count(self) -> int:
        """Bytes that have arrived and not been taken."""
        return len(self._buffer)

    def empty(self) -> bool:
        """No byte is waiting to be taken."""
        return not self._buffer

    def clear(self) -> None:
        """Drop every byte waiting to be taken (the counters are kept)."""
        self._buffer.clear()

    async def _until_buffered(self, count: int) -> None:
        while len(self._buffer) < count:
            self._arrived.clear()
            await self._arrived.wait()

    def _level(self) -> int:
        return int(self._signal.value)

    async def _run(self):
        line_rises = RisingEdge(self._signal)
        line_falls = FallingEdge(self._signal)
        while True:
            if self._level() == 0:
                await line_rises
            await line_falls
            elapsed = 0
            byte = 0
            for k, point in enumerate(self._sample_points):
                await ClockCycles(self._clock, point - elapsed, rising=False)
                elapsed = point
                level = self._level()
                if k == 0:
                    if level:
                        self.glitches += 1
                        break
                elif k <= 8:
                    byte |= level << (k - 1)
                elif level:
                    self._buffer.append(byte)
                    self.received += 1
                    self._arrived.set()
                else:
                    self.framing_errors += 1
