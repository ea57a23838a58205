"""The link protocol end to end: Link over a real pseudo-terminal and pyserial against ModelPeer.

The peer (plasticore.sim.link_model) serves the pty master from a thread; the host opens the
slave with SerialTransport, as it would a board. The peer's own model and counters are inspected
under its lock. The fuzz tests at the end drive ModelPeer directly, without I/O, against an
oracle written from docs/protocol.md and the resolutions in plasticore.sim.link_model.
"""

import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from plasticore.config import REGISTERS, CoreConfig
from plasticore.host.link import Link, LinkError, LinkException, LinkLost, LinkTimeout, RunEnd
from plasticore.host.transport import SerialTransport, Transport, TransportError
from plasticore.image import CoreImage
from plasticore.protocol import (END, END_OF_TICK, ESC, MAX_BODY, MAX_SPIKES, OPTIONAL_FEATURES,
                                 ErrorCode, Frame, FrameError, IdentifyInfo, LinkStatus, Opcode,
                                 Reply, RunFlags, SlipDecoder, TickFrame, build_frame, parse_frame,
                                 slip_encode)
from plasticore.sim.link_model import ModelPeer, PtyPeer
from plasticore.sim.model import GoldenModel
from plasticore.sim.stimulus import random_image

CFG = CoreConfig(n_inputs=24, n_neurons=72, n_recurrent=8)
S, N = CFG.n_sources, CFG.n_neurons
DEPTH = 64
REG, SYN, NPARAM, NSTATE, SOURCE, STATUS = range(6)


def _link(path, timeout=10.0):   # generous: the peer is a thread on a busy machine
    return Link(SerialTransport(path), timeout=timeout)


@pytest.fixture
def pty():
    with PtyPeer(ModelPeer(CFG, queue_depth=DEPTH)) as pty:
        yield pty


@pytest.fixture
def link(pty):
    with _link(pty.path) as link:
        link.identify()
        yield link


def _snapshot(pty):
    with pty.lock:
        return pty.peer.snapshot()


def _firing_image(config, seed=0):
    """Every neuron fires every tick (bias above threshold, no refractory period)."""
    image = CoreImage.blank(config)
    image.neuron_params["threshold"][:] = 10
    image.neuron_params["bias"][:] = 20
    image.neuron_params["leak_shift"][:] = 0
    return image


# --- Commands ----------------------------------------------------------------------------------

def test_identify_and_status(link):
    assert link.info == IdentifyInfo(version=1, n_inputs=24, n_neurons=72, n_recurrent=8,
                                     banks=1, capabilities=int(OPTIONAL_FEATURES),
                                     queue_depth=DEPTH, rx_buffer=512, clock_hz=12_000_000,
                                     baud_divisor=4)
    assert link.status() == LinkStatus(running=0, ticks_left=0, t=0, queue_free=DEPTH,
                                       queued_ticks=0, rx_overflows=0, framing_errors=0,
                                       bad_frames=0, tick_frames=0)
    assert link.credits == DEPTH


def test_register_writes_beyond_the_shift_limit_are_accepted(link, pty):
    # docs/core-model.md 3.3: SHIFT_x + GATE_SHIFT_p above 24 is clamped at 24, not refused;
    # the peer writes such registers as the gateware does.
    for addr, words in ((7, [24]), (20, [15]), (7, [20, 24]), (14, [15] * 7)):
        link.write(REG, addr, words)
        assert link.read(REG, addr, len(words)) == words
    with pty.lock:
        assert sum(pty.peer.errors.values()) == 0
        regs = pty.peer.core.model.registers
        assert (regs["SHIFT_PLUS"], regs["SHIFT_MINUS"], regs["GATE_SHIFT_6"]) == (20, 24, 15)


def test_read_write_round_trips(link, pty):
    rng = np.random.default_rng(7)
    regs = [int(rng.integers(r.lo, r.hi + 1)) for r in REGISTERS]
    link.write(REG, 0, regs)
    assert link.read(REG, 0, len(REGISTERS)) == regs
    # Multi-block transfers (more than MAX_WORDS words), pipelined.
    for space, count, mask in ((NPARAM, 2 * N, 0xFFFFFFFF), (NSTATE, 2 * N, None),
                               (SOURCE, S, 0x3FF)):
        words = [int(w) for w in rng.integers(0, 2**32, count, dtype=np.uint64)]
        link.write(space, 0, words)
        if space == NSTATE:   # half 0: v | th << 16 (32 bits); half 1: ref | y << 4 (12 bits)
            expect = [w if k % 2 == 0 else w & 0xFFF for k, w in enumerate(words)]
        else:
            expect = [w & mask for w in words]
        assert link.read(space, 0, count) == expect
    rows = [[int(w) for w in rng.integers(0, 2**32, N, dtype=np.uint64)] for _ in range(S)]
    link.write_blocks(SYN, [(s << 14, row) for s, row in enumerate(rows)])
    assert link.read_blocks(SYN, [(s << 14, N) for s in range(S)]) == \
        [[w & 0xFFFF for w in row] for row in rows]
    link.write(STATUS, 0, [123456789])
    assert link.read(STATUS, 0, 1) == [123456789]
    assert link.read(STATUS, 11, 2) == [24 | 72 << 16, 8 | 1 << 16]
    v = np.array(link.read(NSTATE, 0, 2 * N)[0::2]) & 0xFFFF
    with pty.lock:
        model = pty.peer.core.model
        np.testing.assert_array_equal(model.synapses, np.array(rows) & 0xFFFF)
        assert [model.registers[r.name] for r in REGISTERS] == regs
        assert model.state.t == 123456789
        np.testing.assert_array_equal(model.state.v, np.where(v >= 0x8000, v - 0x10000, v))


def _raw(link, data: bytes, timeout=2.0) -> Frame:
    """Write line bytes straight to the transport; the one frame that comes back."""
    link.transport.write(data)
    decoder = SlipDecoder()
    deadline = time.monotonic() + timeout
    frames = []
    while not frames and time.monotonic() < deadline:
        frames += decoder.feed(link.transport.read(4096, 0.05))
    assert len(frames) == 1, frames
    return parse_frame(frames[0])


