"""The plasticore link protocol: the one definition the HDL, the virtual board and the host share.

Frames travel over a UART, SLIP-delimited (RFC 1055 byte stuffing), each protected by a
CRC-16. The host sends commands; the core answers every command with one reply (ACK, DATA or
ERROR) carrying the command's sequence number, and sends TICK and RUN_END frames on its own while
a run is in progress. ``docs/protocol.md`` describes it for people; this module is what the code
uses, and the pure functions here (CRC, SLIP, frame building and parsing) do no I/O.

Frame body (before SLIP stuffing)::

    seq:u8  op:u8  payload:bytes  crc:u16le      crc = CRC-16/CCITT-FALSE over seq, op, payload

All multi-byte fields are little-endian.
"""

from __future__ import annotations

import dataclasses
import enum
import struct

__all__ = [
    "PROTOCOL_VERSION", "END", "ESC", "ESC_END", "ESC_ESC", "MAX_WORDS", "MAX_SPIKES",
    "MAX_BODY", "MAX_REPLY_BODY", "END_OF_TICK", "Opcode", "Reply", "ErrorCode", "RunFlags", "Capability",
    "crc16", "slip_encode", "SlipDecoder", "build_frame", "parse_frame", "Frame",
    "FrameError", "IdentifyInfo", "LinkStatus", "TickFrame",
]

PROTOCOL_VERSION = 1

# SLIP (RFC 1055).
END = 0xC0
ESC = 0xDB
ESC_END = 0xDC
ESC_ESC = 0xDD

#: Words in one READ or WRITE.
MAX_WORDS = 64
#: Entries in one SPIKES command.
MAX_SPIKES = 128
#: The longest command body the core accepts (a WRITE of MAX_WORDS words); longer ones are
#: refused with BAD_FRAME. Frames from the core may be longer (a TICK lists every spike).
MAX_BODY = 2 + 1 + 4 + 4 * MAX_WORDS + 2
#: The longest body a host accepts: a TICK frame of the largest core.
MAX_REPLY_BODY = 2 + 2 * 16384 + 6 + 2
#: The SPIKES entry that ends the inputs of one tick.
END_OF_TICK = 0xFFFF


class Opcode(enum.IntEnum):
    """Commands, host to core. Payloads in :func:`docs/protocol.md`."""
    IDENTIFY = 0x01     #: -> DATA IdentifyInfo
    READ = 0x02         #: space:u8 addr:u32 count:u16 -> DATA count x u32
    WRITE = 0x03        #: space:u8 addr:u32 words:u32 x n -> ACK
    SPIKES = 0x04       #: entries:u16 x n (input index or END_OF_TICK) -> ACK
    RUN = 0x05          #: ticks:u32 (0 = until STOP) flags:u8 period:u32 (cycles, 0 = fast) -> ACK
    STOP = 0x06         #: -> ACK; the run ends after the tick in progress
    STATUS = 0x07       #: -> DATA LinkStatus
    RESET_STATE = 0x08  #: -> ACK; clears v, th, ref, y, x, events, t, the input queue


class Reply(enum.IntEnum):
    """Frames, core to host."""
    ACK = 0x80       #: op:u8 queue_free:u16
    DATA = 0x81      #: op:u8 data
    ERROR = 0x82     #: op:u8 code:u8 detail:u32
    TICK = 0x83      #: spikes:u16 x k  t:u32  queue_free:u16  (seq counts TICK frames)
    RUN_END = 0x84   #: t:u32 reason:u8 (0 = ticks done, 1 = STOP)


class ErrorCode(enum.IntEnum):
    """Why a command was refused. A refused command changes nothing."""
    BAD_CRC = 1
    BAD_LENGTH = 2
    BAD_OPCODE = 3
    BAD_ADDRESS = 4    #: a space, an address or an input index out of range (detail = it)
    BAD_VALUE = 5      #: a register value out of range (detail = the register address)
    BUSY = 6           #: RUN or RESET_STATE while a run is in progress
    QUEUE_FULL = 7     #: SPIKES with more entries than the input queue has room for
    BAD_FRAME = 8      #: a SLIP escape error or a frame longer than MAX_BODY


class RunFlags(enum.IntFlag):
    LEARN = 1    #: plasticity on
    INPUTS = 2   #: every tick takes its inputs from the queue, waiting for an END_OF_TICK


class Capability(enum.IntFlag):
    SPRAM = 1                #: single-ported synapse banks
    PACED = 2                #: RUN with a tick period
    WTA = 4                  #: the winner-take-all pool (neuron parameter ``wta``)
    ADAPTIVE_THRESHOLD = 8   #: the adaptive threshold (``th_plus``, ``th``, ``TH_*`` registers)


#: The capabilities that name optional parts of a core; a core built without one refuses what
#: would use it (docs/protocol.md, "Optional features").
OPTIONAL_FEATURES = Capability.PACED | Capability.WTA | Capability.ADAPTIVE_THRESHOLD


# --- CRC and SLIP -----------------------------------------------------------------------------

