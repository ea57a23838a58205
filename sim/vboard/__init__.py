"""The virtual board: the whole SoC simulated by Verilator, reached over a pseudo-terminal.

The host talks to a virtual board exactly as to a real one, with pyserial on a serial port; the
same protocol bits cross the same UART. Only the clock is simulated::

    exe = build_virtual_board(SoC(...), "soc", divisor=16)
    with VirtualBoard(exe) as board:
        with serial.Serial(board.port, baudrate=115200, timeout=1) as port:
            ...

:func:`build_virtual_board` converts the design to Verilog
(:func:`plasticore.sim.build.write_verilog`, content-hashed), then compiles it with the C++
harness ``harness.cpp`` of this package into one executable. The harness opens a pseudo-terminal,
prints its path, and runs the clock forever, serialising the bytes the host writes onto
``uart_rx`` (8N1, ``divisor`` cycles per bit) and deserialising ``uart_tx`` back to the host.
The build is cached by a hash of everything it depends on, so an unchanged design costs one
Verilog conversion and no compilation.

:class:`VirtualBoard` runs the executable: :meth:`~VirtualBoard.start` waits for the pseudo-terminal
path (:attr:`~VirtualBoard.port`), :meth:`~VirtualBoard.stop` ends the process and returns its
:class:`BoardStats`. The process has a pipe on stdin and exits when it closes, so a board never
outlives the Python process that started it, even one that is killed.

The clock runs freely by default: while the host reacts, simulated time passes. A board started
with ``lockstep=True`` stops its clock each time it has handed bytes to the host until the host
says it has reacted (:class:`Lockstep`), so what happens in simulated time does not depend on how
fast the host is.

The design's top level must have the ports ``clk``, ``rst`` (synchronous, active high),
``uart_rx`` (in) and ``uart_tx`` (out): what :func:`amaranth.back.verilog.convert` makes of a
component with ``uart_rx: In(1)`` and ``uart_tx: Out(1)`` that uses the ``sync`` domain without
defining it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from importlib import metadata
from pathlib import Path

from ... import cache_root, write_atomically
from ..build import DEFAULT_BUILD_ARGS, VerilatorBuildError, write_verilog
from ..toolchain import check_host_tools, prepare_environment, verilator_root

__all__ = [
    "HARNESS_PATH",
    "SIM_BUILD_ARGS",
    "SIM_MAKE_FLAGS",
    "BoardStats",
    "VirtualBoardError",
    "VerilatorBuildError",
    "build_virtual_board",
    "Lockstep",
    "VirtualBoard",
]

HARNESS_PATH = Path(__file__).resolve().with_name("harness.cpp")
"""The C++ main that turns a Verilated top level into a virtual board."""

_MODEL_CLASS = "Vvboard"  # --prefix: the harness includes <_MODEL_CLASS>.h whatever the top is

SIM_BUILD_ARGS: tuple[str, ...] = (
    "-O3",  # Verilator's own optimisations (the default level, stated for the cache key)
    "--x-assign",
    "fast",
    "--x-initial",
    "fast",  # Amaranth gives every register an initial value; X handling only costs time
    "--noassert",
    "--no-timing",  # Amaranth emits no delays; avoids the coroutine runtime and C++20
    # Yosys writes width-exact Verilog that relies on implicit truncation (a Const.bit_select()
    # becomes `assign o = 23'h53bd3b >> index;`), which Verilator reports as the fatal lint
    # warning WIDTHTRUNC. The gateware is checked by the cocotb and Amaranth tests; here it
    # only has to run.
    "-Wno-WIDTH",
)
"""Verilator arguments of a virtual board, after :data:`plasticore.sim.build.DEFAULT_BUILD_ARGS`."""

SIM_MAKE_FLAGS: tuple[str, ...] = ("OPT_FAST=-O2", "CFG_CXXFLAGS_PCH_I=-include")
"""Make variables for the C++ build.

