"""cocotb testbench library for the plasticore core: bus functional models, a TB, comparisons.

The core (:class:`plasticore.hdl.core.Core`) is driven through two streams, commands in and
responses out. This module provides, in the style of alexforencich's cocotbext libraries:

* :class:`CommandSource` and :class:`ResponseSink`, queue-based bus functional models of the two
  streams, each run by a background task, with optional pause and backpressure generators;
* :class:`CoreTB`, which owns the clock, the reset, both BFMs and the golden model, loads core
  images, runs ticks, reads the core's whole state back and compares it with
  :class:`~plasticore.sim.model.GoldenModel`;
* :class:`Mismatch`, :class:`MismatchError` and :func:`diff_snapshot`, which turn a difference
  between core and model into a report naming the tick, the neuron, source or synapse, the
  field and both values. They need no simulator, so plain pytest can check them.

Port binding
------------
Handles come from the flat Verilog ports Amaranth generates: ``clk``, ``rst`` (synchronous,
active high), ``cmd__payload`` (65 bits), ``cmd__valid``, ``cmd__ready``, ``rsp__payload``
(34 bits), ``rsp__valid``, ``rsp__ready`` and ``busy``. Payloads are whole vectors packed and
unpacked with :mod:`plasticore.sim.coreport`; the escaped per-field wires Yosys also emits are
never used.

Sampling discipline
-------------------
The BFMs drive their outputs at the **falling** clock edge and then wait for the read-only phase
of that timestep to sample the other side of the handshake, so a transfer seen there happens at
the next rising edge. Nothing depends on the simulator's ordering of events at a rising edge
(Verilator, which evaluates the whole design before calling back, shows post-edge values
there), and a consumer that drives ``ready`` combinationally from ``valid`` is handled too.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.queue import Queue
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from ..config import (NEURON_PARAM_FIELDS, REGISTERS, REGISTERS_BY_NAME, SYNAPSE_FIELDS,
                      CoreConfig)
from ..hdl.core import ADDRESS_BITS, Command, Kind, Op, Space, Status
from ..image import CoreImage, NeuronState
from .coreport import (decode_readback, load_commands, pack_command, readback_commands,
                       unpack_response)
from .cocotb_queue import QueuedSource
from .model import GoldenModel

__all__ = [
    "CLOCK_PERIOD_NS", "CommandSource", "ResponseSink", "CoreTB", "Snapshot", "Mismatch",
    "MismatchError", "diff_snapshot", "diff_spikes", "diff_counters", "pack_raw_command",
    "COUNTER_NAMES",
]

#: Clock period of every core testbench.
CLOCK_PERIOD_NS = 10

#: The event counters the core and :class:`~plasticore.sim.model.TickCounters` share, by their
#: model names; ``Status[name.upper()]`` is the core's address.
COUNTER_NAMES = ("pre_events", "synaptic_ops", "post_spikes", "ltd_writes", "ltp_writes")

_CMD_OFFSETS = {name: Command._fields[name].offset for name in ("op", "space", "addr", "data")}


def pack_raw_command(op: int, space: int, addr: int = 0, data: int = 0) -> int:
    """A command payload from raw field values, including values no enum member has.

    :func:`~plasticore.sim.coreport.pack_command` accepts only legal ``Op`` and ``Space``
    members; this packs any 2-bit op and 3-bit space, so a test can send the undefined spaces 6
    and 7.

    Raises
    ------
    ValueError
        If a field does not fit its width.
    """
    op, space = getattr(op, "value", op), getattr(space, "value", space)
    for name, value, bits in (("op", op, 2), ("space", space, 3), ("addr", addr, ADDRESS_BITS),
                              ("data", data, 32)):
        if not 0 <= int(value) < 1 << bits:
            raise ValueError(f"command field {name} = {value} does not fit {bits} bits")
    return ((int(op) << _CMD_OFFSETS["op"]) | (int(space) << _CMD_OFFSETS["space"])
            | (int(addr) << _CMD_OFFSETS["addr"]) | (int(data) << _CMD_OFFSETS["data"]))


# ---- Bus functional models ------------------------------------------------------------------

class CommandSource(QueuedSource):
    """Drives a stream (the core's ``cmd``) from a queue of payloads (queue methods:
    :class:`~.cocotb_queue.QueuedSource`).

    Contract
    --------
    A background task takes payloads (integers) from the queue in order and offers each on
    ``valid``/``payload`` from a falling clock edge; the payload transfers at the first rising
    edge at which ``ready`` is high, and is held unchanged until then (stream rules 1-3). A
    pause generator, if given, is advanced once for every cycle in which a new payload could be
    offered; a true value keeps ``valid`` low for that cycle. It never withdraws a payload
    already offered.

    Parameters
    ----------
    clock, payload, valid, ready : cocotb handles
        The clock and the stream's ports.
    pause : iterable of bool, optional
        Pause generator, e.g. ``itertools.cycle([0, 0, 1])``.

    Attributes
    ----------
    sent : int
        Payloads transferred so far.
    """

    def __init__(self, clock, payload, valid, ready, *, pause: Iterable | None = None):
        super().__init__()
        self._clock, self._payload, self._valid, self._ready = clock, payload, valid, ready
        self._pause: Iterator | None = None
        self.set_pause_generator(pause)
        self.sent = 0
        self._task = None
        self.reset()

    def reset(self) -> None:
        """Drop everything queued and anything on the port, and restart the task (the
        testbench calls this while the DUT is held in reset)."""
        if self._task is not None:
            self._task.cancel()
        self.clear()
        self._valid.value = 0
        self._active = False
        self._idle.set()
        self._task = cocotb.start_soon(self._run())

    def set_pause_generator(self, pause: Iterable | None = None) -> None:
        """Replace the pause generator (``None``: never pause)."""
        self._pause = None if pause is None else iter(pause)

    async def send(self, payload: int) -> None:
        """Queue one payload (the queue is unbounded, so this never waits)."""
        self.send_nowait(payload)

    def send_nowait(self, payload: int) -> None:
        """Queue one payload."""
        self._put([int(payload)])

    async def _run(self):
        falling = FallingEdge(self._clock)
        ready_rises = RisingEdge(self._ready)
        pending = None      # the payload to offer next, or the one on the port
        offered = False     # `pending` is on the port, waiting for ready
        valid_high = False
        while True:
            if not offered and not valid_high and pending is None and self._queue.empty():
                self._active = False
                self._idle.set()
                pending = await self._queue.get()
                self._active = True
            await falling
            if not offered:
                if pending is None and not self._queue.empty():
                    pending = self._queue.get_nowait()
                paused = self._pause is not None and next(self._pause, False)
                if pending is None or paused:
                    if valid_high:
                        self._valid.value = 0
                        valid_high = False
                    continue
                self._payload.value = pending
                if not valid_high:
                    self._valid.value = 1
                    valid_high = True
                offered = True
            await ReadOnly()
            if self._ready.value == 1:
                # Transfers at the next rising edge; the next falling edge offers the next
                # payload or drops valid.
                self.sent += 1
                pending, offered = None, False
            else:
                # The sink is busy (the core runs a command): sleep until it is ready again.
                await ready_rises


class ResponseSink:
    """Receives a stream (the core's ``rsp``) into a queue.

    Contract
    --------
    A background task drives ``ready`` at each falling clock edge (high, unless the
    backpressure generator, advanced once per cycle, yields a true value) and, when ``valid``
    and ``ready`` are both high in that cycle, takes the payload, which transfers at the next
    rising edge. Received items are ``decode(payload)``; by default the
    ``(Kind, data)`` of :func:`~plasticore.sim.coreport.unpack_response`.

    Parameters
    ----------
    clock, payload, valid, ready : cocotb handles
    backpressure : iterable of bool, optional
        Backpressure generator, e.g. ``itertools.cycle([0, 1, 1])``: 1 holds ``ready`` low.
    decode : callable, optional
        Turns the payload (an int) into the item queued.

    Attributes
    ----------
    received : int
        Items taken so far.
    """

    def __init__(self, clock, payload, valid, ready, *, backpressure: Iterable | None = None,
                 decode=unpack_response):
        self._clock, self._payload, self._valid, self._ready = clock, payload, valid, ready
        self._decode = decode
        self._queue: Queue = Queue()
        self._backpressure: Iterator | None = None
        self.set_backpressure_generator(backpressure)
        self.received = 0
        self._task = None
        self.reset()

    def reset(self) -> list:
        """Drop everything queued (returned), lower ``ready`` and restart the task."""
        if self._task is not None:
            self._task.cancel()
        self._ready.value = 0
        self._task = cocotb.start_soon(self._run())
        return self.clear()

    def set_backpressure_generator(self, backpressure: Iterable | None = None) -> None:
        """Replace the backpressure generator (``None``: always ready)."""
        self._backpressure = None if backpressure is None else iter(backpressure)

    async def recv(self):
        """The next item, waiting for it."""
        return await self._queue.get()

    def recv_nowait(self):
        """The next item; raises :class:`cocotb.queue.QueueEmpty` if none is queued."""
        return self._queue.get_nowait()

    def count(self) -> int:
        """Items received and not yet taken by :meth:`recv`."""
        return self._queue.qsize()

    def empty(self) -> bool:
        """No received item is waiting."""
        return self._queue.empty()

    def clear(self) -> list:
        """Drop every queued item; returns them."""
        items = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    async def _run(self):
        falling = FallingEdge(self._clock)
        valid_rises = RisingEdge(self._valid)
        ready = 0
        while True:
            await falling
            hold = self._backpressure is not None and next(self._backpressure, False)
            if ready != (not hold):
                ready = int(not hold)
                self._ready.value = ready
            await ReadOnly()
            if self._valid.value == 1:
                if not hold:
                    self.received += 1
                    self._queue.put_nowait(self._decode(self._payload.value.to_unsigned()))
            elif self._backpressure is None:
                # Nothing to take and always ready: sleep until the producer offers something.
                await valid_rises


# ---- Comparing the core with the golden model -----------------------------------------------

@dataclasses.dataclass(frozen=True)
class Mismatch:
    """One difference between the core and the golden model.

    Attributes
    ----------
    tick : int or None
        Index of the tick (from the last load) after which the difference was seen.
    kind : str
        ``"spike"``, ``"neuron"``, ``"source"``, ``"synapse"``, ``"core"`` or ``"counter"``.
    where : str
        What differs: ``"neuron 3"``, ``"source 17 (recurrent neuron 1)"``,
        ``"synapse (s=4, j=3)"``, ``"core"``, ``"counter"``.
    field : str
        The field: ``v``, ``th``, ``ref``, ``y``, ``spike``; ``x``, ``inh``, ``pending``,
        ``last_spikes``; ``w``, ``p``, ``c``, ``tag``, ``en``; ``t``; a counter name.
    core, model : int
        The two values.
    detail : str
        Extra context (both synapse words), or empty.
    """
    tick: int | None
    kind: str
    where: str
    field: str
    core: int
    model: int
    detail: str = ""

    def __str__(self):
        at = "" if self.tick is None else f"tick {self.tick}: "
        extra = f" ({self.detail})" if self.detail else ""
        return (f"{at}{self.where} field {self.field}: core {self.core}, "
                f"model {self.model}{extra}")


class MismatchError(AssertionError):
    """The core and the golden model differ; the message is the mismatch report.

    The report's first line names the first difference (tick, place, field, both values) and
    counts them all; then come up to ``per_kind`` lines for each kind of difference, so a
    report that starts with a neuron still shows the synapses behind it.

    Attributes
    ----------
    mismatches : list of Mismatch
    """

    def __init__(self, mismatches: Sequence[Mismatch], *, t: int | None = None,
                 per_kind: int = 12):
        if not mismatches:
            raise ValueError("MismatchError needs at least one mismatch")
        self.mismatches = list(mismatches)
        first = self.mismatches[0]
        when = "" if first.tick is None else f" at tick {first.tick}"
        if t is not None:
            when += f" (core t = {t})"
        lines = [f"core differs from the golden model{when}: {len(self.mismatches)} "
                 f"difference(s), the first: {first}"]
        kinds = dict.fromkeys(m.kind for m in self.mismatches)
        for kind in kinds:
            of_kind = [m for m in self.mismatches if m.kind == kind]
            lines += [f"  {m}" for m in of_kind[:per_kind]]
            if len(of_kind) > per_kind:
                lines.append(f"  ... and {len(of_kind) - per_kind} more {kind} difference(s)")
        super().__init__("\n".join(lines))


@dataclasses.dataclass
class Snapshot:
    """The core's state as read back through the command port.

    Attributes
    ----------
    state : NeuronState
        ``v``, ``th``, ``ref``, ``y``, ``x``, ``last_spikes`` (the pending events of the
        recurrent rows) and ``t``.
    synapses : ndarray of uint16, shape (n_sources, n_neurons), or None
        The synapse memory, when it was read.
    inhibitory : ndarray of bool, length n_sources
    pending : ndarray of bool, length n_sources
        The pending-event bit of every source, inputs included.
    """
    state: NeuronState
    synapses: np.ndarray | None
    inhibitory: np.ndarray
    pending: np.ndarray


def _source_name(config: CoreConfig, s: int) -> str:
    if s < config.n_inputs:
        return f"source {s} (input {s})"
    return f"source {s} (recurrent neuron {s - config.n_inputs})"


def diff_spikes(config: CoreConfig, tick: int, core_spikes: Iterable[int],
                model_spikes) -> list[Mismatch]:
    """The neurons whose spike in tick *tick* differs (core: indices; model: bool array)."""
    core = np.zeros(config.n_neurons, bool)
    core[list(core_spikes)] = True
    model = np.asarray(model_spikes, bool)
    return [Mismatch(tick, "spike", f"neuron {j}", "spike", int(core[j]), int(model[j]))
            for j in np.flatnonzero(core != model)]


def diff_snapshot(config: CoreConfig, snapshot: Snapshot, model: GoldenModel,
                  tick: int | None) -> list[Mismatch]:
    """Every difference between a read-back *snapshot* and *model*, neurons first.

    Compares ``v``, ``th``, ``ref``, ``y`` of every neuron; ``x``, the sign bit and the pending
    event of every source (an input's must be clear between ticks; a recurrent row's is the
    model's ``last_spikes``); the tick counter; and, when the snapshot holds them, every field
    of every synapse word.
    """
    out = []
    st, ref = snapshot.state, model.state
    for name in ("v", "th", "ref", "y"):
        core, expected = getattr(st, name), getattr(ref, name)
        out += [Mismatch(tick, "neuron", f"neuron {j}", name, int(core[j]), int(expected[j]))
                for j in np.flatnonzero(core != expected)]
    n_in, n_rec = config.n_inputs, config.n_recurrent
    expected_pending = np.concatenate([np.zeros(n_in, bool),
                                       np.asarray(ref.last_spikes[:n_rec], bool)])
    for name, core, expected in (("x", st.x, ref.x),
                                 ("inh", snapshot.inhibitory, model.inhibitory),
                                 ("pending", snapshot.pending, expected_pending)):
        core, expected = np.asarray(core, np.int64), np.asarray(expected, np.int64)
        for s in np.flatnonzero(core != expected):
            field = "last_spikes" if name == "pending" and s >= n_in else name
            out.append(Mismatch(tick, "source", _source_name(config, s), field, int(core[s]),
                                int(expected[s])))
    if int(st.t) != int(ref.t):
        out.append(Mismatch(tick, "core", "core", "t", int(st.t), int(ref.t)))
    if snapshot.synapses is not None:
        core_words = np.asarray(snapshot.synapses, np.int64)
        model_words = np.asarray(model.synapses, np.int64)
        for s, j in np.argwhere(core_words != model_words):
            cw, mw = int(core_words[s, j]), int(model_words[s, j])
            for f in reversed(SYNAPSE_FIELDS):      # w, p, c, tag, en
                cf, mf = (cw >> f.lsb) & f.mask, (mw >> f.lsb) & f.mask
                if cf != mf:
                    out.append(Mismatch(tick, "synapse", f"synapse (s={s}, j={j})", f.name, cf,
                                        mf, f"words core {cw:#06x}, model {mw:#06x}"))
    return out


def diff_counters(values: dict, model: GoldenModel, tick: int | None) -> list[Mismatch]:
    """Differences between the core's counters (by model name, plus ``ticks``) and *model*'s."""
    return [Mismatch(tick, "counter", "counter", name, int(values[name]),
                     int(getattr(model.counters, name)))
            for name in ("ticks", *COUNTER_NAMES)
            if int(values[name]) != int(getattr(model.counters, name))]


# ---- The testbench ------------------------------------------------------------------------------

class CoreTB:
    """Testbench of one core: clock, reset, command and response BFMs, and the golden model.

    Contract
    --------
    Construction starts a 10 ns clock on ``clk``, holds ``rst`` high and starts both BFMs
    (commands are not offered until something is sent; responses are always taken unless a
    backpressure generator says otherwise). :meth:`reset` must come first: it pulses ``rst`` for
    two cycles and reads the core's sizes from its STATUS space into :attr:`config`. Every test
    ends with :meth:`finish`.

    Commands answer in order, so methods that read queue all their commands first and then
    collect the answers; every answer that is not the one expected raises
    :class:`AssertionError` naming it.

    Parameters
    ----------
    dut : cocotb handle
        The Verilog top of a :class:`~plasticore.hdl.core.Core`.
    pause, backpressure : iterable of bool, optional
        Pause generator of the command source and backpressure generator of the response sink.

    Attributes
    ----------
    source : CommandSource
    sink : ResponseSink
    config : CoreConfig or None
        The core's sizes (after :meth:`reset`).
    banks : int or None
    spram : bool or None
    model : GoldenModel or None
        The model of the last image loaded, advanced by :meth:`step`.
    ticks : int
        Ticks run by :meth:`step` since the last load.
    """

    def __init__(self, dut, *, pause: Iterable | None = None,
                 backpressure: Iterable | None = None):
        self.dut = dut
        self.log = logging.getLogger("cocotb.plasticore.tb")
        dut.rst.value = 1
        self.clock = Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns")
        self.clock.start()
        self.source = CommandSource(dut.clk, dut.cmd__payload, dut.cmd__valid, dut.cmd__ready,
                                    pause=pause)
        self.sink = ResponseSink(dut.clk, dut.rsp__payload, dut.rsp__valid, dut.rsp__ready,
                                 backpressure=backpressure)
        self.config: CoreConfig | None = None
        self.banks: int | None = None
        self.spram: bool | None = None
        self.model: GoldenModel | None = None
        self.ticks = 0
        self.last_tick_number: int | None = None

    # -- reset and raw commands ------------------------------------------------------------

    async def reset(self) -> None:
        """Pulse ``rst`` for two cycles, restart both BFMs (dropping anything queued or in
        flight), and read the core's sizes."""
        self.dut.rst.value = 1
        self.source.reset()
        self.sink.reset()
        await ClockCycles(self.dut.clk, 2, rising=False)
        self.dut.rst.value = 0
        sizes, core = await self.read_many([(Op.READ, Space.STATUS, Status.CONFIG_SIZES, 0),
                                            (Op.READ, Space.STATUS, Status.CONFIG_CORE, 0)])
        self.config = CoreConfig(n_inputs=sizes & 0xFFFF, n_neurons=sizes >> 16,
                                 n_recurrent=core & 0xFFFF)
        self.banks = (core >> 16) & 0xFF
        self.spram = bool((core >> 24) & 1)
        self.model = None
        self.ticks = 0

    def send(self, op: Op, space: Space, addr: int = 0, data: int = 0) -> None:
        """Queue one command (no waiting; WRITE and SPIKE have no answer)."""
        self.source.send_nowait(pack_command(op, space, addr, data))

    async def recv(self) -> tuple[Kind, int]:
        """The next response, ``(kind, data)``."""
        return await self.sink.recv()

    async def read(self, space: Space, addr: int) -> int:
        """Read one word."""
        (value,) = await self.read_many([(Op.READ, space, addr, 0)])
        return value

    async def read_many(self, commands: Sequence[tuple]) -> list[int]:
        """Queue READ commands ``(op, space, addr, data)`` and return their DATA, in order."""
        for command in commands:
            self.send(*command)
        values = []
        for op, space, addr, _ in commands:
            kind, value = await self.sink.recv()
            if kind != Kind.DATA:
                raise AssertionError(f"READ of {Space(space).name} {addr:#x} answered "
                                     f"{kind.name} {value:#x}, not DATA")
            values.append(value)
        return values

    async def expect_error(self, op: int, space: int, addr: int, data: int = 0) -> None:
        """Send one command (raw fields allowed) and check it is answered ERROR with its addr."""
        self.source.send_nowait(pack_raw_command(op, space, addr, data))
        kind, value = await self.sink.recv()
        what = f"op {op} space {space} addr {addr:#x} data {data:#x}"
        assert (kind, value) == (Kind.ERROR, addr), (
            f"{what} answered {kind.name} {value:#x}, expected ERROR {addr:#x}")

    async def write_register(self, name: str, value: int) -> None:
        """Write global register *name* in the core and, if one is loaded, in the model."""
        register = REGISTERS_BY_NAME[name]
        self.send(Op.WRITE, Space.REG, register.address, value)
        if self.model is not None:
            model = self.model
            image = CoreImage(config=model.config, registers={**model.registers, name: value},
                              neuron_params=model.params, source_inhibitory=model.inhibitory,
                              synapses=model.synapses, state=model.state)
            # A new model re-derives everything it caches from the registers; the counters
            # carry over.
            self.model = GoldenModel(image)
            self.model.counters = model.counters

    async def set_neuron_params(self, j: int, **fields: int) -> None:
        """Change parameter fields (``threshold``, ``bias``, ...) of neuron *j* in the core and
        in the model; the other fields keep the model's values."""
        model = self._require_model()
        for name, value in fields.items():
            model.params[name][j] = value
        word = 0
        for f in NEURON_PARAM_FIELDS:
            word |= (int(model.params[f.name][j]) & f.mask) << f.lsb
        self.send(Op.WRITE, Space.NPARAM, j << 1, word & 0xFFFFFFFF)
        self.send(Op.WRITE, Space.NPARAM, (j << 1) | 1, word >> 32)

    async def set_neuron_state(self, j: int, **fields: int) -> None:
        """Change state fields (``v``, ``th``, ``ref``, ``y``) of neuron *j* in the core and in
        the model; the other fields keep the model's values."""
        model = self._require_model()
        st = model.state
        for name, value in fields.items():
            if name not in ("v", "th", "ref", "y"):
                raise ValueError(f"neuron state has no field {name!r}")
            getattr(st, name)[j] = value
        self.send(Op.WRITE, Space.NSTATE, j << 1,
                  (int(st.v[j]) & 0xFFFF) | (int(st.th[j]) << 16))
        self.send(Op.WRITE, Space.NSTATE, (j << 1) | 1, int(st.ref[j]) | (int(st.y[j]) << 4))

    def _require_model(self) -> GoldenModel:
        if self.model is None:
            raise RuntimeError("CoreTB.load() must run first")
        return self.model

    # -- images, ticks, read-back -----------------------------------------------------------

    def _require_config(self) -> CoreConfig:
        if self.config is None:
            raise RuntimeError("CoreTB.reset() must run first")
        return self.config

    async def load(self, image: CoreImage) -> None:
        """Load *image* completely and start a golden model from it.

        Raises
        ------
        ValueError
            If the image's sizes are not the core's.
        """
        config = self._require_config()
        if image.config != config:
            raise ValueError(f"image sizes {image.config} differ from the core's {config}")
        for command in load_commands(image):
            self.send(*command)
        await self.source.wait()
        self.model = GoldenModel(image)
        self.ticks = 0

    async def tick(self, inputs=None, learn: bool = True) -> list[int]:
        """Run one tick on the core only; returns the neurons that spiked, sorted.

        *inputs* is a bool array over the input axons (or None for none). Checks that the tick
        answers only SPIKE responses, each neuron at most once, then TICK_DONE, whose tick
        number is left in :attr:`last_tick_number`.
        """
        config = self._require_config()
        if inputs is not None:
            inputs = np.asarray(inputs, bool)
            if inputs.shape != (config.n_inputs,):
                raise ValueError(f"inputs has shape {inputs.shape}, expected "
                                 f"({config.n_inputs},)")
            for i in np.flatnonzero(inputs):
                self.send(Op.SPIKE, Space.SOURCE, int(i))
        self.send(Op.TICK, Space.STATUS, 0, int(bool(learn)))
        spikes = []
        while True:
            kind, value = await self.sink.recv()
            if kind == Kind.TICK_DONE:
                break
            if kind != Kind.SPIKE:
                raise AssertionError(f"TICK answered {kind.name} {value:#x} before TICK_DONE")
            if not 0 <= value < config.n_neurons:
                raise AssertionError(f"TICK answered SPIKE of neuron {value}, which does not "
                                     f"exist (n_neurons = {config.n_neurons})")
            spikes.append(value)
        duplicates = sorted(j for j in set(spikes) if spikes.count(j) > 1)
        if duplicates:
            raise AssertionError(f"TICK answered SPIKE twice for neurons {duplicates}")
        self.last_tick_number = value
        return sorted(spikes)

    async def step(self, inputs=None, learn: bool = True, *, check_state: bool = True
                   ) -> list[int]:
        """Run one tick on the core and on the model and compare them.

        Compares the spikes and the tick number, then (with *check_state*) the state of every
        neuron and source and the tick counter. On any difference it reads the synapse memory
        too and raises :class:`MismatchError` with everything that differs.
        """
        if self.model is None:
            raise RuntimeError("CoreTB.load() must run first")
        config = self._require_config()
        if inputs is None:
            inputs = np.zeros(config.n_inputs, bool)
        tick, t_before = self.ticks, int(self.model.state.t)
        expected = self.model.tick(inputs, bool(learn))
        spikes = await self.tick(inputs, learn)
        self.ticks += 1
        mismatches = diff_spikes(config, tick, spikes, expected)
        if self.last_tick_number != t_before:
            mismatches.append(Mismatch(tick, "core", "TICK_DONE", "t", self.last_tick_number,
                                       t_before))
        if check_state:
            snapshot = await self.readback(synapses=False)
            mismatches += diff_snapshot(config, snapshot, self.model, tick)
        if mismatches:
            snapshot = await self.readback(synapses=True)
            mismatches += [m for m in diff_snapshot(config, snapshot, self.model, tick)
                           if m.kind == "synapse"]
            raise MismatchError(mismatches, t=t_before)
        return spikes

    async def run(self, spikes, learn, *, check_state: bool = True) -> None:
        """Run ticks (*spikes*: ticks x inputs bools, *learn*: one flag per tick) with
        :meth:`step`, then compare the synapse memory, the counters and the flags."""
        spikes = np.asarray(spikes, bool)
        learn = np.asarray(learn, bool)
        if len(spikes) != len(learn):
            raise ValueError(f"{len(spikes)} ticks of spikes but {len(learn)} learn flags")
        for inputs, on in zip(spikes, learn):
            await self.step(inputs, bool(on), check_state=check_state)
        await self.compare(synapses=True)
        await self.check_counters()
        await self.check_flags()

    async def readback(self, synapses: bool = True) -> Snapshot:
        """Read the core's whole state (and, with *synapses*, the synapse memory)."""
        config = self._require_config()
        values = await self.read_many(readback_commands(config, synapses=synapses))
        words, state = decode_readback(config, values, synapses=synapses)
        first = (config.n_synapses if synapses else 0) + 2 * config.n_neurons
        sources = np.array(values[first:first + config.n_sources], np.int64)
        return Snapshot(state=state, synapses=words, inhibitory=((sources >> 8) & 1) == 1,
                        pending=((sources >> 9) & 1) == 1)

    async def compare(self, model: GoldenModel | None = None, tick: int | None = None, *,
                      synapses: bool = True) -> None:
        """Read the core back and raise :class:`MismatchError` if it differs from *model*.

        *model* defaults to :attr:`model` and *tick* (the tick named in the report) to the
        last tick run.
        """
        model = self.model if model is None else model
        tick = self.ticks - 1 if tick is None else tick
        snapshot = await self.readback(synapses=synapses)
        mismatches = diff_snapshot(self._require_config(), snapshot, model, tick)
        if mismatches:
            raise MismatchError(mismatches, t=int(snapshot.state.t))

    async def read_counters(self) -> dict[str, int]:
        """The core's event counters by model name, plus ``ticks`` (ticks since load)."""
        names = ("ticks", *COUNTER_NAMES)
        addresses = [Status.CLEAR] + [Status[name.upper()] for name in COUNTER_NAMES]
        values = await self.read_many([(Op.READ, Space.STATUS, a, 0) for a in addresses])
        return dict(zip(names, values))

    async def check_counters(self, model: GoldenModel | None = None) -> None:
        """Raise :class:`MismatchError` unless the core's counters equal *model*'s."""
        model = self.model if model is None else model
        mismatches = diff_counters(await self.read_counters(), model, self.ticks - 1)
        if mismatches:
            raise MismatchError(mismatches)

    async def check_flags(self) -> None:
        """Check that STATUS FLAGS is 0 (bit 0: a single-ported bank was read and written in
        one cycle)."""
        flags = await self.read(Space.STATUS, Status.FLAGS)
        assert flags == 0, (f"STATUS FLAGS = {flags:#x}: "
                            + ("a single-ported synapse bank was read and written in one cycle"
                               if flags & 1 else "unknown flag"))

    async def read_everything(self) -> dict:
        """Every readable word: registers, neuron parameters, STATUS, and a full read-back."""
        config = self._require_config()
        n = config.n_neurons
        registers = await self.read_many([(Op.READ, Space.REG, r.address, 0) for r in REGISTERS])
        params = await self.read_many([(Op.READ, Space.NPARAM, a, 0) for a in range(2 * n)])
        status = await self.read_many([(Op.READ, Space.STATUS, s, 0) for s in Status])
        snapshot = await self.readback(synapses=True)
        return {"registers": registers, "params": params, "status": status,
                "snapshot": snapshot}

    async def finish(self, settle_cycles: int = 16) -> None:
        """End of test: everything sent was taken, nothing is left over, the core is idle.

        Waits for the command queue to drain, then *settle_cycles* cycles for any response
        nobody asked for to surface.
        """
        await self.source.wait()
        await ClockCycles(self.dut.clk, settle_cycles, rising=False)
        problems = []
        if not self.source.idle():
            problems.append(f"{self.source.count()} command(s) never sent")
        left = self.sink.clear()
        if left:
            shown = ", ".join(f"{kind.name} {value:#x}" for kind, value in left[:8])
            problems.append(f"{len(left)} unexpected response(s) left over: {shown}")
        if self.dut.rsp__valid.value == 1:
            problems.append("a response is still being offered")
        if self.dut.busy.value == 1:
            problems.append("the core is still busy")
        assert not problems, "finish(): " + "; ".join(problems)
