# amaranth: UnusedElaboratable=no
"""The link's gateware building blocks: UART, CRC-16, SLIP decoder and encoder.

Unit tests in Amaranth's simulator against :mod:`plasticore.protocol`, the one definition of
the framing (seeded numpy random data, so every run is the same), plus one cocotb run of a UART
echo design in Verilator with the in-house UART bus functional models
(:mod:`plasticore.sim.cocotb_uart`) at the iCEBreaker's production divisors.
"""

import struct
from pathlib import Path

import numpy as np
import pytest
from amaranth import ClockDomain, Elaboratable, Module, Value
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory, MemoryData, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from plasticore import cache_root
from plasticore import protocol
from plasticore.hdl.framing import (BodyByte, Crc16, FrameStatus, SlipDecoder, SlipEncoder,
                                    frame_done_layout)
from plasticore.hdl.uart import UARTRx, UARTTx
from plasticore.protocol import END, ESC, ESC_END, ESC_ESC, MAX_BODY, crc16
from plasticore.sim.build import build_cocotb, run_cocotb, write_verilog

from cocotb_tb import uart_echo

CLOCK_PERIOD = 1e-6
BUILD_ROOT = cache_root() / "sim"
SPECIALS = (END, ESC, ESC_END, ESC_ESC)


# --- Simulation helpers -----------------------------------------------------------------------

