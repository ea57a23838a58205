"""Link framing in gateware: CRC-16, SLIP decoder into a caller-owned frame buffer, SLIP encoder.

The protocol is ``docs/protocol.md`` section 1 and :mod:`plasticore.protocol`: a frame is
``END, stuffed(body), END`` and a body is ``seq, op, payload, crc:u16le`` with
``crc = CRC-16/CCITT-FALSE(seq, op, payload)``. These blocks reproduce, byte for byte, what
:func:`plasticore.protocol.build_frame` sends and what :class:`plasticore.protocol.SlipDecoder`
followed by :func:`plasticore.protocol.parse_frame` accepts or refuses.
"""

import operator

from amaranth import Cat, Module, Shape, Signal
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..protocol import END, ESC, ESC_END, ESC_ESC, ErrorCode

__all__ = [
    "CRC_POLY", "CRC_INIT", "crc16_update", "Crc16", "FrameStatus", "frame_done_layout",
    "SlipDecoder", "BodyByte", "SlipEncoder",
]

#: CRC-16/CCITT-FALSE: polynomial, initial value (no reflection, no final xor).
CRC_POLY = 0x1021
CRC_INIT = 0xFFFF


def _crc_bitwise(crc: int, byte: int) -> int:
    # The textbook MSB-first definition, kept independent of plasticore.protocol's table so that
    # the tests comparing the two check something.
    crc ^= byte << 8
    for _ in range(8):
        crc = ((crc << 1) ^ CRC_POLY) if crc & 0x8000 else (crc << 1)
    return crc & 0xFFFF


def _crc_taps():
    # Without init or final xor the one-byte update is linear over GF(2): every bit of the new
    # CRC is the xor of some bits of the old CRC and of the byte. Find which, from unit vectors.
    taps = [([], []) for _ in range(16)]
    for i in range(16):
        out = _crc_bitwise(1 << i, 0)
        for j in range(16):
            if out >> j & 1:
                taps[j][0].append(i)
    for i in range(8):
        out = _crc_bitwise(0, 1 << i)
        for j in range(16):
            if out >> j & 1:
                taps[j][1].append(i)
    return taps


_CRC_TAPS = _crc_taps()


def crc16_update(crc, byte):
    """The CRC-16/CCITT-FALSE of *crc* extended by *byte*, as a combinational expression.

    Parameters
    ----------
    crc : value-like, 16 bits
    byte : value-like, 8 bits

    Returns
    -------
    amaranth.hdl.Value
        16 bits; each is the parity of at most 7 input bits (two LUT4 levels at most).
    """
    return Cat(*(Cat(*(crc[i] for i in crc_taps), *(byte[i] for i in byte_taps)).xor()
                 for crc_taps, byte_taps in _CRC_TAPS))


class Crc16(wiring.Component):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor), one byte a cycle.

    Contract
    --------
    ``crc`` is a register. At each clock edge:

    * with ``clear`` and ``valid``: ``crc`` becomes the CRC of ``byte`` alone (a new message
      starts with this byte);
    * with ``clear`` only: ``crc`` becomes 0xFFFF (the CRC of nothing);
    * with ``valid`` only: ``crc`` is extended by ``byte``;
    * otherwise it holds.

    So ``crc`` equals :func:`plasticore.protocol.crc16` of the bytes given since the last clear,
    one cycle after the last of them. There is no handshake: every cycle with ``valid`` is taken.
    Reset value: 0xFFFF.

    Members
    -------
    clear : In(1)
    valid : In(1)
    byte : In(8)
    crc : Out(16, init=0xFFFF)
    """

    clear: In(1)
    valid: In(1)
    byte: In(8)
    crc: Out(16, init=CRC_INIT)

    def elaborate(self, platform):
        m = Module()
        base = Signal(16)    # the CRC the byte extends
        with m.If(self.clear):
            m.d.comb += base.eq(CRC_INIT)
        with m.Else():
            m.d.comb += base.eq(self.crc)
        with m.If(self.valid):
            m.d.sync += self.crc.eq(crc16_update(base, self.byte))
        with m.Elif(self.clear):
            m.d.sync += self.crc.eq(CRC_INIT)
        return m


class FrameStatus(enum.Enum, shape=4):
    """The outcome of one received frame; the error values are those of
    :class:`plasticore.protocol.ErrorCode`."""

    OK = 0
    BAD_CRC = ErrorCode.BAD_CRC.value
    BAD_LENGTH = ErrorCode.BAD_LENGTH.value
    BAD_FRAME = ErrorCode.BAD_FRAME.value


def frame_done_layout(max_body: int) -> data.StructLayout:
    """The payload of :class:`SlipDecoder`'s ``done`` stream: ``length`` then ``status``."""
    return data.StructLayout({
        "length": range(max_body + 1),
        "status": FrameStatus,
    })


