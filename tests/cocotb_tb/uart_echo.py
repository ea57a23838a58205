"""cocotb tests of the UART echo design, ``UartEcho`` in ``tests/test_hdl_uart_framing.py``.

The design has one echo channel per divisor in :data:`DIVISORS` (``rx`` → ``UARTRx`` → FIFO →
``UARTTx`` → ``tx``). Ports: ``clk``, ``rst`` (synchronous, active high), and per channel *i*
``rx__i``, ``tx__i``, ``framing_errors__i`` and ``overruns__i`` (8-bit counters of the
receiver's pulses). The divisors are the iCEBreaker's (12 MHz): 4 for 3 Mbaud, 104 for 115200.
The tests drive and check the lines with :mod:`plasticore.sim.cocotb_uart`.
"""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from plasticore.sim.cocotb_uart import UartSink, UartSource

#: Clock cycles per bit of each channel, in port order.
DIVISORS = (4, 104)
CLOCK_PERIOD_NS = 10


class TB:
    """Clock, reset and one source and sink on the echo channel with *divisor*; every other
    channel's ``rx`` idles high."""

    def __init__(self, dut, divisor, *, source_error=0.0, sink_error=0.0):
        self.dut = dut
        self.channel = DIVISORS.index(divisor)
        dut.rst.value = 1
        for i in range(len(DIVISORS)):
            dut[f"rx__{i}"].value = 1
        Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
        self.rx = dut[f"rx__{self.channel}"]
        self.source = UartSource(self.rx, dut.clk, divisor, baud_error=source_error)
        self.sink = UartSink(dut[f"tx__{self.channel}"], dut.clk, divisor,
                             baud_error=sink_error)
        self.char_cycles = 10 * divisor

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3, rising=False)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2, rising=False)

    def counter(self, name):
        return self.dut[f"{name}__{self.channel}"].value.to_unsigned()

    async def echo(self, data):
        await self.source.write(data)
        # Generous: the echo lags a character or two behind, plus rate mismatch.
        received = await self.sink.read(len(data),
                                        timeout_cycles=(len(data) + 4) * self.char_cycles * 2)
        await self.source.wait()
        return received

    def check_clean(self):
        assert self.sink.framing_errors == 0
        assert self.sink.glitches == 0
        assert self.counter("framing_errors") == 0
        assert self.counter("overruns") == 0
        assert self.sink.empty() and self.source.idle()


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def echo_every_byte_value_at_3_mbaud(dut):
    tb = TB(dut, 4)
    await tb.reset()
    data = bytes(range(256))
    assert await tb.echo(data) == data
    await ClockCycles(dut.clk, 2 * tb.char_cycles)
    tb.check_clean()


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def echo_at_115200_baud(dut):
    tb = TB(dut, 104)
    await tb.reset()
    data = bytes([0x00, 0xFF, 0x55, 0xAA, 0xC0, 0xDB, 0x01, 0x80, 0x7E, 0x3C])
    assert await tb.echo(data) == data
    await ClockCycles(dut.clk, 2 * tb.char_cycles)
    tb.check_clean()


@cocotb.test(timeout_time=2, timeout_unit="ms")
@cocotb.parametrize(baud_error=[0.02, -0.02])
async def echo_with_baud_error(dut, baud_error):
    # The host sends 2% off the nominal rate, and reads what the core sends 2% off the other
    # way: the DUT's receiver and the sink BFM both see a 2% mismatch.
    tb = TB(dut, 4, source_error=baud_error, sink_error=-baud_error)
    await tb.reset()
    data = bytes((i * 37 + 11) % 256 for i in range(128))
    assert await tb.echo(data) == data
    await ClockCycles(dut.clk, 2 * tb.char_cycles)
    tb.check_clean()


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def break_is_one_framing_error(dut):
    tb = TB(dut, 4)
    monitor = UartSink(tb.rx, dut.clk, 4)     # watches the line the source drives
    await tb.reset()
    await tb.source.write(b"\x12")
    await tb.source.wait()
    # A break: the line low for 3 characters, then idle.
    tb.rx.value = 0
    await ClockCycles(dut.clk, 3 * tb.char_cycles, rising=False)
    tb.rx.value = 1
    await ClockCycles(dut.clk, tb.char_cycles, rising=False)
    assert tb.counter("framing_errors") == 1
    assert monitor.framing_errors == 1
    data = b"\x34\x56"
    await tb.source.write(data)
    assert await tb.sink.read(3, timeout_cycles=8 * tb.char_cycles) == b"\x12" + data
    assert await monitor.read(3, timeout_cycles=tb.char_cycles) == b"\x12" + data
    assert tb.counter("framing_errors") == 1 and tb.counter("overruns") == 0
    assert tb.sink.framing_errors == 0 and tb.sink.empty() and tb.source.idle()
