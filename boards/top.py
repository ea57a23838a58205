"""Board top-levels: clocking, reset, the UART pins and status LEDs around the SoC.

:class:`BoardTop` is the design a board's bitstream is built from. It takes the board's
oscillator (through an EHXPLLL on ECP5, :mod:`.pll`), holds the SoC in reset until the PLL has
locked and a power-on delay has passed (:class:`PowerOnReset`), connects the SoC's UART to the
board's USB-UART bridge (``platform.request("uart", 0)``; RX resynchronised, idling high) and
drives three LEDs (:class:`StatusLEDs`): a heartbeat, a run in progress, and an error.
"""

from amaranth import ClockDomain, ClockSignal, Elaboratable, Module, Mux, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import FFSynchronizer, ResetSynchronizer
from amaranth.lib.wiring import In, Out

from .pll import ehxplll, solve_highres

__all__ = ["StatusLEDs", "PowerOnReset", "BoardTop"]


class StatusLEDs(wiring.Component):
    """Three status LEDs, in the ``sync`` domain.

    Contract
    --------
    A prescaler divides the clock into ticks of ``1 / tick_hz`` s (one counter, so that the LEDs
    cost few logic cells). ``heartbeat_led`` toggles every ``tick_hz / (2 * blink_hz)`` ticks
    (a ``blink_hz`` Hz blink: the clock runs and the design is out of reset). ``running_led``
    follows ``running``. ``error_led`` lights on the cycle after an ``error`` pulse and stays lit
    until ``round(stretch_s * tick_hz)`` ticks have passed since the last pulse (between one tick
    less and that long), so that a one-cycle pulse is visible. Reset: every LED off, the counts
    restart.

    Parameters
    ----------
    clock_hz : int
    blink_hz : float
        Heartbeat frequency (default 1 Hz).
    stretch_s : float
        How long an error pulse lights ``error_led`` (default 0.1 s).
    tick_hz : float
        The prescaler's rate (default 100 Hz).

    Members
    -------
    running : In(1)
    error : In(1)
        One-cycle pulses.
    heartbeat_led, running_led, error_led : Out(1)
        High = lit.
    """

    running: In(1)
    error: In(1)
    heartbeat_led: Out(1)
    running_led: Out(1)
    error_led: Out(1)

    def __init__(self, clock_hz: int, *, blink_hz: float = 1.0, stretch_s: float = 0.1,
                 tick_hz: float = 100.0):
        if not isinstance(clock_hz, int) or clock_hz < 2:
            raise ValueError(f"clock_hz must be an int of at least 2, not {clock_hz!r}")
        self._prescale = max(1, round(clock_hz / tick_hz))
        self._half_period = max(1, round(tick_hz / (2 * blink_hz)))
        self._stretch = max(1, round(stretch_s * tick_hz))
        super().__init__()

    @property
    def prescale(self) -> int:
        """Clock cycles per tick."""
        return self._prescale

    @property
    def half_period(self) -> int:
        """Ticks between heartbeat toggles."""
        return self._half_period

    @property
    def stretch(self) -> int:
        """Ticks an error pulse keeps ``error_led`` lit (at most)."""
        return self._stretch

    def elaborate(self, platform):
        m = Module()
        tick = Signal()
        prescaler = Signal(range(self._prescale))
        m.d.comb += tick.eq(prescaler == self._prescale - 1)
        m.d.sync += prescaler.eq(Mux(tick, 0, prescaler + 1))

        beat = Signal(range(self._half_period))
        with m.If(tick):
            with m.If(beat == self._half_period - 1):
                m.d.sync += [beat.eq(0), self.heartbeat_led.eq(~self.heartbeat_led)]
            with m.Else():
                m.d.sync += beat.eq(beat + 1)

        left = Signal(range(self._stretch + 1))
        with m.If(self.error):
            m.d.sync += left.eq(self._stretch)
        with m.Elif(tick & (left != 0)):
            m.d.sync += left.eq(left - 1)
        m.d.comb += [self.error_led.eq(left != 0), self.running_led.eq(self.running)]
        return m


