"""The virtual board harness, proved with stand-in tops (the real SoC top is tested elsewhere).

``LoopbackTop`` feeds ``uart_rx`` back to ``uart_tx`` through one flip-flop, so every bit the
harness serialises comes straight back and every byte the host writes echoes: the host side
(pyserial on the pseudo-terminal), the serialiser and the deserialiser are all exercised with no
UART in the design. ``FrameTop`` transmits a fixed bit pattern with alternately good and broken
stop bits, to check mid-bit sampling, bit order and framing-error counting.

Each distinct top is compiled once and cached (``sim`` in :func:`plasticore.cache_root`) like the cocotb builds.
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import serial
from amaranth import Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from plasticore import cache_root
from plasticore.sim.build import VerilatorBuildError
from plasticore.sim.vboard import BoardStats, VirtualBoard, VirtualBoardError, build_virtual_board

BUILD_ROOT = cache_root() / "sim"
DIVISOR = 16
BAUD = 115200  # meaningless on a pseudo-terminal, but pyserial wants one
FRAME_BYTE = 0xA7  # asymmetric, so a reversed bit order shows


class LoopbackTop(wiring.Component):
    """``uart_tx`` is ``uart_rx`` one clock later: a bit-level loopback."""

    uart_rx: In(1)
    uart_tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.uart_tx.eq(self.uart_rx)
        return m


class FrameTop(wiring.Component):
    """Sends ``FRAME_BYTE`` forever, every other frame with a low (broken) stop bit."""

    uart_rx: In(1)
    uart_tx: Out(1, init=1)

    def __init__(self, divisor):
        self._divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        data = [(FRAME_BYTE >> i) & 1 for i in range(8)]
        good = [1, 1, 0, *data, 1]  # idle, idle, start, data LSB first, stop
        bad = [1, 1, 0, *data, 0]  # stop bit low: a framing error
        bits = good + bad
        pattern = Const(sum(bit << i for i, bit in enumerate(bits)), len(bits))
        m = Module()
        count = Signal(range(self._divisor))
        index = Signal(range(len(bits)))
        with m.If(count == self._divisor - 1):
            m.d.sync += count.eq(0)
            m.d.sync += index.eq(index + 1)
            with m.If(index == len(bits) - 1):
                m.d.sync += index.eq(0)
        with m.Else():
            m.d.sync += count.eq(count + 1)
        m.d.comb += self.uart_tx.eq(pattern.bit_select(index, 1))
        return m


class NoTxTop(wiring.Component):
    """Lacks ``uart_tx``: the harness cannot compile against it."""

    uart_rx: In(1)
    led: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.led.eq(self.uart_rx)
        return m


@pytest.fixture(scope="session")
def loopback_exe():
    return build_virtual_board(LoopbackTop(), "vboard_loopback", divisor=DIVISOR,
                               out_root=BUILD_ROOT)


@pytest.fixture(scope="session")
def frame_exe():
    return build_virtual_board(FrameTop(DIVISOR), "vboard_frames", divisor=DIVISOR,
                               out_root=BUILD_ROOT)


def read_exactly(port, count, timeout=20.0):
    """Read *count* bytes, failing after *timeout* seconds instead of hanging."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while len(data) < count and time.monotonic() < deadline:
        data += port.read(count - len(data))
    return bytes(data)


