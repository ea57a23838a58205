"""Benchmark of the link: payload throughput while streaming, as a fraction of the line rate.

Run it as ``python -m plasticore.sim.bench_link [--preset small|up5k] [--ticks N]
[--spikes-per-tick S] [--outputs-per-tick K] [--learn] [--seed S] [--poll-interval N]
[--free-running]``. It

1. builds (or reuses, from the build cache that :class:`plasticore.host.sim_backend.
   SimBackend` fills) the virtual board of the preset: the whole SoC in Verilator, its UART
   bridged bit by bit to a pseudo-terminal (:mod:`plasticore.sim.vboard`), and starts it in
   lockstep with the host (see *Measurement*);
2. loads the link workload (:class:`LinkWorkload`): every tick, ``spikes_per_tick`` distinct
   random inputs spike, and exactly ``outputs_per_tick`` neurons fire (driven by their bias, the
   last neurons of the core, so the core does as little work as possible);
3. streams it with :meth:`plasticore.host.link.Link.stream_run`, the host's credit-based input
   streaming, over a transport that records every byte each way, and checks every tick's spikes;
4. reads the harness's counters (:class:`plasticore.sim.vboard.BoardStats`: simulated cycles,
   bytes each way) before the run, after it, and twice while it streams, at the TICK frames of
   ticks ``ticks // 10`` and ``ticks - 1 - ticks // 10`` (without stopping the host);
5. prints, for the steady-state window between the two samples in the stream and for the whole
   run, each direction's payload throughput as a fraction of the line rate, how busy each line
   was and where its time went, ticks per second in simulated time, and the simulator's speed;
   and :func:`main` writes everything to ``build/bench/link-<preset>.json``.

Definitions
-----------
Line rate
    The UART carries ``clock_hz / divisor`` bits per second of simulated time, 10 bits per byte
    (8N1: start bit, 8 data bits, stop bit), so one byte occupies the line for ``10 * divisor``
    clock cycles and the line rate is ``clock_hz / (10 * divisor)`` bytes per second. Fractions
    of the line rate are fractions of that byte rate: start and stop bits are the UART's, not
    the protocol's, overhead (against the raw bit rate every fraction would be 0.8 times as
    large).
Payload
    What the application streams, counted in decoded bytes: host to board, the entries of
    ``SPIKES`` commands (2 bytes each: an input index, or the ``END_OF_TICK`` marker that ends
    one tick's inputs); board to host, the ``TICK`` frames' spike entries (2 bytes per neuron
    that fired) and tick number ``t`` (4 bytes). Everything else on the line is overhead: SLIP
    ``END`` delimiters and escape bytes, each frame's ``seq`` and ``op`` header and CRC, the
    ``queue_free`` credit in every TICK frame, and every other frame (``ACK``, ``RUN``,
    ``STATUS``, ``RUN_END``, ...).
Payload fraction
    Payload bytes times ``10 * divisor``, over the simulated cycles of the window: the share of
    the window's line time that carried payload. It is the product of the line's *busy*
    fraction (bytes on the line times ``10 * divisor`` over the cycles) and the *efficiency*
    (payload bytes over bytes on the line). The issue's target is a payload fraction of at least
    0.8 host to board, the direction that streams.
Window
    The steady state: between the two samples taken while streaming. The whole run (from before
    ``RUN`` to after ``RUN_END``, with the start-up and the last partial frames) is reported
    too.

Measurement
-----------
All rates are in simulated time: cycles the harness ran, read from its counters, not the wall
clock. The byte counts come from the harness (bytes it serialised onto ``uart_rx``, bytes it
received from ``uart_tx``) and are attributed to payload and overhead by position in the byte
streams the host recorded (:func:`classify_stream`), which both sides see identically.

The board runs in lockstep with the host (:class:`plasticore.sim.vboard.Lockstep`): each time
the harness hands the host bytes it stops its clock until the host has read them and reacted
(written its next commands, taken a sample), so the host's reaction takes no simulated time and
a run's cycle counts are the same on every run and every machine. What remains is the link
itself: the UART, the FIFOs, the engine, and the harness handing bytes over only when it looks
at the pseudo-terminal, every ``--poll-interval`` cycles (default 512) while the line is busy,
much as a USB-UART bridge batches them.

Where the host-to-board time goes: :meth:`~plasticore.host.link.Link.stream_run` keeps several
``SPIKES`` commands in flight as the credits allow, each of at least a third of the input queue
(85 of 256 entries). A command's credits come back only with the TICK frames of its ticks, which
queue one after another on the board-to-host line; what idle time is left on the host-to-board
line is reported per command as waiting for credits.

.. note::
    With ``--free-running`` the harness's clock runs on while the host (Python, on the same
    machine) reacts to an ``ACK`` or a ``TICK`` frame. Byte and frame counts are still exact;
    the cycles, hence the busy and payload fractions, then include the host's reaction
    converted at the simulator's speed (one to two million cycles per wall second, so 0.5 ms
    of Python is some 750 cycles, the time of 19 bytes at ``divisor = 4``), and vary by
    several per cent from run to run and with the machine's load: measurements of this host
    on this machine, not of the gateware and the protocol alone.

The analysis (:func:`classify_stream`, :func:`window_counts`, :func:`analyse`,
:func:`expected_payload`, :func:`format_report`) is pure and takes plain numbers and bytes, so
it is tested without a simulator.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..config import CoreConfig
from ..host.network import Network
from ..host.transport import SerialTransport, Transport
from ..protocol import END, END_OF_TICK, ESC, MAX_SPIKES, Opcode, Reply, build_frame

__all__ = [
    "PRESETS", "DEFAULT_PRESET", "DEFAULT_TICKS", "TARGET", "Kind", "LinkWorkload",
    "link_network", "link_stimulus", "expected_payload", "classify_stream", "window_counts",
    "analyse", "format_report", "run_benchmark", "main",
]

REPO = Path(__file__).resolve().parents[1]
BENCH_ROOT = REPO / "build" / "bench"

#: Virtual boards by name: :class:`~plasticore.hdl.soc.SoC` arguments over
#: :data:`plasticore.host.sim_backend.VIRTUAL_BOARD`. ``small`` is the board
#: ``tests/test_sim_backend.py`` builds (and caches); its core is so small that the link, not
#: the core, limits a stream of many input spikes per tick, which is what this benchmark
#: measures: the README's figure is the ``small`` one. ``up5k`` is the production virtual board
#: (the iCEBreaker's core); the link path (UART, FIFOs, SLIP, command engine, input queue) is the
#: same, but every input spike costs its core a row walk of 256 synapses (over 256 cycles),
#: three times a spike's 80 cycles on the line, so a stream of input spikes is core-bound there.
PRESETS = {
    "small": dict(config=CoreConfig(n_inputs=8, n_neurons=8, n_recurrent=4)),
    "up5k": {},
}
DEFAULT_PRESET = "small"
DEFAULT_TICKS = 2000
DEFAULT_SEED = 1
#: The issue's target for the payload fraction of the streaming direction (host to board).
TARGET = 0.8
#: Where the two samples in the stream are taken, as fractions of the run's ticks.
WINDOW = (0.1, 0.9)


# ---- The workload --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LinkWorkload:
    """What the benchmark streams.

    Every tick, ``spikes_per_tick`` distinct inputs, drawn at random (``seed``), spike; exactly
    ``outputs_per_tick`` neurons fire, the last ones of the core (neurons that are not
    recurrent sources first, so their spikes cause no row walks), driven by their bias
    (``bias = threshold = 1``, ``refractory = 0``, no synapses). The other neurons never fire.
    So tick ``k`` sends ``spikes_per_tick + 1`` SPIKES entries and gets a TICK frame with
    ``outputs_per_tick`` spikes, whatever the inputs.

    Parameters
    ----------
    ticks : int
        At least 10 (the steady-state window needs ticks on both sides).
    spikes_per_tick : int
        0 or more; at most the core's inputs (checked by :meth:`check`).
    outputs_per_tick : int
        0 or more; at most the core's neurons (checked by :meth:`check`).
    learn : bool
        Plasticity on during the run (off by default: it only makes the core slower).
    seed : int
        Seed of the input draw.

    Raises
    ------
    TypeError, ValueError
        On a bad parameter.
    """

    ticks: int = DEFAULT_TICKS
    spikes_per_tick: int = 8
    outputs_per_tick: int = 2
    learn: bool = False
    seed: int = DEFAULT_SEED

    def __post_init__(self):
        for name, low in (("ticks", 10), ("spikes_per_tick", 0), ("outputs_per_tick", 0),
                          ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {value!r}")
            if value < low:
                raise ValueError(f"{name} = {value} must be at least {low}")
        if not isinstance(self.learn, bool):
            raise TypeError(f"learn must be a bool, not {self.learn!r}")

    def check(self, config: CoreConfig) -> None:
        """Raise :exc:`ValueError` if the workload does not fit a core of size *config*."""
        if self.spikes_per_tick > config.n_inputs:
            raise ValueError(f"spikes_per_tick = {self.spikes_per_tick} exceeds the core's "
                             f"{config.n_inputs} inputs")
        if self.outputs_per_tick > config.n_neurons:
            raise ValueError(f"outputs_per_tick = {self.outputs_per_tick} exceeds the core's "
                             f"{config.n_neurons} neurons")

    def firing(self, config: CoreConfig) -> tuple[int, ...]:
        """The neurons that fire every tick, ascending."""
        self.check(config)
        return tuple(range(config.n_neurons - self.outputs_per_tick, config.n_neurons))


def link_network(config: CoreConfig, workload: LinkWorkload) -> Network:
    """The network of *workload* for a core of size *config*: all inputs, and all neurons in one
    population whose :meth:`LinkWorkload.firing` neurons fire every tick; no synapses."""
    firing = np.zeros(config.n_neurons, bool)
    firing[list(workload.firing(config))] = True
    net = Network("bench_link")
    net.inputs(config.n_inputs, "in")
    net.population(config.n_neurons, "neurons", threshold=np.where(firing, 1, 32767),
                   bias=firing.astype(int), leak_shift=4, refractory=0)
    return net


def link_stimulus(config: CoreConfig, workload: LinkWorkload) -> list[np.ndarray]:
    """The inputs of each tick: ``spikes_per_tick`` distinct indices, ascending."""
    workload.check(config)
    rng = np.random.default_rng([workload.seed, 2])
    return [np.sort(rng.choice(config.n_inputs, workload.spikes_per_tick, replace=False))
            for _ in range(workload.ticks)]


def expected_payload(workload: LinkWorkload) -> dict:
    """The payload bytes a run of *workload* must carry each way, from its definition.

    Host to board, 2 bytes per entry: the tick's inputs and its ``END_OF_TICK``. Board to host,
    per TICK frame: 2 bytes per neuron that fired, and 4 for ``t``.
    """
    ticks = workload.ticks
    return {
        "host_to_board": {"spikes": 2 * ticks * workload.spikes_per_tick, "tick": 2 * ticks},
        "board_to_host": {"spikes": 2 * ticks * workload.outputs_per_tick, "tick": 4 * ticks},
    }


# ---- Attributing line bytes ----------------------------------------------------------------------

class Kind:
    """What a byte on the line is (:func:`classify_stream`)."""
    SPIKES = 0   #: payload: an input index (SPIKES) or a neuron index (TICK)
    TICK = 1     #: payload: an END_OF_TICK entry (SPIKES) or the tick number t (TICK)
    SLIP = 2     #: an END delimiter or an escape byte of a payload frame
    HEADER = 3   #: seq or op of a payload frame
    CRC = 4      #: the CRC of a payload frame
    CREDIT = 5   #: queue_free in a TICK frame
    OTHER = 6    #: any byte of another frame (ACK, RUN, STATUS, RUN_END, ...)
    NAMES = ("spikes", "tick", "slip", "header", "crc", "credit", "other")


_PAYLOAD_OP = {"host_to_board": Opcode.SPIKES, "board_to_host": Reply.TICK}


def classify_stream(stream: bytes, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """Attribute every byte of a SLIP byte stream to a :class:`Kind`.

    Parameters
    ----------
    stream : bytes
        The bytes on the line, in order (frames as :func:`plasticore.protocol.build_frame` makes
        them; an unfinished frame at the end counts as :attr:`Kind.OTHER`).
    direction : str
        ``"host_to_board"`` (payload frames are ``SPIKES``) or ``"board_to_host"`` (``TICK``).

    Returns
    -------
    kinds : numpy.ndarray of uint8
        One :class:`Kind` per byte.
    ends : numpy.ndarray of int16
        Per byte: the op of the frame whose closing ``END`` it is, else -1.
    """
    if direction not in _PAYLOAD_OP:
        raise ValueError(f"direction must be one of {sorted(_PAYLOAD_OP)}, not {direction!r}")
    payload_op = _PAYLOAD_OP[direction]
    data = np.frombuffer(bytes(stream), np.uint8)
    kinds = np.full(len(data), Kind.OTHER, np.uint8)
    ends = np.full(len(data), -1, np.int16)
    delimiters: list[int] = []  # line positions of the END bytes that belong to the next frame
    body: list[int] = []        # decoded bytes of the frame in progress
    where: list[int] = []       # the line position of each decoded byte
    escapes: list[int] = []     # line positions of its escape bytes
    escaped = False
    for pos, byte in enumerate(data.tolist()):
        if byte == END:
            delimiters.append(pos)
            if body:
                ends[pos] = body[1] if len(body) > 1 else -1
                if len(body) >= 4 and body[1] == payload_op:
                    _label_payload_frame(kinds, body, where, direction)
                    kinds[delimiters + escapes] = Kind.SLIP
                delimiters = []
            body, where, escapes, escaped = [], [], [], False
        elif escaped:
            body.append(byte)
            where.append(pos)
            escaped = False
        elif byte == ESC:
            escapes.append(pos)
            escaped = True
        else:
            body.append(byte)
            where.append(pos)
    return kinds, ends


def _label_payload_frame(kinds, body, where, direction):
    n = len(body)
    labels = [Kind.HEADER, Kind.HEADER] + [Kind.SPIKES] * (n - 4) + [Kind.CRC, Kind.CRC]
    if direction == "host_to_board":
        for k in range(2, n - 3, 2):
            if body[k] | body[k + 1] << 8 == END_OF_TICK:
                labels[k] = labels[k + 1] = Kind.TICK
    elif n >= 10:
        labels[n - 8:n - 4] = [Kind.TICK] * 4
        labels[n - 4:n - 2] = [Kind.CREDIT] * 2
    kinds[where] = labels


def window_counts(kinds: np.ndarray, ends: np.ndarray, start: int, stop: int) -> dict:
    """Bytes of each :class:`Kind`, and frames completed by op, in line positions
    ``start .. stop - 1``."""
    start, stop = max(0, int(start)), min(len(kinds), int(stop))
    counts = np.bincount(kinds[start:stop], minlength=len(Kind.NAMES))
    frames = np.bincount(ends[start:stop][ends[start:stop] >= 0], minlength=256)
    return {"bytes": {name: int(counts[k]) for k, name in enumerate(Kind.NAMES)},
            "line_bytes": max(0, stop - start),
            "frames": {int(op): int(n) for op, n in enumerate(frames) if n}}


# ---- Analysis ------------------------------------------------------------------------------------

def _direction(counts: Mapping, cycles: int, byte_cycles: int, payload_op: int) -> dict:
    b = counts["bytes"]
    line = counts["line_bytes"]
    payload = b["spikes"] + b["tick"]
    framing = b["slip"] + b["header"] + b["crc"]
    share = (lambda n: n * byte_cycles / cycles) if cycles else (lambda n: float("nan"))
    frames = counts["frames"].get(int(payload_op), 0)
    return {
        "line_bytes": line, "payload_bytes": payload, "spike_bytes": b["spikes"],
        "tick_bytes": b["tick"], "framing_bytes": framing, "credit_bytes": b["credit"],
        "other_bytes": b["other"], "bytes": dict(b), "frames": dict(counts["frames"]),
        "payload_frames": frames,
        "busy": share(line), "payload_fraction": share(payload),
        "spike_fraction": share(b["spikes"]),
        "efficiency": payload / line if line else float("nan"),
        "shares": {"payload": share(payload), "framing": share(framing),
                   "credit": share(b["credit"]), "other frames": share(b["other"]),
                   "idle": 1.0 - share(line) if cycles else float("nan")},
        "idle_cycles": cycles - line * byte_cycles,
    }


def _window(raw_window: Mapping, clock_hz: float, byte_cycles: int) -> dict:
    cycles = int(raw_window["cycles"])
    h2b = _direction(raw_window["host_to_board"], cycles, byte_cycles, Opcode.SPIKES)
    b2h = _direction(raw_window["board_to_host"], cycles, byte_cycles, Reply.TICK)
    ticks = b2h["payload_frames"]
    commands = h2b["payload_frames"]
    wall = float(raw_window["wall_s"])
    entries = (h2b["spike_bytes"] + h2b["tick_bytes"]) // 2
    return {
        "cycles": cycles,
        "ticks": ticks,
        "sim_seconds": cycles / clock_hz,
        "ticks_per_sim_second": ticks * clock_hz / cycles if cycles else float("nan"),
        "cycles_per_wall_second": cycles / wall if wall > 0 else float("nan"),
        "wall_s": wall,
        "host_to_board": h2b,
        "board_to_host": b2h,
        "spikes_commands": commands,
        "entries_per_command": entries / commands if commands else float("nan"),
        "idle_cycles_per_command": h2b["idle_cycles"] / commands if commands else float("nan"),
        "line_cycles_per_tick": {
            d: w["line_bytes"] * byte_cycles / ticks if ticks else float("nan")
            for d, w in (("host_to_board", h2b), ("board_to_host", b2h))},
    }


def analyse(raw: Mapping) -> dict:
    """Everything the report prints, from the raw results of a run (:func:`run_benchmark`).

    *raw* holds ``clock_hz``, ``divisor``, ``workload`` (a :class:`LinkWorkload` as a dict),
    ``core`` (``ticks`` and ``tick_cycles`` from the core's STATUS counters) and two windows,
    ``steady`` and ``run``, each with ``cycles``, ``wall_s`` and, per direction
    (``host_to_board``, ``board_to_host``), the :func:`window_counts` of its bytes.
    """
    clock_hz, divisor = float(raw["clock_hz"]), int(raw["divisor"])
    byte_cycles = 10 * divisor
    windows = {name: _window(raw[name], clock_hz, byte_cycles) for name in ("steady", "run")}
    core = raw["core"]
    core_cycles_per_tick = (core["tick_cycles"] / core["ticks"]) if core["ticks"] else 0.0
    for w in windows.values():
        w["core_busy"] = (core_cycles_per_tick * w["ticks"] / w["cycles"]
                          if w["cycles"] else float("nan"))
        per_tick = {"core": core_cycles_per_tick, **w["line_cycles_per_tick"]}
        w["bottleneck"] = max(per_tick, key=lambda name: per_tick[name])
    fraction = windows["steady"]["host_to_board"]["payload_fraction"]
    return {
        "line_rate_bytes_per_s": clock_hz / byte_cycles,
        "byte_cycles": byte_cycles,
        "ack_cycles": len(build_frame(0, Reply.ACK, bytes(3))) * byte_cycles,
        "core_cycles_per_tick": core_cycles_per_tick,
        "windows": windows,
        "target": TARGET,
        "payload_fraction": fraction,
        "meets_target": bool(fraction >= TARGET),
    }


def _share(x: float) -> str:
    return f"{x:6.3f}"


def _direction_lines(name: str, d: Mapping) -> list[str]:
    frames = ", ".join(f"{_op_name(op)} {n}" for op, n in sorted(d["frames"].items()))
    s = d["shares"]
    return [
        f"  {name}: payload fraction {d['payload_fraction']:.3f} of the line rate "
        f"(spike entries alone {d['spike_fraction']:.3f}); line busy {d['busy']:.3f}; "
        f"efficiency {d['efficiency']:.3f} (payload / bytes on the line)",
        f"    bytes on the line {d['line_bytes']}: payload {d['payload_bytes']} (spikes "
        f"{d['spike_bytes']}, tick {d['tick_bytes']}), SLIP/header/CRC {d['framing_bytes']}, "
        f"credit {d['credit_bytes']}, other frames {d['other_bytes']}",
        f"    line time: payload {_share(s['payload'])}  framing {_share(s['framing'])}  "
        f"credit {_share(s['credit'])}  other frames {_share(s['other frames'])}  "
        f"idle {_share(s['idle'])}",
        f"    frames: {frames or 'none'}",
    ]


def _op_name(op: int) -> str:
    for enum_ in (Opcode, Reply):
        try:
            return enum_(op).name
        except ValueError:
            pass
    return f"op {op:#04x}"


_BOTTLENECK = {"core": "the core", "host_to_board": "the host->board line",
               "board_to_host": "the board->host line"}


def format_report(raw: Mapping, result: Mapping) -> str:
    """The printed report of one run."""
    wl = raw["workload"]
    cfg = raw["config"]
    lines = [
        f"link benchmark, preset {raw['preset']}: core {cfg['n_inputs']} inputs, "
        f"{cfg['n_neurons']} neurons ({cfg['n_recurrent']} recurrent), virtual board "
        f"{raw['executable']}",
        f"line: {raw['clock_hz'] / 1e6:g} MHz clock, divisor {raw['divisor']} = "
        f"{raw['clock_hz'] / raw['divisor'] / 1e6:g} Mbit/s, 8N1 = "
        f"{result['line_rate_bytes_per_s'] / 1e3:g} kB/s ({result['byte_cycles']} cycles per "
        f"byte); harness polls the host every {raw['poll_interval']} cycles; clock "
        + ("in lockstep with the host (stopped while it reacts)" if raw["lockstep"]
           else "running freely (the host's reaction time included)"),
        f"workload: {wl['ticks']} ticks, {wl['spikes_per_tick']} input spikes and "
        f"{wl['outputs_per_tick']} output spikes per tick, learning "
        f"{'on' if wl['learn'] else 'off'}, seed {wl['seed']}; queue {raw['queue_depth']} "
        f"entries, SPIKES frames of up to {MAX_SPIKES} entries",
    ]
    for name, title in (("steady", "steady state (between the TICK frames of ticks "
                         f"{raw['steady']['from_tick']} and {raw['steady']['to_tick']})"),
                        ("run", "whole run (before RUN to after RUN_END)")):
        w = result["windows"][name]
        lines += [
            "",
            f"{title}: {w['cycles']} cycles = {w['sim_seconds'] * 1e3:.3f} ms simulated, "
            f"{w['ticks']} ticks",
            *_direction_lines("host -> board", w["host_to_board"]),
            *_direction_lines("board -> host", w["board_to_host"]),
            f"  SPIKES commands {w['spikes_commands']}, {w['entries_per_command']:.1f} entries "
            f"each; host->board line idle {w['idle_cycles_per_command']:.0f} cycles per command, "
            f"waiting for credits (TICK frames and ACKs; an ACK is {result['ack_cycles']} "
            f"cycles on the line)",
            f"  ticks/s (simulated time): {w['ticks_per_sim_second']:.0f}; cycles per tick: core "
            f"{result['core_cycles_per_tick']:.0f}, line host->board "
            f"{w['line_cycles_per_tick']['host_to_board']:.0f}, line board->host "
            f"{w['line_cycles_per_tick']['board_to_host']:.0f}; core busy {w['core_busy']:.3f}; "
            f"bottleneck: {_BOTTLENECK[w['bottleneck']]}",
            f"  simulator: {w['cycles_per_wall_second'] / 1e6:.3f} M simulated cycles per wall "
            f"second, {w['wall_s']:.3f} s wall",
        ]
    fraction = result["payload_fraction"]
    verdict = "met" if result["meets_target"] else "NOT MET"
    lines += [
        "",
        f"payload fraction host -> board, steady state: {fraction:.3f} "
        f"(requirement >= {result['target']}: {verdict})",
        f"stream_run wall time {raw['stream_wall_s']:.3f} s; board started in "
        f"{raw['start_wall_s']:.2f} s",
    ]
    return "\n".join(lines)


# ---- Running it ----------------------------------------------------------------------------------

class _LockstepTransport(Transport):
    """A transport to a virtual board in lockstep (:class:`plasticore.sim.vboard.Lockstep`).

    The board stops its clock whenever it hands the host bytes, and its notice says how many.
    This transport gives the host only whole hand-offs: the bytes of a notice once all of them
    have arrived, so what the host does never depends on how the kernel split them. It lets the
    board run on when the host asks for more bytes after it has read every byte the notices
    counted: by then the host has reacted to them, and its reaction (what it wrote) reaches the
    design at the cycle the board stopped. So simulated time does not pass while the host works,
    and a run's cycle counts do not depend on the host's speed or the machine's load.
    """

    _CHUNK = 1 << 16

    def __init__(self, inner: Transport, lockstep):
        self._inner = inner
        self._lockstep = lockstep
        self._written = 0       # bytes the host wrote
        self._received = 0      # bytes read from the board
        self._delivered = 0     # bytes given to the host
        self._announced = 0     # bytes the board's notices counted
        self._stopped = False   # the board waits for a resume
        self._buffer = bytearray()  # received, not yet given to the host

    @property
    def name(self) -> str:
        return self._inner.name

    def write(self, data: bytes) -> None:
        self._inner.write(data)
        self._written += len(data)

    def _pull(self, timeout: float) -> None:
        data = self._inner.read(self._CHUNK, timeout)
        self._buffer += data
        self._received += len(data)

    def _give(self, max_bytes: int, upto: int) -> bytes:
        data = bytes(self._buffer[:min(max_bytes, upto - self._delivered)])
        del self._buffer[:len(data)]
        self._delivered += len(data)
        return data

    def read(self, max_bytes: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            self._pull(0)
            remaining = max(0.0, deadline - time.monotonic())
            if not self._stopped:
                # Bytes beyond those announced: the board has stopped after them, or is about
                # to, and its notice is due.
                due = self._received > self._announced
                count = self._lockstep.take_notice(remaining if due else 0.0)
                if count is not None:
                    self._announced += count
                    self._stopped = True
                elif due and time.monotonic() >= deadline:
                    return self._give(max_bytes, self._received)  # no notice: as they came
            if self._stopped:
                if self._received >= self._announced > self._delivered:
                    return self._give(max_bytes, self._announced)   # a whole hand-off
                if self._delivered >= self._announced:
                    self._lockstep.resume(self._written)   # the host has reacted to all
                    self._stopped = False
                    continue
            # The board runs, or the bytes it announced are still on their way.
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return b""
            self._pull(remaining)

    def close(self) -> None:
        self._inner.close()


class _RecordingTransport(Transport):
    """A transport that keeps every byte written and read, in order."""

    def __init__(self, inner: Transport):
        self._inner = inner
        self.written = bytearray()
        self.received = bytearray()

    @property
    def name(self) -> str:
        return self._inner.name

    def write(self, data: bytes) -> None:
        self._inner.write(data)
        self.written += data

    def read(self, max_bytes: int, timeout: float) -> bytes:
        data = self._inner.read(max_bytes, timeout)
        self.received += data
        return data

    def close(self) -> None:
        self._inner.close()


_STATS_LINE = re.compile(r"^VBOARD stats seq=(\d+) .*$", re.MULTILINE)


class _StatsProbe:
    """Asks a running virtual board for its counters without waiting for the answer.

    :meth:`plasticore.sim.vboard.VirtualBoard.stats` waits for the answer (polling the log every
    5 ms), which would stall the host in the middle of the stream. This sends the same
    ``SIGUSR1`` and finds the harness's numbered ``VBOARD stats seq=N`` line later. Nobody else
    may ask the board meanwhile: the harness numbers the lines it prints.
    """

    def __init__(self, board):
        self._board = board
        self._seq = max((int(n) for n in _STATS_LINE.findall(self._log())), default=0)
        self._answered = self._seq

    def _log(self) -> str:
        try:
            return Path(self._board.log_path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def request(self) -> int:
        """Send a request; its number."""
        # Two SIGUSR1 that arrive before the harness looks are one request to it: let the
        # previous one be answered first (it nearly always has been).
        if self._answered < self._seq:
            self.collect(self._seq)
        self._seq += 1
        os.kill(self._board.pid, signal.SIGUSR1)
        return self._seq

    def collect(self, seq: int, timeout: float = 10.0):
        """The :class:`~plasticore.sim.vboard.BoardStats` of request *seq*."""
        from .vboard import BoardStats, VirtualBoardError

        # Up to the line's last field and its newline: never a line the harness is writing.
        pattern = re.compile(rf"^VBOARD stats seq={seq} .*cycles_per_s=\S+\n", re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            match = pattern.search(self._log())
            if match:
                self._answered = max(self._answered, seq)
                return BoardStats.parse(match.group(0))
            if not self._board.running or time.monotonic() > deadline:
                raise VirtualBoardError(f"virtual board {self._board.executable.name} did not "
                                        f"report stats {seq} within {timeout:g} s")
            time.sleep(0.0002)

    def sample(self):
        """Request and wait: the counters now."""
        return self.collect(self.request())


def _board_args(preset: str) -> dict:
    from ..host.sim_backend import VIRTUAL_BOARD

    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, not {preset!r}")
    args = dict(VIRTUAL_BOARD)
    args.update(PRESETS[preset])
    return args


def _start_board(args: Mapping, poll_interval: int | None, lockstep: bool):
    # The same SoC, module name and build as SimBackend's, so the build it cached is reused;
    # started here to pass harness arguments and to record the transport's bytes.
    from ..hdl.soc import SoC
    from .vboard import VirtualBoard, build_virtual_board

    args = dict(args)
    cfg = args.pop("config")
    name = (f"vboard_{cfg.n_inputs}_{cfg.n_neurons}_{cfg.n_recurrent}"
            f"_b{args['banks']}_{args['memory']}")
    executable = build_virtual_board(SoC(cfg, **args), name, divisor=args["divisor"])
    extra = () if poll_interval is None else ("--poll-interval", str(poll_interval))
    board = VirtualBoard(executable, extra_args=extra, lockstep=lockstep)
    board.start()
    return board


def _window_raw(kinds_ends, before, after, offsets) -> dict:
    """Counts of both directions between two harness samples."""
    out = {"cycles": after.cycles - before.cycles, "wall_s": after.wall_s - before.wall_s}
    for direction, field in (("host_to_board", "bytes_in"), ("board_to_host", "bytes_out")):
        kinds, ends = kinds_ends[direction]
        start = getattr(before, field) - offsets[direction]
        stop = getattr(after, field) - offsets[direction]
        out[direction] = window_counts(kinds, ends, start, stop)
    return out


def run_benchmark(preset: str = DEFAULT_PRESET, workload: LinkWorkload | None = None, *,
                  poll_interval: int | None = None, lockstep: bool = True,
                  timeout: float = 20.0) -> dict:
    """Run the link benchmark once on a fresh virtual board; the raw results for
    :func:`analyse`.

    Parameters
    ----------
    preset : str
        A key of :data:`PRESETS`.
    workload : LinkWorkload, optional
        Default: ``LinkWorkload()``.
    poll_interval : int, optional
        The harness's ``--poll-interval`` (cycles between looks at the pseudo-terminal while
        busy); default the harness's, 512.
    lockstep : bool
        Run the board in lockstep with the host (its clock stopped while the host reacts), so
        the cycle counts are those of the gateware and the protocol alone and the same on every
        run; with ``False`` the clock runs freely and they include the host's reaction time.
    timeout : float
        Seconds the host waits for each reply.

    Raises
    ------
    ValueError
        On an unknown preset or a workload the core cannot take.
    RuntimeError
        If the core's spikes are not those the workload defines (the run was wrong).
    """
    from ..hdl.core import Space, Status
    from ..host.device import Device
    from ..host.link_backend import LinkBackend

    workload = LinkWorkload() if workload is None else workload
    if not isinstance(workload, LinkWorkload):
        raise TypeError(f"workload must be a LinkWorkload, not {workload!r}")
    if not isinstance(lockstep, bool):
        raise TypeError(f"lockstep must be a bool, not {lockstep!r}")
    args = _board_args(preset)
    config = args["config"]
    workload.check(config)
    stimulus = link_stimulus(config, workload)
    firing = workload.firing(config)
    k0 = int(workload.ticks * WINDOW[0])
    k1 = workload.ticks - 1 - k0

    start = time.monotonic()
    board = _start_board(args, poll_interval, lockstep)
    try:
        serial = SerialTransport(board.port, timeout=timeout)
        transport = _RecordingTransport(
            _LockstepTransport(serial, board.lockstep) if lockstep else serial)
        with Device(LinkBackend(transport, timeout=timeout)) as dev:
            start_wall = time.monotonic() - start
            dev.load(link_network(config, workload))
            link = dev.backend.link
            info = link.info
            probe = _StatsProbe(board)
            marks = {}

            def on_tick(k, _frame):
                if k in (k0, k1):
                    marks[k] = probe.request()

            before = probe.sample()
            offsets = {"host_to_board": before.bytes_in - len(transport.written),
                       "board_to_host": before.bytes_out - len(transport.received)}
            t0 = time.monotonic()
            spikes = link.stream_run(workload.ticks, stimulus, learn=workload.learn,
                                     on_tick=on_tick)
            stream_wall = time.monotonic() - t0
            after = probe.sample()
            samples = {k: probe.collect(seq) for k, seq in marks.items()}
            tick_cycles, ticks_run = (
                link.read(Space.STATUS, Status.TICK_CYCLES, 1)[0],
                link.read(Space.STATUS, Status.CLEAR, 1)[0])
            status = link.status()
            # The board's own word that lockstep held: it ran on without the host only if it
            # waited in vain for the host's bytes, and then the counts would depend on timing.
            fallbacks = [line for line in board._read_log().splitlines() if "lockstep:" in line]
    finally:
        exit_stats = board.stop()
    if lockstep and fallbacks:
        raise RuntimeError(f"lockstep did not hold, so the cycle counts depend on timing: "
                           f"{fallbacks[0]}")

    wrong = [k for k, fired in enumerate(spikes) if tuple(sorted(fired)) != firing]
    if wrong:
        raise RuntimeError(f"tick {wrong[0]} fired {spikes[wrong[0]]}, not {firing} "
                           f"({len(wrong)} wrong ticks)")
    if (status.rx_overflows, status.framing_errors, status.bad_frames) != (0, 0, 0):
        raise RuntimeError(f"the link lost data: {status}")

    streams = {"host_to_board": bytes(transport.written),
               "board_to_host": bytes(transport.received)}
    kinds_ends = {d: classify_stream(s, d) for d, s in streams.items()}
    steady = _window_raw(kinds_ends, samples[k0], samples[k1], offsets)
    steady.update(from_tick=k0, to_tick=k1)
    run = _window_raw(kinds_ends, before, after, offsets)
    return {
        "preset": preset,
        "executable": board.executable.name,
        "config": {"n_inputs": config.n_inputs, "n_neurons": config.n_neurons,
                   "n_recurrent": config.n_recurrent},
        "board": {k: v for k, v in args.items() if k != "config"},
        "clock_hz": info.clock_hz,
        "divisor": info.baud_divisor,
        "queue_depth": info.queue_depth,
        "poll_interval": 512 if poll_interval is None else poll_interval,
        "lockstep": lockstep,
        "workload": dataclasses.asdict(workload),
        "core": {"ticks": ticks_run, "tick_cycles": tick_cycles},
        "steady": steady,
        "run": run,
        "stream_wall_s": stream_wall,
        "start_wall_s": start_wall,
        "offsets": offsets,
        "recorded": {d: len(stream) for d, stream in streams.items()},
        "harness": dataclasses.asdict(exit_stats) if exit_stats is not None else None,
        "tick_frames": status.tick_frames,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m plasticore.sim.bench_link",
        description="Payload throughput of the link while streaming, as a fraction of the line "
                    "rate, on the virtual board (simulated time).")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET,
                        help="virtual board (default %(default)s; up5k is the production one)")
    parser.add_argument("--ticks", type=int, default=DEFAULT_TICKS)
    parser.add_argument("--spikes-per-tick", type=int, default=LinkWorkload.spikes_per_tick,
                        help="distinct inputs spiking per tick (default %(default)s)")
    parser.add_argument("--outputs-per-tick", type=int, default=LinkWorkload.outputs_per_tick,
                        help="neurons firing per tick (default %(default)s)")
    parser.add_argument("--learn", action="store_true", help="plasticity on")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--poll-interval", type=int, default=None,
                        help="harness cycles between looks at the pseudo-terminal (default 512)")
    parser.add_argument("--free-running", action="store_true",
                        help="let the board's clock run while the host reacts (default: "
                             "lockstep, simulated time independent of the host's speed)")
    args = parser.parse_args(argv)
    try:
        workload = LinkWorkload(ticks=args.ticks, spikes_per_tick=args.spikes_per_tick,
                                outputs_per_tick=args.outputs_per_tick, learn=args.learn,
                                seed=args.seed)
        workload.check(_board_args(args.preset)["config"])
    except ValueError as exc:
        parser.error(str(exc))
    if args.poll_interval is not None and not 1 <= args.poll_interval <= 1_000_000:
        parser.error("--poll-interval must be between 1 and 1000000")
    raw = run_benchmark(args.preset, workload, poll_interval=args.poll_interval,
                        lockstep=not args.free_running)
    result = analyse(raw)
    print(format_report(raw, result))
    BENCH_ROOT.mkdir(parents=True, exist_ok=True)
    path = BENCH_ROOT / f"link-{args.preset}.json"
    path.write_text(json.dumps({"raw": raw, "result": result}, indent=1) + "\n")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