class PowerOnReset(wiring.Component):
    """A power-on reset in the reset-less ``por`` domain (the board's oscillator).

    Contract
    --------
    ``ready`` is low from configuration until ``locked`` (resynchronised into ``por``) has been
    high for ``cycles`` consecutive cycles; it drops again at once if ``locked`` falls. The
    counter starts from its configuration value, 0: the ``por`` domain has no reset. (iCE40 block
    RAMs read as zeros for about 3 us after configuration; ECP5 PLLs need time to lock.)

    Parameters
    ----------
    cycles : int
        Cycles of the ``por`` clock to wait.

    Members
    -------
    locked : In(1)
        The clock the design runs on is stable (a PLL's LOCK; tie high without a PLL).
    ready : Out(1)
    """

    locked: In(1)
    ready: Out(1)

    def __init__(self, cycles: int):
        if not isinstance(cycles, int) or cycles < 1:
            raise ValueError(f"cycles must be a positive int, not {cycles!r}")
        self._cycles = cycles
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        locked = Signal()
        m.submodules.locked_sync = FFSynchronizer(self.locked, locked, o_domain="por")
        timer = Signal(range(self._cycles + 1))
        with m.If(~locked):
            m.d.por += timer.eq(0)
        with m.Elif(timer != self._cycles):
            m.d.por += timer.eq(timer + 1)
        m.d.comb += self.ready.eq(timer == self._cycles)
        return m


class BoardTop(Elaboratable):
    """The whole design of one board: clocking, reset, UART pins, LEDs and the SoC.

    Parameters
    ----------
    board : plasticore.boards.targets.Board
        Which board: its family, clock, oscillator and LED assignment.
    soc : plasticore.hdl.soc.SoC
        Built for ``board.clock_hz`` and ``board.divisor``.
    por_us : float
        Power-on delay after the clock is stable, in microseconds (default 100).
    """

    def __init__(self, board, soc, *, por_us: float = 100.0):
        self._board, self._soc, self._por_us = board, soc, por_us

    @property
    def soc(self):
        return self._soc

    def elaborate(self, platform):
        board = self._board
        m = Module()

        # Clocking: the oscillator drives the power-on reset; the SoC runs on board.clock_hz.
        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        m.domains.sync = cd_sync = ClockDomain("sync")
        osc_io = platform.request(board.oscillator, 0, dir="-")
        m.submodules.osc_buf = osc_buf = io.Buffer("i", osc_io)
        m.d.comb += ClockSignal("por").eq(osc_buf.i)
        locked = Signal()
        if board.oscillator_hz == board.clock_hz:
            m.d.comb += [ClockSignal("sync").eq(osc_buf.i), locked.eq(1)]
        else:
            # nextpnr derives the output's constraint from the PLL's settings and the
            # oscillator's (its log: "Derived frequency constraint of 48.0 MHz for net clk");
            # build.py fails a build whose report has no clock at board.clock_hz.
            m.submodules.pll = ehxplll(solve_highres(board.oscillator_hz, board.clock_hz),
                                       board.oscillator_hz, osc_buf.i, cd_sync.clk, locked)

        m.submodules.por = por = PowerOnReset(max(1, round(board.oscillator_hz
                                                            * self._por_us / 1e6)))
        m.d.comb += por.locked.eq(locked)
        m.submodules.reset_sync = ResetSynchronizer(~por.ready, domain="sync")

        m.submodules.soc = soc = self._soc
        uart_io = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx_buf = uart_rx_buf = io.Buffer("i", uart_io.rx)
        m.submodules.uart_tx_buf = uart_tx_buf = io.Buffer("o", uart_io.tx)
        m.submodules.rx_sync = FFSynchronizer(uart_rx_buf.i, soc.uart_rx, init=1)
        m.d.comb += uart_tx_buf.o.eq(soc.uart_tx)

        m.submodules.leds = leds = StatusLEDs(board.clock_hz)
        m.d.comb += [leds.running.eq(soc.running), leds.error.eq(soc.error)]
        for role, led in (("heartbeat", leds.heartbeat_led), ("running", leds.running_led),
                          ("error", leds.error_led)):
            led_io = platform.request(*board.leds[role], dir="-")
            m.submodules[f"{role}_led_buf"] = led_buf = io.Buffer("o", led_io)
            m.d.comb += led_buf.o.eq(led)
        return m