``OPT_FAST`` compiles the model's hot code and the harness. Measured on the loopback top:
``-Os`` (Verilator's default) 17 M cycles per CPU second, ``-O2`` 26 M, ``-O3`` no better than
``-O2``. The runtime library (``OPT_GLOBAL``, ``-Os``) is not on the hot path and is compiled once
per toolchain, see :func:`build_virtual_board`.

``CFG_CXXFLAGS_PCH_I`` repairs the ``verilated.mk`` of the PyPI wheel, which leaves it empty:
a model large enough to be split into several C++ files is compiled with its precompiled header,
and without ``-include`` GCC takes the header for a linker input and fails.
"""

_RUNTIME_OBJECTS = ("verilated.o", "verilated_threads.o")
_STAMP_NAME = "plasticore-vboard.json"
_BUILD_TIMEOUT = 1800.0
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class VirtualBoardError(RuntimeError):
    """A virtual board failed to start, died, or did not stop; the message ends with its log."""


def _sha1(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha1(data).hexdigest()


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(log is empty)"


@contextmanager
def _locked(lock_path: Path, timeout: float) -> Iterator[None]:
    # flock() has no timeout of its own: poll, so a wedged builder elsewhere cannot hang us.
    deadline = time.monotonic() + timeout
    with open(lock_path, "a") as lock_file:
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"waited {timeout:.0f} s for the build lock {lock_path}, which another "
                        f"process holds; if no build is running, delete the lock file"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _compiler_identity(env: Mapping[str, str]) -> str:
    compiler = shutil.which("c++", path=env.get("PATH", ""))
    if compiler is None:
        return "c++ not found"
    try:
        result = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"c++ failed: {exc}"
    first = (result.stdout or result.stderr).strip().splitlines()
    return f"{os.path.realpath(compiler)}: {first[0] if first else result.returncode}"


def _run_logged(
    command: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path, timeout: float
) -> None:
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ (cd {cwd} && {subprocess.list2cmdline(command)})\n")
        log.flush()
        try:
            result = subprocess.run(
                list(command),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise VerilatorBuildError(
                f"{command[0]} did not finish within {timeout:.0f} s; "
                f"log {log_path} ends with:\n{_log_tail(log_path)}"
            ) from None
    if result.returncode != 0:
        raise VerilatorBuildError(
            f"{Path(command[0]).name} failed with exit code {result.returncode}; "
            f"log {log_path} ends with:\n{_log_tail(log_path)}"
        )


def _copy_atomically(source: Path, destination: Path) -> None:
    with tempfile.NamedTemporaryFile(
        dir=destination.parent, prefix=f".{destination.name}.", delete=False
    ) as temporary:
        with open(source, "rb") as data:
            shutil.copyfileobj(data, temporary)
    os.replace(temporary.name, destination)


_HARNESS_PORTS = {"clk": "input", "rst": "input", "uart_rx": "input", "uart_tx": "output"}
_PORT_DECLARATION = re.compile(r"^\s*(input|output|inout)\s+(?:(\[[^\]]*\])\s*)?(\S+)\s*;", re.M)


def _check_ports(verilog_text: str, name: str) -> None:
    # Amaranth's Verilog declares one port per line: "input clk;", "output [7:0] x;". Checked
    # here so that a wrong top level fails at once with a readable message, not in the C++.
    match = re.search(rf"^module {re.escape(name)}\((.*?)\);(.*?)^endmodule", verilog_text,
                      re.M | re.S)
    if match is None:
        return  # not Amaranth's layout: let the compiler judge
    declared = {port: (direction, width)
                for direction, width, port in _PORT_DECLARATION.findall(match.group(2))}
    problems = []
    for port, direction in _HARNESS_PORTS.items():
        if port not in declared:
            problems.append(f"no {direction} port {port!r}")
        elif declared[port] != (direction, ""):
            actual = " ".join(filter(None, declared[port]))
            problems.append(f"port {port!r} is '{actual}', not a 1-bit {direction}")
    if problems:
        raise ValueError(
            f"top level {name!r} cannot be a virtual board: {'; '.join(problems)}. The harness "
            f"drives clk, rst and uart_rx and reads uart_tx (ports seen: "
            f"{', '.join(declared) or 'none'}). A UART interface member converts to "
            f"'<name>__rx'/'<name>__tx': expose plain uart_rx/uart_tx ports on the top"
        )


def _is_built(build_dir: Path, executable: Path, stamp: str) -> bool:
    stamp_path = build_dir / _STAMP_NAME
    try:
        return executable.is_file() and stamp_path.read_text(encoding="utf-8") == stamp
    except OSError:
        return False


def build_virtual_board(
    top_elaboratable,
    name: str,
    *,
    divisor: int,
    out_root: Path | None = None,
    ports=None,
    build_args: Sequence[str] = (),
    jobs: int | None = None,
    timeout: float = _BUILD_TIMEOUT,
) -> Path:
    """Compile a design into a virtual board executable, or reuse an identical earlier build.

    Safe to call from several processes at once (pytest-xdist workers): one builds while the
    others wait on a file lock, then reuse its result. A cache hit converts the design to Verilog
    and reads two small files; it runs no tool.

    The build has two steps, both logged to ``<verilog folder>/vboard-<key>.log``::

        verilator --cc --exe --prefix Vvboard --top-module <name> -Wno-CASEINCOMPLETE -O3
            --x-assign fast --x-initial fast --noassert --no-timing -Wno-WIDTH <build_args>
            -CFLAGS "-DVBOARD_MODEL=Vvboard -DVBOARD_DEFAULT_DIVISOR=<divisor>"
            --Mdir <build dir> -o <name> <name>.v harness.cpp
        make -C <build dir> -f Vvboard.mk -j <jobs> OPT_FAST=-O2

    Verilator's runtime library (``verilated.o``, ``verilated_threads.o``) does not depend on the
    design and takes most of the compile time of a small design, so the first successful build
    keeps a copy in ``<out_root>/verilated-runtime-<key>/`` (keyed by Verilator, compiler and
    flags) and later builds of other designs reuse it.

    Parameters
    ----------
    top_elaboratable : amaranth.lib.wiring.Component or amaranth.hdl.Elaboratable
        The SoC top level, with the ports ``clk``, ``rst``, ``uart_rx`` (in), ``uart_tx`` (out)
        after conversion.
    name : str
        Name of the Verilog module and of the executable.
    divisor : int
        Clock cycles per UART bit, compiled in as the default (``--divisor`` overrides it at run
        time, see :class:`VirtualBoard`). It must match the design's UART; at least 2.
    out_root : pathlib.Path, optional
        Root of the build cache, shared with :func:`plasticore.sim.build.write_verilog`
        (default: ``sim`` in :func:`plasticore.cache_root`).
    ports : optional
        Passed to :func:`~plasticore.sim.build.write_verilog` for designs that are not components.
    build_args : sequence of str, optional
        Extra Verilator arguments, after :data:`SIM_BUILD_ARGS`.
    jobs : int, optional
        Parallel compile jobs; defaults to the number of CPUs this process may use.
    timeout : float, optional
        Seconds allowed for each build step, and for waiting on another process's build.

    Returns
    -------
    pathlib.Path
        The executable, ``<verilog folder>/vboard-<sha1[:8]>/<name>``. Pass it to
        :class:`VirtualBoard`.

    Raises
    ------
    ValueError
        If *name* is not a Verilog identifier, *divisor* is below 2, or the converted top level
        lacks one of the 1-bit ports ``clk``, ``rst``, ``uart_rx`` (inputs), ``uart_tx``
        (output).
    plasticore.sim.toolchain.ToolchainError
        If Verilator or a host tool it needs is missing.
    plasticore.sim.build.VerilatorBuildError
        If Verilator or the C++ build fails or times out; the message ends with the log's tail.
    TimeoutError
        If another process holds the build lock for longer than *timeout*.
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"Module name must be a Verilog identifier, not {name!r}")
    if isinstance(divisor, bool) or not isinstance(divisor, int) or not 2 <= divisor <= 0xFFFFFF:
        raise ValueError(f"divisor must be an integer from 2 to 16777215, not {divisor!r}")
    if out_root is None:
        out_root = cache_root() / "sim"
    verilog_path = write_verilog(top_elaboratable, name, out_root, ports=ports)
    _check_ports(verilog_path.read_text(encoding="utf-8"), name)
    harness = HARNESS_PATH.read_text(encoding="utf-8")
    verilator_args = [*DEFAULT_BUILD_ARGS, *SIM_BUILD_ARGS, *build_args]
    key = {
        "source_sha1": _sha1(verilog_path.read_bytes()),
        "harness_sha1": _sha1(harness),
        "toplevel": name,
        "divisor": divisor,
        "verilator_args": verilator_args,
        "make_flags": list(SIM_MAKE_FLAGS),
        "verilator": metadata.version("verilator"),
        "verilator_root": str(verilator_root()),
    }
    stamp = json.dumps(key, indent=2, sort_keys=True) + "\n"
    build_dir = verilog_path.parent / f"vboard-{_sha1(stamp)[:8]}"
    executable = build_dir / name
    if _is_built(build_dir, executable, stamp):
        return executable

    with _locked(build_dir.with_suffix(".lock"), timeout):
        # Another worker may have finished this build while we waited for the lock.
        if _is_built(build_dir, executable, stamp):
            return executable
        env = prepare_environment(dict(os.environ))
        check_host_tools(env)
        log_path = build_dir.with_suffix(".log")
        log_path.write_text(f"virtual board build of {name}\n{stamp}", encoding="utf-8")
        # A half-finished earlier attempt may have left truncated objects that make would trust.
        shutil.rmtree(build_dir, ignore_errors=True)
        build_dir.mkdir(parents=True)
        # Compile the exact text that was hashed, even if the package file changes meanwhile.
        (build_dir / "harness.cpp").write_text(harness, encoding="utf-8")

        verilator = str(Path(env["VERILATOR_ROOT"]) / "bin" / "verilator")
        _run_logged(
            [
                verilator,
                "--cc",
                "--exe",
                "--prefix",
                _MODEL_CLASS,
                "--top-module",
                name,
                *verilator_args,
                "-CFLAGS",
                f"-DVBOARD_MODEL={_MODEL_CLASS} -DVBOARD_DEFAULT_DIVISOR={divisor}",
                "--Mdir",
                str(build_dir),
                "-o",
                name,
                str(verilog_path),
                str(build_dir / "harness.cpp"),
            ],
            cwd=build_dir,
            env=env,
            log_path=log_path,
            timeout=timeout,
        )

        runtime_key = {
            "verilator": key["verilator"],
            "verilator_root": key["verilator_root"],
            "verilator_args": verilator_args,
            "make_flags": key["make_flags"],
            "compiler": _compiler_identity(env),
        }
        runtime_dir = (
            verilog_path.parent.parent
            / f"verilated-runtime-{_sha1(json.dumps(runtime_key, sort_keys=True))[:8]}"
        )
        reused = []
        if all((runtime_dir / obj).is_file() for obj in _RUNTIME_OBJECTS):
            now = time.time()
            for obj in _RUNTIME_OBJECTS:
                shutil.copyfile(runtime_dir / obj, build_dir / obj)
                # Every object depends on the makefile Verilator just wrote: be newer than it.
                os.utime(build_dir / obj, (now, now))
                reused.append(obj)
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(f"reusing {', '.join(reused)} from {runtime_dir}\n")

        jobs = jobs or len(os.sched_getaffinity(0)) or 1
        _run_logged(
            ["make", "-C", str(build_dir), "-f", f"{_MODEL_CLASS}.mk", f"-j{jobs}",
             *SIM_MAKE_FLAGS],
            cwd=build_dir,
            env=env,
            log_path=log_path,
            timeout=timeout,
        )
        if not executable.is_file():
            raise VerilatorBuildError(
                f"virtual board build of {name} in {build_dir} produced no executable; "
                f"log {log_path} ends with:\n{_log_tail(log_path)}"
            )
        if not reused:
            runtime_dir.mkdir(parents=True, exist_ok=True)
            (runtime_dir / "key.json").write_text(
                json.dumps(runtime_key, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
            for obj in _RUNTIME_OBJECTS:
                _copy_atomically(build_dir / obj, runtime_dir / obj)
        write_atomically(build_dir / _STAMP_NAME, stamp)
    return executable


@dataclass(frozen=True)
class BoardStats:
    """Counters a virtual board reports (on ``SIGUSR1`` and when it exits).

    Attributes
    ----------
    cycles : int
        Simulated clock cycles, reset included.
    bytes_in : int
        Bytes from the host whose serialisation onto ``uart_rx`` has begun.
    bytes_out : int
        Well-framed bytes received from ``uart_tx``.
    framing_errors : int
        Frames from ``uart_tx`` whose stop bit was low; those bytes are dropped.
    glitches : int
        Start bits on ``uart_tx`` shorter than half a bit.
    pending_in, pending_out : int
        Bytes queued in the harness towards the design and towards the host.
    peak_pending_out : int
        Most bytes ever queued towards the host (it was not reading fast enough).
    host_flushes : int
        Host-side ``tcflush`` calls seen (``pyserial`` flushes its input on ``open()``).
    wall_s : float
        Seconds since the harness started.
    cycles_per_s : float
        ``cycles / wall_s``.
    reason : str or None
        Why the harness exited (``signal``, ``stdin-closed``, ``max-cycles``, ``finish`` for a
        design that called ``$finish``), or ``None`` in a
        report from a running board.
    """

    cycles: int
    bytes_in: int
    bytes_out: int
    framing_errors: int
    glitches: int
    pending_in: int
    pending_out: int
    peak_pending_out: int
    host_flushes: int
    wall_s: float
    cycles_per_s: float
    reason: str | None = None

    @classmethod
    def parse(cls, line: str) -> BoardStats:
        """Parse a ``VBOARD stats ...`` or ``VBOARD exit ...`` line of the harness."""
        values = dict(re.findall(r"(\w+)=(\S+)", line))
        kwargs = {}
        for field in fields(cls):
            if field.name == "reason":
                kwargs["reason"] = values.get("reason")
            elif field.name in ("wall_s", "cycles_per_s"):
                kwargs[field.name] = float(values[field.name])
            else:
                kwargs[field.name] = int(values[field.name])
        return cls(**kwargs)


_PTY_LINE = re.compile(r"PTY (/\S+)")
_EXIT_LINE = re.compile(r"^VBOARD exit .*$", re.MULTILINE)


class Lockstep:
    """The host's end of a virtual board's lockstep handshake (``VirtualBoard(lockstep=True)``).

    Contract
    --------
    Each time the board has handed bytes to the pseudo-terminal it stops its clock and sends a
    *notice*: how many bytes it handed over since it last ran on. It runs on at the host's
    :meth:`resume`, and first reads the host's bytes up to the total the host names, so the
    host's reaction reaches the design at the cycle the host saw the board's bytes. There is
    at most one notice outstanding; answer each with exactly one :meth:`resume`, once the
    bytes it counts have been read and the host has reacted to them (written what it had to
    write). While the board waits it still answers ``SIGUSR1`` (stats, at the cycle it stopped)
    and ``SIGTERM``. :meth:`close` (or the host process ending) ends lockstep: the board runs
    freely again.

    The byte counts assume that the host discards nothing (no ``tcflush``) once bytes flow: the
    board waits up to 2 s for host bytes that do not come, then runs on and says so in its log.
    """

    _NOTICE = struct.Struct("=Q")

    def __init__(self, notice_fd: int, go_fd: int):
        os.set_blocking(notice_fd, False)
        self._notice_fd = notice_fd
        self._go_fd = go_fd
        self._partial = b""

    def fileno(self) -> int:
        """The descriptor notices arrive on (readable when one may be waiting), for ``select``."""
        if self._notice_fd is None:
            raise ValueError("the lockstep handshake is closed")
        return self._notice_fd

    def take_notice(self, timeout: float = 0.0) -> int | None:
        """The byte count of the next notice, waiting up to ``timeout`` seconds; ``None`` if
        none came (or the board has gone)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                chunk = os.read(self.fileno(), self._NOTICE.size - len(self._partial))
            except BlockingIOError:
                chunk = None
            if chunk == b"":
                return None   # the board has gone
            if chunk:
                self._partial += chunk
                if len(self._partial) == self._NOTICE.size:
                    (count,), self._partial = self._NOTICE.unpack(self._partial), b""
                    return count
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            select.select([self._notice_fd], [], [], remaining)

    def resume(self, host_written: int) -> None:
        """Let the board run on, after reading ``host_written`` bytes (the total the host has
        ever written to the pseudo-terminal)."""
        if self._go_fd is None:
            raise ValueError("the lockstep handshake is closed")
        try:
            os.write(self._go_fd, self._NOTICE.pack(host_written))
        except BrokenPipeError:
            pass   # the board has gone; the host finds out from its pseudo-terminal

    def close(self) -> None:
        """End lockstep (the board runs freely). Closing twice is allowed."""
        for name in ("_notice_fd", "_go_fd"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                os.close(fd)


def _reap(process: subprocess.Popen, lockstep: Lockstep | None = None) -> None:
    # Finaliser of a board that was never stopped: garbage collection or interpreter exit.
    if lockstep is not None:
        lockstep.close()
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    _close_pipes(process)


def _close_pipes(process: subprocess.Popen) -> None:
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:  # BrokenPipeError: the board has gone already
                pass


class VirtualBoard:
    """A running virtual board: a Verilated SoC behind a pseudo-terminal.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. Open :attr:`port` with
    pyserial as you would a USB-UART bridge (the baud rate is ignored). Closing and reopening the
    port is fine; like a USB-UART bridge, opening it discards bytes the board sent while nobody
    was listening (pyserial flushes its input on ``open()``).

    Parameters
    ----------
    executable : path
        A virtual board from :func:`build_virtual_board`.
    divisor : int, optional
        Clock cycles per UART bit, overriding the value compiled in. Only useful with designs that
        do not fix their own divisor, such as the loopback test top.
    max_cycles : int, optional
        Let the board exit by itself after this many cycles.
    idle_cycles : int, optional
        After this many cycles with both UART lines idle and nothing queued, the board throttles
        itself (sleeps up to 1 ms per 512 cycles) until the host writes or the design transmits,
        so an idle board does not keep a core busy. Default 2**26 (a few seconds); 0 disables it,
        which you want if the design computes for long stretches without talking.
    extra_args : sequence of str, optional
        More harness arguments (see ``<executable> --help``).
    start_timeout : float, optional
        Seconds to wait for the harness to print its pseudo-terminal path.
    stop_timeout : float, optional
        Seconds to wait for the harness to exit after ``SIGTERM`` before killing it.
    log_path : path, optional
        File for the harness's stderr (diagnostics and stats). By default a temporary file,
        deleted by :meth:`stop` when the board exited cleanly.
    lockstep : bool, optional
        Stop the clock each time the board has handed bytes to the host until the host has
        reacted, through :attr:`lockstep` (a :class:`Lockstep`); the host must then answer
        every notice, or the board waits for ever. Off by default.
    """

    def __init__(
        self,
        executable: str | os.PathLike,
        *,
        divisor: int | None = None,
        max_cycles: int | None = None,
        idle_cycles: int | None = None,
        extra_args: Sequence[str] = (),
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        log_path: str | os.PathLike | None = None,
        lockstep: bool = False,
    ) -> None:
        if not isinstance(lockstep, bool):
            raise TypeError(f"lockstep must be a bool, not {lockstep!r}")
        self.executable = Path(executable).resolve()
        self._lockstep_wanted = lockstep
        self._lockstep: Lockstep | None = None
        args = []
        if divisor is not None:
            args += ["--divisor", str(int(divisor))]
        if max_cycles is not None:
            args += ["--max-cycles", str(int(max_cycles))]
        if idle_cycles is not None:
            args += ["--idle-cycles", str(int(idle_cycles))]
        self.args: tuple[str, ...] = (*args, *extra_args)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._log_path_given = None if log_path is None else Path(log_path)
        self.log_path: Path | None = None
        self._process: subprocess.Popen | None = None
        self._finalizer = None
        self._port: str | None = None
        self._stats_seq = 0
        self.exit_stats: BoardStats | None = None
        self.returncode: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> VirtualBoard:
        """Launch the board and wait until its pseudo-terminal exists.

        Returns
        -------
        VirtualBoard
            ``self``, for chaining.

        Raises
        ------
        VirtualBoardError
            If the board is already running, or the harness exits or prints no pseudo-terminal
            path within *start_timeout*; the message ends with the harness's output.
        """
        if self.running:
            raise VirtualBoardError(f"virtual board {self.executable.name} is already running")
        if not self.executable.is_file():
            raise VirtualBoardError(f"virtual board executable {self.executable} does not exist")
        if self._log_path_given is None:
            fd, name = tempfile.mkstemp(prefix=f"vboard-{self.executable.name}-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        else:
            self.log_path = self._log_path_given
        self._port = None
        self._stats_seq = 0
        self.exit_stats = None
        self.returncode = None
        args, pass_fds, child_ends = list(self.args), (), ()
        if self._lockstep_wanted:
            notice_r, notice_w = os.pipe()
            go_r, go_w = os.pipe()
            self._lockstep = Lockstep(notice_r, go_w)
            args += ["--lockstep", f"{notice_w},{go_r}"]
            pass_fds = child_ends = (notice_w, go_r)
        try:
            with open(self.log_path, "wb") as log:
                # stdin is a pipe that only we hold: when this process dies, the board sees
                # end-of-file and exits. stderr goes to a file, which never fills up and blocks
                # it.
                try:
                    self._process = subprocess.Popen(
                        [str(self.executable), *args],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=log,
                        close_fds=True,
                        pass_fds=pass_fds,
                    )
                except OSError as exc:
                    raise VirtualBoardError(
                        f"cannot run virtual board {self.executable}: {exc}"
                    ) from exc
        except BaseException:
            self._close_lockstep()
            raise
        finally:
            for fd in child_ends:   # the board's ends of the lockstep pipes are its own now
                os.close(fd)
        self._finalizer = weakref.finalize(self, _reap, self._process, self._lockstep)
        try:
            self._port = self._read_port()
        except BaseException:
            self._kill()
            raise
        return self

    def _read_port(self) -> str:
        process = self._process
        deadline = time.monotonic() + self.start_timeout
        output = b""
        fd = process.stdout.fileno()
        while b"\n" not in output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise VirtualBoardError(
                    f"virtual board {self.executable.name} printed no pseudo-terminal path within "
                    f"{self.start_timeout:g} s (stdout so far {output!r}); "
                    f"its log {self.log_path} ends with:\n{_log_tail(self.log_path)}"
                )
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                try:
                    code = process.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    code = "unknown (still running)"
                raise VirtualBoardError(
                    f"virtual board {self.executable.name} exited with code {code} before "
                    f"printing its pseudo-terminal path (stdout {output!r}); "
                    f"its log {self.log_path} ends with:\n{_log_tail(self.log_path)}"
                )
            output += chunk
        line = output.split(b"\n", 1)[0].decode("utf-8", errors="replace")
        match = _PTY_LINE.fullmatch(line.strip())
        if match is None:
            raise VirtualBoardError(
                f"virtual board {self.executable.name} printed {line!r} instead of 'PTY <path>'"
            )
        return match.group(1)

    def _close_lockstep(self) -> None:
        if self._lockstep is not None:
            self._lockstep.close()
            self._lockstep = None

    def _kill(self) -> None:
        # A start that failed: the process is useless, whatever state it is in.
        self._close_lockstep()
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            self._wait_killed(process)
        self._reap(process)

    def _wait_killed(self, process) -> None:
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            pass

    def _reap(self, process) -> None:
        """Release what a process that has ended (or been given up on) still holds."""
        _close_pipes(process)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self.returncode = process.returncode

    def stop(self) -> BoardStats | None:
        """Stop the board: ``SIGTERM``, then ``SIGKILL`` after *stop_timeout*.

        Returns
        -------
        BoardStats or None
            The harness's final counters, also kept in :attr:`exit_stats`; ``None`` if it never
            started or died without reporting them. Calling ``stop`` again returns the same.

        Raises
        ------
        VirtualBoardError
            If the board had died by itself (exit code not 0, or killed by a signal we did not
            send), or had to be killed; the message ends with its log.
        """
        process = self._process
        if process is None:
            return self.exit_stats
        self._process = None
        died_by_itself = process.poll() is not None
        # A board waiting for the host in lockstep still ends on SIGTERM; closing the pipes
        # first also lets it run out its last cycles freely.
        self._close_lockstep()
        killed = False
        if not died_by_itself:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                killed = True
                self._wait_killed(process)
        self._reap(process)
        log_text = self._read_log()
        exits = _EXIT_LINE.findall(log_text)
        self.exit_stats = BoardStats.parse(exits[-1]) if exits else None
        problem = None
        if killed:
            problem = f"did not exit within {self.stop_timeout:g} s of SIGTERM and was killed"
        elif self.returncode != 0:
            problem = f"exited with code {self.returncode}"
        if problem:
            raise VirtualBoardError(
                f"virtual board {self.executable.name} {problem}; "
                f"its log {self.log_path} ends with:\n{_log_tail(self.log_path)}"
            )
        if self._log_path_given is None and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
        return self.exit_stats

    def __enter__(self) -> VirtualBoard:
        return self.start()

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            self.stop()
        except VirtualBoardError:
            if exc_type is None:
                raise
            # Do not hide the exception that ended the block; the log is kept for inspection.

    # -- state ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the board process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the board, or ``None`` when it is not started."""
        return None if self._process is None else self._process.pid

    @property
    def lockstep(self) -> Lockstep | None:
        """The lockstep handshake of a running board started with ``lockstep=True``, else
        ``None``."""
        return self._lockstep if self._process is not None else None

    @property
    def port(self) -> str:
        """Path of the pseudo-terminal to open with pyserial (``/dev/pts/N``)."""
        if self._port is None or self._process is None:
            raise VirtualBoardError("the virtual board is not running; call start() first")
        return self._port

    def _read_log(self) -> str:
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stats(self, timeout: float = 5.0) -> BoardStats:
        """Ask the running board for its counters (``SIGUSR1``) and wait for the answer.

        Raises
        ------
        VirtualBoardError
            If the board is not running or does not answer within *timeout* seconds.
        """
        if not self.running:
            raise VirtualBoardError("the virtual board is not running")
        self._stats_seq += 1
        pattern = re.compile(rf"^VBOARD stats seq={self._stats_seq} .*$", re.MULTILINE)
        self._process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while True:
            match = pattern.search(self._read_log())
            if match:
                return BoardStats.parse(match.group(0))
            if not self.running:
                raise VirtualBoardError(
                    f"virtual board {self.executable.name} exited while asked for stats; "
                    f"its log {self.log_path} ends with:\n{_log_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                raise VirtualBoardError(
                    f"virtual board {self.executable.name} did not report stats within "
                    f"{timeout:g} s"
                )
            time.sleep(0.005)

    def __repr__(self) -> str:
        state = f"running on {self._port}" if self.running else "stopped"
        return f"<VirtualBoard {self.executable.name} {state}>"
