"""The plasticore SoC: a core behind the link protocol on a UART.

    uart_rx -> UARTRx -> receive FIFO -> SlipDecoder -> frame buffer -> CommandEngine <-> Core
    uart_tx <- UARTTx <- transmit FIFO <- SlipEncoder <--------------------- CommandEngine

The same design is the virtual board (simulated in Verilator behind a pseudo-terminal) and the
gateware of every board; boards add clocking, pins and LEDs around it.
"""

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import CoreConfig
from ..protocol import MAX_BODY
from .core import Core
from .engine import CommandEngine
from .fifo import StreamFIFO
from .framing import SlipDecoder, SlipEncoder
from .uart import UARTRx, UARTTx

__all__ = ["SoC"]


class SoC(wiring.Component):
    """A core, its command engine and a UART.

    Contract
    --------
    Speaks ``docs/protocol.md`` on ``uart_rx`` / ``uart_tx`` (8N1, ``divisor`` clock cycles per
    bit). The receive FIFO absorbs bytes while the engine works on a frame or a tick; a byte that
    finds it full is lost and counted (a host within the protocol's limits never causes that).
    The transmit path never drops: when its FIFO is full the engine, and with it the core, waits.
    Reset: as for :class:`~.core.Core` and :class:`~.engine.CommandEngine`.

    Parameters
    ----------
    config : CoreConfig
    banks, memory, hash_rounds_per_stage, instrument
        As for :class:`~.core.Core`.
    divisor : int
        Clock cycles per UART bit.
    clock_hz : int
        The clock frequency (reported by IDENTIFY).
    rx_fifo_depth, tx_fifo_depth, queue_depth : int
        Bytes of the receive and transmit FIFOs; entries of the input-spike queue.
    trace_list : bool
        As for :class:`~.core.Core`.
    paced, wta, adaptive_threshold : bool
        The optional parts to build (see :class:`~.engine.CommandEngine` and
        :class:`~.core.Core`); IDENTIFY reports them as capabilities.

    Members
    -------
    uart_rx : In(1)
    uart_tx : Out(1)
    running : Out(1)
        A run is in progress (for a status LED).
    error : Out(1)
        A one-cycle pulse when a frame is refused with ``ERROR``, a received byte has a framing
        error, or a received byte is lost (for a status LED, which should stretch it).
    """

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    running: Out(1)
    error: Out(1)

    def __init__(self, config: CoreConfig, *, banks: int = 4, memory: str = "bram",
                 hash_rounds_per_stage: int = 2, instrument: bool = True, divisor: int = 4,
                 clock_hz: int = 12_000_000,
                 rx_fifo_depth: int = 512, tx_fifo_depth: int = 512, queue_depth: int = 256,
                 trace_list: bool = True, paced: bool = True, wta: bool = True,
                 adaptive_threshold: bool = True):
        self._core_args = dict(banks=banks, memory=memory,
                               hash_rounds_per_stage=hash_rounds_per_stage,
                               instrument=instrument, trace_list=trace_list, wta=wta,
                               adaptive_threshold=adaptive_threshold)
        self._config = config
        self._divisor = divisor
        self._fifo_depths = (rx_fifo_depth, tx_fifo_depth)
        self._engine_args = dict(banks=banks, spram=memory == "spram", queue_depth=queue_depth,
                                 rx_buffer=rx_fifo_depth, clock_hz=clock_hz,
                                 baud_divisor=divisor, paced=paced, wta=wta,
                                 adaptive_threshold=adaptive_threshold)
        super().__init__()

    @property
    def config(self) -> CoreConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        rx_depth, tx_depth = self._fifo_depths
        m.submodules.uart_rx = rx = UARTRx(self._divisor)
        m.submodules.uart_tx = tx = UARTTx(self._divisor)
        m.submodules.rx_fifo = rx_fifo = StreamFIFO(width=8, depth=rx_depth)
        m.submodules.tx_fifo = tx_fifo = StreamFIFO(width=8, depth=tx_depth)
        m.submodules.decoder = decoder = SlipDecoder(MAX_BODY)
        m.submodules.encoder = encoder = SlipEncoder()
        m.submodules.engine = engine = CommandEngine(self._config, **self._engine_args)
        # The engine refuses bad commands before they reach the core.
        m.submodules.core = core = Core(self._config, validate=False, **self._core_args)
        m.submodules.frame_buffer = buffer = Memory(shape=8, depth=MAX_BODY, init=[])

        m.d.comb += [rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx),
                     self.running.eq(engine.running),
                     self.error.eq(engine.refused | rx.framing_error | rx.overrun),
                     engine.framing_error.eq(rx.framing_error),
                     engine.rx_overflow.eq(rx.overrun)]
        wiring.connect(m, rx.data, rx_fifo.w_stream)
        wiring.connect(m, rx_fifo.r_stream, decoder.line)
        wiring.connect(m, decoder.write, buffer.write_port())
        read = buffer.read_port()
        m.d.comb += [read.addr.eq(engine.buf_addr), engine.buf_data.eq(read.data)]
        wiring.connect(m, decoder.done, engine.frame)
        wiring.connect(m, engine.core_cmd, core.cmd)
        wiring.connect(m, core.rsp, engine.core_rsp)
        wiring.connect(m, engine.tx, encoder.body)
        wiring.connect(m, encoder.line, tx_fifo.w_stream)
        wiring.connect(m, tx_fifo.r_stream, tx.data)
        return m
