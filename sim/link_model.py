"""The core side of the link protocol in software: a reference peer on top of the golden model.

:class:`ModelPeer` implements ``docs/protocol.md`` as the command engine in front of a core does,
with :class:`~plasticore.sim.model.GoldenModel` as the core. It does no I/O: :meth:`ModelPeer.feed`
takes line bytes and returns the reply bytes, :meth:`ModelPeer.step` runs one tick of a run (if
one is due) and returns its TICK (and RUN_END) frames. :class:`PtyPeer` serves a peer on a
pseudo-terminal, so the host stack can be tested over real pyserial before the gateware exists::

    python -m plasticore.sim.link_model --inputs 16 --neurons 32 --recurrent 8

prints the pseudo-terminal's path and serves until interrupted.

The peer is the reference the gateware engine (:mod:`plasticore.hdl.engine`) is compared
against: given the same bytes while idle, both send the same bytes. Where ``docs/protocol.md``
leaves a choice open, the choice made here is listed under *Resolutions* below.

Resolutions
-----------
Frames
    A refused frame is answered with ``ERROR``; its ``seq`` and ``op`` are the body's first two
    bytes, or 0 and 0 if the body has fewer than two. Checks, in order: SLIP escape and length
    (``BAD_FRAME``), fewer than 4 bytes (``BAD_LENGTH``), CRC (``BAD_CRC``), opcode
    (``BAD_OPCODE``), payload length (``BAD_LENGTH``), then the command's own checks. ``detail``
    is 0 unless stated below.
READ / WRITE
    ``READ`` with ``count`` 0 or above ``MAX_WORDS`` is ``BAD_LENGTH`` with ``detail = count``
    (checked before the address). A space above 5, or a block not wholly inside its space, is
    ``BAD_ADDRESS`` with ``detail`` = the block's first address. Registers are range-checked
    word by word (``BAD_VALUE``, ``detail`` = the first bad register's address), and that is
    the only check: ``SHIFT_PLUS`` or ``SHIFT_MINUS`` plus a ``GATE_SHIFT`` above 24 is written,
    as in the core, and the update's shift is clamped at 24 (``docs/core-model.md`` section
    3.3). Outside the register space bits a field does not have are ignored on write and read
    as 0, as in the core.
    ``STATUS`` is writable at ``T`` (0) and ``CLEAR`` (1) only; ``CLEAR`` clears the event
    counters, whatever the value written. The core's cycle counters (``LAST_TICK_CYCLES``,
    ``TICK_CYCLES``, ``BANK_ACCESSES``, ``WALK_CYCLES``) and ``FLAGS`` read 0 here.
SPIKES
    An entry that is neither ``END_OF_TICK`` nor an input index is ``BAD_ADDRESS`` with
    ``detail`` = the entry (the first bad one); then a command with more entries than
    ``queue_free`` is ``QUEUE_FULL`` with ``detail`` = ``queue_free``. Entries are queued while
    no run takes them; a tick of an ``INPUTS`` run starts only when a whole tick (up to its
    ``END_OF_TICK``) is queued, and takes exactly those entries; ticks of runs without
    ``INPUTS`` leave the queue alone.
RUN / STOP
    ``RUN`` during a run is ``BUSY`` (checked after the length). Flag bits other than
    ``LEARN`` and ``INPUTS`` are ignored. The first tick may start at once; with a ``period``,
    each further tick starts ``period`` clock cycles after the previous one started. ``STOP``
    while idle is only acknowledged; during a run it is acknowledged and followed by RUN_END
    (reason 1) without another tick; it leaves the input queue as it is.
RUN_END
    ``seq`` is the sequence number the next TICK frame will carry (so a host sees whether the
    run's last TICK frames arrived); ``t`` is the tick counter after the run.
TICK
    ``seq`` counts TICK frames since reset, mod 256 (``tick_frames`` mod 256); ``t`` is the
    tick's own number (the counter before the tick); spikes are listed in the core's order
    (neurons outside the winner-take-all pool ascending, then the pool's winner);
    ``queue_free`` is the room after the tick took its entries.
ACK
    ``queue_free`` is the room right after the command took effect.
RESET_STATE
    Zeroes v, th, ref, y, every source trace and pending event, t and the input queue; keeps
    registers, parameters, signs, synapses, counters. During a run it is refused with ``BUSY``:
    clearing the queue under a running stream would break the host's credit count.
STATUS
    ``running`` is 0 or 1; ``ticks_left`` is what remains of the run (0 for a run until
    ``STOP``, and unchanged by ``STOP``); ``bad_frames`` counts every ``ERROR`` reply sent and
    saturates at 65535, like ``rx_overflows`` and ``framing_errors`` (which stay 0: there is no
    UART here); ``tick_frames`` wraps at 2**32.
IDENTIFY
    ``capabilities`` has the optional parts asked for (all by default: ``PACED``, ``WTA``,
    ``ADAPTIVE_THRESHOLD``), and ``SPRAM`` if asked for; sizes and buffer figures are
    the constructor's.
Power-up
    The peer starts with :meth:`CoreImage.blank(config) <plasticore.image.CoreImage.blank>`;
    a core's memories are undefined after power-up (zeros in simulation), so a host loads an
    image before it compares anything.
"""