def wait_until(predicate, timeout=10.0, interval=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def process_gone(pid):
    """True if *pid* no longer runs (a zombie awaiting its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def random_payload(copies=16, seed=1):
    """Every byte value *copies* times, shuffled: 4 KiB by default."""
    data = bytearray(range(256)) * copies
    random.Random(seed).shuffle(data)
    return bytes(data)


@pytest.mark.parametrize("divisor", [DIVISOR, 104])
def test_loopback_echoes_every_byte_value(loopback_exe, divisor):
    payload = random_payload()
    # 104 cycles per bit is 115200 baud at 12 MHz: the same binary, divisor overridden.
    with VirtualBoard(loopback_exe, divisor=divisor) as board:
        with serial.Serial(board.port, baudrate=BAUD, timeout=1) as port:
            before = board.stats()
            start = time.monotonic()
            port.write(payload)
            echoed = read_exactly(port, len(payload))
            elapsed = time.monotonic() - start
            after = board.stats()
    assert echoed == payload
    stats = board.exit_stats
    assert stats.reason == "signal"
    assert stats.bytes_in == stats.bytes_out == len(payload)
    assert stats.framing_errors == stats.glitches == 0
    # Each byte is 10 bits on the line, and the loopback adds one cycle.
    assert after.cycles - before.cycles >= 10 * divisor * len(payload)
    cycles_per_s = (after.cycles - before.cycles) / (after.wall_s - before.wall_s)
    print(
        f"\nvirtual board loopback, {divisor} cycles/bit: {len(payload)} bytes echoed in "
        f"{elapsed * 1e3:.0f} ms = {len(payload) / elapsed / 1e3:.1f} kB/s; "
        f"{cycles_per_s / 1e6:.1f} M simulated cycles/s"
    )


def test_port_can_be_closed_and_reopened(loopback_exe):
    with VirtualBoard(loopback_exe) as board:
        with serial.Serial(board.port, baudrate=BAUD, timeout=1) as port:
            port.write(b"first")
            assert read_exactly(port, 5) == b"first"
        # Echoes nobody reads while the port is closed are lost on reopening, as with a
        # USB-UART bridge: pyserial flushes its input on open(), and the harness drops its own
        # queue with it.
        with serial.Serial(board.port, baudrate=BAUD, timeout=1) as port:
            port.write(b"stale")
        assert wait_until(lambda: board.stats().bytes_out == 10)
        assert board.running
        with serial.Serial(board.port, baudrate=BAUD, timeout=1) as port:
            port.write(b"fresh")
            assert read_exactly(port, 5) == b"fresh"
            port.timeout = 0.2
            assert port.read(100) == b""
        assert board.running
    assert board.exit_stats.bytes_out == 15
    assert board.exit_stats.host_flushes >= 1


def test_host_not_reading_loses_nothing(loopback_exe):
    # Far more than the pseudo-terminal buffers (about 64 KiB): the harness must queue, not
    # drop. Two cycles per bit keeps the simulation short.
    payload = random_payload(copies=1024, seed=2)  # 256 KiB
    with VirtualBoard(loopback_exe, divisor=2) as board:
        with serial.Serial(board.port, baudrate=BAUD, timeout=1, write_timeout=30) as port:
            port.write(payload)
            assert wait_until(lambda: board.stats().bytes_out == len(payload), timeout=30)
            assert board.stats().pending_out > 0
            assert read_exactly(port, len(payload)) == payload
    assert board.exit_stats.peak_pending_out > 0


def test_stop_is_prompt_and_the_process_is_gone(loopback_exe):
    board = VirtualBoard(loopback_exe).start()
    pid = board.pid
    assert board.running and os.path.exists(board.port)
    start = time.monotonic()
    stats = board.stop()
    assert time.monotonic() - start < 5.0   # far below stop_timeout (10 s): SIGTERM is served
    assert not board.running
    assert process_gone(pid)
    assert stats.reason == "signal" and stats.cycles > 0
    with pytest.raises(VirtualBoardError, match="not running"):
        board.port
    assert board.stop() is stats  # idempotent


def test_an_idle_board_sleeps_and_wakes_at_once(loopback_exe):
    # Throttle after 10000 quiet cycles: the board should then use little CPU, stop promptly,
    # and still answer a byte quickly.
    with VirtualBoard(loopback_exe, idle_cycles=10_000) as board:
        with serial.Serial(board.port, baudrate=BAUD, timeout=2) as port:
            time.sleep(0.3)
            clock_ticks = os.sysconf("SC_CLK_TCK")

            def cpu_seconds():
                with open(f"/proc/{board.pid}/stat") as stat:
                    utime, stime = stat.read().rsplit(")", 1)[1].split()[11:13]
                return (int(utime) + int(stime)) / clock_ticks

            cpu_before = cpu_seconds()
            time.sleep(1.0)
            cpu_used = cpu_seconds() - cpu_before
            start = time.monotonic()
            port.write(b"\x5a")
            assert read_exactly(port, 1, timeout=2) == b"\x5a"
            latency = time.monotonic() - start
        start = time.monotonic()
    assert time.monotonic() - start < 2.0
    print(f"\nidle board: {cpu_used * 100:.0f}% of a core; echo latency {latency * 1e3:.1f} ms")
    assert cpu_used < 0.5
    assert latency < 0.5


def test_two_boards_at_once(loopback_exe):
    payloads = [random_payload(copies=4, seed=3), random_payload(copies=4, seed=4)]
    with VirtualBoard(loopback_exe) as first, VirtualBoard(loopback_exe) as second:
        assert first.port != second.port
        with serial.Serial(first.port, baudrate=BAUD, timeout=1) as a, serial.Serial(
            second.port, baudrate=BAUD, timeout=1
        ) as b:
            a.write(payloads[0])
            b.write(payloads[1])
            assert read_exactly(a, len(payloads[0])) == payloads[0]
            assert read_exactly(b, len(payloads[1])) == payloads[1]
    assert first.exit_stats.bytes_out == second.exit_stats.bytes_out == len(payloads[0])


def test_framing_errors_are_counted_and_good_frames_pass(frame_exe):
    with VirtualBoard(frame_exe) as board:
        with serial.Serial(board.port, baudrate=BAUD, timeout=1) as port:
            received = read_exactly(port, 50)
    assert received == bytes([FRAME_BYTE]) * 50
    stats = board.exit_stats
    assert stats.glitches == 0
    assert stats.framing_errors >= 50
    # Good and broken frames alternate.
    assert abs(stats.framing_errors - stats.bytes_out) <= 1


def test_max_cycles_ends_the_board(loopback_exe):
    board = VirtualBoard(loopback_exe, max_cycles=200_000).start()
    try:
        assert wait_until(lambda: not board.running, timeout=10)
    finally:
        stats = board.stop()
    assert stats == BoardStats.parse(
        "VBOARD exit " + " ".join(f"{k}={v}" for k, v in vars(stats).items())
    )
    assert stats.reason == "max-cycles"
    assert stats.cycles == 200_000


def test_board_exits_when_its_parent_is_killed(loopback_exe, tmp_path):
    log = tmp_path / "board.log"
    script = textwrap.dedent(
        f"""
        import sys, time
        from plasticore.sim.vboard import VirtualBoard
        board = VirtualBoard({str(loopback_exe)!r}, log_path={str(log)!r}).start()
        print(board.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        board_pid = int(parent.stdout.readline())
        assert not process_gone(board_pid)
    finally:
        parent.kill()  # no cleanup runs in the parent: only the closed stdin pipe tells
        parent.wait(timeout=10)
        parent.stdout.close()
    assert wait_until(lambda: process_gone(board_pid), timeout=5)
    assert "VBOARD exit reason=stdin-closed" in log.read_text()


def test_start_reports_a_board_that_dies(tmp_path):
    fake = tmp_path / "dies"
    fake.write_text("#!/bin/sh\necho 'cannot open the model' >&2\nexit 3\n")
    fake.chmod(0o755)
    # A failed board keeps its log for inspection: keep it in tmp_path.
    board = VirtualBoard(fake, start_timeout=10, log_path=tmp_path / "board.log")
    with pytest.raises(VirtualBoardError, match=r"exited with code 3(.|\n)*cannot open the model"):
        board.start()
    assert not board.running


def test_start_times_out_on_a_board_that_prints_nothing(tmp_path):
    fake = tmp_path / "silent"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    board = VirtualBoard(fake, start_timeout=0.5, log_path=tmp_path / "board.log")
    start = time.monotonic()
    with pytest.raises(VirtualBoardError, match="printed no pseudo-terminal path within 0.5 s"):
        board.start()
    assert time.monotonic() - start < 5
    assert not board.running


def test_second_build_is_cached(loopback_exe):
    start = time.monotonic()
    again = build_virtual_board(LoopbackTop(), "vboard_loopback", divisor=DIVISOR,
                                out_root=BUILD_ROOT)
    elapsed = time.monotonic() - start
    assert again == loopback_exe
    print(f"\ncached virtual board build: {elapsed * 1e3:.0f} ms")
    assert elapsed < 5  # Verilog conversion only; a compilation takes seconds


def test_a_top_without_the_harness_ports_is_rejected_at_once(tmp_path):
    with pytest.raises(ValueError, match=r"no output port 'uart_tx'.*ports seen: clk, led, rst"):
        build_virtual_board(NoTxTop(), "vboard_no_tx", divisor=DIVISOR, out_root=tmp_path)


def test_build_failure_shows_the_log(tmp_path):
    with pytest.raises(VerilatorBuildError, match=r"(?s)verilator failed.*--no-such-option"):
        build_virtual_board(LoopbackTop(), "vboard_loopback", divisor=DIVISOR, out_root=tmp_path,
                            build_args=["--no-such-option"])


def unused_top():
    top = LoopbackTop()
    top._MustUse__silence = True  # rejected before elaboration: no UnusedElaboratable warning
    return top


def test_build_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="divisor"):
        build_virtual_board(unused_top(), "vboard_loopback", divisor=1, out_root=tmp_path)
    with pytest.raises(ValueError, match="identifier"):
        build_virtual_board(unused_top(), "vboard-loopback", divisor=16, out_root=tmp_path)
    assert not any(tmp_path.iterdir())


def test_harness_rejects_a_bad_divisor(loopback_exe, tmp_path):
    board = VirtualBoard(loopback_exe, divisor=1, log_path=tmp_path / "board.log")
    with pytest.raises(VirtualBoardError, match="--divisor must be between 2"):
        board.start()


def test_stats_signal_does_not_kill_the_board(loopback_exe):
    with VirtualBoard(loopback_exe) as board:
        first = board.stats()
        second = board.stats()
        assert second.cycles > first.cycles
        assert board.running
    assert board.exit_stats.reason == "signal"
    # SIGTERM was ours; SIGINT from a terminal also ends the board cleanly.
    board.start()
    os.kill(board.pid, signal.SIGINT)
    assert wait_until(lambda: not board.running)
    assert board.stop().reason == "signal"
