"""cocotb testbench of the whole SoC through its UART pins, compared with the software peer.

:class:`SoCTB` drives a :class:`plasticore.hdl.soc.SoC` (core, command engine, SLIP framing,
UART) only through ``uart_rx`` and ``uart_tx``, with the UART bus functional models of
:mod:`plasticore.sim.cocotb_uart`, and feeds every line byte it sends to a
:class:`~plasticore.sim.link_model.ModelPeer` as well. The peer's documented contract is that,
given the same bytes, it sends the same bytes as the gateware, with ticks run when
:meth:`ModelPeer.step <plasticore.sim.link_model.ModelPeer.step>` is called; so the testbench
compares every frame the SoC sends with the peer's, byte for byte, and reports a difference with
both frames decoded.

The only figures the peer cannot know are the UART's own loss counters (``rx_overflows`` and
``framing_errors`` in ``STATUS``, which it reports as 0): the testbench keeps the count it
expects (a character it sent with a broken stop bit adds one framing error) and puts that into
the peer's ``STATUS`` reply before comparing.

Port binding
------------
Flat Verilog ports of the SoC: ``clk``, ``rst`` (synchronous, active high), ``uart_rx``,
``uart_tx``, ``running`` and ``error`` (a one-cycle pulse per refused frame, framing error or
lost byte, which the testbench counts).
"""

from __future__ import annotations

import dataclasses
import logging
import struct

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, SimTimeoutError, with_timeout

from ..config import REGISTERS, CoreConfig
from ..hdl.core import Space, Status
from ..image import CoreImage
from ..protocol import (END, MAX_WORDS, ErrorCode, Frame, FrameError, LinkStatus, Opcode, Reply,
                        SlipDecoder, build_frame, parse_frame)
from .cocotb_uart import UartSink, UartSource
from .coreport import load_commands
from .link_model import ModelPeer

__all__ = ["CLOCK_PERIOD_NS", "SoCTB", "describe_frame", "split_frames"]

#: Clock period of the SoC testbench (the iCEBreaker's 12 MHz is only a number to IDENTIFY).
CLOCK_PERIOD_NS = 10


def split_frames(data: bytes) -> list[bytes]:
    """Split the line bytes of back-to-back frames, each ``END body END`` as
    :func:`~plasticore.protocol.build_frame` makes them, into one item per frame."""
    frames, start = [], None
    for i, byte in enumerate(data):
        if byte != END:
            continue
        if start is None:
            start = i
        elif i == start + 1:
            start = i              # an empty frame: the first END was only a flush
        else:
            frames.append(bytes(data[start:i + 1]))
            start = None
    if start is not None and start + 1 < len(data):
        raise ValueError(f"unterminated frame at byte {start} of {bytes(data).hex()}")
    return frames


def describe_frame(raw: bytes) -> str:
    """One line naming what the line bytes of one frame say (for failure messages)."""
    bodies = SlipDecoder().feed(bytes(raw))
    if len(bodies) != 1:
        return f"not one frame: {bytes(raw).hex(' ')}"
    frame = parse_frame(bodies[0])
    if isinstance(frame, FrameError):
        return f"{frame.code.name} frame: {frame.body.hex(' ')}"
    name = Reply(frame.op).name if frame.op in Reply._value2member_map_ else f"op {frame.op:#x}"
    payload = frame.payload
    if frame.op == Reply.ERROR and len(payload) == 6:
        op, code, detail = struct.unpack("<BBI", payload)
        code = ErrorCode(code).name if code in ErrorCode._value2member_map_ else code
        return f"seq {frame.seq:#04x} ERROR op {op:#04x} {code} detail {detail:#x}"
    return f"seq {frame.seq:#04x} {name} {payload.hex(' ')}"