def _error(seq, op, code, detail=0):
    return Frame(seq, Reply.ERROR, struct.pack("<BBI", op, code, detail))


def _cmd(seq, op, fmt="", *fields):
    return build_frame(seq, op, struct.pack("<" + fmt, *fields))


_CRC_FLIPPED = bytearray(_cmd(5, Opcode.READ, "BIH", 1, 0, 1))
_CRC_FLIPPED[-2] ^= 0x40

RAW_ERRORS = [
    ("bad_crc", bytes(_CRC_FLIPPED), _error(5, Opcode.READ, ErrorCode.BAD_CRC)),
    ("too_short_3", slip_encode(b"\x07\x02\x00"), _error(7, 2, ErrorCode.BAD_LENGTH)),
    ("too_short_1", slip_encode(b"\x07"), _error(0, 0, ErrorCode.BAD_LENGTH)),
    ("bad_escape", bytes([END, 9, 3, ESC, 0x01, 2, END]), _error(9, 3, ErrorCode.BAD_FRAME)),
    ("too_long", slip_encode(bytes([11, Opcode.WRITE]) + bytes(MAX_BODY)),
     _error(11, Opcode.WRITE, ErrorCode.BAD_FRAME)),
    ("opcode_0", _cmd(12, 0x00), _error(12, 0x00, ErrorCode.BAD_OPCODE)),
    ("opcode_9", _cmd(12, 0x09), _error(12, 0x09, ErrorCode.BAD_OPCODE)),
    ("opcode_reply", _cmd(12, Reply.ACK), _error(12, Reply.ACK, ErrorCode.BAD_OPCODE)),
    ("identify_len", _cmd(1, Opcode.IDENTIFY, "B", 0), _error(1, 1, ErrorCode.BAD_LENGTH)),
    ("read_len", _cmd(2, Opcode.READ, "BI", 1, 0), _error(2, 2, ErrorCode.BAD_LENGTH)),
    ("read_count_0", _cmd(2, Opcode.READ, "BIH", 1, 0, 0), _error(2, 2, ErrorCode.BAD_LENGTH, 0)),
    ("read_count_65", _cmd(2, Opcode.READ, "BIH", 2, 0, 65),
     _error(2, 2, ErrorCode.BAD_LENGTH, 65)),
    ("write_len_short", _cmd(3, Opcode.WRITE, "BHH", 1, 0, 0), _error(3, 3, ErrorCode.BAD_LENGTH)),
    ("write_len_odd", _cmd(3, Opcode.WRITE, "BIIB", 1, 0, 0, 0),
     _error(3, 3, ErrorCode.BAD_LENGTH)),
    ("spikes_empty", _cmd(4, Opcode.SPIKES), _error(4, 4, ErrorCode.BAD_LENGTH)),
    ("spikes_odd", _cmd(4, Opcode.SPIKES, "HB", 1, 1), _error(4, 4, ErrorCode.BAD_LENGTH)),
    ("spikes_129", _cmd(4, Opcode.SPIKES, "129H", *[0] * 129), _error(4, 4, ErrorCode.BAD_LENGTH)),
    ("run_len", _cmd(5, Opcode.RUN, "IBH", 1, 0, 0), _error(5, 5, ErrorCode.BAD_LENGTH)),
    ("stop_len", _cmd(6, Opcode.STOP, "B", 0), _error(6, 6, ErrorCode.BAD_LENGTH)),
    ("status_len", _cmd(7, Opcode.STATUS, "B", 0), _error(7, 7, ErrorCode.BAD_LENGTH)),
    ("reset_len", _cmd(8, Opcode.RESET_STATE, "H", 0), _error(8, 8, ErrorCode.BAD_LENGTH)),
    ("read_space_6", _cmd(9, Opcode.READ, "BIH", 6, 3, 1), _error(9, 2, ErrorCode.BAD_ADDRESS, 3)),
    ("read_reg_past", _cmd(9, Opcode.READ, "BIH", REG, 28, 2),
     _error(9, 2, ErrorCode.BAD_ADDRESS, 28)),
    ("read_syn_row_cross", _cmd(9, Opcode.READ, "BIH", SYN, 1 << 14 | 70, 3),
     _error(9, 2, ErrorCode.BAD_ADDRESS, 1 << 14 | 70)),
    ("read_syn_no_row", _cmd(9, Opcode.READ, "BIH", SYN, S << 14, 1),
     _error(9, 2, ErrorCode.BAD_ADDRESS, S << 14)),
    ("read_syn_high_bits", _cmd(9, Opcode.READ, "BIH", SYN, 1 << 28, 1),
     _error(9, 2, ErrorCode.BAD_ADDRESS, 1 << 28)),
    ("read_nstate_past", _cmd(9, Opcode.READ, "BIH", NSTATE, 2 * N - 1, 2),
     _error(9, 2, ErrorCode.BAD_ADDRESS, 2 * N - 1)),
    ("read_source_past", _cmd(9, Opcode.READ, "BIH", SOURCE, S, 1),
     _error(9, 2, ErrorCode.BAD_ADDRESS, S)),
    ("read_status_past", _cmd(9, Opcode.READ, "BIH", STATUS, 13, 2),
     _error(9, 2, ErrorCode.BAD_ADDRESS, 13)),
    ("write_status_counter", _cmd(9, Opcode.WRITE, "BII", STATUS, 2, 0),
     _error(9, 3, ErrorCode.BAD_ADDRESS, 2)),
    ("write_status_past", _cmd(9, Opcode.WRITE, "BIII", STATUS, 1, 0, 0),
     _error(9, 3, ErrorCode.BAD_ADDRESS, 1)),
    ("write_nparam_past", _cmd(9, Opcode.WRITE, "BIII", NPARAM, 2 * N - 1, 0, 0),
     _error(9, 3, ErrorCode.BAD_ADDRESS, 2 * N - 1)),
    ("write_reg_value", _cmd(9, Opcode.WRITE, "BII", REG, 1, 0),
     _error(9, 3, ErrorCode.BAD_VALUE, 1)),
    ("write_reg_value_in_block", _cmd(9, Opcode.WRITE, "BIIIII", REG, 0, 5, 200, 1, 2),
     _error(9, 3, ErrorCode.BAD_VALUE, 3)),
    ("write_reg_address_first", _cmd(9, Opcode.WRITE, "BIII", REG, 28, 99, 0),
     _error(9, 3, ErrorCode.BAD_ADDRESS, 28)),
    ("spikes_index", _cmd(9, Opcode.SPIKES, "3H", 1, 24, 99),
     _error(9, 4, ErrorCode.BAD_ADDRESS, 24)),
    ("spikes_0xfffe", _cmd(9, Opcode.SPIKES, "2H", END_OF_TICK, 0xFFFE),
     _error(9, 4, ErrorCode.BAD_ADDRESS, 0xFFFE)),
]