def simulate(dut, main, *background, max_cycles=100_000):
    """Run testbench *main* with *background* testbenches; fail (rather than hang) if *main*
    has not finished after *max_cycles* clock cycles."""
    async def watchdog(ctx):
        await ctx.delay(max_cycles * CLOCK_PERIOD)
        raise AssertionError(f"the testbench did not finish within {max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(CLOCK_PERIOD)
    for testbench in (watchdog, *background):
        sim.add_testbench(testbench, background=True)
    sim.add_testbench(main)
    sim.run()


async def put(ctx, port, payload):
    """Offer *payload* on stream *port* and wait for the transfer (lib.stream rules 1-3)."""
    ctx.set(port.payload, payload)
    ctx.set(port.valid, 1)
    await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


async def feed(ctx, port, payloads, rng=None, pause=0.0):
    """Put every payload, idling a random number of cycles before each with probability
    *pause*."""
    for payload in payloads:
        while rng is not None and rng.random() < pause:
            await ctx.tick()
        await put(ctx, port, payload)


def stream_collector(port, received, *, rng=None, stall=0.0, cycles=None):
    """A background testbench taking every transfer on *port* into *received*.

    ``ready`` is low in a cycle with probability *stall*. It checks the stream rules the producer
    must keep: once ``valid`` is high, ``valid`` and ``payload`` hold until the transfer. If
    *cycles* is a list, the cycle number of each transfer is appended to it.
    """
    async def collector(ctx):
        ready = int(rng is None or rng.random() >= stall)
        ctx.set(port.ready, ready)
        held = None
        cycle = 0
        # `await` rather than `async for`: an assertion raised inside an `async for` over a
        # trigger is masked by the generator's own clean-up error.
        while True:
            _, _, valid, payload = await ctx.tick().sample(port.valid, Value.cast(port.payload))
            cycle += 1
            if held is not None:
                assert valid and payload == held, "valid and payload must hold until a transfer"
            held = None
            if valid and ready:
                received.append(payload)
                if cycles is not None:
                    cycles.append(cycle)
            elif valid:
                held = payload
            ready = int(rng is None or rng.random() >= stall)
            ctx.set(port.ready, ready)
    return collector


def pulse_counter(signal, counts, key):
    """A background testbench counting the pulses of *signal* into ``counts[key]`` and checking
    that each lasts one cycle. It wakes only on rising edges of *signal*, not every cycle."""
    async def counter(ctx):
        counts[key] = 0
        while True:
            await ctx.posedge(signal)
            counts[key] += 1
            await ctx.tick()
            assert not ctx.get(signal), f"{key} must pulse for one cycle"
    return counter


def uart_byte_collector(port, received):
    """A background testbench that keeps ``ready`` high on a :class:`UARTRx` byte stream and
    takes each byte when ``valid`` rises. Bytes arrive a character time apart, so with ``ready``
    high ``valid`` is high for one cycle per byte; waking only then keeps long runs fast."""
    async def collector(ctx):
        ctx.set(port.ready, 1)
        while True:
            await ctx.posedge(port.valid)
            received.append(ctx.get(port.payload))
            await ctx.tick()
            assert not ctx.get(port.valid), "a byte taken with ready high must not stay offered"
    return collector


async def skip(ctx, cycles):
    """Wait for *cycles* clock edges with three wake-ups instead of one per cycle."""
    await ctx.tick()
    if cycles > 1:
        # From just after an edge to the middle of a cycle, never onto an edge.
        await ctx.delay((cycles - 1.5) * CLOCK_PERIOD)
        await ctx.tick()


class Resettable(Elaboratable):
    """*dut* in a ``sync`` domain of its own, so a testbench can drive the reset (``rst``)."""

    def __init__(self, dut):
        self.dut = dut
        self.sync = ClockDomain("sync")

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.sync
        m.submodules.dut = self.dut
        return m


async def pulse_reset(ctx, bench):
    ctx.set(bench.sync.rst, 1)
    await ctx.tick()
    ctx.set(bench.sync.rst, 0)


class LineDriver:
    """Drives a UART line bit by bit from a testbench, at any (fractional) cycles per bit.

    Bit boundaries fall on the clock cycle nearest their exact position, accumulated from the
    first bit, so a rate a few percent off the receiver's is reproduced faithfully.
    """

    def __init__(self, ctx, pin, cycles_per_bit):
        self.ctx, self.pin, self.cycles_per_bit = ctx, pin, cycles_per_bit
        self.exact = 0.0
        self.cycles = 0

    async def level(self, value, bits=1.0):
        self.ctx.set(self.pin, value)
        self.exact += bits * self.cycles_per_bit
        cycles = round(self.exact) - self.cycles
        if cycles > 0:
            await skip(self.ctx, cycles)
            self.cycles += cycles

    async def char(self, byte, stop=1):
        await self.level(0)
        for i in range(8):
            await self.level(byte >> i & 1)
        await self.level(stop)


# --- UART -------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [UARTRx, UARTTx])
def test_uart_divisor_is_checked(cls):
    with pytest.raises(ValueError, match=r"^Divisor must be at least 4 clock cycles per bit, "
                                         r"not 3$"):
        cls(3)
    with pytest.raises(TypeError, match=r"^Divisor must be an integer, not 4\.0$"):
        cls(4.0)
    with pytest.raises(TypeError, match=r"^Divisor must be an integer, not True$"):
        cls(True)
    assert cls(np.int64(104)).divisor == 104


def test_uart_signatures():
    rx, tx = UARTRx(4), UARTTx(4)
    assert set(rx.signature.members) == {"rx", "data", "framing_error", "overrun"}
    assert rx.signature.members["rx"].init == 1
    assert set(tx.signature.members) == {"data", "tx"}
    assert tx.signature.members["tx"].init == 1
    assert rx.data.payload.shape().width == tx.data.payload.shape().width == 8


class Loopback(Elaboratable):
    def __init__(self, divisor):
        self.tx = UARTTx(divisor)
        self.rx = UARTRx(divisor)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = self.tx, self.rx
        m.d.comb += self.rx.rx.eq(self.tx.tx)
        return m


@pytest.mark.parametrize("divisor", [4, 12])
def test_uart_loopback_all_byte_values(divisor):
    dut = Loopback(divisor)
    data = [int(b) for b in np.random.default_rng(divisor).permutation(256)]
    received, pulses = [], {}

    async def main(ctx):
        await feed(ctx, dut.tx.data, data)
        await ctx.tick().repeat(12 * divisor)

    simulate(dut, main, uart_byte_collector(dut.rx.data, received),
             pulse_counter(dut.rx.framing_error, pulses, "framing_error"),
             pulse_counter(dut.rx.overrun, pulses, "overrun"))
    assert received == data
    assert pulses == {"framing_error": 0, "overrun": 0}


@pytest.mark.parametrize("divisor", [4, 5, 12])
def test_uart_tx_waveform(divisor):
    dut = UARTTx(divisor)
    data = [0x00, 0xFF, 0xA5, 0x3C]
    line = []

    async def monitor(ctx):
        async for _, _, tx in ctx.tick().sample(dut.tx):
            line.append(tx)

    async def main(ctx):
        assert ctx.get(dut.tx) == 1 and ctx.get(dut.data.ready) == 1
        await ctx.tick().repeat(3)
        await feed(ctx, dut.data, data)
        await ctx.tick().repeat(12 * divisor)

    simulate(dut, main, monitor)
    start = line.index(0)
    assert set(line[:start]) == {1}
    expected = []
    for byte in data:
        for bit in [0, *(byte >> i & 1 for i in range(8)), 1]:
            expected += [bit] * divisor
    assert line[start:start + len(expected)] == expected
    assert set(line[start + len(expected):]) == {1}


@pytest.mark.parametrize("divisor, baud_error", [
    (4, +0.02), (4, -0.02), (12, +0.02), (12, -0.02), (104, +0.02), (104, -0.02),
])
def test_uart_rx_tolerates_2_percent_rate_error(divisor, baud_error):
    dut = UARTRx(divisor)
    count = 256 if divisor < 100 else 12
    data = [int(b) for b in np.random.default_rng(7).integers(0, 256, count)]
    data[:4] = [0x00, 0xFF, 0x55, 0xAA]
    received, pulses = [], {}

    async def main(ctx):
        line = LineDriver(ctx, dut.rx, divisor / (1 + baud_error))
        await line.level(1, 1.37)           # an odd phase between the line and the clock
        for byte in data:
            await line.char(byte)           # back to back: one stop bit only
        await line.level(1, 2)

    simulate(dut, main, uart_byte_collector(dut.data, received),
             pulse_counter(dut.framing_error, pulses, "framing_error"))
    assert received == data
    assert pulses["framing_error"] == 0


def test_uart_rx_rate_error_test_is_sensitive():
    # Control for the test above: 12% off, the same driver makes the receiver fail.
    dut = UARTRx(12)
    data = list(range(0, 256, 5))
    received, pulses = [], {}

    async def main(ctx):
        line = LineDriver(ctx, dut.rx, 12 / 1.12)
        for byte in data:
            await line.char(byte)
        await line.level(1, 2)

    simulate(dut, main, uart_byte_collector(dut.data, received),
             pulse_counter(dut.framing_error, pulses, "framing_error"))
    assert received != data


@pytest.mark.parametrize("divisor", [4, 12])
@pytest.mark.parametrize("break_bits", [0, 25])
def test_uart_rx_framing_error_drops_the_byte_and_recovers(divisor, break_bits):
    dut = UARTRx(divisor)
    received, pulses = [], {}

    async def main(ctx):
        line = LineDriver(ctx, dut.rx, divisor)
        await line.level(1, 2)
        await line.char(0x41)
        await line.char(0x42, stop=0)          # no stop bit
        if break_bits:
            await line.level(0, break_bits)     # and the line stays low: one error only
        await line.level(1, 1)
        await line.char(0x43)
        await line.level(1, 2)

    simulate(dut, main, uart_byte_collector(dut.data, received),
             pulse_counter(dut.framing_error, pulses, "framing_error"),
             pulse_counter(dut.overrun, pulses, "overrun"))
    assert received == [0x41, 0x43]
    assert pulses == {"framing_error": 1, "overrun": 0}


@pytest.mark.parametrize("divisor", [4, 12])
def test_uart_rx_waits_for_an_idle_line_after_reset(divisor):
    dut = UARTRx(divisor)
    received, pulses = [], {}

    async def main(ctx):
        line = LineDriver(ctx, dut.rx, divisor)
        await line.level(0, 30)                 # held low from reset: not a character
        await line.level(1, 1)
        await line.char(0x5A)
        await line.level(1, 2)

    simulate(dut, main, uart_byte_collector(dut.data, received),
             pulse_counter(dut.framing_error, pulses, "framing_error"))
    assert received == [0x5A]
    assert pulses["framing_error"] == 0


@pytest.mark.parametrize("divisor", [4, 12])
def test_uart_rx_ignores_a_glitch_shorter_than_half_a_bit(divisor):
    dut = UARTRx(divisor)
    received, pulses = [], {}
    glitch = max(1, divisor // 2 - 2)

    async def main(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(5)
        for _ in range(3):
            ctx.set(dut.rx, 0)
            await ctx.tick().repeat(glitch)
            ctx.set(dut.rx, 1)
            await ctx.tick().repeat(3 * divisor)
        line = LineDriver(ctx, dut.rx, divisor)
        await line.char(0x99)
        await line.level(1, 2)

    simulate(dut, main, uart_byte_collector(dut.data, received),
             pulse_counter(dut.framing_error, pulses, "framing_error"))
    assert received == [0x99]
    assert pulses["framing_error"] == 0


def test_uart_rx_overrun_keeps_the_first_byte_and_drops_the_next():
    divisor = 4
    dut = UARTRx(divisor)
    pulses = {}

    async def main(ctx):
        ctx.set(dut.data.ready, 0)
        line = LineDriver(ctx, dut.rx, divisor)
        await line.level(1, 1)
        await line.char(0x11)
        await line.char(0x22)               # completes while 0x11 is still offered
        await line.level(1, 1)
        assert pulses["overrun"] == 1
        assert ctx.get(dut.data.valid) == 1 and ctx.get(dut.data.payload) == 0x11
        ctx.set(dut.data.ready, 1)
        (payload,) = await ctx.tick().sample(dut.data.payload).until(dut.data.valid)
        assert payload == 0x11
        await ctx.tick()
        assert ctx.get(dut.data.valid) == 0
        ctx.set(dut.data.ready, 0)
        await line.char(0x33)
        await line.level(1, 1)
        assert ctx.get(dut.data.valid) == 1 and ctx.get(dut.data.payload) == 0x33

    simulate(dut, main, pulse_counter(dut.overrun, pulses, "overrun"),
             pulse_counter(dut.framing_error, pulses, "framing_error"))
    assert pulses == {"overrun": 1, "framing_error": 0}


def test_uart_reset_mid_character():
    loopback = Loopback(12)
    bench = Resettable(loopback)
    tx, rx = loopback.tx, loopback.rx
    received, pulses = [], {}

    async def main(ctx):
        await put(ctx, tx.data, 0x00)
        await ctx.tick().repeat(12 * 4)         # in the middle of the data bits
        assert ctx.get(tx.tx) == 0
        await pulse_reset(ctx, bench)
        assert ctx.get(tx.tx) == 1 and ctx.get(tx.data.ready) == 1
        await ctx.tick().repeat(12 * 12)
        await feed(ctx, tx.data, [0x81, 0x7E])
        await ctx.tick().repeat(12 * 12)

    simulate(bench, main, uart_byte_collector(rx.data, received),
             pulse_counter(rx.framing_error, pulses, "framing_error"))
    assert received == [0x81, 0x7E]
    assert pulses["framing_error"] == 0


# --- CRC-16 -----------------------------------------------------------------------------------

def test_crc16_known_answer_and_every_byte():
    dut = Crc16()

    async def main(ctx):
        assert ctx.get(dut.crc) == 0xFFFF
        for byte in b"123456789":
            ctx.set(dut.valid, 1)
            ctx.set(dut.byte, byte)
            await ctx.tick()
        ctx.set(dut.valid, 0)
        assert ctx.get(dut.crc) == 0x29B1
        # clear with valid starts a new message with that byte
        ctx.set(dut.clear, 1)
        ctx.set(dut.valid, 1)
        for byte in range(256):
            ctx.set(dut.byte, byte)
            await ctx.tick()
            assert ctx.get(dut.crc) == crc16(bytes([byte])), byte
        ctx.set(dut.valid, 0)
        await ctx.tick()
        assert ctx.get(dut.crc) == 0xFFFF

    simulate(dut, main)


def test_crc16_matches_protocol_on_random_data():
    dut = Crc16()
    rng = np.random.default_rng(16)

    async def main(ctx):
        message = bytearray()
        for _ in range(3000):
            action = rng.random()
            clear, valid = action < 0.02, action > 0.2
            byte = int(rng.integers(0, 256))
            ctx.set(dut.clear, clear)
            ctx.set(dut.valid, valid)
            ctx.set(dut.byte, byte)
            await ctx.tick()
            if clear:
                message.clear()
            if valid:
                message.append(byte)
            assert ctx.get(dut.crc) == crc16(bytes(message))

    simulate(dut, main)


# --- SLIP decoder -----------------------------------------------------------------------------

def test_slip_decoder_parameters_are_checked():
    with pytest.raises(ValueError, match=r"^Maximum body length must be at least 4 \(seq, op "
                                         r"and the CRC\), not 3$"):
        SlipDecoder(3)
    with pytest.raises(TypeError, match=r"^Maximum body length must be an integer, not '9'$"):
        SlipDecoder("9")
    decoder = SlipDecoder(MAX_BODY)
    assert decoder.max_body == MAX_BODY == 265
    assert decoder.addr_width == 9
    assert decoder.signature.members["done"].signature == stream.Signature(frame_done_layout(265))
    assert decoder.signature.members["write"].signature.flip() == \
        WritePort.Signature(addr_width=9, shape=8)
    assert SlipDecoder(256).addr_width == 8 and SlipDecoder(257).addr_width == 9


def test_frame_status_values_are_the_protocol_error_codes():
    for status in FrameStatus:
        if status is not FrameStatus.OK:
            assert status.value == protocol.ErrorCode[status.name].value


class DecoderBench(Elaboratable):
    """The decoder writing into a frame buffer the way the SoC owns one."""

    def __init__(self, max_body):
        self.decoder = SlipDecoder(max_body)
        self.buffer = MemoryData(shape=8, depth=max_body, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = self.decoder
        m.submodules.buffer = buffer = Memory(data=self.buffer)
        wiring.connect(m, self.decoder.write, buffer.write_port())
        return m


def reference_frames(line, max_body):
    """What the protocol's decoder and parser make of *line*: ``(status, body)`` per frame."""
    frames = []
    for item in protocol.SlipDecoder(limit=max_body).feed(line):
        result = protocol.parse_frame(item)
        if isinstance(result, protocol.Frame):
            frames.append((FrameStatus.OK, bytes(item)))
        else:
            frames.append((FrameStatus(result.code.value), result.body))
    return frames


def decode_in_gateware(line, max_body, seed, *, pause=0.3, max_delay=6):
    """Run *line* through :class:`SlipDecoder` and return ``(status, body)`` per ``done``.

    The input has random gaps; the consumer takes each frame after a random delay, reading the
    body from the buffer first. Checks that nothing is written, and no byte accepted, while a
    frame waits.
    """
    bench = DecoderBench(max_body)
    dut = bench.decoder
    rng = np.random.default_rng(seed)
    frames = []

    async def consumer(ctx):
        waiting = None     # (payload, delay left) of the frame offered
        while True:
            _, _, valid, payload, write_en, line_ready = await ctx.tick().sample(
                dut.done.valid, Value.cast(dut.done.payload), dut.write.en, dut.line.ready)
            if ctx.get(dut.done.ready):
                assert valid
                ctx.set(dut.done.ready, 0)
                waiting = None
                continue
            if valid:
                assert not write_en, "the buffer must not be written while a frame waits"
                assert not line_ready, "no byte may be accepted while a frame waits"
                if waiting is None:
                    done = ctx.get(dut.done.payload)
                    body = bytes(ctx.get(bench.buffer[i]) for i in range(done.length))
                    frames.append((done.status, body))
                    waiting = [payload, int(rng.integers(0, max_delay))]
                assert payload == waiting[0], "the done payload must hold until taken"
                waiting[1] -= 1
                if waiting[1] < 0:
                    ctx.set(dut.done.ready, 1)

    async def main(ctx):
        await feed(ctx, dut.line, line, rng, pause)
        await ctx.tick().repeat(max_delay + 4)

    simulate(bench, main, consumer)
    return frames


def random_payload(rng, length, special=0.15):
    """Random bytes, with SLIP's special values over-represented."""
    data = rng.integers(0, 256, length)
    mask = rng.random(length) < special
    data[mask] = rng.choice(SPECIALS, mask.sum())
    return bytes(int(b) for b in data)


def test_slip_decoder_accepts_random_frames():
    rng = np.random.default_rng(1055)
    lengths = [0, MAX_BODY - 4, 1, 2] + list(rng.integers(0, MAX_BODY - 3, 16))
    frames = [(int(rng.integers(0, 256)), int(rng.integers(0, 256)),
               random_payload(rng, int(n))) for n in lengths]
    line = b"".join(protocol.build_frame(*frame) for frame in frames)
    got = decode_in_gateware(line, MAX_BODY, seed=1)
    assert [status for status, _ in got] == [FrameStatus.OK] * len(frames)
    assert [protocol.parse_frame(body) for _, body in got] == [
        protocol.Frame(*frame) for frame in frames]


def corrupt_line(rng, max_body):
    """A line mixing good frames with every kind of damage, in random order."""
    pieces = []
    for _ in range(40):
        kind = rng.integers(0, 9)
        payload = random_payload(rng, int(rng.integers(0, max_body - 3)))
        frame = bytearray(protocol.build_frame(int(rng.integers(0, 256)),
                                               int(rng.integers(0, 256)), payload))
        if kind == 1:       # a flipped bit in the body (or in the stuffing)
            frame[int(rng.integers(1, len(frame) - 1))] ^= 1 << int(rng.integers(0, 8))
        elif kind == 2:     # a bad escape
            frame.insert(int(rng.integers(1, len(frame))), ESC)
        elif kind == 3:     # too long
            frame = bytearray([END]) + random_payload(rng, max_body + int(rng.integers(1, 5)),
                                                      0.0) + bytearray([END])
        elif kind == 4:     # too short
            frame = bytearray([END]) + random_payload(rng, int(rng.integers(1, 4)), 0.05) + \
                bytearray([END])
        elif kind == 5:     # garbage, mostly special values
            frame = random_payload(rng, int(rng.integers(1, 12)), 0.6)
        elif kind == 6:     # a frame ended by ESC END
            frame = frame[:-1] + bytearray([ESC, END])
        elif kind == 7:     # empty frames
            frame = bytearray([END] * int(rng.integers(1, 4)))
        pieces.append(bytes(frame))
    return b"".join(pieces) + bytes([END])


@pytest.mark.parametrize("seed", range(3))
def test_slip_decoder_matches_protocol_on_damaged_lines(seed):
    max_body = 16
    rng = np.random.default_rng(100 + seed)
    line = corrupt_line(rng, max_body)
    expected = reference_frames(line, max_body)
    assert {status for status, _ in expected} == set(FrameStatus), "corpus lacks a status"
    assert decode_in_gateware(line, max_body, seed) == expected


def _body(seq, op, payload=b""):
    body = bytes([seq, op]) + payload
    return body + struct.pack("<H", crc16(body))


_GOOD = _body(1, 2, bytes([END, ESC, 3]))


@pytest.mark.parametrize("line, expected", [
    pytest.param(bytes([END, END, END]), [], id="empty frames emit nothing"),
    pytest.param(protocol.slip_encode(_GOOD), [(FrameStatus.OK, _GOOD)], id="good"),
    pytest.param(protocol.slip_encode(_GOOD)[1:], [(FrameStatus.OK, _GOOD)],
                 id="no leading END"),
    pytest.param(bytes([END, 1, ESC, 0x00, 2, END]), [(FrameStatus.BAD_FRAME, b"\x01")],
                 id="bad escape"),
    pytest.param(bytes([END, ESC, 0x41, END]), [(FrameStatus.BAD_FRAME, b"")],
                 id="bad escape first"),
    pytest.param(protocol.slip_encode(_GOOD)[:-1] + bytes([ESC, END]),
                 [(FrameStatus.OK, _GOOD)], id="ESC END ends the frame"),
    pytest.param(bytes([END, 1, END, END, 1, 2, END, END, 1, 2, 3, END]),
                 [(FrameStatus.BAD_LENGTH, b"\x01"), (FrameStatus.BAD_LENGTH, b"\x01\x02"),
                  (FrameStatus.BAD_LENGTH, b"\x01\x02\x03")], id="short"),
    pytest.param(protocol.slip_encode(_body(9, 9) + b"\x00") + protocol.slip_encode(_body(9, 9)),
                 [(FrameStatus.BAD_CRC, _body(9, 9) + b"\x00"), (FrameStatus.OK, _body(9, 9))],
                 id="bad CRC then good"),
    pytest.param(protocol.slip_encode(_body(5, 5, bytes(range(8)))),
                 [(FrameStatus.OK, _body(5, 5, bytes(range(8))))], id="max_body exactly"),
    pytest.param(protocol.slip_encode(_body(5, 5, bytes(range(9)))) + protocol.slip_encode(_GOOD),
                 [(FrameStatus.BAD_FRAME, _body(5, 5, bytes(range(9)))[:12]),
                  (FrameStatus.OK, _GOOD)], id="overflow then good"),
    pytest.param(bytes([END, 0xC1, 0xC1, ESC, ESC_END, ESC, ESC_ESC, END]),
                 [(FrameStatus.BAD_CRC, bytes([0xC1, 0xC1, END, ESC]))], id="unstuffing"),
])
def test_slip_decoder_directed(line, expected):
    assert reference_frames(line, 12) == expected
    assert decode_in_gateware(line, 12, seed=0) == expected
    assert decode_in_gateware(line, 12, seed=1, pause=0.0, max_delay=1) == expected


def test_slip_decoder_reset():
    bench = DecoderBench(MAX_BODY)
    resettable = Resettable(bench)
    dut = bench.decoder
    frame = protocol.slip_encode(_GOOD)

    async def main(ctx):
        # Reset in the middle of a frame, and just after an ESC: the next bytes start a frame.
        await feed(ctx, dut.line, frame[:4] + bytes([ESC]))
        await pulse_reset(ctx, resettable)
        await feed(ctx, dut.line, frame[1:])
        await ctx.tick()
        assert ctx.get(dut.done.valid) == 1 and ctx.get(dut.line.ready) == 0
        done = ctx.get(dut.done.payload)
        assert (done.status, done.length) == (FrameStatus.OK, len(_GOOD))
        assert bytes(ctx.get(bench.buffer[i]) for i in range(len(_GOOD))) == _GOOD
        # Reset while a frame waits: the event is dropped and bytes are accepted again.
        await pulse_reset(ctx, resettable)
        assert ctx.get(dut.done.valid) == 0 and ctx.get(dut.line.ready) == 1
        assert ctx.get(dut.write.en) == 0

    simulate(resettable, main)


# --- SLIP encoder -----------------------------------------------------------------------------

def test_slip_encoder_signature():
    encoder = SlipEncoder()
    assert encoder.signature.members == wiring.SignatureMembers({
        "body": In(stream.Signature(BodyByte)),
        "line": Out(stream.Signature(8)),
    })


def encode_in_gateware(bodies, seed, *, pause=0.0, stall=0.0):
    """Run *bodies* through :class:`SlipEncoder`; returns the line bytes and their cycles."""
    dut = SlipEncoder()
    rng = np.random.default_rng(seed)
    received, cycles = [], []
    total = sum(len(protocol.slip_encode(b + struct.pack("<H", crc16(b)))) for b in bodies)

    async def main(ctx):
        payloads = [{"data": byte, "last": int(i == len(body) - 1)}
                    for body in bodies for i, byte in enumerate(body)]
        await feed(ctx, dut.body, payloads, rng, pause)
        for _ in range(20 * total):
            if len(received) >= total:
                break
            await ctx.tick()
        await ctx.tick().repeat(5)

    simulate(dut, main, stream_collector(dut.line, received, rng=rng, stall=stall,
                                         cycles=cycles))
    return bytes(received), cycles


def crc_needs_stuffing(body):
    return any(b in (END, ESC) for b in struct.pack("<H", crc16(body)))


def encoder_corpus(rng, count):
    frames = [(int(rng.integers(0, 256)), int(rng.integers(0, 256)),
               random_payload(rng, int(rng.integers(0, 80)), 0.25)) for _ in range(count)]
    # Frames whose CRC itself must be stuffed, in either byte: found by a deterministic search.
    for seq in range(256):
        body = bytes([seq, 0x81])
        if crc_needs_stuffing(body):
            frames.append((seq, 0x81, b""))
            if sum(crc_needs_stuffing(bytes([s, o]) + p) for s, o, p in frames) >= 3:
                break
    return frames


@pytest.mark.parametrize("seed, pause, stall", [(0, 0.0, 0.0), (1, 0.3, 0.4), (2, 0.6, 0.1)])
def test_slip_encoder_output_is_build_frame(seed, pause, stall):
    rng = np.random.default_rng(200 + seed)
    frames = encoder_corpus(rng, 12)
    line, cycles = encode_in_gateware([bytes([s, o]) + p for s, o, p in frames], seed,
                                      pause=pause, stall=stall)
    assert line == b"".join(protocol.build_frame(*frame) for frame in frames)
    decoded = [protocol.parse_frame(b) for b in protocol.SlipDecoder().feed(line)]
    assert decoded == [protocol.Frame(*frame) for frame in frames]
    if pause == stall == 0.0:
        # Full throughput: one line byte every cycle, across frame boundaries too.
        assert cycles == list(range(cycles[0], cycles[0] + len(line)))


def test_slip_encoder_short_and_special_bodies():
    bodies = [b"\x00", bytes([END]), bytes([ESC]), bytes([END, ESC, END]), bytes(300)]
    line, _ = encode_in_gateware(bodies, seed=3, pause=0.2, stall=0.2)
    assert line == b"".join(protocol.slip_encode(b + struct.pack("<H", crc16(b))) for b in bodies)


def test_slip_encoder_reset_mid_frame():
    dut = SlipEncoder()
    bench = Resettable(dut)
    received = []
    body = bytes([7, 0x81, END, 1, 2, 3])

    async def main(ctx):
        await feed(ctx, dut.body, [{"data": byte, "last": 0} for byte in body[:3]])
        await pulse_reset(ctx, bench)
        assert ctx.get(dut.line.valid) == 0
        received.clear()
        await feed(ctx, dut.body, [{"data": byte, "last": int(i == len(body) - 1)}
                                   for i, byte in enumerate(body)])
        await ctx.tick().repeat(10)

    simulate(bench, main, stream_collector(dut.line, received))
    assert bytes(received) == protocol.build_frame(7, 0x81, body[2:])


# --- cocotb: the UART in Verilator with the bus functional models -------------------------

class UartEcho(wiring.Component):
    """Echo: each channel is ``rx`` → :class:`UARTRx` → FIFO → :class:`UARTTx` → ``tx``.

    One channel per divisor, so one small Verilator build covers them all. Per channel,
    ``framing_errors`` and ``overruns`` count the receiver's pulses (saturating at 255).
    """

    def __init__(self, divisors=uart_echo.DIVISORS, depth=16):
        self._divisors, self._depth = tuple(divisors), depth
        n = len(self._divisors)
        super().__init__({
            "rx": In(1, init=1).array(n),
            "tx": Out(1, init=1).array(n),
            "framing_errors": Out(8).array(n),
            "overruns": Out(8).array(n),
        })

    def elaborate(self, platform):
        m = Module()
        for i, divisor in enumerate(self._divisors):
            rx, tx = UARTRx(divisor), UARTTx(divisor)
            fifo = SyncFIFOBuffered(width=8, depth=self._depth)
            m.submodules[f"rx{i}"], m.submodules[f"tx{i}"] = rx, tx
            m.submodules[f"fifo{i}"] = fifo
            wiring.connect(m, rx.data, fifo.w_stream)
            wiring.connect(m, fifo.r_stream, tx.data)
            m.d.comb += [rx.rx.eq(self.rx[i]), self.tx[i].eq(tx.tx)]
            for pulse, counter in ((rx.framing_error, self.framing_errors[i]),
                                   (rx.overrun, self.overruns[i])):
                with m.If(pulse & (counter != 255)):
                    m.d.sync += counter.eq(counter + 1)
        return m


ECHO_TOP = "uart_echo"
#: Yosys writes Amaranth FSM state comparisons as ``! state`` and ``state == 1'h1``, which
#: Verilator's lint reports as (fatal) width warnings; only those two are silenced.
ECHO_BUILD_ARGS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC")


@pytest.fixture(scope="module")
def echo_build():
    return build_cocotb(write_verilog(UartEcho(), ECHO_TOP, BUILD_ROOT), ECHO_TOP,
                        build_args=ECHO_BUILD_ARGS)


def test_uart_echo_in_verilator(echo_build):
    result = run_cocotb(echo_build, ECHO_TOP, uart_echo.__name__)
    prefix = uart_echo.__name__ + "."
    assert {name.removeprefix(prefix) for name in result.passed} == {
        "echo_every_byte_value_at_3_mbaud",
        "echo_at_115200_baud",
        "echo_with_baud_error/baud_error=0.02",
        "echo_with_baud_error/baud_error=-0.02",
        "break_is_one_framing_error",
    }