from __future__ import annotations

import argparse
import collections
import os
import select
import struct
import sys
import threading
import time
import tty

import numpy as np

from ..config import NEURON_PARAM_FIELDS, REGISTERS, REGISTERS_BY_NAME, CoreConfig
from ..hdl.core import Space, Status
from ..image import CoreImage
from ..protocol import (END_OF_TICK, MAX_BODY, MAX_SPIKES, MAX_WORDS, OPTIONAL_FEATURES,
                        PROTOCOL_VERSION, Capability, ErrorCode, FrameError, IdentifyInfo,
                        LinkStatus, Opcode, Reply, RunFlags, SlipDecoder, TickFrame, build_frame,
                        parse_frame)
from .model import GoldenModel, TickCounters

__all__ = ["CoreModel", "ModelPeer", "PtyPeer", "main"]

_M32 = 0xFFFFFFFF
_M16 = 0xFFFF
_SPACES = len(Space)
_STATUS_WORDS = Status.FLAGS + 1
_GATES = [REGISTERS_BY_NAME[f"GATE_SHIFT_{p}"].address for p in range(7)]
_COUNTER_NAMES = {Status.CLEAR: "ticks", Status.PRE_EVENTS: "pre_events",
                  Status.SYNAPTIC_OPS: "synaptic_ops", Status.POST_SPIKES: "post_spikes",
                  Status.LTD_WRITES: "ltd_writes", Status.LTP_WRITES: "ltp_writes"}


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