@pytest.mark.parametrize("data, reply", [case[1:] for case in RAW_ERRORS],
                         ids=[case[0] for case in RAW_ERRORS])
def test_refused_frames_get_the_right_error_and_change_nothing(link, pty, data, reply):
    link.spikes([1, 2, END_OF_TICK, 3])   # something in the queue that must stay
    before = _snapshot(pty)
    assert _raw(link, data) == reply
    assert _snapshot(pty) == before
    status = link.status()
    assert status.bad_frames == 1 and status.queue_free == DEPTH - 4
    with pty.lock:
        assert sum(pty.peer.errors.values()) == 1


def test_link_raises_link_error_for_refusals(link, pty):
    before = _snapshot(pty)
    with pytest.raises(LinkError, match=r"READ\(space=SYN, addr=0x4046, count=3\) refused: "
                                        r"BAD_ADDRESS \(detail 16454 = 0x4046\)") as info:
        link.read(SYN, 1 << 14 | 70, 3)
    assert info.value.code == ErrorCode.BAD_ADDRESS and info.value.detail == 1 << 14 | 70
    with pytest.raises(LinkError, match=r"BAD_VALUE \(detail 1 = 0x1\)"):
        link.write(REG, 0, [1, 0])
    with pytest.raises(LinkError, match=r"SPIKES\(1 entries\) refused: BAD_ADDRESS"):
        link.spikes([24])
    assert _snapshot(pty) == before
    # A refused block of a multi-block write stops the rest; earlier blocks were written.
    with pytest.raises(LinkError, match=r"WRITE\(space=NSTATE, addr=0x80, count=64\) refused"):
        link.write(NSTATE, 0, list(range(192)))
    assert link.read(NSTATE, 0, 128) == [k if k % 2 == 0 else k & 0xFFF for k in range(128)]


def test_queue_full_and_credits(link, pty):
    assert link.spikes([0] * DEPTH) == 0
    assert link.credits == 0
    before = _snapshot(pty)
    with pytest.raises(LinkError, match=r"QUEUE_FULL \(detail 0 = 0x0\)"):
        link.spikes([END_OF_TICK])
    assert _snapshot(pty) == before
    assert link.reset_state() == DEPTH
    link.spikes([5] * (DEPTH - 3))
    with pytest.raises(LinkError, match=r"QUEUE_FULL \(detail 3 = 0x3\)") as info:
        link.spikes([1, 2, 3, END_OF_TICK])
    assert info.value.op == Opcode.SPIKES
    assert link.credits == 3
    status = link.status()
    assert (status.queue_free, status.queued_ticks, status.bad_frames) == (3, 0, 2)


def test_busy_and_runs(link, pty):
    assert link.run(0, RunFlags.INPUTS) == DEPTH   # waits for inputs: no tick yet
    before = _snapshot(pty)
    with pytest.raises(LinkError, match=r"RUN\(ticks=5, flags=0x0, period=0\) refused: BUSY"):
        link.run(5)
    assert _snapshot(pty) == before
    status = link.status()
    assert (status.running, status.ticks_left, status.t) == (1, 0, 0)
    link.spikes([3, END_OF_TICK, END_OF_TICK])
    assert link.next_tick().t == 0 and link.next_tick().t == 1
    link.stop()
    end = link.wait_run_end()
    assert end == RunEnd(t=2, reason=RunEnd.STOPPED, seq=2)
    assert not link.running
    link.stop()   # while idle: only an ACK
    link.run(3)
    assert [link.next_tick().t for _ in range(3)] == [2, 3, 4]
    assert link.wait_run_end() == RunEnd(t=5, reason=RunEnd.DONE, seq=5)
    status = link.status()
    assert (status.running, status.ticks_left, status.t, status.tick_frames) == (0, 0, 5, 5)
    with pytest.raises(LinkTimeout, match="no RUN_END frame"):
        link.wait_run_end(timeout=0.1)


def test_reset_state_clears_state_and_queue(link, pty):
    link.write(NSTATE, 0, [0xFFFF1234, 0xFFF, 5, 6])
    link.write(SOURCE, 0, [0x3FF, 0x3FF])
    link.write(STATUS, 0, [77])
    link.spikes([1, END_OF_TICK])
    assert link.reset_state() == DEPTH
    assert link.read(NSTATE, 0, 4) == [0, 0, 0, 0]
    assert link.read(SOURCE, 0, 2) == [0x100, 0x100]   # the sign stays
    assert link.read(STATUS, 0, 1) == [0]
    # Refused during a run: emptying the queue under a stream would break the credit count.
    link.run(0, RunFlags.INPUTS)
    link.spikes([1])
    with pytest.raises(LinkError) as refused:
        link.reset_state()
    assert refused.value.code == ErrorCode.BUSY
    link.stop()
    assert link.wait_run_end().reason == RunEnd.STOPPED


def test_counters_and_clear(link, pty):
    with pty.lock:
        pty.peer.core.model = GoldenModel(_firing_image(CFG))
    link.run(4)
    link.wait_run_end()
    # Neurons 0..7 have rows: their spikes are pre events in ticks 1..3.
    assert link.read(STATUS, 1, 6) == [4, 3 * 8, 3 * 8 * N, 4 * N, 0, 0]
    link.write(STATUS, 1, [0xDEAD])
    assert link.read(STATUS, 1, 10) == [0] * 10
    assert link.read(STATUS, 0, 1) == [4]


