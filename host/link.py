"""The link protocol's client: commands and replies, TICK frames, and credit-based input streaming.

:class:`Link` speaks ``docs/protocol.md`` over a :class:`~plasticore.host.transport.Transport`.
Framing and the payload codec are the pure functions of :mod:`plasticore.protocol`; this module
adds what needs state and time: sequence numbers, matching replies to commands, timeouts, the
queue of TICK and RUN_END frames that arrive on their own during a run, and the input-queue
credits.

Error handling
--------------
* Every wait has a timeout; when it expires :exc:`LinkTimeout` names the command and its sequence
  number.
* A command the core refuses raises :exc:`LinkError` with the
  :class:`~plasticore.protocol.ErrorCode` and the detail word. By the protocol a refused command changed nothing.
* Nothing is ever retried. Commands are not idempotent in general (``SPIKES`` queues entries,
  ``RUN`` starts a run, a ``WRITE`` to ``STATUS.CLEAR`` clears counters), and after a lost reply
  the host cannot know whether the command ran, so the decision is left to the caller (who can
  ask with :meth:`Link.status` and reads).
* TICK frames carry their own sequence number. A gap (or a RUN_END, or a STATUS ``tick_frames``,
  that is not the next TICK's number) means TICK frames were lost; the loss is counted in
  :attr:`Link.lost_tick_frames` and raised as :exc:`LinkLost` where it happened: by the call
  that would hand out the frame after the gap (or the RUN_END), once.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import numbers
import struct
import time
from collections.abc import Callable, Iterable

from ..protocol import (END_OF_TICK, MAX_REPLY_BODY, MAX_SPIKES, MAX_WORDS, Capability,
                        ErrorCode, Frame, FrameError, IdentifyInfo, LinkStatus, Opcode, Reply,
                        RunFlags, SlipDecoder, TickFrame, build_frame, parse_frame)
from .transport import Transport

__all__ = ["Link", "LinkException", "LinkError", "LinkTimeout", "LinkLost", "RunEnd"]

_M32 = 0xFFFFFFFF
#: Bytes asked of the transport per read.
_READ_CHUNK = 1 << 16
#: Spaces by number, for messages (plasticore.hdl.core.Space has the same numbering).
_SPACE_NAMES = {0: "REG", 1: "SYN", 2: "NPARAM", 3: "NSTATE", 4: "SOURCE", 5: "STATUS"}


class LinkException(Exception):
    """Base of everything :class:`Link` raises about the link itself."""


class LinkError(LinkException):
    """The core refused a command with an ``ERROR`` reply; the command changed nothing.

    Attributes
    ----------
    command : str
        The command, as ``"READ(space=SYN, addr=0x4000, count=64)"``.
    op : Opcode or int
    code : ErrorCode or int
    detail : int
        The reply's detail word (an address, a register address, a count, ... see
        ``docs/protocol.md`` section 4).
    """

    def __init__(self, command: str, op: int, code: int, detail: int):
        self.command, self.op, self.detail = command, op, detail
        try:
            self.code = ErrorCode(code)
            name = self.code.name
        except ValueError:
            self.code = code
            name = f"unknown error code {code}"
        super().__init__(f"{command} refused: {name} (detail {detail} = {detail:#x})")


class LinkTimeout(LinkException, TimeoutError):
    """No reply (or no TICK or RUN_END frame) arrived in time; the message says what was awaited.

    After a timeout the link does not know whether the command ran; :meth:`Link.status`
    resynchronises the credits and the TICK sequence number.
    """


class LinkLost(LinkException):
    """Frames from the core were lost or arrived malformed (a TICK sequence gap, a run that ended
    early, a reply that cannot be decoded)."""


@dataclasses.dataclass(frozen=True)
class RunEnd:
    """A RUN_END frame: the tick counter after the run, why it ended, and its sequence number
    (the sequence number the next TICK frame will carry)."""
    t: int
    reason: int   #: 0: all ticks done, 1: stopped
    seq: int

    DONE = 0
    STOPPED = 1


@dataclasses.dataclass
class _Pending:
    op: int
    name: str
    size: int          #: bytes on the line
    entries: int = 0   #: SPIKES entries it carries


#: :meth:`Link.stream_run` waits for credits for ``queue_depth // _QUEUE_SHARE`` entries (at most
#: ``MAX_SPIKES``) before it sends a SPIKES command. The credits of a command come back only with
#: the TICK frames of its ticks, one after the other on the line from the core, so while one
#: command is on the line the credits of the one before it are still returning: with half the
#: queue per command the line idles for them after every command (payload 0.80 of the line rate
#: in ``python -m plasticore.sim.bench_link``), with a third it never does (0.97).
_QUEUE_SHARE = 3


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _int_arg(what: str, value, lo: int, hi: int) -> int:
    value = getattr(value, "value", value)   # amaranth enum members (plasticore.hdl.core.Space)
    if not _is_int(value):
        raise TypeError(f"{what} must be an int, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{what} = {value} is out of range {lo}..{hi}")
    return int(value)


def _space_name(space: int) -> str:
    return _SPACE_NAMES.get(space, str(space))


class Link:
    """A protocol client on a transport.

    Parameters
    ----------
    transport : Transport
        Owned by the link from now on: :meth:`close` closes it.
    timeout : float
        Seconds to wait for each reply, and for each TICK frame of a run beyond its pacing.
    window : int
        How many commands may be on the line before the first reply comes back, 1 to 64: the
        blocks of a bulk transfer (:meth:`read`, :meth:`write`) and the ``SPIKES`` commands of
        :meth:`stream_run` are pipelined up to it; every other command is sent alone and
        awaited. Before :meth:`identify` the window is 1.

    .. note::
        **Receive buffer.** The core decodes the oldest command in flight into its frame buffer
        as fast as its bytes arrive and keeps it there until its reply is out; the commands
        behind it wait in the receive FIFO (``IdentifyInfo.rx_buffer`` bytes). So a command is
        sent only when the line bytes of the commands in flight, the oldest excepted, plus its
        own fit in ``rx_buffer``: a link never overflows the FIFO, and two ``SPIKES`` commands
        of ``MAX_SPIKES`` entries (262 bytes each) may be in flight at once.

    Raises
    ------
    TypeError, ValueError
        On a bad argument.

    .. note::
        A link is not thread-safe; use it from one thread. It is a context manager that closes
        the transport on exit.
    """

    def __init__(self, transport: Transport, *, timeout: float = 1.0, window: int = 8):
        if not isinstance(transport, Transport):
            raise TypeError(f"transport must be a Transport, not {transport!r}")
        window = _int_arg("window", window, 1, 64)
        self._transport = transport
        self.timeout = timeout
        self._window = window
        self._decoder = SlipDecoder(limit=MAX_REPLY_BODY)
        self._seq = 0
        self._pending: dict[int, _Pending] = {}
        self._replies: dict[int, Frame] = {}
        # (frames lost just before it, the frame), in arrival order.
        self._ticks: collections.deque[tuple[int, TickFrame]] = collections.deque()
        self._run_ends: collections.deque[tuple[int, RunEnd]] = collections.deque()
        self._tick_seq: int | None = None
        self._lost = 0
        self._lost_unreported = False
        self._corrupt = 0
        self._stray = 0
        self._queue_free: int | None = None
        self._in_flight = 0
        self._running = False
        self._info: IdentifyInfo | None = None
        self._closed = False

    # -- properties -----------------------------------------------------------------------------

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def timeout(self) -> float:
        """Seconds to wait for each reply (see :class:`Link`); may be changed at any time, and
        a run in progress uses the new value from its next wait on."""
        return self._timeout

    @timeout.setter
    def timeout(self, timeout: float) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
            raise TypeError(f"timeout must be a number of seconds, not {timeout!r}")
        if not 0 < timeout < math.inf:
            raise ValueError(f"timeout = {timeout} must be > 0 and finite")
        self._timeout = float(timeout)

    @property
    def info(self) -> IdentifyInfo | None:
        """The last :meth:`identify` answer, or None before the first."""
        return self._info

    @property
    def credits(self) -> int:
        """SPIKES entries that may be sent now: the ``queue_free`` of the latest ACK, TICK or
        STATUS, less the entries of every ``SPIKES`` command not yet acknowledged. The core
        takes commands in order and acknowledges each before it sends anything else, so no
        report counts a command whose ACK has not arrived before it. 0 while unknown (before
        the first report, and after a timeout)."""
        if self._queue_free is None:
            return 0
        return max(0, self._queue_free - self._in_flight)

    @property
    def running(self) -> bool:
        """A RUN was acknowledged and its RUN_END has not arrived yet."""
        return self._running

    @property
    def lost_tick_frames(self) -> int:
        """TICK frames found missing (by sequence number) since the link was opened."""
        return self._lost

    @property
    def corrupt_frames(self) -> int:
        """Frames from the core that failed the SLIP, length or CRC check."""
        return self._corrupt

    @property
    def stray_frames(self) -> int:
        """Well-formed frames that answered nothing outstanding (late replies after a timeout)."""
        return self._stray

    def __repr__(self) -> str:
        return f"Link({self._transport!r})"

    def close(self) -> None:
        """Close the transport. Closing twice is allowed."""
        if not self._closed:
            self._closed = True
            self._transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- receiving ------------------------------------------------------------------------------

    def _pump(self, timeout: float) -> None:
        """Read what arrives within ``timeout`` seconds and dispatch every complete frame."""
        data = self._transport.read(_READ_CHUNK, timeout)
        for body in self._decoder.feed(data):
            frame = parse_frame(body)
            if isinstance(frame, FrameError):
                self._corrupt += 1
            else:
                self._dispatch(frame)

    def _dispatch(self, frame: Frame) -> None:
        # Frames are dispatched in the order they were sent, so every queue_free and sequence
        # number below describes the core at the moment the frame left it.
        op, payload = frame.op, frame.payload
        if op == Reply.TICK:
            try:
                tick = TickFrame.unpack(payload)
            except ValueError:
                self._corrupt += 1
                return
            gap = self._tick_gap(frame.seq)
            self._tick_seq = (frame.seq + 1) & 0xFF
            self._queue_free = tick.queue_free
            self._ticks.append((gap, tick))
        elif op == Reply.RUN_END:
            if len(payload) != 5:
                self._corrupt += 1
                return
            t, reason = struct.unpack("<IB", payload)
            gap = self._tick_gap(frame.seq)
            self._tick_seq = frame.seq
            self._running = False
            self._run_ends.append((gap, RunEnd(t=t, reason=reason, seq=frame.seq)))
        elif op in (Reply.ACK, Reply.DATA, Reply.ERROR):
            if op == Reply.ACK and len(payload) == 3:
                (self._queue_free,) = struct.unpack_from("<H", payload, 1)
            elif (op == Reply.ERROR and len(payload) == 6 and payload[0] == Opcode.SPIKES
                  and payload[1] == ErrorCode.QUEUE_FULL):
                # The detail of QUEUE_FULL is the room there was.
                (self._queue_free,) = struct.unpack_from("<I", payload, 2)
            pending = self._pending.get(frame.seq)
            if pending is None or not payload or payload[0] != pending.op:
                self._stray += 1
                return
            del self._pending[frame.seq]
            self._in_flight -= pending.entries
            if op == Reply.ACK and pending.op == Opcode.RUN:
                # Frames before this ACK belong to an earlier run.
                self._ticks.clear()
                self._run_ends.clear()
                self._running = True
            elif (op == Reply.DATA and pending.op == Opcode.STATUS
                  and len(payload) == 1 + struct.calcsize(LinkStatus.FORMAT)):
                status = LinkStatus.unpack(payload[1:])
                self._queue_free = status.queue_free
                # Every TICK frame sent before this reply has been dispatched already.
                if self._tick_gap(status.tick_frames & 0xFF):
                    self._lost_unreported = True
                self._tick_seq = status.tick_frames & 0xFF
                self._running = bool(status.running)
            self._replies[frame.seq] = frame
        else:
            self._stray += 1

    def _tick_gap(self, seq: int) -> int:
        """TICK frames missing before one numbered ``seq`` (counted in lost_tick_frames)."""
        if self._tick_seq is None:
            return 0
        gap = (seq - self._tick_seq) & 0xFF
        self._lost += gap
        return gap

    def _raise_lost(self) -> None:
        if self._lost_unreported:
            self._lost_unreported = False
            raise LinkLost(f"TICK frames from {self._transport.name} were lost (STATUS counts "
                           f"more than arrived; {self._lost} lost in all)")

    def _take(self, queue: collections.deque, what: str):
        """Pop the next frame of ``queue``; raise LinkLost once if frames were lost before it."""
        self._raise_lost()
        gap, item = queue[0]
        if gap:
            queue[0] = (0, item)
            raise LinkLost(f"{gap} TICK frame(s) from {self._transport.name} were lost before "
                           f"{what} (a gap in their sequence numbers)")
        queue.popleft()
        return item

    # -- commands -------------------------------------------------------------------------------

    def _fits(self, size: int) -> bool:
        """Whether a command of ``size`` line bytes may be sent now: within the window, and
        within the receive buffer with the commands in flight but the oldest (see :class:`Link`).
        """
        if not self._pending:
            return True
        if self._info is None or len(self._pending) >= self._window:
            return False
        sizes = [p.size for p in self._pending.values()]
        return sum(sizes) - sizes[0] + size <= self._info.rx_buffer

    def _make_room(self, size: int) -> None:
        """Collect replies until a command of ``size`` line bytes may be sent."""
        deadline = time.monotonic() + self._timeout
        while not self._fits(size):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._timed_out(next(iter(self._pending)), self._timeout)
            self._pump(remaining)

    def _next_frame(self, op: int, payload: bytes) -> bytes:
        """The line bytes of the next command (:meth:`_send` gives it the next seq)."""
        return build_frame(self._seq, op, payload)

    def _send(self, op: int, payload: bytes, name: str, entries: int = 0,
              frame: bytes | None = None) -> int:
        """Send a command once there is room for it (:meth:`_make_room`); its seq. ``frame``,
        if given, is the command's :meth:`_next_frame`."""
        if self._closed:
            raise LinkException(f"the link to {self._transport.name} is closed")
        if frame is None:
            frame = self._next_frame(op, payload)
        self._make_room(len(frame))
        seq = self._seq
        self._seq = (seq + 1) & 0xFF
        # A sequence number still awaited from before a timeout would be ambiguous: forget it,
        # and any late reply to it that nobody collected.
        self._pending.pop(seq, None)
        self._replies.pop(seq, None)
        self._pending[seq] = _Pending(op=int(op), name=name, size=len(frame), entries=entries)
        self._in_flight += entries
        self._transport.write(frame)
        return seq

    def _await(self, seq: int, timeout: float | None = None) -> Frame:
        timeout = self._timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while seq not in self._replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._timed_out(seq, timeout)
            self._pump(remaining)
        return self._replies.pop(seq)

    def _timed_out(self, seq: int, timeout: float):
        pending = self._pending.get(seq)
        name = pending.name if pending is not None else "a command"
        # The commands on the line may or may not have run: forget them, and the credits.
        self._pending.clear()
        self._in_flight = 0
        self._queue_free = None
        hint = f"; {self._corrupt} corrupt frame(s) received so far" if self._corrupt else ""
        raise LinkTimeout(f"no reply to {name} (seq {seq}) from {self._transport.name} within "
                          f"{timeout:g} s{hint}")

    def _check(self, frame: Frame, name: str) -> bytes:
        """The DATA or ACK payload after the op byte; raises on ERROR."""
        payload = frame.payload
        if frame.op == Reply.ERROR:
            if len(payload) != 6:
                raise LinkLost(f"malformed ERROR reply to {name}: {payload.hex()}")
            _, code, detail = struct.unpack("<BBI", payload)
            raise LinkError(name, payload[0], code, detail)
        return payload[1:]

    def _command(self, op: int, payload: bytes, name: str, *, entries: int = 0,
                 timeout: float | None = None) -> tuple[int, bytes]:
        """Send one command, await its reply; ``(reply op, payload after the op byte)``."""
        frame = self._await(self._send(op, payload, name, entries), timeout)
        return frame.op, self._check(frame, name)

    def _ack(self, op: int, payload: bytes, name: str, **kwargs) -> int:
        kind, data = self._command(op, payload, name, **kwargs)
        if kind != Reply.ACK or len(data) != 2:
            raise LinkLost(f"{name}: expected an ACK, got reply {kind:#04x} {data.hex()}")
        return struct.unpack("<H", data)[0]

    def _batch(self, commands: list[tuple[int, bytes, str]]) -> list[bytes]:
        """Send commands with up to ``window`` in flight (and within the receive buffer, see
        :class:`Link`); their reply payloads, in order.

        On a refusal no further command is sent; the replies of those already on the line are
        collected, then the first refusal is raised.
        """
        results: list[bytes] = []
        in_flight: collections.deque[tuple[int, str]] = collections.deque()
        error = None
        index = 0
        while True:
            while index < len(commands) and error is None:
                op, payload, name = commands[index]
                frame = self._next_frame(op, payload)
                if in_flight and not self._fits(len(frame)):
                    break
                in_flight.append((self._send(op, payload, name, frame=frame), name))
                index += 1
            if not in_flight:
                break
            seq, name = in_flight.popleft()
            frame = self._await(seq)
            try:
                results.append(self._check(frame, name))
            except LinkError as exc:
                error = error or exc
        if error is not None:
            raise error
        return results

    # -- the commands ---------------------------------------------------------------------------

    def identify(self) -> IdentifyInfo:
        """``IDENTIFY``: the core's sizes, capabilities, buffers and clock (also kept as
        :attr:`info`)."""
        kind, data = self._command(Opcode.IDENTIFY, b"", "IDENTIFY")
        size = struct.calcsize(IdentifyInfo.FORMAT)
        if kind != Reply.DATA or len(data) != size:
            raise LinkLost(f"IDENTIFY: expected {size} bytes of DATA, got {data.hex()}")
        self._info = IdentifyInfo.unpack(data)
        return self._info

    def status(self) -> LinkStatus:
        """``STATUS``: the run, the input queue and the loss counters. Also resynchronises the
        credits and the expected TICK sequence number."""
        kind, data = self._command(Opcode.STATUS, b"", "STATUS")
        size = struct.calcsize(LinkStatus.FORMAT)
        if kind != Reply.DATA or len(data) != size:
            raise LinkLost(f"STATUS: expected {size} bytes of DATA, got {data.hex()}")
        return LinkStatus.unpack(data)

    def read(self, space, addr: int, count: int) -> list[int]:
        """``READ`` ``count`` words from ``addr`` on in ``space``, as commands of at most
        ``MAX_WORDS`` words each (pipelined up to ``window``).

        Parameters
        ----------
        space : int or plasticore.hdl.core.Space
        addr : int
            0 .. 2**32 - 1; each command's block must lie inside the space
            (``docs/protocol.md``), so a read must not cross a synapse row.
        count : int
            1 or more.

        Raises
        ------
        LinkError
            If the core refuses a block (the blocks before it have been read).
        """
        return self.read_blocks(space, [(addr, count)])[0]

    def read_blocks(self, space, blocks) -> list[list[int]]:
        """:meth:`read` for several ``(addr, count)`` blocks of one space, pipelined together;
        the words of each block."""
        space = _int_arg("space", space, 0, 255)
        commands, sizes = [], []
        for addr, count in blocks:
            addr = _int_arg("addr", addr, 0, _M32)
            count = _int_arg("count", count, 1, _M32)
            if addr + count - 1 > _M32:
                raise ValueError(f"block {addr:#x} + {count} words runs past address "
                                 f"{_M32:#x}")
            sizes.append(count)
            for offset in range(0, count, MAX_WORDS):
                a, n = addr + offset, min(MAX_WORDS, count - offset)
                commands.append((Opcode.READ, struct.pack("<BIH", space, a, n),
                                 f"READ(space={_space_name(space)}, addr={a:#x}, count={n})"))
        words = []
        for (_, payload, name), data in zip(commands, self._batch(commands)):
            n = struct.unpack_from("<H", payload, 5)[0]
            if len(data) != 4 * n:
                raise LinkLost(f"{name}: expected {4 * n} bytes of DATA, got {len(data)}")
            words.extend(struct.unpack(f"<{n}I", data))
        out, pos = [], 0
        for count in sizes:
            out.append(words[pos:pos + count])
            pos += count
        return out

    def write(self, space, addr: int, words) -> None:
        """``WRITE`` ``words`` (each 0 .. 2**32 - 1) from ``addr`` on in ``space``, as commands of
        at most ``MAX_WORDS`` words each (pipelined up to ``window``).

        Raises
        ------
        LinkError
            If the core refuses a block (the blocks before it have been written; the refused one
            and those after it have not).
        """
        self.write_blocks(space, [(addr, words)])

    def write_blocks(self, space, blocks) -> None:
        """:meth:`write` for several ``(addr, words)`` blocks of one space, pipelined
        together."""
        space = _int_arg("space", space, 0, 255)
        commands = []
        for addr, words in blocks:
            addr = _int_arg("addr", addr, 0, _M32)
            words = [_int_arg(f"words[{k}]", w, 0, _M32) for k, w in enumerate(words)]
            if not words:
                raise ValueError("a block must hold at least one word")
            if addr + len(words) - 1 > _M32:
                raise ValueError(f"block {addr:#x} + {len(words)} words runs past address "
                                 f"{_M32:#x}")
            for offset in range(0, len(words), MAX_WORDS):
                a, chunk = addr + offset, words[offset:offset + MAX_WORDS]
                commands.append((Opcode.WRITE, struct.pack(f"<BI{len(chunk)}I", space, a, *chunk),
                                 f"WRITE(space={_space_name(space)}, addr={a:#x}, "
                                 f"count={len(chunk)})"))
        self._batch(commands)

    def spikes(self, entries) -> int:
        """``SPIKES``: queue input indices and ``END_OF_TICK`` markers (1 to ``MAX_SPIKES``).

        This is the raw command: the core refuses it with ``QUEUE_FULL`` when it does not fit.
        :meth:`stream_run` is the credit-respecting way to feed a run.

        Returns
        -------
        int
            ``queue_free`` after the entries were queued.
        """
        entries = [_int_arg(f"entries[{k}]", e, 0, 0xFFFF) for k, e in enumerate(entries)]
        if not 1 <= len(entries) <= MAX_SPIKES:
            raise ValueError(f"SPIKES takes 1..{MAX_SPIKES} entries, not {len(entries)}")
        return self._ack(Opcode.SPIKES, struct.pack(f"<{len(entries)}H", *entries),
                         f"SPIKES({len(entries)} entries)", entries=len(entries))

    def run(self, ticks: int = 0, flags=0, period: int = 0) -> int:
        """``RUN``: start a run of ``ticks`` ticks (0: until :meth:`stop`).

        Parameters
        ----------
        ticks : int
        flags : RunFlags or int
            ``LEARN``, ``INPUTS``.
        period : int
            Tick period in core clock cycles; 0 runs as fast as the core can.

        Returns
        -------
        int
            ``queue_free`` in the ACK.

        Raises
        ------
        LinkError
            ``BUSY`` if a run is in progress.
        """
        ticks = _int_arg("ticks", ticks, 0, _M32)
        flags = _int_arg("flags", int(flags) if isinstance(flags, RunFlags) else flags, 0, 0xFF)
        period = _int_arg("period", period, 0, _M32)
        if period and self._info is not None and not self._info.capabilities & Capability.PACED:
            raise ValueError(f"period = {period}: the core on {self._transport.name} was built "
                             "without tick pacing (no PACED capability); run with period 0")
        return self._ack(Opcode.RUN, struct.pack("<IBI", ticks, flags, period),
                         f"RUN(ticks={ticks}, flags={flags:#x}, period={period})")

    def stop(self) -> int:
        """``STOP``: end the run after the tick in progress (a RUN_END follows if one was
        running). Returns ``queue_free``."""
        return self._ack(Opcode.STOP, b"", "STOP")

    def reset_state(self) -> int:
        """``RESET_STATE``: clear v, th, ref, y, x, pending events, t and the input queue.
        Returns ``queue_free``."""
        return self._ack(Opcode.RESET_STATE, b"", "RESET_STATE")

    # -- frames of a run ------------------------------------------------------------------------

    def _tick_timeout(self, period: int) -> float:
        clock = self._info.clock_hz if self._info is not None and self._info.clock_hz else 0
        return self._timeout + (period / clock if clock else 0.0)

    def next_tick(self, timeout: float | None = None) -> TickFrame:
        """The next TICK frame, waiting up to ``timeout`` seconds (default: the link's).

        Raises
        ------
        LinkTimeout
            If none arrives in time.
        LinkLost
            If TICK frames were lost before it.
        """
        return self._wait_for(self._ticks, "TICK", "this TICK frame", timeout)

    def wait_run_end(self, timeout: float | None = None) -> RunEnd:
        """The next RUN_END frame, waiting up to ``timeout`` seconds; TICK frames that arrive
        meanwhile stay queued for :meth:`next_tick`."""
        return self._wait_for(self._run_ends, "RUN_END", "the RUN_END frame", timeout)

    def _wait_for(self, queue, kind: str, what: str, timeout: float | None):
        """The first frame of ``queue`` (of ``kind``), reading the link for up to ``timeout``
        seconds (the link's own timeout if None)."""
        timeout = self._timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not queue:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LinkTimeout(f"no {kind} frame from {self._transport.name} within "
                                  f"{timeout:g} s")
            self._pump(remaining)
        return self._take(queue, what)

    def stream_run(self, ticks: int, inputs_per_tick: Iterable, *, learn: bool = False,
                   on_tick: Callable[[int, TickFrame], None] | None = None, period: int = 0,
                   lockstep: bool = False) -> list[tuple[int, ...]]:
        """Run ``ticks`` ticks with the ``INPUTS`` flag, streaming each tick's input spikes.

        The run is started, then the entries of tick after tick (the tick's distinct input
        indices, then ``END_OF_TICK``) are sent in ``SPIKES`` commands of at most
        ``MAX_SPIKES`` entries, never more than :attr:`credits` allow, while TICK frames are
        collected.

        Contract
        --------
        * **Pipelined.** ``SPIKES`` commands do not wait for each other's ``ACK``: as many are
          in flight as the credits, the ``window`` and the receive buffer allow (see
          :class:`Link`), so the line keeps carrying entries while the core queues the previous
          command. :attr:`credits` count the entries of every command not yet acknowledged, and
          the core takes commands in order, so the queue never overflows (no ``QUEUE_FULL``),
          and entries are queued in the order of the ticks.
        * **Large commands.** A command carries as many entries as the credits allow, up to
          ``MAX_SPIKES``, but at least ``min(MAX_SPIKES, queue_depth // 3)`` or all that are
          left to send (in ``lockstep``: the next tick's), whichever is fewer. While the credits
          are short of that the link waits for TICK frames and ``ACK`` replies to return more,
          rather than send small commands as credits trickle back in a core-bound run. Only
          when waiting could stall the run (no command in flight, and no complete tick queued
          in the core whose TICK frame would return credits) does it send what the credits
          allow; since every tick fits in the queue, there is then room for at least one more
          entry, so the run cannot deadlock.
        * **Timeouts.** Every wait (for a TICK frame, an ``ACK``, room to send) ends after
          ``timeout`` seconds (plus one period) without progress.

        Parameters
        ----------
        ticks : int
            0 or more (0 sends nothing and returns ``[]``).
        inputs_per_tick : iterable of iterables of int
            The input axons that spike in each tick; read one tick ahead of what has been sent.
            It must yield at least ``ticks`` items (extra ones are not read).
        learn : bool
            Plasticity on.
        on_tick : callable(k, TickFrame), optional
            Called for each tick ``k`` of the run, in order, as its TICK frame is taken. It may
            issue commands on this link (e.g. :meth:`read`).
        period : int
            Tick period in clock cycles (0: as fast as possible).
        lockstep : bool
            Send tick ``k + 1``'s inputs only after tick ``k``'s TICK frame has been handed to
            ``on_tick``: the core then waits for them, so ``on_tick`` sees the state right after
            tick ``k`` (use it to read membrane potentials every tick).

        Returns
        -------
        list of tuple of int
            The neurons that fired, per tick.

        Raises
        ------
        ValueError, TypeError
            On a bad input list (an index out of range, a tick with more distinct inputs than
            the queue holds, too few ticks); the run is stopped first.
        LinkError
            If the core refuses the run (``BUSY``) or a command.
        LinkTimeout
            If no TICK frame or ``ACK`` arrives for ``timeout`` (plus one period) while one is
            due.
        LinkLost
            If TICK frames were lost, or the run ended early.
        LinkException
            If the input queue holds entries that no tick of this run would consume.

        .. note::
            The core is stopped (``STOP``) if anything goes wrong after the run started.
        """
        ticks = _int_arg("ticks", ticks, 0, _M32)
        period = _int_arg("period", period, 0, _M32)
        if not isinstance(learn, bool):
            raise TypeError(f"learn must be a bool, not {learn!r}")
        if ticks == 0:
            return []
        info = self._info if self._info is not None else self.identify()
        self._raise_lost()
        status = self.status()
        if status.queue_free != info.queue_depth:
            raise LinkException(f"the input queue of {self._transport.name} holds "
                                f"{info.queue_depth - status.queue_free} entries from before; "
                                f"call reset_state() (or run them) first")
        flags = RunFlags.INPUTS | (RunFlags.LEARN if learn else 0)
        source = iter(inputs_per_tick)
        self.run(ticks, flags, period)
        try:
            return self._stream(ticks, source, info, on_tick, lockstep, period)
        except BaseException:
            if self._running:
                try:
                    self.stop()
                    self.wait_run_end()
                except (LinkException, OSError):
                    pass  # the original error is the one worth reporting
            raise

    def _stream(self, ticks, source, info, on_tick, lockstep, period):
        n_inputs, depth = info.n_inputs, info.queue_depth
        share = min(MAX_SPIKES, max(1, depth // _QUEUE_SHARE))
        results: list[tuple[int, ...]] = []
        outbox: collections.deque[int] = collections.deque()
        queued = 0          # ticks whose entries are in the outbox or sent
        ends_sent = 0       # END_OF_TICK entries sent
        sent: collections.deque[tuple[int, str]] = collections.deque()  # awaiting their ACK
        first_t = None
        # Read again at every new wait: the link's timeout may be changed during the run.
        tick_timeout = self._tick_timeout(period)
        deadline = time.monotonic() + tick_timeout
        while len(results) < ticks:
            if self._collect_acks(sent):
                tick_timeout = self._tick_timeout(period)
                deadline = time.monotonic() + tick_timeout
            while self._ticks and len(results) < ticks:
                tick = self._take(self._ticks, f"tick {len(results)} of the run")
                if first_t is None:
                    first_t = tick.t
                elif tick.t != (first_t + len(results)) & _M32:
                    raise LinkLost(f"TICK frame for t = {tick.t} arrived where "
                                   f"t = {(first_t + len(results)) & _M32} was due")
                results.append(tuple(tick.spikes))
                if on_tick is not None:
                    on_tick(len(results) - 1, tick)
                tick_timeout = self._tick_timeout(period)
                deadline = time.monotonic() + tick_timeout
            if len(results) == ticks:
                break
            self._raise_lost()
            if self._run_ends:
                end = self._run_ends[0][1]
                raise LinkLost(f"the run ended (reason {end.reason}, t = {end.t}) after "
                               f"{len(results)} of {ticks} ticks")
            while (queued < ticks and len(outbox) < MAX_SPIKES
                   and (not lockstep or queued <= len(results))):
                try:
                    entries = next(source)
                except StopIteration:
                    raise ValueError(f"inputs_per_tick ran out after {queued} ticks; the run "
                                     f"has {ticks}") from None
                outbox.extend(self._tick_entries(queued, entries, n_inputs, depth))
                queued += 1
            n = min(len(outbox), self.credits, MAX_SPIKES)
            # Waiting for more credits is safe while something will return them: an ACK, or
            # the TICK frame of a complete tick in the core's queue. Else waiting would stall
            # the run: send what the credits allow.
            stalled = not sent and ends_sent == len(results)
            # The frame is built only if it may fit: 2 * n + 6 bytes is its size unescaped.
            if n and (n >= min(len(outbox), share) or stalled) and self._fits(2 * n + 6):
                entries = [outbox[k] for k in range(n)]
                payload = struct.pack(f"<{n}H", *entries)
                frame = self._next_frame(Opcode.SPIKES, payload)
                if self._fits(len(frame)):   # else an ACK will make room
                    name = f"SPIKES({n} entries)"
                    sent.append((self._send(Opcode.SPIKES, payload, name, n, frame), name))
                    for _ in range(n):
                        outbox.popleft()
                    ends_sent += entries.count(END_OF_TICK)
                    tick_timeout = self._tick_timeout(period)
                    deadline = time.monotonic() + tick_timeout
                    continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if sent:
                    self._timed_out(sent[0][0], tick_timeout)
                raise LinkTimeout(f"no TICK frame for tick {len(results)} of {ticks} of the "
                                  f"run from {self._transport.name} within {tick_timeout:g} s")
            self._pump(remaining)
        end = self.wait_run_end(tick_timeout)
        # Every ACK came before the TICK frame of the tick that took the command's last entry.
        while sent:
            self._collect_acks(sent, sent[0][0], tick_timeout)
        if end.reason != RunEnd.DONE or end.t != (first_t + ticks) & _M32:
            raise LinkLost(f"the run of {ticks} ticks from t = {first_t} ended with reason "
                           f"{end.reason} at t = {end.t}")
        return results

    def _collect_acks(self, sent: collections.deque, wait: int | None = None,
                      timeout: float | None = None) -> int:
        """Take the replies to the ``SPIKES`` commands ``sent`` (``(seq, name)``, oldest first)
        that have arrived, in order, awaiting ``wait`` if given; how many were taken.

        Raises :exc:`LinkError` on a refusal: a refused command queued nothing, but the
        commands behind it may have, so the stream cannot go on."""
        taken = 0
        while sent and (sent[0][0] in self._replies or sent[0][0] == wait):
            seq, name = sent.popleft()
            frame = self._await(seq, timeout)
            kind, data = frame.op, self._check(frame, name)
            if kind != Reply.ACK or len(data) != 2:
                raise LinkLost(f"{name}: expected an ACK, got reply {kind:#04x} {data.hex()}")
            taken += 1
        return taken

    @staticmethod
    def _tick_entries(k: int, entries, n_inputs: int, depth: int) -> list[int]:
        indices = set()
        for index in entries:
            if not _is_int(index):
                raise TypeError(f"inputs of tick {k} must be ints, not {index!r}")
            if not 0 <= index < n_inputs:
                raise ValueError(f"input {index} of tick {k} is out of range 0..{n_inputs - 1}")
            indices.add(int(index))
        if len(indices) + 1 > depth:
            raise ValueError(f"tick {k} has {len(indices)} distinct inputs; with its END_OF_TICK "
                             f"that exceeds the core's input queue of {depth} entries")
        return sorted(indices) + [END_OF_TICK]