def _check_max_body(max_body):
    if isinstance(max_body, bool):
        raise TypeError(f"Maximum body length must be an integer, not {max_body!r}")
    try:
        max_body = operator.index(max_body)
    except TypeError:
        raise TypeError(f"Maximum body length must be an integer, not {max_body!r}") from None
    if max_body < 4:
        raise ValueError(f"Maximum body length must be at least 4 (seq, op and the CRC), "
                         f"not {max_body}")
    return max_body


class SlipDecoder(wiring.Component):
    """SLIP decoder: line bytes in, frame bodies written into a caller-owned buffer.

    The caller owns the frame buffer (a :class:`amaranth.lib.memory.Memory` of at least
    ``max_body`` bytes) and connects ``write`` to one of its write ports. The decoder only writes
    it; the consumer reads it after ``done`` and releases it by taking ``done``.

    Contract
    --------
    * **Line in.** ``line`` takes one byte per cycle while no frame is waiting
      (``line.ready = ~done.valid``: ``ready`` never depends on ``line.valid``). While a frame
      waits, incoming bytes stay in the caller's receive FIFO.
    * **Writes.** A body byte (after un-stuffing) taken at clock edge *t* is written with
      ``write.en`` high in the cycle after *t*, at ``write.addr`` = its offset in the body
      (0, 1, 2, ...). ``write`` is registered. Nothing is written beyond ``max_body - 1``, and
      nothing at all between the rise of ``done.valid`` and its transfer.
    * **Frame done.** At each ``END`` byte the decoder ends the frame. Unless the frame was empty
      and good (two ``END`` in a row, or leading ``END``), ``done.valid`` rises in the next cycle
      with ``length`` (the body bytes written, CRC included) and ``status``, checked in this
      order:

      - ``BAD_FRAME``: a bad escape (``ESC`` followed by anything but ``ESC_END``, ``ESC_ESC``
        or ``END``), or a body longer than ``max_body``. Bytes after the error are ignored up to
        the ``END``; ``length`` counts the bytes written before it (``max_body`` on overflow).
      - ``BAD_LENGTH``: fewer than 4 bytes.
      - ``BAD_CRC``: the last two bytes (little-endian) differ from the CRC-16/CCITT-FALSE of
        the others.
      - ``OK``.

      The frame's last write takes effect at the latest at the clock edge at which
      ``done.valid`` rises, so a synchronous read port (transparent or not) addressed in any
      cycle in which ``done.valid`` is high returns the frame's bytes. ``ESC END`` ends the
      frame without the dangling ``ESC``, as in :class:`plasticore.protocol.SlipDecoder`.
    * **Release.** ``done`` follows the :mod:`amaranth.lib.stream` rules; the consumer takes it
      (``done.ready``) once it has finished with the buffer, so ``done.ready`` doubles as the
      acknowledgement. Bytes are accepted again from the next cycle, and the next frame is
      written from address 0.
    * **Reset.** No frame is waiting, the decoder is between frames (as after an ``END``), and
      ``write.en`` is low.

    A frame's statuses and lengths equal those of ``protocol.parse_frame`` applied to what
    ``protocol.SlipDecoder(limit=max_body)`` returns for the same line bytes.

    Parameters
    ----------
    max_body : int
        The longest body accepted, CRC included (:data:`plasticore.protocol.MAX_BODY` for
        commands); at least 4.

    Members
    -------
    line : In(stream.Signature(8))
        Line bytes, e.g. from a FIFO behind :class:`~plasticore.hdl.uart.UARTRx`.
    write : In(memory.WritePort.Signature(addr_width=ceil(log2(max_body)), shape=8))
        The frame buffer's write port (``addr``, ``data``, ``en`` are driven by the decoder);
        connect it with ``wiring.connect(m, decoder.write, buffer.write_port())``.
    done : Out(stream.Signature(frame_done_layout(max_body)))
        One event per non-empty frame: ``length``, ``status`` (:class:`FrameStatus`).

    Raises
    ------
    TypeError
        If *max_body* is not an integer.
    ValueError
        If *max_body* is less than 4.
    """

    def __init__(self, max_body):
        self._max_body = _check_max_body(max_body)
        super().__init__({
            "line": In(stream.Signature(8)),
            "write": In(memory.WritePort.Signature(addr_width=self.addr_width, shape=8)),
            "done": Out(stream.Signature(frame_done_layout(self._max_body))),
        })

    @property
    def max_body(self) -> int:
        """The longest body accepted, CRC included."""
        return self._max_body

    @property
    def addr_width(self) -> int:
        """Width of ``write.addr``: enough for ``max_body`` bytes."""
        return Shape.cast(range(self._max_body)).width

    def elaborate(self, platform):
        m = Module()
        max_body = self._max_body
        m.submodules.crc = crc = Crc16()

        count = Signal(range(max_body + 1))   # body bytes written so far
        escaped = Signal()                    # the previous byte was ESC
        bad = Signal()                        # escape error or overflow: ignore up to END
        last = Signal(8)                      # the last two body bytes: CRC candidates
        before_last = Signal(8)

        byte = self.line.payload
        take = Signal()
        store = Signal()        # a body byte arrives this cycle
        value = Signal(8)       # ... with this value
        m.d.comb += [
            self.line.ready.eq(~self.done.valid),
            take.eq(self.line.valid & self.line.ready),
        ]

        m.d.sync += self.write.en.eq(0)
        with m.If(self.done.valid & self.done.ready):
            m.d.sync += self.done.valid.eq(0)

        with m.If(take):
            with m.If(byte == END):
                m.d.sync += [count.eq(0), escaped.eq(0), bad.eq(0)]
                m.d.comb += crc.clear.eq(1)
                status = Signal(FrameStatus)
                with m.If(bad):
                    m.d.comb += status.eq(FrameStatus.BAD_FRAME)
                with m.Elif(count < 4):
                    m.d.comb += status.eq(FrameStatus.BAD_LENGTH)
                with m.Elif(crc.crc != Cat(before_last, last)):
                    m.d.comb += status.eq(FrameStatus.BAD_CRC)
                with m.Else():
                    m.d.comb += status.eq(FrameStatus.OK)
                with m.If(bad | (count != 0)):
                    m.d.sync += [
                        self.done.valid.eq(1),
                        self.done.payload.length.eq(count),
                        self.done.payload.status.eq(status),
                    ]
            with m.Elif(bad):
                pass
            with m.Elif(escaped):
                m.d.sync += escaped.eq(0)
                with m.If(byte == ESC_END):
                    m.d.comb += [store.eq(1), value.eq(END)]
                with m.Elif(byte == ESC_ESC):
                    m.d.comb += [store.eq(1), value.eq(ESC)]
                with m.Else():
                    m.d.sync += bad.eq(1)
            with m.Elif(byte == ESC):
                m.d.sync += escaped.eq(1)
            with m.Else():
                m.d.comb += [store.eq(1), value.eq(byte)]

        with m.If(store):
            with m.If(count == max_body):
                m.d.sync += bad.eq(1)
            with m.Else():
                m.d.sync += [
                    self.write.addr.eq(count),
                    self.write.data.eq(value),
                    self.write.en.eq(1),
                    count.eq(count + 1),
                    last.eq(value),
                    before_last.eq(last),
                ]
                # The CRC runs two bytes behind: it covers every byte but the last two, which
                # are the candidates for the CRC field when the END comes.
                m.d.comb += [crc.valid.eq(count >= 2), crc.byte.eq(before_last)]

        return m