class CoreModel:
    """The core behind the command engine: the golden model, plus what the core keeps that the
    model does not (input axons marked to spike in the next tick), seen through the core's
    address spaces (:class:`plasticore.hdl.core.Space`).

    This is the one place where a ``(space, addr)`` is mapped onto golden-model state, in
    :meth:`read_word` and :meth:`write_word`, with the encodings of
    :mod:`plasticore.sim.coreport` and ``plasticore.hdl.core``.

    Parameters
    ----------
    config : CoreConfig
    banks : int
        Reported in ``STATUS.CONFIG_CORE``.
    spram : bool
        Reported in ``STATUS.CONFIG_CORE``.
    """

    def __init__(self, config: CoreConfig, *, banks: int = 1, spram: bool = False):
        if not isinstance(config, CoreConfig):
            raise TypeError(f"config must be a CoreConfig, not {config!r}")
        self.config = config
        self.banks = banks
        self.spram = spram
        self.model = GoldenModel(CoreImage.blank(config))
        self.input_pending = np.zeros(config.n_inputs, bool)

    # -- addresses ------------------------------------------------------------------------------

    def block_ok(self, write: bool, space: int, addr: int, count: int) -> bool:
        """Whether ``count`` words from ``addr`` on lie wholly inside ``space`` (for synapses,
        inside one row), for a write or a read."""
        cfg = self.config
        last = addr + count - 1
        if space == Space.REG.value:
            return last < len(REGISTERS)
        if space == Space.SYN.value:
            return (addr >> 28 == 0 and (addr >> 14) < cfg.n_sources
                    and (addr & 0x3FFF) + count - 1 < cfg.n_neurons)
        if space in (Space.NPARAM.value, Space.NSTATE.value):
            return last < 2 * cfg.n_neurons
        if space == Space.SOURCE.value:
            return last < cfg.n_sources
        if space == Space.STATUS.value:
            return last <= (Status.CLEAR if write else Status.FLAGS)
        return False

    def feature_error(self, features, space: int, addr: int, words) -> int | None:
        """The address to report with ``BAD_VALUE`` if writing ``words`` from ``addr`` on in
        ``space`` would use a part the core was built without (``features``: the
        :data:`~plasticore.protocol.OPTIONAL_FEATURES` it has), else None."""
        for k, value in enumerate(words):
            a = addr + k
            half = a & 1
            if space == Space.NPARAM.value:
                if not features & Capability.WTA and not half and value >> 15 & 1:
                    return a
                if (not features & Capability.ADAPTIVE_THRESHOLD and half
                        and value >> 24 & 0xFF):
                    return a
            if (space == Space.NSTATE.value and not features & Capability.ADAPTIVE_THRESHOLD
                    and not half and value >> 16 & 0xFFFF):
                return a
        return None

    def register_error(self, addr: int, words) -> int | None:
        """The register address to report with ``BAD_VALUE`` if writing ``words`` from ``addr``
        on is refused, else None."""
        for k, value in enumerate(words):
            reg = REGISTERS[addr + k]
            if not reg.lo <= value <= reg.hi:
                return addr + k
        return None

    # -- words ----------------------------------------------------------------------------------

    def _param_word(self, j: int) -> int:
        word = 0
        for f in NEURON_PARAM_FIELDS:
            word |= (int(self.model.params[f.name][j]) & f.mask) << f.lsb
        return word

    def read_word(self, space: int, addr: int) -> int:
        """The 32-bit word at ``(space, addr)``; the address must be valid for a read."""
        m, cfg = self.model, self.config
        st = m.state
        if space == Space.REG.value:
            return int(m.registers[REGISTERS[addr].name])
        if space == Space.SYN.value:
            return int(m.synapses[addr >> 14, addr & 0x3FFF])
        if space == Space.NPARAM.value:
            return (self._param_word(addr >> 1) >> (32 * (addr & 1))) & _M32
        if space == Space.NSTATE.value:
            j = addr >> 1
            if addr & 1:
                return int(st.ref[j]) | int(st.y[j]) << 4
            return (int(st.v[j]) & _M16) | int(st.th[j]) << 16
        if space == Space.SOURCE.value:
            if addr < cfg.n_inputs:
                pending = self.input_pending[addr]
            else:
                pending = st.last_spikes[addr - cfg.n_inputs]
            return int(st.x[addr]) | int(m.inhibitory[addr]) << 8 | int(pending) << 9
        if space == Space.STATUS.value:
            if addr == Status.T:
                return int(st.t)
            if addr in _COUNTER_NAMES:
                return getattr(m.counters, _COUNTER_NAMES[addr]) & _M32
            if addr == Status.CONFIG_SIZES:
                return cfg.n_inputs | cfg.n_neurons << 16
            if addr == Status.CONFIG_CORE:
                return cfg.n_recurrent | self.banks << 16 | int(self.spram) << 24
            return 0    # cycle counters and FLAGS: timing of the hardware, not modelled
        raise ValueError(f"no address space {space}")

    def write_word(self, space: int, addr: int, value: int) -> None:
        """Write ``value`` to ``(space, addr)``; the address (and a register's value) must be
        valid for a write."""
        m, cfg = self.model, self.config
        st = m.state
        if space == Space.REG.value:
            m.registers[REGISTERS[addr].name] = value
            if addr in _GATES:
                # GoldenModel looks the gate shifts up in a table it builds once.
                m._gate[_GATES.index(addr)] = value
        elif space == Space.SYN.value:
            m.synapses[addr >> 14, addr & 0x3FFF] = value & _M16
        elif space == Space.NPARAM.value:
            j, shift = addr >> 1, 32 * (addr & 1)
            word = self._param_word(j) & ~(_M32 << shift) | (value << shift)
            for f in NEURON_PARAM_FIELDS:
                bits = (word >> f.lsb) & f.mask
                m.params[f.name][j] = _signed(bits, f.width) if f.signed else bits
        elif space == Space.NSTATE.value:
            j = addr >> 1
            if addr & 1:
                st.ref[j], st.y[j] = value & 0xF, (value >> 4) & 0xFF
            else:
                st.v[j], st.th[j] = _signed(value, 16), (value >> 16) & _M16
        elif space == Space.SOURCE.value:
            st.x[addr] = value & 0xFF
            m.inhibitory[addr] = bool(value >> 8 & 1)
            if addr < cfg.n_inputs:
                self.input_pending[addr] = bool(value >> 9 & 1)
            else:
                st.last_spikes[addr - cfg.n_inputs] = bool(value >> 9 & 1)
        elif space == Space.STATUS.value:
            if addr == Status.T:
                st.t = value
            else:
                m.counters = TickCounters()
        else:
            raise ValueError(f"no address space {space}")

    # -- ticks and state ------------------------------------------------------------------------

    def tick(self, inputs, learn: bool) -> tuple[int, np.ndarray]:
        """Run one tick with input axons ``inputs`` (and those marked pending) spiking.

        Returns ``(t, spikes)``: the tick's number and the neurons that fired, in the order the
        core reports them: those outside the winner-take-all pool ascending, then the pool's
        winner.
        """
        spiking = self.input_pending.copy()
        spiking[list(inputs)] = True
        self.input_pending[:] = False
        t = int(self.model.state.t)
        fired = self.model.tick(spiking, learn)
        pool = self.model.params["wta"] == 1
        return t, np.concatenate([np.flatnonzero(fired & ~pool), np.flatnonzero(fired & pool)])

    def reset_state(self) -> None:
        """Zero v, th, ref, y, x, the pending events and t."""
        st = self.model.state
        for name in ("v", "th", "ref", "y", "x"):
            getattr(st, name)[:] = 0
        st.last_spikes[:] = False
        st.t = 0
        self.input_pending[:] = False

    def snapshot(self) -> tuple:
        """Everything a command can change, as comparable values."""
        m = self.model
        st = m.state
        arrays = (m.synapses, m.inhibitory, *(m.params[f.name] for f in NEURON_PARAM_FIELDS),
                  st.v, st.th, st.ref, st.y, st.x, st.last_spikes, self.input_pending)
        return (tuple(m.registers[r.name] for r in REGISTERS), int(st.t),
                tuple(vars(m.counters).items()), *(np.asarray(a).tobytes() for a in arrays))