class SoCTB:
    """Testbench of one SoC through its UART: clock, reset, UART source and sink, software peer.

    Contract
    --------
    Construction starts a 10 ns clock on ``clk``, holds ``rst`` high, idles ``uart_rx`` high and
    starts the UART source (on ``uart_rx``) and sink (on ``uart_tx``), both at ``divisor``
    cycles per bit, off by ``baud_error`` (the host's clock error: its transmitter and its
    receiver are both off by that much). :meth:`reset` must come first. Every test ends with
    :meth:`finish`.

    Every line byte sent with :meth:`send` also goes to :attr:`peer`; :meth:`expect` then takes
    the SoC's frames from the sink one by one and compares each, byte for byte, with the
    peer's. Commands go one at a time (:meth:`command` waits for the reply), so the receive
    buffer never holds more than one command, as the protocol asks of a host.

    Parameters
    ----------
    dut : cocotb handle
        The Verilog top of a :class:`~plasticore.hdl.soc.SoC`.
    peer : ModelPeer
        The reference, built with the SoC's sizes, buffers, clock and divisor.
    baud_error : float, optional
        Relative rate error of the host's UART (``0.02``: 2% fast).
    seq : int, optional
        Sequence number of the first command; each command takes the next (mod 256).

    Attributes
    ----------
    source : UartSource
    sink : UartSink
    peer : ModelPeer
    divisor : int
    framing_errors : int
        Framing errors the SoC should have counted (characters sent with a low stop bit).
    frames : int
        Frames compared so far.
    error_pulses : int
        Clock cycles in which the SoC's ``error`` output was high.
    """

    def __init__(self, dut, peer: ModelPeer, *, baud_error: float = 0.0, seq: int = 0xBB):
        if not isinstance(peer, ModelPeer):
            raise TypeError(f"peer must be a ModelPeer, not {peer!r}")
        self.dut = dut
        self.log = logging.getLogger("cocotb.plasticore.soc")
        self.peer = peer
        self.divisor = peer.info.baud_divisor
        self.char_cycles = 10 * self.divisor
        dut.rst.value = 1
        dut.uart_rx.value = 1
        self.clock = Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns")
        self.clock.start()
        self.source = UartSource(dut.uart_rx, dut.clk, self.divisor, baud_error=baud_error)
        self.sink = UartSink(dut.uart_tx, dut.clk, self.divisor, baud_error=baud_error)
        self.framing_errors = 0
        self.frames = 0
        self.error_pulses = 0
        self._seq = seq & 0xFF
        self._error_monitor = cocotb.start_soon(self._count_error_pulses())

    @property
    def config(self) -> CoreConfig:
        return self.peer.config

    # -- reset and raw line bytes ----------------------------------------------------------

    async def reset(self) -> None:
        """Pulse ``rst`` for two cycles, then let the receiver see an idle line."""
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 2, rising=False)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, self.char_cycles, rising=False)

    async def _count_error_pulses(self):
        # Pulses are rare: wake at a rising edge of `error`, then count the cycles it stays high
        # (two pulses in adjacent cycles are one longer high).
        rises, falling = RisingEdge(self.dut.error), FallingEdge(self.dut.clk)
        while True:
            await rises
            while True:
                await falling
                if self.dut.error.value != 1:
                    break
                self.error_pulses += 1

    def next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFF
        return seq

    async def send(self, line: bytes) -> bytes:
        """Send *line* to the SoC and to the peer; return what the peer answered."""
        line = bytes(line)
        expected = self.peer.feed(line)
        await self.source.write(line)
        return expected

    async def send_broken_character(self, byte: int, *, low_bits: int = 1) -> None:
        """Send one character whose stop bit is low (for *low_bits* bit times: more than 1
        makes a break), after the source has finished, then hold the line idle for one
        character. The SoC must drop it and count one framing error; the peer never sees it.
        """
        await self.source.wait()
        line = self.dut.uart_rx
        await FallingEdge(self.dut.clk)
        for level in (0, *(byte >> i & 1 for i in range(8))):
            line.value = level
            await ClockCycles(self.dut.clk, self.divisor, rising=False)
        line.value = 0
        await ClockCycles(self.dut.clk, low_bits * self.divisor, rising=False)
        line.value = 1
        await ClockCycles(self.dut.clk, self.char_cycles, rising=False)
        self.framing_errors += 1

    # -- frames from the SoC ---------------------------------------------------------------

    def _frame_timeout(self, length: int) -> int:
        # A tick, a full transmit FIFO ahead of the frame, then the frame itself.
        return 60_000 + 2 * length * self.char_cycles

    async def recv_frame(self, timeout_cycles: int | None = None) -> bytes:
        """The line bytes of the next frame, ``END body END`` (empty frames skipped).

        Raises
        ------
        cocotb.triggers.SimTimeoutError
            If the frame has not ended within *timeout_cycles* clock cycles.
        """
        timeout = self._frame_timeout(16) if timeout_cycles is None else timeout_cycles
        # One timer for the whole frame: a cycle-counting timeout per byte would wake Python
        # at every clock edge while the SoC works.
        try:
            return await with_timeout(self._recv_frame(), timeout * CLOCK_PERIOD_NS, "ns")
        except SimTimeoutError:
            raise SimTimeoutError(
                f"no whole frame from the SoC within {timeout} cycles after {self.frames} "
                f"frames; {self.sink.count()} byte(s) arrived: "
                f"{bytes(self.sink.read_nowait()).hex(' ')}") from None

    async def _recv_frame(self) -> bytes:
        raw = bytearray()
        while True:
            byte = (await self.sink.read(1))[0]
            if not raw:
                assert byte == END, (f"the SoC sent {byte:#04x} outside a frame (after "
                                     f"{self.frames} frames)")
                raw.append(byte)
            elif byte != END:
                raw.append(byte)
            elif len(raw) == 1:
                continue           # END END: an empty frame
            else:
                raw.append(byte)
                return bytes(raw)

    def _patch(self, raw: bytes) -> bytes:
        # STATUS replies: the peer has no UART, so put in the loss counters the SoC should show.
        bodies = SlipDecoder().feed(raw)
        frame = parse_frame(bodies[0]) if len(bodies) == 1 else None
        if (isinstance(frame, Frame) and frame.op == Reply.DATA and frame.payload[:1]
                == bytes([Opcode.STATUS]) and len(frame.payload) == 1 + struct.calcsize(
                    LinkStatus.FORMAT)):
            status = LinkStatus.unpack(frame.payload[1:])
            status = dataclasses.replace(status, framing_errors=self.framing_errors)
            return build_frame(frame.seq, frame.op, bytes([Opcode.STATUS]) + status.pack())
        return raw

    def _compare(self, got: bytes, expected: bytes | None) -> Frame:
        self.frames += 1
        if expected is not None:
            expected = self._patch(expected)
        assert got == expected, (
            f"frame {self.frames}: the SoC sent\n    {describe_frame(got)}\n  the peer "
            + (f"\n    {describe_frame(expected)}\n  (line bytes {got.hex(' ')} vs "
               f"{expected.hex(' ')})" if expected is not None else "sent nothing"))
        return parse_frame(SlipDecoder().feed(got)[0])

    async def expect_frame(self, expected: bytes) -> Frame:
        """Take the SoC's next frame and check it equals *expected* (one frame of the peer's),
        byte for byte; return it parsed."""
        return self._compare(await self.recv_frame(self._frame_timeout(len(expected))),
                             expected)

    async def expect(self, expected: bytes) -> list[Frame]:
        """Take as many frames as *expected* (the peer's bytes) holds and compare each."""
        return [await self.expect_frame(raw) for raw in split_frames(expected)]

    async def exchange(self, line: bytes) -> list[Frame]:
        """Send *line* to both and compare everything the peer answered to it."""
        return await self.expect(await self.send(line))

    # -- commands ----------------------------------------------------------------------------

    async def command(self, op: int, payload: bytes = b"", *, seq: int | None = None
                      ) -> Frame:
        """Send one command, compare the reply (and any RUN_END it brings), return the reply."""
        seq = self.next_seq() if seq is None else seq
        frames = await self.exchange(build_frame(seq, op, payload))
        assert frames and frames[0].seq == seq, f"no reply with seq {seq:#x}: {frames}"
        return frames[0]

    async def identify(self) -> Frame:
        return await self.command(Opcode.IDENTIFY)

    async def status(self) -> LinkStatus:
        reply = await self.command(Opcode.STATUS)
        assert reply.op == Reply.DATA, describe_frame(build_frame(reply.seq, reply.op,
                                                                  reply.payload))
        return LinkStatus.unpack(reply.payload[1:])

    async def write(self, space: int, addr: int, words) -> Frame:
        words = [int(w) & 0xFFFFFFFF for w in words]
        return await self.command(Opcode.WRITE, struct.pack(
            f"<BI{len(words)}I", getattr(space, "value", space), addr, *words))

    async def read(self, space: int, addr: int, count: int) -> list[int]:
        """READ a block; the reply equals the peer's, so the words are the model's too."""
        reply = await self.command(Opcode.READ, struct.pack(
            "<BIH", getattr(space, "value", space), addr, count))
        assert reply.op == Reply.DATA, f"READ refused: {reply}"
        return list(struct.unpack(f"<{count}I", reply.payload[1:]))

    async def load(self, image: CoreImage) -> None:
        """Write a whole image (every register, synapse, parameter, state word, the tick
        counter, and clear the counters) in blocks as long as each space allows."""
        words: dict[int, dict[int, int]] = {}
        for _, space, addr, value in load_commands(image):
            words.setdefault(space.value, {})[addr] = value
        for space, by_addr in words.items():
            for addr, block in _blocks(by_addr):
                reply = await self.write(space, addr, block)
                assert reply.op == Reply.ACK, f"WRITE refused: {reply}"

    async def check_state(self) -> None:
        """Read every word the model holds (registers, synapses, parameters, state, sources, the
        tick and event counters, sizes and flags) and compare with the peer's replies."""
        cfg = self.config
        await self.read(Space.REG, 0, len(REGISTERS))
        for s in range(cfg.n_sources):
            await self.read(Space.SYN, s << 14, cfg.n_neurons)
        for space in (Space.NPARAM, Space.NSTATE):
            for addr in range(0, 2 * cfg.n_neurons, MAX_WORDS):
                await self.read(space, addr, min(MAX_WORDS, 2 * cfg.n_neurons - addr))
        await self.read(Space.SOURCE, 0, cfg.n_sources)
        # T, the tick count and the event counters; CONFIG_SIZES, CONFIG_CORE and FLAGS (a bank
        # conflict would set it; the model's is 0). The cycle counters are the hardware's own.
        await self.read(Space.STATUS, Status.T, Status.LTP_WRITES + 1)
        await self.read(Space.STATUS, Status.CONFIG_SIZES, Status.FLAGS - Status.CONFIG_SIZES + 1)

    # -- runs --------------------------------------------------------------------------------

    async def ticks(self, count: int) -> list[Frame]:
        """Let the peer run *count* ticks and compare the SoC's TICK (and RUN_END) frames."""
        frames = []
        for _ in range(count):
            expected = self.peer.step()
            assert expected, "the peer has no tick to run"
            frames += await self.expect(expected)
        return frames

    async def during_run(self, line: bytes) -> list[Frame]:
        """Send *line* while a run is in progress. The SoC answers between two ticks; the TICK
        frames that come first are compared with ticks of the peer, then the peer takes
        *line* and its reply is compared. Returns the reply frames (TICKs excluded)."""
        await self.source.write(line)
        while True:
            raw = await self.recv_frame(self._frame_timeout(64))
            body = SlipDecoder().feed(raw)[0]
            if len(body) >= 2 and body[1] == Reply.TICK:
                expected = split_frames(self.peer.step())
                self._compare(raw, expected[0] if expected else None)
                assert len(expected) == 1, "the peer ended the run, the SoC did not"
                continue
            expected = split_frames(self.peer.feed(bytes(line)))
            first = self._compare(raw, expected[0] if expected else None)
            return [first] + [await self.expect_frame(e) for e in expected[1:]]

    # -- the end of every test ---------------------------------------------------------------

    async def finish(self, settle_chars: int = 4) -> None:
        """End of test: a STATUS equal to the peer's (counters, queue, run state, the loss
        counters expected), nothing left unsent, no byte left over or arriving, no broken
        character from the SoC, no run in progress, both lines idle, and one ``error`` pulse for
        every refused frame and every framing error."""
        status = await self.status()
        await self.source.wait()
        await ClockCycles(self.dut.clk, settle_chars * self.char_cycles, rising=False)
        problems = []
        if not self.source.idle():
            problems.append(f"{self.source.count()} byte(s) never sent")
        left = self.sink.read_nowait()
        if left:
            problems.append(f"{len(left)} unexpected byte(s) left over: {left.hex(' ')}")
        if self.sink.framing_errors or self.sink.glitches:
            problems.append(f"the SoC sent {self.sink.framing_errors} character(s) without a "
                            f"stop bit and {self.sink.glitches} glitch(es)")
        if self.dut.running.value != 0 or self.peer.running:
            problems.append("a run is still in progress")
        if self.dut.uart_tx.value != 1 or self.dut.uart_rx.value != 1:
            problems.append("a line is not idle")
        if self.error_pulses != status.bad_frames + status.framing_errors:
            problems.append(f"{self.error_pulses} cycle(s) of error pulses for "
                            f"{status.bad_frames} refused frame(s) and "
                            f"{status.framing_errors} framing error(s)")
        assert not problems, "finish(): " + "; ".join(problems)


def _blocks(by_addr: dict[int, int]):
    """``(addr, words)`` blocks of consecutive addresses, at most MAX_WORDS long, not crossing
    a synapse row (addresses that differ above bit 14)."""
    block_addr, block = None, []
    for addr in sorted(by_addr):
        if (block and (addr != block_addr + len(block) or len(block) == MAX_WORDS
                       or addr >> 14 != block_addr >> 14)):
            yield block_addr, block
            block = []
        if not block:
            block_addr = addr
        block.append(by_addr[addr])
    if block:
        yield block_addr, block