def test_paced_run_keeps_its_period(link):
    period = link.info.clock_hz // 50    # 20 ms
    start = time.monotonic()
    link.run(5, 0, period)
    ticks = [link.next_tick() for _ in range(5)]
    link.wait_run_end()
    assert time.monotonic() - start >= 4 * 0.020
    assert [tick.t for tick in ticks] == [0, 1, 2, 3, 4]


# --- Streaming ---------------------------------------------------------------------------------

@pytest.mark.parametrize("depth, rate, lockstep", [(DEPTH, 0.9, False), (26, 0.95, False),
                                                   (32, 0.5, True), (256, 0.3, False)])
def test_stream_run_equals_golden_model(depth, rate, lockstep):
    image = random_image(3, sizes=(CFG.n_inputs, CFG.n_neurons, CFG.n_recurrent))
    ticks = 150
    rng = np.random.default_rng(depth)
    dense = rng.random((ticks, CFG.n_inputs)) < rate
    dense[::7] = False   # some silent ticks
    expected, _ = GoldenModel(image).run(ticks, dense, learn=True)
    peer = ModelPeer(CFG, queue_depth=depth)
    peer.core.model = GoldenModel(image)
    seen = []

    def on_tick(k, frame):
        seen.append((k, frame.t))
        if k == 40:
            time.sleep(0.3)   # a host that stalls mid-run: the core waits for it
    with PtyPeer(peer) as pty, _link(pty.path) as link:
        result = link.stream_run(ticks, (np.flatnonzero(row) for row in dense), learn=True,
                                 on_tick=on_tick, lockstep=lockstep)
        synapses = link.read_blocks(SYN, [(s << 14, N) for s in range(S)])
        status = link.status()
        with pty.lock:
            reference = GoldenModel(image)
            reference.run(ticks, dense, learn=True)
            np.testing.assert_array_equal(np.array(synapses), reference.synapses)
            assert peer.errors[ErrorCode.QUEUE_FULL] == 0
            assert sum(peer.errors.values()) == 0
    pool = image.neuron_params["wta"] == 1
    # The core's order: neurons outside the winner-take-all pool ascending, then the winner.
    assert [tuple(np.flatnonzero(row & ~pool)) + tuple(np.flatnonzero(row & pool))
            for row in expected] == result
    assert seen == [(k, (image.state.t + k) & 0xFFFFFFFF) for k in range(ticks)]
    assert status.queue_free == depth and status.running == 0 and status.bad_frames == 0
    assert link.lost_tick_frames == 0 and link.corrupt_frames == 0


class WatchedTransport(Transport):
    """Watches the commands a link has in flight, as the host sees them: written, and their
    reply not read yet."""

    def __init__(self, inner):
        self._inner = inner
        self._sent, self._received = SlipDecoder(), SlipDecoder()
        self.in_flight = {}             # seq: (op, line bytes), oldest first
        self.spikes = []                # the entries of every SPIKES command, in order
        self.most_spikes_in_flight = 0
        self.most_in_flight = 0         # commands of any kind
        self.most_behind_oldest = 0     # line bytes in flight behind the oldest command

    @property
    def name(self):
        return self._inner.name

    def write(self, data):
        for body in self._sent.feed(data):
            frame = parse_frame(body)
            size = len(build_frame(frame.seq, frame.op, frame.payload))
            sizes = [size for _, size in self.in_flight.values()]
            if sizes:
                self.most_behind_oldest = max(self.most_behind_oldest, sum(sizes[1:]) + size)
            self.in_flight[frame.seq] = (frame.op, size)
            self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
            if frame.op == Opcode.SPIKES:
                self.spikes.append(struct.unpack(f"<{len(frame.payload) // 2}H", frame.payload))
                self.most_spikes_in_flight = max(
                    self.most_spikes_in_flight,
                    sum(op == Opcode.SPIKES for op, _ in self.in_flight.values()))
        self._inner.write(data)

    def read(self, max_bytes, timeout):
        data = self._inner.read(max_bytes, timeout)
        for body in self._received.feed(data):
            frame = parse_frame(body)
            if isinstance(frame, Frame) and frame.op in (Reply.ACK, Reply.DATA, Reply.ERROR):
                self.in_flight.pop(frame.seq, None)
        return data

    def close(self):
        self._inner.close()


def _watched_stream(peer, ticks, rate, *, window=8, **kwargs):
    """Stream random inputs (learning on) to ``peer``; the result, the watch, the inputs."""
    image = random_image(5, sizes=(CFG.n_inputs, CFG.n_neurons, CFG.n_recurrent))
    peer.core.model = GoldenModel(image)
    dense = np.random.default_rng(11).random((ticks, CFG.n_inputs)) < rate
    dense[::5] = False
    with PtyPeer(peer) as pty:
        watch = WatchedTransport(SerialTransport(pty.path))
        with Link(watch, timeout=10.0, window=window) as link:
            result = link.stream_run(ticks, (np.flatnonzero(row) for row in dense), learn=True,
                                     **kwargs)
            assert not link.running and link.lost_tick_frames == link.corrupt_frames == 0
            status = link.status()
        with pty.lock:
            assert peer.errors[ErrorCode.QUEUE_FULL] == 0 and sum(peer.errors.values()) == 0
    assert status.queue_free == peer.info.queue_depth and status.bad_frames == 0
    expected, _ = GoldenModel(image).run(ticks, dense, learn=True)
    pool = image.neuron_params["wta"] == 1
    assert result == [tuple(np.flatnonzero(row & ~pool)) + tuple(np.flatnonzero(row & pool))
                      for row in expected]
    # Every entry sent once, in the order of the ticks.
    sent = [entry for command in watch.spikes for entry in command]
    assert sent == [entry for row in dense for entry in [*np.flatnonzero(row), END_OF_TICK]]
    return watch


def test_stream_run_keeps_several_spikes_commands_in_flight():
    watch = _watched_stream(ModelPeer(CFG, queue_depth=256), 200, 0.9)
    assert watch.most_spikes_in_flight >= 2
    # Large commands only: a third of the queue or more, but the last.
    sizes = [len(command) for command in watch.spikes]
    assert min(sizes[:-1]) >= 256 // 3 and max(sizes) <= MAX_SPIKES
    assert watch.most_behind_oldest <= 512