def _crc_table():
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial 0xFFFF, no reflection, no final xor.

    ``crc16(b"123456789") == 0x29B1``.
    """
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def slip_encode(body: bytes) -> bytes:
    """``END + stuffed(body) + END``; the leading END flushes noise on the line."""
    out = bytearray([END])
    for byte in body:
        if byte == END:
            out += bytes([ESC, ESC_END])
        elif byte == ESC:
            out += bytes([ESC, ESC_ESC])
        else:
            out.append(byte)
    out.append(END)
    return bytes(out)


class SlipDecoder:
    """Incremental SLIP decoder: feed bytes, collect frame bodies.

    Empty frames (two ENDs in a row) are skipped. A bad escape or a body longer than ``limit``
    marks the frame bad; it is returned as a :class:`FrameError` in the output so the caller can
    count it, and the decoder resynchronises at the next END.
    """

    def __init__(self, limit: int = MAX_REPLY_BODY):
        self._limit = limit
        self._buffer = bytearray()
        self._escaped = False
        self._bad = False

    def feed(self, data: bytes) -> list:
        frames = []
        for byte in data:
            if byte == END:
                if self._bad:
                    frames.append(FrameError(ErrorCode.BAD_FRAME, bytes(self._buffer)))
                elif self._buffer:
                    frames.append(bytes(self._buffer))
                self._buffer.clear()
                self._escaped = self._bad = False
            elif self._bad:
                continue
            elif self._escaped:
                self._escaped = False
                if byte == ESC_END:
                    self._append(END)
                elif byte == ESC_ESC:
                    self._append(ESC)
                else:
                    self._bad = True
            elif byte == ESC:
                self._escaped = True
            else:
                self._append(byte)
        return frames

    def _append(self, byte):
        if len(self._buffer) >= self._limit:
            self._bad = True
        else:
            self._buffer.append(byte)


# --- Frames -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Frame:
    seq: int
    op: int
    payload: bytes = b""


@dataclasses.dataclass(frozen=True)
class FrameError:
    """A frame that could not be parsed: why, and the bytes received."""
    code: ErrorCode
    body: bytes


def build_frame(seq: int, op: int, payload: bytes = b"") -> bytes:
    """The SLIP-encoded bytes of one frame."""
    if not 0 <= seq <= 255:
        raise ValueError(f"sequence number {seq} is out of range 0..255")
    if not 0 <= op <= 255:
        raise ValueError(f"opcode {op} is out of range 0..255")
    body = bytes([seq, op]) + bytes(payload)
    if len(body) + 2 > MAX_REPLY_BODY:
        raise ValueError(f"frame body of {len(body) + 2} bytes exceeds the limit "
                         f"{MAX_REPLY_BODY}")
    return slip_encode(body + struct.pack("<H", crc16(body)))


def parse_frame(body) -> Frame | FrameError:
    """Check a decoded body's length and CRC and split it; never raises on bad input."""
    if isinstance(body, FrameError):
        return body
    body = bytes(body)
    if len(body) < 4:
        return FrameError(ErrorCode.BAD_LENGTH, body)
    (crc,) = struct.unpack("<H", body[-2:])
    if crc16(body[:-2]) != crc:
        return FrameError(ErrorCode.BAD_CRC, body)
    return Frame(seq=body[0], op=body[1], payload=body[2:-2])


# --- Payloads ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class IdentifyInfo:
    """The DATA payload answering IDENTIFY (after the op byte)."""
    version: int
    n_inputs: int
    n_neurons: int
    n_recurrent: int
    banks: int
    capabilities: int
    queue_depth: int      #: SPIKES entries the input queue holds
    rx_buffer: int        #: bytes the receive buffer holds
    clock_hz: int
    baud_divisor: int     #: clock cycles per UART bit

    FORMAT = "<BHHHBIHHIH"

    def pack(self) -> bytes:
        return struct.pack(self.FORMAT, *dataclasses.astuple(self))

    @classmethod
    def unpack(cls, data: bytes) -> "IdentifyInfo":
        return cls(*struct.unpack(cls.FORMAT, data))


@dataclasses.dataclass(frozen=True)
class LinkStatus:
    """The DATA payload answering STATUS: the run, the queue, and every loss counter."""
    running: int
    ticks_left: int
    t: int
    queue_free: int
    queued_ticks: int
    rx_overflows: int     #: bytes lost because the receive buffer was full
    framing_errors: int   #: UART characters without a stop bit
    bad_frames: int       #: frames refused (CRC, length, escape, opcode, ...)
    tick_frames: int      #: TICK frames sent

    FORMAT = "<BIIHHHHHI"

    def pack(self) -> bytes:
        return struct.pack(self.FORMAT, *dataclasses.astuple(self))

    @classmethod
    def unpack(cls, data: bytes) -> "LinkStatus":
        return cls(*struct.unpack(cls.FORMAT, data))


@dataclasses.dataclass(frozen=True)
class TickFrame:
    """A TICK frame: the neurons that fired in tick ``t``."""
    t: int
    spikes: tuple
    queue_free: int

    @classmethod
    def unpack(cls, payload: bytes) -> "TickFrame":
        if len(payload) < 6 or (len(payload) - 6) % 2:
            raise ValueError(f"TICK payload of {len(payload)} bytes is malformed")
        count = (len(payload) - 6) // 2
        spikes = struct.unpack(f"<{count}H", payload[:2 * count])
        t, free = struct.unpack("<IH", payload[2 * count:])
        return cls(t=t, spikes=spikes, queue_free=free)

    def pack(self) -> bytes:
        return struct.pack(f"<{len(self.spikes)}HIH", *self.spikes, self.t, self.queue_free)