class _Refused(Exception):
    def __init__(self, code: ErrorCode, detail: int = 0):
        self.code, self.detail = code, detail


class ModelPeer:
    """The core's side of the link protocol, on the golden model; no I/O.

    Parameters
    ----------
    config : CoreConfig
        The sizes of the modelled core.
    queue_depth : int
        Entries of the input-spike queue, 1..65535 (the gateware requires a power of two of
        at least ``MAX_SPIKES``).
    rx_buffer : int
        Bytes of receive buffer reported by IDENTIFY (a host keeps the bytes of the commands it
        has in flight within it).
    clock_hz, baud_divisor : int
        Reported by IDENTIFY; ``clock_hz`` also converts a run's ``period`` to seconds.
    banks : int
        Synapse banks, reported by IDENTIFY and ``STATUS.CONFIG_CORE``.
    spram : bool
        Reported as the ``SPRAM`` capability and in ``STATUS.CONFIG_CORE``.
    features : Capability
        The optional parts of the modelled core (:data:`~plasticore.protocol.OPTIONAL_FEATURES`,
        all by default), reported as capabilities. Without ``PACED`` a ``RUN`` with a nonzero
        period is ``BAD_VALUE`` (detail: the period, checked before anything changes); without
        ``WTA`` or ``ADAPTIVE_THRESHOLD`` a ``WRITE`` of a neuron parameter or state word that
        would use it is ``BAD_VALUE`` (detail: the word's address), as the gateware engine.
    clock : callable
        Seconds, monotonic; what paced runs are timed with (``time.monotonic``).

    Attributes
    ----------
    core : CoreModel
        The core, to inspect (and to set up) directly.
    errors : collections.Counter
        ``ERROR`` replies sent, by :class:`~plasticore.protocol.ErrorCode`.

    .. note::
        Commands take effect in :meth:`feed`, between ticks; ticks run only in :meth:`step`.
        The byte stream is therefore the engine's for any interleaving in which each tick runs
        at the moment :meth:`step` is called.
    """

    def __init__(self, config: CoreConfig, *, queue_depth: int = 256, rx_buffer: int = 512,
                 clock_hz: int = 12_000_000, baud_divisor: int = 4, banks: int = 1,
                 spram: bool = False, features=OPTIONAL_FEATURES, clock=time.monotonic):
        if not isinstance(config, CoreConfig):
            raise TypeError(f"config must be a CoreConfig, not {config!r}")
        for name, value, lo, hi in (("queue_depth", queue_depth, 1, _M16),
                                    ("rx_buffer", rx_buffer, 1, _M16),
                                    ("clock_hz", clock_hz, 1, _M32),
                                    ("baud_divisor", baud_divisor, 1, _M16),
                                    ("banks", banks, 1, 255)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {value!r}")
            if not lo <= value <= hi:
                raise ValueError(f"{name} = {value} is out of range {lo}..{hi}")
        self.core = CoreModel(config, banks=banks, spram=spram)
        self.config = config
        self.info = IdentifyInfo(
            version=PROTOCOL_VERSION, n_inputs=config.n_inputs, n_neurons=config.n_neurons,
            n_recurrent=config.n_recurrent, banks=banks,
            capabilities=int((Capability(features) & OPTIONAL_FEATURES)
                             | (Capability.SPRAM if spram else 0)),
            queue_depth=queue_depth, rx_buffer=rx_buffer, clock_hz=clock_hz,
            baud_divisor=baud_divisor)
        self.features = Capability(features) & OPTIONAL_FEATURES
        self._clock = clock
        self._decoder = SlipDecoder(limit=MAX_BODY)
        self.errors: collections.Counter = collections.Counter()
        self._queue: collections.deque[int] = collections.deque()
        self._queued_ticks = 0
        self._running = False
        self._ticks_left = 0
        self._forever = False
        self._flags = 0
        self._period = 0
        self._last_tick: float | None = None
        self._tick_seq = 0
        self._tick_frames = 0
        self._bad_frames = 0
        self._handlers = {
            Opcode.IDENTIFY: self._identify, Opcode.READ: self._read, Opcode.WRITE: self._write,
            Opcode.SPIKES: self._spikes, Opcode.RUN: self._run, Opcode.STOP: self._stop,
            Opcode.STATUS: self._status, Opcode.RESET_STATE: self._reset_state,
        }

    # -- state ----------------------------------------------------------------------------------

    @property
    def queue_free(self) -> int:
        return self.info.queue_depth - len(self._queue)

    @property
    def running(self) -> bool:
        return self._running

    def status(self) -> LinkStatus:
        """What ``STATUS`` reports now."""
        return LinkStatus(running=int(self._running), ticks_left=self._ticks_left,
                          t=int(self.core.model.state.t), queue_free=self.queue_free,
                          queued_ticks=self._queued_ticks, rx_overflows=0, framing_errors=0,
                          bad_frames=self._bad_frames, tick_frames=self._tick_frames)

    def snapshot(self) -> tuple:
        """The core's state and the input queue (not the link counters): what a refused
        command must leave alone."""
        return self.core.snapshot() + (tuple(self._queue), self._running, self._ticks_left)

    # -- commands -------------------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Take line bytes; carry out every complete command; return the reply bytes."""
        out = bytearray()
        for body in self._decoder.feed(data):
            out += self._frame(body)
        return bytes(out)

    def _frame(self, body) -> bytes:
        raw = body.body if isinstance(body, FrameError) else bytes(body)
        frame = parse_frame(body)
        seq, op = (raw[0], raw[1]) if len(raw) >= 2 else (0, 0)
        try:
            if isinstance(frame, FrameError):
                raise _Refused(frame.code)
            handler = self._handlers.get(op)
            if handler is None:
                raise _Refused(ErrorCode.BAD_OPCODE)
            return handler(seq, op, frame.payload)
        except _Refused as refusal:
            self._bad_frames = min(self._bad_frames + 1, _M16)
            self.errors[refusal.code] += 1
            return build_frame(seq, Reply.ERROR,
                               struct.pack("<BBI", op, refusal.code, refusal.detail & _M32))

    def _ack(self, seq: int, op: int) -> bytes:
        return build_frame(seq, Reply.ACK, struct.pack("<BH", op, self.queue_free))

    def _data(self, seq: int, op: int, data: bytes) -> bytes:
        return build_frame(seq, Reply.DATA, bytes([op]) + data)

    @staticmethod
    def _length(ok: bool) -> None:
        if not ok:
            raise _Refused(ErrorCode.BAD_LENGTH)

    def _block(self, write: bool, space: int, addr: int, count: int) -> None:
        if space >= _SPACES or not self.core.block_ok(write, space, addr, count):
            raise _Refused(ErrorCode.BAD_ADDRESS, addr)

    def _identify(self, seq, op, payload):
        self._length(len(payload) == 0)
        return self._data(seq, op, self.info.pack())

    def _read(self, seq, op, payload):
        self._length(len(payload) == 7)
        space, addr, count = struct.unpack("<BIH", payload)
        if not 1 <= count <= MAX_WORDS:
            raise _Refused(ErrorCode.BAD_LENGTH, count)
        self._block(False, space, addr, count)
        words = [self.core.read_word(space, addr + k) for k in range(count)]
        return self._data(seq, op, struct.pack(f"<{count}I", *words))

    def _write(self, seq, op, payload):
        n, rest = divmod(len(payload) - 5, 4)
        self._length(len(payload) >= 9 and rest == 0 and n <= MAX_WORDS)
        space, addr = struct.unpack_from("<BI", payload)
        words = struct.unpack_from(f"<{n}I", payload, 5)
        self._block(True, space, addr, n)
        if space == Space.REG.value:
            bad = self.core.register_error(addr, words)
            if bad is not None:
                raise _Refused(ErrorCode.BAD_VALUE, bad)
        bad = self.core.feature_error(self.features, space, addr, words)
        if bad is not None:
            raise _Refused(ErrorCode.BAD_VALUE, bad)
        for k, value in enumerate(words):
            self.core.write_word(space, addr + k, value)
        return self._ack(seq, op)

    def _spikes(self, seq, op, payload):
        self._length(0 < len(payload) <= 2 * MAX_SPIKES and len(payload) % 2 == 0)
        entries = struct.unpack(f"<{len(payload) // 2}H", payload)
        for entry in entries:
            if entry != END_OF_TICK and entry >= self.config.n_inputs:
                raise _Refused(ErrorCode.BAD_ADDRESS, entry)
        if len(entries) > self.queue_free:
            raise _Refused(ErrorCode.QUEUE_FULL, self.queue_free)
        self._queue.extend(entries)
        self._queued_ticks += entries.count(END_OF_TICK)
        return self._ack(seq, op)

    def _run(self, seq, op, payload):
        self._length(len(payload) == 9)
        if self._running:
            raise _Refused(ErrorCode.BUSY)
        ticks, flags, period = struct.unpack("<IBI", payload)
        if period and not self.features & Capability.PACED:
            raise _Refused(ErrorCode.BAD_VALUE, period)
        self._running, self._forever, self._ticks_left = True, ticks == 0, ticks
        self._flags, self._period, self._last_tick = flags, period, None
        return self._ack(seq, op)

    def _stop(self, seq, op, payload):
        self._length(len(payload) == 0)
        reply = self._ack(seq, op)
        if self._running:
            self._running = False
            reply += self._run_end(1)
        return reply

    def _status(self, seq, op, payload):
        self._length(len(payload) == 0)
        return self._data(seq, op, self.status().pack())

    def _reset_state(self, seq, op, payload):
        self._length(len(payload) == 0)
        if self._running:
            raise _Refused(ErrorCode.BUSY)
        self.core.reset_state()
        self._queue.clear()
        self._queued_ticks = 0
        return self._ack(seq, op)

    # -- ticks ----------------------------------------------------------------------------------

    def _run_end(self, reason: int) -> bytes:
        return build_frame(self._tick_seq, Reply.RUN_END,
                           struct.pack("<IB", int(self.core.model.state.t), reason))

    def next_tick_time(self) -> float | None:
        """When the next tick may start (by ``clock``), or None if none is waiting to run:
        no run, or an ``INPUTS`` run without a whole tick queued."""
        if not self._running or (self._flags & RunFlags.INPUTS and not self._queued_ticks):
            return None
        if self._period == 0 or self._last_tick is None:
            return -float("inf")
        return self._last_tick + self._period / self.info.clock_hz

    def tick_ready(self, now: float | None = None) -> bool:
        """Whether :meth:`step` would run a tick at ``now`` (default: ``clock()``)."""
        due = self.next_tick_time()
        if due is None:
            return False
        return due <= (self._clock() if now is None else now)

    def step(self, now: float | None = None) -> bytes:
        """Run one tick if one is due; its TICK frame, and the RUN_END if the run is over."""
        now = self._clock() if now is None else now
        if not self.tick_ready(now):
            return b""
        inputs = []
        if self._flags & RunFlags.INPUTS:
            while (entry := self._queue.popleft()) != END_OF_TICK:
                inputs.append(entry)
            self._queued_ticks -= 1
        t, spikes = self.core.tick(inputs, bool(self._flags & RunFlags.LEARN))
        self._last_tick = now
        out = build_frame(self._tick_seq, Reply.TICK,
                          TickFrame(t=t, spikes=tuple(int(j) for j in spikes),
                                    queue_free=self.queue_free).pack())
        self._tick_seq = (self._tick_seq + 1) & 0xFF
        self._tick_frames = (self._tick_frames + 1) & _M32
        if not self._forever:
            self._ticks_left -= 1
            if self._ticks_left == 0:
                self._running = False
                out += self._run_end(0)
        return out


class PtyPeer:
    """A :class:`ModelPeer` served on a pseudo-terminal by a background thread.

    The thread reads commands whenever fewer than ``tx_buffer`` reply bytes wait to be sent,
    runs a due tick only then too (the core holds a tick until there is room: output is never
    dropped), and writes without blocking, so a host that stops reading holds the run, not the
    peer.

    Parameters
    ----------
    peer : ModelPeer
    tx_buffer : int
        Bytes of output the peer lets pile up before it holds ticks and commands.

    Attributes
    ----------
    path : str
        The pseudo-terminal to open (``SerialTransport(path)``).
    lock : threading.Lock
        Held while the peer works; hold it to inspect ``peer`` from another thread.

    .. note::
        A context manager: ``with PtyPeer(ModelPeer(cfg)) as pty:`` starts the thread and
        closes everything on exit.
    """

    def __init__(self, peer: ModelPeer, *, tx_buffer: int = 4096):
        if not isinstance(peer, ModelPeer):
            raise TypeError(f"peer must be a ModelPeer, not {peer!r}")
        self.peer = peer
        self._tx_buffer = tx_buffer
        self._master, self._slave = os.openpty()
        # Raw mode on our end of the slave too, and it stays open: a host that closes and
        # reopens the port must not make the master read EIO.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._serving = threading.Event()
        self._serving.set()
        self._parked = threading.Event()
        self._thread: threading.Thread | None = None
        self._backlog = bytearray()
        self.received = 0

    def start(self) -> "PtyPeer":
        if self._thread is None:
            self._thread = threading.Thread(target=self.serve, name=f"PtyPeer {self.path}",
                                            daemon=True)
            self._thread.start()
        return self

    def pause(self) -> None:
        """Stop serving (the line goes silent; bytes wait in the terminal) until :meth:`resume`.

        Returns once the serving thread has stopped: nothing sent after this is answered."""
        self._serving.clear()
        if self._thread is not None and self._thread.is_alive():
            self._parked.wait()

    def resume(self) -> None:
        """Serve again, starting with what arrived meanwhile."""
        self._parked.clear()
        self._serving.set()

    def serve(self) -> None:
        """Serve until :meth:`close` (the thread's body; call it directly to serve in the
        foreground)."""
        peer, fd = self.peer, self._master
        while not self._stop.is_set():
            if not self._serving.is_set():
                self._parked.set()
                self._serving.wait(0.05)
                continue
            room = len(self._backlog) < self._tx_buffer
            with self.lock:
                due = peer.next_tick_time()
                now = time.monotonic()
            if room and due is not None and due <= now:
                wait = 0.0
            elif room and due is not None:
                wait = min(due - now, 0.05)
            else:
                wait = 0.05
            readable, writable, _ = select.select([fd] if room else [],
                                                  [fd] if self._backlog else [], [], wait)
            if readable:
                try:
                    data = os.read(fd, 1 << 16)
                except (BlockingIOError, InterruptedError):
                    data = b""
                except OSError:
                    return   # the terminal is gone
                self.received += len(data)
                with self.lock:
                    self._backlog += peer.feed(data)
            if writable or self._backlog:
                try:
                    sent = os.write(fd, self._backlog)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    return
                del self._backlog[:sent]
            if len(self._backlog) < self._tx_buffer:
                with self.lock:
                    self._backlog += peer.step()

    def close(self) -> None:
        """Stop the thread and close the terminal. Closing twice is allowed."""
        self._stop.set()
        self._serving.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.close()


def main(argv=None) -> int:
    """``python -m plasticore.sim.link_model``: serve a model core on a pseudo-terminal."""
    defaults = CoreConfig()
    parser = argparse.ArgumentParser(
        prog="python -m plasticore.sim.link_model",
        description="Serve the link protocol on a pseudo-terminal with the golden model as the "
                    "core; prints the terminal's path, then serves until interrupted.")
    parser.add_argument("--inputs", type=int, default=defaults.n_inputs)
    parser.add_argument("--neurons", type=int, default=defaults.n_neurons)
    parser.add_argument("--recurrent", type=int, default=defaults.n_recurrent)
    parser.add_argument("--queue-depth", type=int, default=256)
    parser.add_argument("--rx-buffer", type=int, default=512)
    parser.add_argument("--clock-hz", type=int, default=12_000_000)
    args = parser.parse_args(argv)
    try:
        config = CoreConfig(n_inputs=args.inputs, n_neurons=args.neurons,
                            n_recurrent=args.recurrent)
        peer = ModelPeer(config, queue_depth=args.queue_depth, rx_buffer=args.rx_buffer,
                         clock_hz=args.clock_hz)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    pty = PtyPeer(peer)
    print(pty.path, flush=True)
    try:
        pty.serve()
    except KeyboardInterrupt:
        pass
    finally:
        pty.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