def test_stream_run_waits_for_credits_rather_than_send_small_commands():
    # A paced run is core-bound: each tick returns the credits of one tick's entries (about
    # 22), not enough for a command of a third of the queue.
    peer = ModelPeer(CFG, queue_depth=256)
    watch = _watched_stream(peer, 120, 0.9, period=peer.info.clock_hz // 1000)
    sizes = [len(command) for command in watch.spikes]
    assert min(sizes[:-1]) >= 256 // 3
    assert len(sizes) <= 120 * (CFG.n_inputs + 1) // (256 // 3) + 1


@pytest.mark.parametrize("window, rx_buffer", [(1, 512), (2, 512), (8, 300), (8, 200)])
def test_stream_run_keeps_within_the_window_and_the_receive_buffer(window, rx_buffer):
    watch = _watched_stream(ModelPeer(CFG, queue_depth=256, rx_buffer=rx_buffer), 100, 0.9,
                            window=window)
    assert watch.most_in_flight <= window
    assert watch.most_behind_oldest <= rx_buffer
    # A full command (MAX_SPIKES entries, 262 line bytes) goes out right behind the first one
    # when both window and buffer allow it, before any reply can be read. How many smaller
    # commands join later depends on when replies arrive, so only the bounds are exact there.
    full = 2 * MAX_SPIKES + 6
    if window >= 2 and rx_buffer >= full:
        assert watch.most_spikes_in_flight >= 2
    if window == 1:
        assert watch.most_spikes_in_flight == 1


def test_stream_run_refuses_bad_inputs_and_stops(link, pty):
    with pytest.raises(ValueError, match=r"input 24 of tick 1 is out of range 0\.\.23"):
        link.stream_run(3, [[0], [24], [1]])
    assert not link.running and link.status().running == 0
    link.reset_state()
    with pytest.raises(ValueError, match=r"inputs_per_tick ran out after 2 ticks; the run has 4"):
        link.stream_run(4, [[0], [1]])
    link.reset_state()
    with pytest.raises(TypeError, match=r"inputs of tick 0 must be ints, not 1\.5"):
        link.stream_run(2, [[1.5], []])
    link.reset_state()
    assert link.stream_run(0, []) == []
    with PtyPeer(ModelPeer(CFG, queue_depth=8)) as small, _link(small.path) as small_link:
        with pytest.raises(ValueError, match=r"tick 0 has 8 distinct inputs; with its "
                                             r"END_OF_TICK that exceeds the core's input queue "
                                             r"of 8 entries"):
            small_link.stream_run(1, [range(8)])
    link.spikes([1, END_OF_TICK])
    with pytest.raises(LinkException, match=r"the input queue of .* holds 2 entries from "
                                            r"before; call reset_state\(\)"):
        link.stream_run(1, [[]])


def test_slow_host_loses_no_tick_frame(link, pty):
    ticks = 3000
    with pty.lock:
        pty.peer.core.model = GoldenModel(_firing_image(CFG))
    link.run(ticks)

    def peer_t():
        with pty.lock:
            return int(pty.peer.core.model.state.t)
    # A host that does not read: the peer must hold, not drop. Wait until it has stood still
    # for a while (its output buffers are full), however slowly it got there.
    deadline, last, still_since = time.monotonic() + 30, -1, time.monotonic()
    while time.monotonic() < deadline and (last <= 0 or time.monotonic() - still_since < 0.3):
        time.sleep(0.05)
        t = peer_t()
        if t != last:
            last, still_since = t, time.monotonic()
    held_at = peer_t()
    assert 0 < held_at < ticks
    frames = []
    for _ in range(ticks):
        frames.append(link.next_tick())
        if len(frames) % 500 == 0:
            time.sleep(0.1)   # and again, mid-run
    end = link.wait_run_end()
    assert [f.t for f in frames] == list(range(ticks))
    assert all(f.spikes == tuple(range(N)) for f in frames)
    assert end == RunEnd(t=ticks, reason=RunEnd.DONE, seq=ticks & 0xFF)
    assert link.lost_tick_frames == 0 and link.corrupt_frames == 0
    assert link.status().tick_frames == ticks


def test_timeouts_are_prompt_when_the_peer_stops(pty):
    # The waits meant to succeed get a long timeout, so that a loaded machine cannot fail them;
    # the link's timeout is short only where the peer is stopped.
    with _link(pty.path) as link:
        link.identify()
        pty.pause()
        link.timeout = 0.3
        start = time.monotonic()
        with pytest.raises(LinkTimeout, match=r"no reply to STATUS \(seq 1\) from /dev/.* "
                                              r"within 0\.3 s"):
            link.status()
        assert 0.3 <= time.monotonic() - start < 0.3 + 2.0
        assert link.credits == 0
        link.timeout = 10.0
        pty.resume()
        # The late reply is stray; the next command gets its own.
        assert link.status().queue_free == DEPTH
        assert link.stray_frames == 1 and link.credits == DEPTH

        seen, stalled_at = [], []

        def stall(k, frame):
            seen.append(frame.t - first_t)
            if k == 2:
                pty.pause()
                link.timeout = 0.3
                stalled_at.append(time.monotonic())
        first_t = link.status().t
        with pytest.raises(LinkTimeout, match=r"no reply to SPIKES\(2 entries\) \(seq \d+\) "
                                              r"from /dev/.* within 0\.3 s"):
            link.stream_run(10, [[1]] * 10, on_tick=stall, lockstep=True)
        assert seen == [0, 1, 2]
        assert 0.3 <= time.monotonic() - stalled_at[0] < 0.3 + 2.0


def test_garbage_on_the_line_then_the_link_recovers(link, pty):
    rng = np.random.default_rng(1)
    link.transport.write(bytes(rng.integers(0, 256, 2000, dtype=np.uint8)) + bytes([END]))
    time.sleep(0.2)
    while link.transport.read(4096, 0.05):
        pass
    assert link.identify().n_neurons == N
    assert link.read(REG, 1, 1) == [255]
    assert link.status().bad_frames >= 1


# --- Link against a scripted transport ---------------------------------------------------------

class ScriptedTransport(Transport):
    """Answers each command with the frames a script returns for it."""

    def __init__(self, script):
        self._script, self._out, self.sent = script, bytearray(), []
        self._decoder = SlipDecoder()

    name = "scripted"

    def write(self, data):
        for body in self._decoder.feed(data):
            frame = parse_frame(body)
            self.sent.append(frame)
            self._out += self._script(frame)

    def read(self, max_bytes, timeout):
        data, self._out = bytes(self._out[:max_bytes]), self._out[max_bytes:]
        return data

    def close(self):
        pass


def _tick(seq, t, *spikes, free=64):
    return build_frame(seq, Reply.TICK, TickFrame(t=t, spikes=spikes, queue_free=free).pack())


def test_tick_sequence_gap_is_reported():
    def script(frame):
        if frame.op == Opcode.RUN:
            return (build_frame(frame.seq, Reply.ACK, struct.pack("<BH", frame.op, 64))
                    + _tick(0, 10, 1) + _tick(1, 11) + _tick(3, 13, 2)
                    + build_frame(4, Reply.RUN_END, struct.pack("<IB", 14, 0)))
        return b""
    link = Link(ScriptedTransport(script), timeout=0.2)
    link.run(4)
    assert link.next_tick() == TickFrame(t=10, spikes=(1,), queue_free=64)
    assert link.next_tick().t == 11
    with pytest.raises(LinkLost, match=r"1 TICK frame\(s\) from scripted were lost before "
                                       r"this TICK frame"):
        link.next_tick()
    assert link.next_tick().t == 13 and link.lost_tick_frames == 1
    assert link.wait_run_end() == RunEnd(t=14, reason=0, seq=4)


def test_run_end_reveals_lost_last_tick_frames():
    def script(frame):
        if frame.op == Opcode.STATUS:
            return build_frame(frame.seq, Reply.DATA, bytes([frame.op]) + LinkStatus(
                0, 0, 0, 64, 0, 0, 0, 0, 250).pack())
        if frame.op == Opcode.RUN:
            return (build_frame(frame.seq, Reply.ACK, struct.pack("<BH", frame.op, 64))
                    + _tick(250, 0) + build_frame(253, Reply.RUN_END, struct.pack("<IB", 3, 0)))
        return b""
    link = Link(ScriptedTransport(script), timeout=0.2)
    link.status()
    link.run(3)
    with pytest.raises(LinkLost, match=r"2 TICK frame\(s\) from scripted were lost before the "
                                       r"RUN_END frame"):
        link.wait_run_end()
    assert link.lost_tick_frames == 2
    assert link.next_tick().t == 0
    assert link.wait_run_end() == RunEnd(t=3, reason=0, seq=253)


def test_replies_that_answer_nothing_are_stray_and_corrupt_frames_counted():
    def script(frame):
        bad = bytearray(build_frame(frame.seq, Reply.ACK, struct.pack("<BH", frame.op, 1)))
        bad[3] ^= 1
        return (build_frame((frame.seq + 1) & 0xFF, Reply.ACK, struct.pack("<BH", frame.op, 9))
                + build_frame(frame.seq, Reply.ACK, struct.pack("<BH", Opcode.STOP, 9))
                + bytes(bad)
                + build_frame(frame.seq, Reply.ACK, struct.pack("<BH", frame.op, 7)))
    link = Link(ScriptedTransport(script), timeout=0.2)
    assert link.reset_state() == 7
    assert link.stray_frames == 2 and link.corrupt_frames == 1


def test_link_arguments_wrong():
    with pytest.raises(TypeError, match=r"transport must be a Transport, not 'COM1'"):
        Link("COM1")
    transport = ScriptedTransport(lambda frame: b"")
    with pytest.raises(ValueError, match=r"timeout = 0 must be > 0 and finite"):
        Link(transport, timeout=0)
    with pytest.raises(TypeError, match=r"timeout must be a number of seconds, not '1'"):
        Link(transport).timeout = "1"
    with pytest.raises(ValueError, match=r"timeout = inf must be > 0 and finite"):
        Link(transport).timeout = float("inf")
    with pytest.raises(ValueError, match=r"window = 65 is out of range 1\.\.64"):
        Link(transport, window=65)
    link = Link(transport, timeout=0.05)
    with pytest.raises(ValueError, match=r"SPIKES takes 1\.\.128 entries, not 0"):
        link.spikes([])
    with pytest.raises(ValueError, match=r"entries\[1\] = 65536 is out of range 0\.\.65535"):
        link.spikes([1, 65536])
    with pytest.raises(ValueError, match=r"count = 0 is out of range"):
        link.read(SYN, 0, 0)
    with pytest.raises(TypeError, match=r"learn must be a bool, not 1"):
        link.stream_run(1, [[]], learn=1)
    with pytest.raises(LinkTimeout, match=r"no reply to RESET_STATE \(seq 0\) from scripted "
                                          r"within 0\.05 s"):
        link.reset_state()
    link.close()
    with pytest.raises(LinkException, match=r"the link to scripted is closed"):
        link.status()


def test_serial_transport_errors_name_the_port():
    with pytest.raises(TransportError, match=r"cannot open serial port "
                                             r"'/dev/plasticore-no-such-port': No such file or "
                                             r"directory"):
        SerialTransport("/dev/plasticore-no-such-port")
    with pytest.raises(TransportError, match=r"cannot open serial port 'socket://127\.0\.0\.1:1':"
                                             r" Connection refused"):
        SerialTransport("socket://127.0.0.1:1")
    with pytest.raises(ValueError, match=r"baudrate = 0 must be > 0"):
        SerialTransport("/dev/null", 0)


def test_serial_transport_reads_writes_and_closes(pty):
    with SerialTransport(pty.path) as transport:
        assert transport.read(10, 0.05) == b""
        transport.write(build_frame(3, Opcode.STOP))
        data = b""
        while len(data) < 9:
            chunk = transport.read(100, 10.0)
            assert chunk
            data += chunk
        assert parse_frame(SlipDecoder().feed(data)[0]) == \
            Frame(3, Reply.ACK, struct.pack("<BH", Opcode.STOP, DEPTH))
    with pytest.raises(TransportError, match=r"serial port '/dev/.*' is closed"):
        transport.write(b"x")
    transport.close()


# --- Fuzzing ModelPeer without I/O -------------------------------------------------------------

FUZZ_CFG = CoreConfig(n_inputs=5, n_neurons=6, n_recurrent=2)
FUZZ_DEPTH = 10
_OPS = list(Opcode)


def _oracle(peer: ModelPeer, body) -> tuple[int, int, int, int] | None:
    """``(seq, op, code, detail)`` of the ERROR ``body`` must get, or None if it is accepted;
    written from docs/protocol.md and the peer's stated resolutions, not from its code."""
    cfg = FUZZ_CFG
    raw = body.body if isinstance(body, FrameError) else body
    seq, op = (raw[0], raw[1]) if len(raw) >= 2 else (0, 0)
    frame = parse_frame(body)
    if isinstance(frame, FrameError):
        return seq, op, frame.code, 0
    p = frame.payload
    fixed = {Opcode.IDENTIFY: 0, Opcode.READ: 7, Opcode.RUN: 9, Opcode.STOP: 0,
             Opcode.STATUS: 0, Opcode.RESET_STATE: 0}
    if op not in _OPS:
        return seq, op, ErrorCode.BAD_OPCODE, 0
    if op in fixed and len(p) != fixed[op]:
        return seq, op, ErrorCode.BAD_LENGTH, 0
    if op == Opcode.WRITE and (len(p) < 9 or len(p) % 4 != 1):
        return seq, op, ErrorCode.BAD_LENGTH, 0
    if op == Opcode.SPIKES and (not p or len(p) % 2 or len(p) > 256):
        return seq, op, ErrorCode.BAD_LENGTH, 0

    def valid(write, space, addr):
        return {
            0: lambda: addr < 29,
            1: lambda: addr < 2**28 and addr >> 14 < cfg.n_sources
            and addr & 0x3FFF < cfg.n_neurons,
            2: lambda: addr < 2 * cfg.n_neurons, 3: lambda: addr < 2 * cfg.n_neurons,
            4: lambda: addr < cfg.n_sources, 5: lambda: addr in ((0, 1) if write else range(14)),
        }.get(space, lambda: False)()

    if op in (Opcode.READ, Opcode.WRITE):
        space, addr = struct.unpack_from("<BI", p)
        count = struct.unpack_from("<H", p, 5)[0] if op == Opcode.READ else (len(p) - 5) // 4
        if op == Opcode.READ and not 1 <= count <= 64:
            return seq, op, ErrorCode.BAD_LENGTH, count
        if not all(valid(op == Opcode.WRITE, space, addr + k)
                   and (space != 1 or (addr + k) >> 14 == addr >> 14) for k in range(count)):
            return seq, op, ErrorCode.BAD_ADDRESS, addr
        if op == Opcode.WRITE and space == 0:
            words = struct.unpack_from(f"<{count}I", p, 5)
            for k, w in enumerate(words):
                r = REGISTERS[addr + k]
                if not r.lo <= w <= r.hi:
                    return seq, op, ErrorCode.BAD_VALUE, addr + k
    if op == Opcode.SPIKES:
        entries = struct.unpack(f"<{len(p) // 2}H", p)
        for e in entries:
            if e != END_OF_TICK and e >= cfg.n_inputs:
                return seq, op, ErrorCode.BAD_ADDRESS, e
        if len(entries) > peer.queue_free:
            return seq, op, ErrorCode.QUEUE_FULL, peer.queue_free
    if op in (Opcode.RUN, Opcode.RESET_STATE) and peer.running:
        return seq, op, ErrorCode.BUSY, 0
    return None


_u32 = st.integers(0, 2**32 - 1)
_small_addr = st.one_of(st.integers(0, 40), st.sampled_from([1 << 14, 2 << 14 | 5, 6 << 14,
                                                             1 << 28, 2**32 - 1]))


@st.composite
def _command(draw):
    """A command body, mostly well-formed, with fields around the limits."""
    op = draw(st.sampled_from(_OPS + [Opcode.READ, Opcode.WRITE, Opcode.WRITE, Opcode.SPIKES,
                                      Opcode.SPIKES, 0, 9, 0x80, 0xFF]))
    seq = draw(st.integers(0, 255))
    if op == Opcode.READ:
        payload = struct.pack("<BIH", draw(st.integers(0, 7)), draw(_small_addr),
                              draw(st.sampled_from([0, 1, 2, 6, 12, 29, 64, 65])))
    elif op == Opcode.WRITE:
        space = draw(st.sampled_from([0, 0, 0, 1, 2, 3, 4, 5, 6, 7]))
        n = draw(st.integers(1, 3 if space == 0 else 12))
        addr = draw(st.integers(0, 28) if space == 0 else _small_addr)
        words = draw(st.lists(st.one_of(st.integers(0, 30), _u32), min_size=n, max_size=n))
        payload = struct.pack(f"<BI{n}I", space, addr, *words)
    elif op == Opcode.SPIKES:
        entry = st.sampled_from([0, 1, 2, 3, 4, END_OF_TICK, END_OF_TICK])
        bad = st.sampled_from([5, 0xFFFE, 0x8000])
        entries = draw(st.lists(entry, min_size=1, max_size=10))
        if draw(st.integers(0, 4)) == 0:
            entries.insert(draw(st.integers(0, len(entries))), draw(bad))
        payload = struct.pack(f"<{len(entries)}H", *entries)
    elif op == Opcode.RUN:
        payload = struct.pack("<IBI", draw(st.integers(0, 3)), draw(st.integers(0, 255)),
                              draw(st.sampled_from([0, 1000])))
    else:
        payload = b""
    if draw(st.integers(0, 9)) == 0:      # a wrong length now and then
        payload = payload + draw(st.binary(min_size=1, max_size=3)) if draw(st.booleans()) \
            else payload[:-1]
    return build_frame(seq, op, payload)


@st.composite
def _line(draw):
    """The bytes of one frame as the line carries them: good, corrupted, or garbage."""
    kind = draw(st.sampled_from(["good", "good", "good", "flip", "cut", "escape", "garbage",
                                 "long"]))
    frame = bytearray(draw(_command()))
    if kind == "flip":
        k = draw(st.integers(1, len(frame) - 2))
        frame[k] ^= 1 << draw(st.integers(0, 7))
        if frame[k] == END:
            frame[k] ^= 0x01
    elif kind == "cut":
        del frame[draw(st.integers(1, len(frame) - 2)):-1]
    elif kind == "escape":
        k = draw(st.integers(1, len(frame) - 1))
        frame[k:k] = bytes([ESC, draw(st.integers(0, 0xBF))])
    elif kind == "garbage":
        frame = bytearray([END]) + bytearray(draw(st.binary(max_size=20)).replace(
            bytes([END]), b"")) + bytearray([END])
    elif kind == "long":
        frame = bytearray(slip_encode(bytes(draw(st.integers(MAX_BODY + 1, MAX_BODY + 8)))))
    return bytes(frame)


_FIELD_MASKS = {SYN: 0xFFFF, NPARAM: 0xFFFFFFFF, SOURCE: 0x3FF, REG: 0xFFFFFFFF}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_line(), min_size=1, max_size=25), st.lists(st.booleans(), max_size=25))
def test_fuzz_peer_replies_exactly_and_refusals_change_nothing(lines, ticks):
    peer = ModelPeer(FUZZ_CFG, queue_depth=FUZZ_DEPTH, clock=lambda: 0.0)
    identify = build_frame(0, Reply.DATA, bytes([Opcode.IDENTIFY]) + peer.info.pack())
    for k, line in enumerate(lines):
        bodies = SlipDecoder(limit=MAX_BODY).feed(line)
        expected = [_oracle(peer, body) for body in bodies]
        assert len(bodies) <= 1
        before = peer.snapshot()
        was_running = peer.running
        refused = sum(peer.errors.values())
        out = SlipDecoder().feed(peer.feed(line))
        replies = [parse_frame(b) for b in out]
        if not bodies:
            assert replies == []
            continue
        (want,), reply = expected, replies[0]
        if want is not None:
            assert replies == [_error(*want)]
            assert peer.snapshot() == before
            assert sum(peer.errors.values()) == refused + 1
        else:
            frame = parse_frame(bodies[0])
            assert reply.seq == frame.seq and reply.payload[:1] == bytes([frame.op])
            kind = {Opcode.IDENTIFY: Reply.DATA, Opcode.READ: Reply.DATA,
                    Opcode.STATUS: Reply.DATA}.get(frame.op, Reply.ACK)
            assert reply.op == kind
            if frame.op == Opcode.STOP and was_running:
                assert [r.op for r in replies] == [Reply.ACK, Reply.RUN_END]
            else:
                assert len(replies) == 1
            if frame.op == Opcode.READ:
                assert len(reply.payload) == 1 + 4 * struct.unpack_from("<H", frame.payload, 5)[0]
            if frame.op == Opcode.WRITE and frame.payload[0] in _FIELD_MASKS:
                space, addr = struct.unpack_from("<BI", frame.payload)
                words = struct.unpack_from(f"<{(len(frame.payload) - 5) // 4}I", frame.payload, 5)
                back = [peer.core.read_word(space, addr + i) for i in range(len(words))]
                assert back == [w & _FIELD_MASKS[space] for w in words]
        if k < len(ticks) and ticks[k]:
            peer.step()
        # The link stays responsive: a fresh frame after whatever came before gets its answer.
        assert peer.feed(bytes([END]) + build_frame(0, Opcode.IDENTIFY)) == identify
    status = peer.status()
    assert status.bad_frames == sum(peer.errors.values())
    assert status.queue_free == FUZZ_DEPTH - len(peer.snapshot()[-3])
    assert status.running == peer.running


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_peer_survives_any_bytes(data):
    peer = ModelPeer(FUZZ_CFG, queue_depth=FUZZ_DEPTH)
    replies = [parse_frame(b) for b in SlipDecoder().feed(peer.feed(data))]
    assert all(isinstance(r, Frame) and r.op in (Reply.ERROR, Reply.ACK, Reply.DATA,
                                                  Reply.RUN_END) for r in replies)
    # The END ends whatever was left unterminated (an ERROR, if anything), then STATUS answers.
    *_, reply = SlipDecoder().feed(peer.feed(bytes([END]) + build_frame(7, Opcode.STATUS)))
    assert parse_frame(reply) == Frame(7, Reply.DATA, bytes([Opcode.STATUS]) + peer.status().pack())