class BodyByte(data.Struct):
    """One byte of a frame body for :class:`SlipEncoder`; ``last`` marks the body's last byte."""

    data: 8
    last: 1


class SlipEncoder(wiring.Component):
    """SLIP encoder: frame bodies in, line bytes out, CRC appended.

    Contract
    --------
    For each body (a run of ``body`` transfers ending with ``last``), ``line`` carries ``END``,
    the body bytes stuffed (``END`` as ``ESC ESC_END``, ``ESC`` as ``ESC ESC_ESC``), the
    CRC-16/CCITT-FALSE of the body little-endian and stuffed, then ``END``: exactly
    :func:`plasticore.protocol.build_frame` of the body (whose first two bytes are ``seq`` and
    ``op``). There is no length limit. A body is a run of at least one byte.

    * **Handshake.** Both streams follow the :mod:`amaranth.lib.stream` rules. ``line`` is a
      registered output and runs at full throughput: one byte per cycle while ``line.ready`` is
      high. ``body.ready`` is combinational from ``line.ready`` (it is high when the output
      register is free or being emptied, and the encoder is inside a body with no escape
      pending). ``body`` is stalled while the encoder offers anything but a body byte: the
      opening ``END`` (offered once the first body byte is offered, never before), the second
      byte of a stuffed pair, and the two CRC bytes and closing ``END`` after the ``last`` byte
      (three output cycles, five at most with stuffing). A frame of *n* body bytes, *s* of them
      stuffed, takes ``n + s + 4`` output cycles plus the CRC's stuffing.
    * **Latency.** A byte taken at a clock edge (or the ``END`` before it) is offered on
      ``line`` in the next cycle.
    * **Reset.** Between frames, nothing offered, CRC cleared.

    Members
    -------
    body : In(stream.Signature(BodyByte))
    line : Out(stream.Signature(8))
    """

    body: In(stream.Signature(BodyByte))
    line: Out(stream.Signature(8))

    class _State(enum.Enum, shape=3):
        IDLE = 0     # between frames: offer the opening END when a body byte is offered
        BODY = 1
        CRC_LO = 2
        CRC_HI = 3
        CLOSE = 4    # offer the closing END

    def elaborate(self, platform):
        m = Module()
        State = self._State
        m.submodules.crc = crc = Crc16()

        state = Signal(State)
        escape = Signal()      # the second byte of an escape, `pending`, comes next
        pending = Signal(8)
        load = Signal()        # the output register is free at the next edge

        m.d.comb += [
            load.eq(~self.line.valid | self.line.ready),
            self.body.ready.eq(load & ~escape & (state == State.BODY)),
            crc.valid.eq(self.body.valid & self.body.ready),
            crc.byte.eq(self.body.payload.data),
        ]

        def offer(value):
            m.d.sync += [self.line.payload.eq(value), self.line.valid.eq(1)]

        def offer_stuffed(value, next_state):
            with m.If(value == END):
                offer(ESC)
                m.d.sync += [escape.eq(1), pending.eq(ESC_END)]
            with m.Elif(value == ESC):
                offer(ESC)
                m.d.sync += [escape.eq(1), pending.eq(ESC_ESC)]
            with m.Else():
                offer(value)
            m.d.sync += state.eq(next_state)

        with m.If(load):
            m.d.sync += self.line.valid.eq(0)
            with m.If(escape):
                offer(pending)
                m.d.sync += escape.eq(0)
            with m.Elif(state == State.IDLE):
                with m.If(self.body.valid):
                    offer(END)
                    m.d.sync += state.eq(State.BODY)
            with m.Elif(state == State.BODY):
                with m.If(self.body.valid):
                    with m.If(self.body.payload.last):
                        offer_stuffed(self.body.payload.data, State.CRC_LO)
                    with m.Else():
                        offer_stuffed(self.body.payload.data, State.BODY)
            with m.Elif(state == State.CRC_LO):
                offer_stuffed(crc.crc[:8], State.CRC_HI)
            with m.Elif(state == State.CRC_HI):
                offer_stuffed(crc.crc[8:], State.CLOSE)
            with m.Elif(state == State.CLOSE):
                offer(END)
                m.d.sync += state.eq(State.IDLE)
                m.d.comb += crc.clear.eq(1)

        return m