def test_peer_serves_a_pty_from_the_command_line():
    proc = subprocess.Popen([sys.executable, "-m", "plasticore.sim.link_model", "--inputs", "8",
                             "--neurons", "4", "--recurrent", "0", "--queue-depth", "16"],
                            stdout=subprocess.PIPE, text=True)
    try:
        path = proc.stdout.readline().strip()
        assert path.startswith("/dev/")
        with _link(path) as link:
            info = link.identify()
            assert (info.n_inputs, info.n_neurons, info.n_recurrent, info.queue_depth) == \
                (8, 4, 0, 16)
            assert link.stream_run(3, [[1], [], [2, 3]]) == [(), (), ()]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()


def test_tick_frames_list_spikes_in_the_cores_order():
    peer = ModelPeer(FUZZ_CFG, clock=lambda: 0.0)
    params = peer.core.model.params
    params["threshold"][:] = 1
    params["bias"][:] = 5
    params["wta"][:] = [0, 1, 0, 1, 0, 0]
    params["bias"][3] = 9    # the pool's winner: the largest margin
    peer.feed(build_frame(1, Opcode.RUN, struct.pack("<IBI", 1, 0, 0)))
    tick, end = (parse_frame(b) for b in SlipDecoder().feed(peer.step()))
    assert tick == Frame(0, Reply.TICK, TickFrame(t=0, spikes=(0, 2, 4, 5, 3),
                                                  queue_free=256).pack())
    assert end == Frame(1, Reply.RUN_END, struct.pack("<IB", 1, 0))
