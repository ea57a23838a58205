"""The plasticore core: neurons, synapse memory, learning engine and tick sequencer.

The core computes exactly what ``docs/core-model.md`` defines, one tick per ``TICK`` command, and
is driven through a command port (a stream of :data:`Command` in, a stream of :data:`Response`
out) through which a host or a testbench loads the core image, injects input spikes, runs ticks
and reads everything back.

Microarchitecture
-----------------
The synapse memory is split into ``banks`` banks with **skewed** storage: synapse ``(s, j)``
lives in bank ``(s + j) mod B`` at address ``s * (N / B) + j div B``. A row walk (the synapses
of one source, phase B) and a column walk (the synapses onto one neuron, phase D) therefore both
touch every bank on every step, so ``B`` synapses move per step in either direction. Lane ``m``
of the learning engine meets bank ``(m + rot) mod B``, where ``rot`` is ``s mod B`` in a row
walk and ``j mod B`` in a column walk. Per-neuron walk data (input current ``I``, postsynaptic
trace ``y``, refractory count) sits in lane memories by ``j mod B``; per-source data (trace
``x``, sign, pending event) by ``s mod B``.

A walk step goes down one pipeline: read (bank, lane memories, and a draw from the lane's hash
pipeline), add the weight to ``I`` (row walks), :class:`~.datapath.SynapseUpdate`, write back.
A column walk visits only the groups of ``B`` sources with a nonzero presynaptic trace, which
phase A lists, since potentiation needs ``x > 0``: with sparse activity phase D costs a few
steps per spike instead of ``n_sources / B`` (a core built with ``trace_list=False`` keeps no
list and visits every group). Within a walk every address is distinct and walks
of one phase touch disjoint words, so the
pipeline issues back to back; it drains between phases. With block RAM (separate read and
write ports) a step issues every cycle; with single-ported SPRAM a learning walk issues every
other cycle, reads on even and write-backs on odd cycles, so both kinds keep every port busy.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import (LEAK_OFF, REGISTERS, STREAM_LTD, STREAM_LTP, CoreConfig)
from .datapath import (NeuronUpdate, SynapseUpdate, bump, current_bits, decay,
                       feature_value_ok, low_mask, lt_const)
from .layouts import NeuronParams, Registers, SynapseWord, register_field
from .rng import HashHalves, HashPipeline
from .synmem import MEMORY_KINDS, SynapseBank

__all__ = ["Core", "Op", "Space", "Kind", "Status", "Command", "Response", "ADDRESS_BITS"]

ADDRESS_BITS = 28
_INDEX_BITS = 14


class Op(enum.Enum, shape=2):
    """What a command does."""
    READ = 0    #: respond with the word at (space, addr)
    WRITE = 1   #: write data to (space, addr); no response
    SPIKE = 2   #: input axon ``addr`` spikes in the next tick; no response
    TICK = 3    #: run one tick (data bit 0: learn); responds SPIKE per spike, then TICK_DONE


class Space(enum.Enum, shape=3):
    """Address spaces of the command port."""
    REG = 0     #: global register ``addr`` (see plasticore.config.REGISTERS)
    SYN = 1     #: synapse word; addr = source << 14 | neuron
    NPARAM = 2  #: neuron parameters; addr = neuron << 1 | half (bits 31:0, 63:32)
    NSTATE = 3  #: neuron state; addr = neuron << 1 | half: 0 = v | th << 16, 1 = ref | y << 4
    SOURCE = 4  #: source state; addr = source: x | inhibitory << 8 | pending << 9
    STATUS = 5  #: counters and configuration (see Status); writable: T, and CLEAR


class Kind(enum.Enum, shape=2):
    """What a response carries."""
    DATA = 0       #: the word a READ asked for
    SPIKE = 1      #: a neuron that spiked in the tick (data = neuron index)
    TICK_DONE = 2  #: the tick finished (data = its tick number)
    ERROR = 3      #: the command was refused and changed nothing (data = its addr)


class Status(enum.IntEnum):
    """Addresses of the STATUS space.

    ``LAST_TICK_CYCLES``, ``TICK_CYCLES``, ``BANK_ACCESSES`` and ``WALK_CYCLES`` measure how long
    ticks take and how busy the synapse ports are, for benchmarks; they count only in a core
    built with ``instrument=True`` and read 0 otherwise (a write of ``CLEAR`` clears them either
    way).
    """
    T = 0                  #: tick counter (read/write)
    CLEAR = 1              #: write: clear the counters below; read: ticks run
    PRE_EVENTS = 2
    SYNAPTIC_OPS = 3
    POST_SPIKES = 4
    LTD_WRITES = 5
    LTP_WRITES = 6
    LAST_TICK_CYCLES = 7   #: clock cycles the last tick took, command to TICK_DONE (0 unless
    #: instrumented)
    TICK_CYCLES = 8        #: clock cycles of all ticks (0 unless instrumented)
    BANK_ACCESSES = 9      #: synapse-bank reads plus writes during walks (0 unless instrumented)
    WALK_CYCLES = 10       #: cycles in which a walk was issuing or in flight (0 unless
    #: instrumented)
    CONFIG_SIZES = 11      #: n_inputs | n_neurons << 16 (read-only)
    CONFIG_CORE = 12       #: n_recurrent | banks << 16 | spram << 24 (read-only)
    FLAGS = 13             #: bit 0: a single-ported bank was read and written in one cycle


#: What the command port takes.
Command = data.StructLayout({"op": Op, "space": Space, "addr": ADDRESS_BITS, "data": 32})
#: What the response port gives.
Response = data.StructLayout({"kind": Kind, "data": 32})

_COUNTERS = (Status.CLEAR, Status.PRE_EVENTS, Status.SYNAPTIC_OPS, Status.POST_SPIKES,
             Status.LTD_WRITES, Status.LTP_WRITES, Status.LAST_TICK_CYCLES, Status.TICK_CYCLES,
             Status.BANK_ACCESSES, Status.WALK_CYCLES)

_INSTRUMENT_COUNTERS = (Status.BANK_ACCESSES, Status.WALK_CYCLES)

#: Where the copy of the registers starts in the counters memory.
_REG_COPY = 32
assert len(REGISTERS) <= _REG_COPY and [r.address for r in REGISTERS] == list(range(len(REGISTERS)))



def _nlane_layout(config):
    """Per-neuron walk data: input current (as wide as the core's sources need), y, ref."""
    return data.StructLayout({"current": signed(current_bits(config.n_sources)), "y": 8,
                              "ref": 4})

_SLane = data.StructLayout({"x": 8, "inh": 1, "pending": 1})
_NState = data.StructLayout({"v": signed(16), "th": 16})


#: Memory attributes of a memory whose reads never meet a write to the same word in the same
#: cycle, or ignore what they read then: Yosys need not make a read during a write return the
#: old word (on iCE40 that costs a delayed copy of the write port in flip-flops). Yosys applies
#: it when it merges the register behind an asynchronous read port (see
#: :func:`registered_read_port`).
NO_RW_CHECK = {"no_rw_check": 1}


def registered_read_port(m, memory, name):
    """A synchronous, non-transparent read port of ``memory`` (data one cycle after the
    address, the word as it was before a write in the same cycle), made of an asynchronous read
    port and a register, which Yosys merges into the block RAM. Returns an object with ``addr``,
    ``data`` and ``en`` (always enabled; ``en`` is there for symmetry and ignored)."""
    port = memory.read_port(domain="comb")
    data = Signal(memory.shape, name=f"{name}_rdata", reset_less=True)
    m.d.sync += data.eq(port.data)
    return _ReadPort(port.addr, data, Signal(name=f"{name}_ren"))


class _ReadPort:
    def __init__(self, addr, data, en):
        self.addr, self.data, self.en = addr, data, en


def register_value_ok(m, address, value):
    """A signal: ``value`` is legal for the register at ``address`` (any value for an address
    that is not a register's). Built from each register's width and bounds: a zero test of the
    bits above the width (shared by every width) and a comparison with a constant, no
    comparator between signals."""
    zero_above = {}
    for width in sorted({r.width for r in REGISTERS}, reverse=True):
        above = value[width:]
        zero_above[width] = Signal(name=f"value_below_{width}_bits")
        wider = [w for w in zero_above if w > width]
        if wider:
            narrowest = min(wider)
            m.d.comb += zero_above[width].eq(zero_above[narrowest]
                                             & (value[width:narrowest] == 0))
        else:
            m.d.comb += zero_above[width].eq(above == 0 if len(above) else 1)
    ok = Signal()
    m.d.comb += ok.eq(1)
    with m.Switch(address):
        for r in REGISTERS:
            with m.Case(r.address):
                low = value[:r.width]
                check = zero_above[r.width] & lt_const(low, r.hi + 1)
                if r.lo > 0:
                    check &= ~lt_const(low, r.lo)
                m.d.comb += ok.eq(check)
    return ok


def _register_address(name):
    return next(r.address for r in REGISTERS if r.name == name)


def _join(high, scale, low):
    """``high * scale + low`` for ``0 <= low < scale``: a concatenation when ``scale`` is a power
    of two (no adder), else the arithmetic."""
    if scale & (scale - 1) == 0:
        bits = scale.bit_length() - 1
        return Cat(low[:bits], high) if bits else high
    return high * scale + low


def _log2(n):
    return n.bit_length() - 1


class Core(wiring.Component):
    """A plasticore core.

    Contract
    --------
    Commands are taken one at a time: ``cmd.ready`` is high only while the core is idle, and a
    command runs to completion (including every response it produces) before the next is taken.
    Responses follow the stream rules; a response that is not taken holds the core (a tick
    waits with its spikes), so nothing is ever dropped. READ produces one DATA response; WRITE
    and SPIKE produce none; TICK produces a SPIKE response for each neuron that fired (in no
    particular order), then TICK_DONE; any command with an out-of-range address, register value
    or space produces one ERROR response and changes nothing. ``SPIKE`` marks an input axon as
    spiking in the next tick (twice is the same as once).

    Reset sets the registers to their defaults, the tick counter and all counters to 0, and
    leaves the memories as they were: a host loads a complete image before running. (The
    counters other than the benchmark ones live in a small memory, which the core zeroes in the
    first cycles after reset, and after a write of ``CLEAR``, before it takes a command.)

    Parameters
    ----------
    config : CoreConfig
        Sizes; ``n_inputs``, ``n_neurons`` and ``n_recurrent`` must be multiples of ``banks``.
    banks : int
        Synapse memory banks, a power of two from 1 to 16.
    memory : "bram" or "spram"
        Kind of synapse bank (see :class:`~.synmem.SynapseBank`).
    hash_rounds_per_stage : int
        Rounds of the random-number permutation between pipeline registers (1, 2, 4 or 8).
    instrument : bool
        Build the benchmark counters ``BANK_ACCESSES`` and ``WALK_CYCLES`` (see
        :class:`Status`); without them they read 0.
    trace_list : bool
        List, in phase A, the groups of sources with a nonzero presynaptic trace, so that a
        column walk (phase D) visits only those. Without the list a column walk visits every
        group: the same results, more cycles per tick when few sources are active, less logic.
    wta, adaptive_threshold : bool
        Build the winner-take-all pool and the adaptive threshold. A core built without one
        behaves as the model does for images that do not use it (no neuron with ``wta`` set;
        ``th_plus`` and ``th`` zero everywhere), and with ``validate`` refuses writes that would
        use it (see :func:`~.datapath.feature_value_ok`).
    validate : bool
        Check every command's address, space and register value and answer a bad one with
        ``ERROR`` (the contract above). ``False`` leaves the checks out, for a core behind
        :class:`~.engine.CommandEngine`, which refuses bad commands before they reach the core:
        a bad command then has undefined effects.

    Members
    -------
    cmd : In(stream.Signature(Command))
    rsp : Out(stream.Signature(Response))
    busy : Out(1)
        A command is in progress.
    """

    def __init__(self, config: CoreConfig, *, banks: int = 4, memory: str = "bram",
                 hash_rounds_per_stage: int = 2, instrument: bool = True,
                 trace_list: bool = True, wta: bool = True, adaptive_threshold: bool = True,
                 validate: bool = True):
        if not isinstance(config, CoreConfig):
            raise TypeError(f"config must be a CoreConfig, not {config!r}")
        if banks not in (1, 2, 4, 8, 16):
            raise ValueError(f"banks must be 1, 2, 4, 8 or 16, not {banks!r}")
        for name in ("n_inputs", "n_neurons", "n_recurrent"):
            value = getattr(config, name)
            if value % banks:
                raise ValueError(f"CoreConfig.{name} = {value} must be a multiple of "
                                 f"banks = {banks}")
        if memory not in MEMORY_KINDS:
            raise ValueError(f"memory must be one of {MEMORY_KINDS}, not {memory!r}")
        self._config, self._banks, self._memory = config, banks, memory
        if hash_rounds_per_stage not in (1, 2, 4, 8):
            raise ValueError(f"hash_rounds_per_stage must be 1, 2, 4 or 8, not "
                             f"{hash_rounds_per_stage!r}")
        self._hash_rounds_per_stage = hash_rounds_per_stage
        self._instrument = bool(instrument)
        self._validate = bool(validate)
        self._trace_list = bool(trace_list)
        self._wta = bool(wta)
        self._adaptive_threshold = bool(adaptive_threshold)
        super().__init__({
            "cmd": In(stream.Signature(Command)),
            "rsp": Out(stream.Signature(Response)),
            "busy": Out(1),
        })

    @property
    def config(self) -> CoreConfig:
        return self._config

    @property
    def banks(self) -> int:
        return self._banks

    @property
    def memory(self) -> str:
        return self._memory

    @property
    def instrument(self) -> bool:
        return self._instrument

    @property
    def trace_list(self) -> bool:
        return self._trace_list

    @property
    def wta(self) -> bool:
        return self._wta

    @property
    def adaptive_threshold(self) -> bool:
        return self._adaptive_threshold

    @property
    def validate(self) -> bool:
        return self._validate

    @property
    def bank_depth(self) -> int:
        return self._config.n_sources * (self._config.n_neurons // self._banks)

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        B, LB = self._banks, _log2(self._banks)
        N, S = cfg.n_neurons, cfg.n_sources
        NB, SB = N // B, S // B
        spram = self._memory == "spram"

        def lane_of(index):
            return index[:LB] if LB else Const(0, 1)

        def row_of(index):
            return index[LB:]

        def rotated(values, lane, rot):
            """values[(lane + rot) mod B] (lane a Python int, rot a signal)."""
            if B == 1:
                return values[0]
            return Array(values)[(lane + rot)[:LB]]

        # ---- State ---------------------------------------------------------------------------
        regs = Signal(Registers, init={register_field(r.name): r.default for r in REGISTERS})
        t = Signal(32)
        # The benchmark counters count every cycle, so they are registers; the others change
        # once a tick and live in a small memory, addressed by their STATUS address: at the end
        # of every tick a fold adds the tick's counts to them (see FOLD).
        counters = {c: Signal(32, name=f"count_{c.name.lower()}") for c in _INSTRUMENT_COUNTERS
                    if self._instrument}
        # The same memory keeps a copy of the registers, at _REG_COPY + address, from which
        # READs of the REG space are answered (a memory read instead of a wide multiplexer).
        counter_init = [0] * (2 * _REG_COPY)
        counter_init[Status.CONFIG_SIZES] = cfg.n_inputs | (cfg.n_neurons << 16)
        counter_init[Status.CONFIG_CORE] = cfg.n_recurrent | (B << 16) | (int(spram) << 24)
        # On an ECP5 (which has distributed RAM) the 64 words go to LUTs: the largest presets
        # give every block RAM to the synapses.
        counter_attrs = dict(NO_RW_CHECK)
        if getattr(platform, "family", None) == "ecp5":
            counter_attrs["ram_style"] = "distributed"
        m.submodules.counters = counter_mem = Memory(shape=32, depth=2 * _REG_COPY,
                                                     init=counter_init, attrs=counter_attrs)
        counter_w = counter_mem.write_port()
        counter_r = registered_read_port(m, counter_mem, "counters")
        # This tick's counts.
        pre_tick = Signal(range(cfg.n_sources + 1))
        ltd_tick = Signal(range(cfg.n_synapses + 1))
        ltp_tick = Signal(range(cfg.n_synapses + 1))
        conflict = Signal()

        banks = []
        for b in range(B):
            bank = SynapseBank(self.bank_depth, self._memory)
            m.submodules[f"bank{b}"] = bank
            banks.append(bank)
        m.d.comb += conflict.eq(Cat(bank.conflict for bank in banks).any())

        def lane_memories(prefix, shape, depth):
            reads, writes = [], []
            for lane in range(B):
                mem = Memory(shape=shape, depth=max(depth, 1), init=[], attrs=NO_RW_CHECK)
                m.submodules[f"{prefix}{lane}"] = mem
                writes.append(mem.write_port())
                reads.append(registered_read_port(m, mem, f"{prefix}{lane}"))
            return reads, writes

        nlane_r, nlane_w = lane_memories("nlane", _nlane_layout(cfg), NB)
        slane_r, slane_w = lane_memories("slane", _SLane, SB)

        m.submodules.nparam = nparam_mem = Memory(shape=unsigned(64), depth=N, init=[],
                                                  attrs=NO_RW_CHECK)
        nparam_w = nparam_mem.write_port(granularity=32)
        nparam_r = registered_read_port(m, nparam_mem, "nparam")
        params = data.View(NeuronParams, nparam_r.data)
        m.submodules.nstate = nstate_mem = Memory(shape=_NState, depth=N, init=[],
                                                  attrs=NO_RW_CHECK)
        nstate_w = nstate_mem.write_port()
        nstate_r = registered_read_port(m, nstate_mem, "nstate")

        PreEntry = data.StructLayout({"q": range(max(SB, 2)), "mask": B, "inh": B})
        m.submodules.prelist = prelist_mem = Memory(shape=PreEntry, depth=max(SB, 1), init=[],
                                                    attrs=NO_RW_CHECK)
        prelist_w = prelist_mem.write_port()
        prelist_r = registered_read_port(m, prelist_mem, "prelist")
        # Groups q of B sources with a nonzero presynaptic trace: the only rows a column walk
        # can change (potentiation needs x > 0), listed by phase A.
        m.submodules.xlist = xlist_mem = Memory(shape=range(max(SB, 2)), depth=max(SB, 1),
                                                init=[], attrs=NO_RW_CHECK)
        xlist_w = xlist_mem.write_port()
        xlist_r = registered_read_port(m, xlist_mem, "xlist")
        m.submodules.spikelist = spikelist_mem = Memory(shape=range(max(N, 2)), depth=N, init=[],
                                                        attrs=NO_RW_CHECK)
        spikelist_w = spikelist_mem.write_port()
        spikelist_r = registered_read_port(m, spikelist_mem, "spikelist")

        # Reads have no side effects: every memory's read port is always enabled except the
        # synapse banks, whose reads count as port accesses.
        for port in (*nlane_r, *slane_r, nparam_r, nstate_r, prelist_r, spikelist_r, xlist_r):
            m.d.comb += port.en.eq(1)

        # ---- Random numbers ------------------------------------------------------------------
        key = Signal(32)
        slot = Signal()                 # SPRAM: 0 = read slot, 1 = write slot
        m.d.sync += slot.eq(~slot)
        # With one bank (and a power-of-two neuron count) a synapse's bank address is the
        # concatenation (neuron, source) in both kinds of walk, which is all its draw depends
        # on; so the draw is computed from stage 1's tag and registered inside SynapseUpdate,
        # and the hash needs no input multiplexer and no output register of its own.
        draw_from_tag = B == 1 and NB & (NB - 1) == 0
        # A single-ported bank's learning walk needs a draw every other cycle at most: with
        # four rounds a stage, one set of four rounds serves both passes (odd cycles: the first
        # four, of stage 1's tag; even cycles: the last four, for stage 2).
        halves = draw_from_tag and spram and self._hash_rounds_per_stage == 4
        hashes = []
        for lane in range(B):
            if halves:
                h = HashHalves()
                m.d.comb += h.first.eq(slot)
            else:
                h = HashPipeline(self._hash_rounds_per_stage,
                                 registered_output=not draw_from_tag)
            m.submodules[f"hash{lane}"] = h
            hashes.append(h)
        LH = hashes[0].latency + draw_from_tag
        keyhash = hashes[0]   # idle while the tick key is computed, so it computes it

        # ---- The walk pipeline ---------------------------------------------------------------
        # Stage 0 issues; the lane memories' data and the banks' data arrive in stage 1; draws
        # in stage LH; SynapseUpdate takes stage LH and answers in LH + 2; with SPRAM the write
        # stage is made odd so write-backs fall between the even read cycles.
        bank_abits = len(banks[0].raddr)
        Tag = data.StructLayout({
            "valid": 1, "ltp": 1, "write": 1, "inh": 1,
            "rot": max(LB, 1), "lane_addr": range(max(SB, NB, 2)),
            "addr": data.ArrayLayout(bank_abits, B),
        })
        write_stage = LH + 2 + (1 if spram and (LH + 2) % 2 == 0 else 0)
        tags = [Signal(Tag, name=f"tag{i}") for i in range(write_stage + 1)]
        for i in range(1, write_stage + 1):
            m.d.sync += tags[i].eq(tags[i - 1])
        issue = tags[0]
        in_flight = Signal()
        m.d.comb += in_flight.eq(Cat(tag.valid for tag in tags[1:]).any())

        walk_s = Signal(range(max(S, 2)))      # row walk: the source
        walk_j = Signal(range(max(N, 2)))      # column walk: the neuron
        walk_step = Signal(range(max(SB, NB, 2) + 1))
        step = Signal(range(max(SB, NB, 2)))  # the step being issued: k (row) or q (column)
        walk_learn = Signal()

        for b, bank in enumerate(banks):
            m.d.comb += [bank.ren.eq(issue.valid), bank.raddr.eq(issue.addr[b])]
        for lane in range(B):
            m.d.comb += [nlane_r[lane].addr.eq(issue.lane_addr),
                         slane_r[lane].addr.eq(issue.lane_addr)]
            if draw_from_tag:
                t1 = tags[1]
                neuron_bits = _log2(NB)
                neuron = Signal(_INDEX_BITS, name="draw_neuron")
                source = Signal(_INDEX_BITS, name="draw_source")
                m.d.comb += [neuron.eq(t1.addr[0][:neuron_bits]),
                             source.eq(t1.addr[0][neuron_bits:])]
                # Row walks: (index = neuron, source); column walks: (neuron, index = source).
                stream = Signal(4, name="draw_stream")
                m.d.comb += stream.eq(Mux(t1.ltp, STREAM_LTP, STREAM_LTD))
                m.d.comb += hashes[lane].x.eq(key ^ Cat(neuron, source, stream))
                continue
            # Row walk: lane handles neuron k*B + lane; column walk: source q*B + lane.
            # Each field is widened to its 14 bits first: Cat packs values at their own widths.
            index = Signal(_INDEX_BITS, name=f"draw_index{lane}")
            source = Signal(_INDEX_BITS, name=f"draw_source{lane}")
            neuron = Signal(_INDEX_BITS, name=f"draw_neuron{lane}")
            m.d.comb += [index.eq(Cat(Const(lane, LB), step) if LB else step),
                         source.eq(walk_s), neuron.eq(walk_j)]
            row_word = Cat(index, source, Const(STREAM_LTD, 4))
            col_word = Cat(neuron, index, Const(STREAM_LTP, 4))
            m.d.comb += hashes[lane].x.eq(key ^ Mux(issue.ltp, col_word, row_word))

        # Stage 1: lane data, rotated bank data, and the current update of row walks.
        t1 = tags[1]
        words1 = [Signal(SynapseWord, name=f"word1_{lane}") for lane in range(B)]
        traces1 = [Signal(8, name=f"trace1_{lane}") for lane in range(B)]
        for lane in range(B):
            m.d.comb += [
                words1[lane].eq(rotated([bank.rdata for bank in banks], lane, t1.rot)),
                traces1[lane].eq(Mux(t1.ltp, slane_r[lane].data.x, nlane_r[lane].data.y)),
            ]

        # Stages 1 .. LH: lane data waits for the draw.
        words, traces = words1, traces1
        for stage in range(2, LH + 1):
            next_words = [Signal(SynapseWord, name=f"word{stage}_{lane}") for lane in range(B)]
            next_traces = [Signal(8, name=f"trace{stage}_{lane}") for lane in range(B)]
            for lane in range(B):
                m.d.sync += [next_words[lane].eq(words[lane]),
                             next_traces[lane].eq(traces[lane])]
            words, traces = next_words, next_traces

        tag_draw = tags[LH]
        updates = []
        for lane in range(B):
            u = SynapseUpdate()
            m.submodules[f"update{lane}"] = u
            updates.append(u)
            m.d.comb += [
                u.ltp.eq(tag_draw.ltp), u.enable.eq(tag_draw.write),
                u.word.eq(words[lane]), u.trace.eq(traces[lane]),
                u.draw.eq(hashes[lane].y), u.regs.eq(regs),
            ]
        new_words = [u.new_word for u in updates]
        changed = [u.changed for u in updates]
        if write_stage > LH + 2:
            delayed_words = [Signal(SynapseWord, name=f"new_word_late{lane}") for lane in range(B)]
            delayed_changed = [Signal(name=f"changed_late{lane}") for lane in range(B)]
            for lane in range(B):
                m.d.sync += [delayed_words[lane].eq(new_words[lane]),
                             delayed_changed[lane].eq(changed[lane])]
            new_words, changed = delayed_words, delayed_changed

        tw = tags[write_stage]
        for b, bank in enumerate(banks):
            # Bank b holds the word of lane (b - rot) mod B.
            lane_index = (b - tw.rot)[:LB] if LB else Const(0, 1)
            m.d.comb += [
                bank.wen.eq(tw.valid & tw.write),
                bank.waddr.eq(tw.addr[b]),
                bank.wdata.eq(Array(new_words)[lane_index] if B > 1 else new_words[0]),
            ]
        changes = Signal(range(B + 1))
        m.d.comb += changes.eq(sum(changed))
        with m.If(tw.valid & tw.write):
            with m.If(tw.ltp):
                m.d.sync += ltp_tick.eq(ltp_tick + changes)
            with m.Else():
                m.d.sync += ltd_tick.eq(ltd_tick + changes)

        accesses = Signal(range(2 * B + 1))
        m.d.comb += accesses.eq(sum(bank.ren + bank.wen for bank in banks))

        # ---- Default drive of the shared ports ------------------------------------------------
        # The FSM below drives the lane-memory write ports in phases A and C and for commands;
        # the walk pipeline's stage 1 drives nlane writes in row walks (the FSM is then waiting).
        cmd_reg = Signal(Command)
        rsp_data = Signal(32)
        rsp_kind = Signal(Kind)
        m.d.comb += [self.rsp.payload.kind.eq(rsp_kind), self.rsp.payload.data.eq(rsp_data)]

        learn = Signal()

        # ---- Tick state ----------------------------------------------------------------------
        sweep = Signal(range(max(S, N, 2) + 2))       # phases A and C
        sweep1_valid = Signal()
        sweep1 = Signal.like(sweep)
        pre_count = Signal(range(max(SB, 1) + 1))
        pre_index = Signal.like(pre_count)
        pre_mask = Signal(B)
        pre_inh = Signal(B)
        pre_q = Signal(range(max(SB, 2)))
        x_count = Signal(range(max(SB, 1) + 1))
        x_index = Signal(range(max(SB, 1) + 1))
        m.d.comb += xlist_r.addr.eq(x_index)
        spike_count = Signal(range(N + 1))
        spike_index = Signal(range(N + 1))
        best_valid = Signal()
        best_margin = Signal(signed(19))
        best_j = Signal(range(max(N, 2)))
        tick_cycles = Signal(32)


        # Phase C's neuron update; its inputs are the neuron read in the previous cycle, in
        # every state (only phase C writes what it computes). The pool pass does not decay
        # theta again.
        m.submodules.neuron = nu = NeuronUpdate(current_bits(S),
                                                adaptive_threshold=self._adaptive_threshold)
        pool_pass = Signal()
        nu_lane = (Array(nlane_r)[lane_of(sweep1)].data if B > 1 else nlane_r[0].data)
        m.d.comb += [
            nu.params.eq(params), nu.v.eq(nstate_r.data.v), nu.th.eq(nstate_r.data.th),
            nu.ref.eq(nu_lane.ref), nu.current.eq(nu_lane.current), nu.learn.eq(learn),
            nu.decay_now.eq(((t[:16] & low_mask(regs.th_decay_period, 16)) == 0) & ~pool_pass),
            nu.regs.eq(regs),
        ]
        y_fired = bump(nu_lane.y, regs.y_inc, regs.trace_all_to_all)

        # Spike bookkeeping shared by both passes of phase C.
        def record_spike(j):
            m.d.comb += [spikelist_w.addr.eq(spike_count), spikelist_w.data.eq(j),
                         spikelist_w.en.eq(1)]
            m.d.sync += spike_count.eq(spike_count + 1)

        def set_pending(j, lane_data):
            """Neuron j < n_recurrent spiked: its row has an event next tick."""
            if cfg.n_recurrent == 0:
                return
            source = j + cfg.n_inputs
            with m.If(j < cfg.n_recurrent):
                for lane in range(B):
                    with m.If(lane_of(source) == lane):
                        m.d.comb += [
                            slane_w[lane].addr.eq(row_of(source) if LB else source),
                            slane_w[lane].data.eq(lane_data[lane]),
                            slane_w[lane].data.pending.eq(1),
                            slane_w[lane].en.eq(1),
                        ]

        def source_address(j):
            source = cfg.n_inputs + j
            return (row_of(source) if LB else source)

        if self._instrument:
            with m.If(self.busy):
                m.d.sync += tick_cycles.eq(tick_cycles + 1)
        walking = Signal()
        if self._instrument:
            with m.If(walking | in_flight):
                m.d.sync += [
                    counters[Status.WALK_CYCLES].eq(counters[Status.WALK_CYCLES] + 1),
                    counters[Status.BANK_ACCESSES].eq(counters[Status.BANK_ACCESSES] + accesses),
                ]

        # Row walks, stage 1: I[j] += signed weight, for every lane.
        with m.If(t1.valid & ~t1.ltp):
            for lane in range(B):
                old = nlane_r[lane].data
                weight = words1[lane].w
                # old + (inh ? -w : w) with one adder: old - w = ~(~old + w).
                flip = t1.inh.replicate(len(old.current))
                added = Signal.like(old.current, name=f"current_sum{lane}")
                m.d.comb += added.eq((old.current ^ flip) + weight)
                m.d.comb += [
                    nlane_w[lane].addr.eq(t1.lane_addr),
                    nlane_w[lane].data.eq(old),
                    nlane_w[lane].data.current.eq(added ^ flip),
                    nlane_w[lane].en.eq(1),
                ]

        # ---- Command decoding helpers ----------------------------------------------------------
        addr = cmd_reg.addr
        syn_s, syn_j = addr[_INDEX_BITS:2 * _INDEX_BITS], addr[:_INDEX_BITS]
        nrn, half = addr[1:], addr[0]
        high_zero = addr[2 * _INDEX_BITS:] == 0 if ADDRESS_BITS > 2 * _INDEX_BITS else Const(1)
        syn_bank = (syn_s + syn_j)[:LB] if LB else Const(0, 1)
        syn_addr = Signal(bank_abits)
        m.d.comb += syn_addr.eq(_join(syn_s, NB, syn_j >> LB))

        valid_addr = Signal()
        if self._validate:
            reg_ok = register_value_ok(m, addr, cmd_reg.data)
            with m.Switch(cmd_reg.space):
                with m.Case(Space.REG):
                    m.d.comb += valid_addr.eq(lt_const(addr, len(REGISTERS))
                                              & ((cmd_reg.op != Op.WRITE) | reg_ok))
                with m.Case(Space.SYN):
                    m.d.comb += valid_addr.eq(high_zero & lt_const(syn_s, S)
                                              & lt_const(syn_j, N))
                with m.Case(Space.NPARAM, Space.NSTATE):
                    features_ok = feature_value_ok(
                        cmd_reg.space == Space.NPARAM, cmd_reg.space == Space.NSTATE, half,
                        cmd_reg.data, wta=self._wta,
                        adaptive_threshold=self._adaptive_threshold)
                    m.d.comb += valid_addr.eq(lt_const(nrn, N)
                                              & ((cmd_reg.op != Op.WRITE) | features_ok))
                with m.Case(Space.SOURCE):
                    m.d.comb += valid_addr.eq(lt_const(addr, S))
                with m.Case(Space.STATUS):
                    m.d.comb += valid_addr.eq(Mux(cmd_reg.op == Op.WRITE,
                                                  (addr == Status.T) | (addr == Status.CLEAR),
                                                  addr <= Status.FLAGS))
        else:
            m.d.comb += valid_addr.eq(1)

        def drive_reads_for_command():
            """Point the read ports at the command's target (used by DECODE and CAPTURE)."""
            for b, bank in enumerate(banks):
                with m.If((cmd_reg.op == Op.READ) & (cmd_reg.space == Space.SYN)
                          & (syn_bank == b)):
                    m.d.comb += [bank.raddr.eq(syn_addr), bank.ren.eq(1)]
            m.d.comb += [nparam_r.addr.eq(nrn), nstate_r.addr.eq(nrn)]
            for lane in range(B):
                m.d.comb += [nlane_r[lane].addr.eq(row_of(nrn) if LB else nrn),
                             slane_r[lane].addr.eq(row_of(addr) if LB else addr)]

        read_value = Signal(32)
        # The STATUS space is the counters memory (T is copied there whenever it changes, the
        # configuration words are its initial contents), except FLAGS and the benchmark
        # counters.
        status_value = Signal(32)
        m.d.comb += status_value.eq(counter_r.data)
        with m.Switch(addr):
            for c in counters:
                with m.Case(c):
                    m.d.comb += status_value.eq(counters[c])
            with m.Case(Status.FLAGS):
                m.d.comb += status_value.eq(conflict)
        nlane_sel = Array(nlane_r)[lane_of(nrn)].data if B > 1 else nlane_r[0].data
        slane_sel = Array(slane_r)[lane_of(addr)].data if B > 1 else slane_r[0].data
        bank_sel = Signal(max(LB, 1))
        with m.Switch(cmd_reg.space):
            with m.Case(Space.REG):
                m.d.comb += read_value.eq(counter_r.data)
            with m.Case(Space.SYN):
                m.d.comb += read_value.eq(Array(bank.rdata for bank in banks)[syn_bank]
                                          if B > 1 else banks[0].rdata)
            with m.Case(Space.NPARAM):
                m.d.comb += read_value.eq(Mux(half, nparam_r.data[32:], nparam_r.data[:32]))
            with m.Case(Space.NSTATE):
                m.d.comb += read_value.eq(Mux(half, Cat(nlane_sel.ref, nlane_sel.y),
                                              nstate_r.data.as_value()))
            with m.Case(Space.SOURCE):
                m.d.comb += read_value.eq(slane_sel.as_value())
            with m.Case(Space.STATUS):
                m.d.comb += read_value.eq(status_value)

        def respond(kind, value):
            m.d.sync += [rsp_kind.eq(kind), rsp_data.eq(value)]

        # ---- The sequencer ---------------------------------------------------------------------
        # After reset the zeroing fold starts one step early: it zeroes T's copy too (and
        # address 15, which nothing uses).
        fold = Signal(range(16), init=Status.T)
        fold_zero = Signal(init=1)
        m.d.comb += counter_r.addr.eq(Mux(cmd_reg.space == Space.REG,
                                          Cat(addr[:5], Const(1, 1)), addr[:4]))
        reg_init = Signal(range(len(REGISTERS)))
        # Reset writes the registers' defaults to their copy, then zeroes the counters.
        with m.FSM(name="sequencer", init="INIT_REGS"):
            with m.State("INIT_REGS"):
                default = Signal(32)
                with m.Switch(reg_init):
                    for r in REGISTERS:
                        with m.Case(r.address):
                            m.d.comb += default.eq(r.default)
                m.d.comb += [counter_w.addr.eq(Cat(reg_init, Const(1, 1))),
                             counter_w.data.eq(default), counter_w.en.eq(1)]
                m.d.sync += reg_init.eq(reg_init + 1)
                with m.If(reg_init == len(REGISTERS) - 1):
                    m.next = "FOLD"

            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += cmd_reg.eq(self.cmd.payload)
                    m.next = "DECODE"

            with m.State("DECODE"):
                m.d.comb += self.busy.eq(1)
                drive_reads_for_command()
                with m.If(cmd_reg.op == Op.TICK):
                    m.d.sync += [learn.eq(cmd_reg.data[0]), tick_cycles.eq(1), sweep.eq(0),
                                 pre_tick.eq(0), ltd_tick.eq(0), ltp_tick.eq(0)]
                    m.next = "KEY1"
                with m.Elif(cmd_reg.op == Op.SPIKE):
                    with m.If(high_zero & lt_const(addr, cfg.n_inputs) | Const(not self._validate)):
                        m.next = "SPIKE_WRITE"
                    with m.Else():
                        respond(Kind.ERROR, addr)
                        m.next = "RESPOND"
                with m.Elif(~valid_addr):
                    respond(Kind.ERROR, addr)
                    m.next = "RESPOND"
                with m.Elif(cmd_reg.op == Op.READ):
                    m.next = "CAPTURE"
                with m.Else():
                    self._write(m, cmd_reg, regs, t, counters, counter_w, banks, syn_bank, syn_addr,
                                nparam_w, nstate_w, nlane_w, slane_w, nlane_r, B, LB, lane_of,
                                row_of)
                    with m.If((cmd_reg.space == Space.STATUS) & (addr != Status.T)):
                        # CLEAR: zero the counters in memory too.
                        m.d.sync += [fold.eq(Status.CLEAR), fold_zero.eq(1)]
                        m.next = "FOLD"
                    with m.Else():
                        m.next = "IDLE"

            with m.State("CAPTURE"):
                m.d.comb += self.busy.eq(1)
                respond(Kind.DATA, read_value)
                m.next = "RESPOND"

            with m.State("RESPOND"):
                m.d.comb += [self.busy.eq(1), self.rsp.valid.eq(1)]
                # Keep the copy of T current (after a tick, T has just been incremented).
                m.d.comb += [counter_w.addr.eq(Status.T), counter_w.data.eq(t),
                             counter_w.en.eq(1)]
                with m.If(self.rsp.ready):
                    m.next = "IDLE"

            with m.State("SPIKE_WRITE"):
                m.d.comb += self.busy.eq(1)
                for lane in range(B):
                    with m.If(lane_of(addr) == lane):
                        m.d.comb += [
                            slane_w[lane].addr.eq(row_of(addr) if LB else addr),
                            slane_w[lane].data.eq(slane_r[lane].data),
                            slane_w[lane].data.pending.eq(1),
                            slane_w[lane].en.eq(1),
                        ]
                    m.d.comb += slane_r[lane].addr.eq(row_of(addr) if LB else addr)
                m.next = "IDLE"

            # -- Tick: the key of this tick, H(H(t) ^ SEED) -------------------------------------
            # The input is held for LH cycles (or until the next even cycle after them), after
            # which the output is its hash.
            # SEED is read from the registers' copy (it is used nowhere else), so it needs no
            # flip-flops of its own.
            seed_copy = Cat(Const(_register_address("SEED"), 5), Const(1, 1))
            # Two passes through half the rounds give the hash on an even cycle.
            key_ready = (sweep >= LH) & (~slot if halves else Const(1))
            with m.State("KEY1"):
                m.d.comb += [self.busy.eq(1), keyhash.x.eq(t), counter_r.addr.eq(seed_copy)]
                m.d.sync += sweep.eq(sweep + 1)
                with m.If(key_ready):
                    m.d.sync += [key.eq(keyhash.y), sweep.eq(0)]   # H(t), for now
                    m.next = "KEY2"

            with m.State("KEY2"):
                m.d.comb += [self.busy.eq(1), keyhash.x.eq(key ^ counter_r.data),
                             counter_r.addr.eq(seed_copy)]
                m.d.sync += sweep.eq(sweep + 1)
                with m.If(key_ready):
                    m.d.sync += [key.eq(keyhash.y), sweep.eq(0), pre_count.eq(0),
                                 x_count.eq(0), sweep1_valid.eq(0)]
                    m.next = "A"

            # -- Phase A: trace decay; collect this tick's presynaptic events ------------------
            with m.State("A"):
                m.d.comb += self.busy.eq(1)
                last = max(SB, NB)
                issuing = sweep < last
                m.d.sync += [sweep1.eq(sweep), sweep1_valid.eq(issuing)]
                with m.If(issuing):
                    m.d.sync += sweep.eq(sweep + 1)
                for lane in range(B):
                    m.d.comb += [slane_r[lane].addr.eq(sweep), nlane_r[lane].addr.eq(sweep)]
                with m.If(sweep1_valid):
                    pending = Cat(slane_r[lane].data.pending for lane in range(B))
                    inh = Cat(slane_r[lane].data.inh for lane in range(B))
                    with m.If(sweep1 < SB):
                        live = []
                        for lane in range(B):
                            old = slane_r[lane].data
                            decayed = decay(old.x, regs.x_decay_shift)
                            new_x = Signal(8, name=f"new_x{lane}")
                            m.d.comb += new_x.eq(Mux(old.pending, bump(
                                decayed, regs.x_inc, regs.trace_all_to_all), decayed))
                            live.append(new_x != 0)
                            m.d.comb += [
                                slane_w[lane].addr.eq(sweep1),
                                slane_w[lane].data.x.eq(new_x),
                                slane_w[lane].data.inh.eq(old.inh),
                                slane_w[lane].data.pending.eq(0),
                                slane_w[lane].en.eq(1),
                            ]
                        with m.If(Cat(live).any()):
                            if self._trace_list:
                                m.d.comb += [xlist_w.addr.eq(x_count),
                                             xlist_w.data.eq(sweep1), xlist_w.en.eq(1)]
                                m.d.sync += x_count.eq(x_count + 1)
                        with m.If(pending.any()):
                            m.d.comb += [
                                prelist_w.addr.eq(pre_count),
                                prelist_w.data.q.eq(sweep1),
                                prelist_w.data.mask.eq(pending),
                                prelist_w.data.inh.eq(inh),
                                prelist_w.en.eq(1),
                            ]
                            m.d.sync += pre_count.eq(pre_count + 1)
                    with m.If(sweep1 < NB):
                        for lane in range(B):
                            old = nlane_r[lane].data
                            m.d.comb += [
                                nlane_w[lane].addr.eq(sweep1),
                                nlane_w[lane].data.eq(old),
                                nlane_w[lane].data.y.eq(decay(old.y, regs.y_decay_shift)),
                                nlane_w[lane].en.eq(1),
                            ]
                with m.If(~issuing & ~sweep1_valid):
                    m.d.sync += [pre_index.eq(0), sweep.eq(0)]
                    m.next = "B_FETCH"

            # -- Phase B: one row walk per presynaptic source -----------------------------------
            with m.State("B_FETCH"):
                m.d.comb += [self.busy.eq(1), prelist_r.addr.eq(pre_index)]
                with m.If(pre_index == pre_count):
                    m.next = "B_DRAIN"
                with m.Else():
                    m.d.sync += pre_index.eq(pre_index + 1)
                    m.next = "B_ENTRY"

            with m.State("B_ENTRY"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [pre_mask.eq(prelist_r.data.mask), pre_inh.eq(prelist_r.data.inh),
                             pre_q.eq(prelist_r.data.q)]
                m.next = "B_NEXT"

            with m.State("B_NEXT"):
                m.d.comb += self.busy.eq(1)
                # The lowest pending lane of the entry becomes the next row walk.
                with m.If(pre_mask == 0):
                    m.next = "B_FETCH"
                with m.Else():
                    for lane in reversed(range(B)):
                        with m.If(pre_mask[lane]):
                            m.d.sync += walk_s.eq(pre_q * B + lane)
                    m.d.sync += [pre_mask.eq(pre_mask & (pre_mask - 1)), walk_step.eq(0),
                                 walk_learn.eq(learn & regs.ltd_en)]
                    m.next = "B_WALK"

            with m.State("B_WALK"):
                m.d.comb += [self.busy.eq(1), walking.eq(1)]
                rot = lane_of(walk_s)
                inh = Array(pre_inh)[rot] if B > 1 else pre_inh[0]
                may_issue = ~walk_learn | ~slot if spram else Const(1)
                m.d.comb += step.eq(walk_step)
                with m.If(may_issue):
                    m.d.comb += [
                        issue.valid.eq(1), issue.ltp.eq(0), issue.write.eq(walk_learn),
                        issue.inh.eq(inh), issue.rot.eq(rot), issue.lane_addr.eq(walk_step),
                    ]
                    for b in range(B):
                        m.d.comb += issue.addr[b].eq(_join(walk_s, NB, walk_step))
                    m.d.sync += walk_step.eq(walk_step + 1)
                    with m.If(walk_step == NB - 1):
                        m.next = "B_NEXT"

            with m.State("B_DRAIN"):
                m.d.comb += self.busy.eq(1)
                with m.If(~in_flight):
                    m.d.sync += [sweep.eq(0), sweep1_valid.eq(0), spike_count.eq(0),
                                 best_valid.eq(0), pool_pass.eq(0)]
                    m.next = "C"

            # -- Phase C: leak, integrate, fire; then, if a winner-take-all pool had a candidate,
            # a second pass that resets the pool and fires the winner ---------------------------
            with m.State("C"):
                m.d.comb += self.busy.eq(1)
                issuing = sweep < N
                m.d.sync += [sweep1.eq(sweep), sweep1_valid.eq(issuing)]
                with m.If(issuing):
                    m.d.sync += sweep.eq(sweep + 1)
                self._read_neuron(m, sweep, nparam_r, nstate_r, nlane_r, slane_r, B, LB,
                                  lane_of, row_of, source_address)
                j = sweep1
                pool = params.wta if self._wta else Const(0)
                winner = j == best_j
                fire = Mux(pool_pass, pool & winner, nu.candidate & ~pool)
                with m.If(sweep1_valid & (~pool_pass | pool)):
                    m.d.comb += [
                        nstate_w.addr.eq(j), nstate_w.en.eq(1),
                        nstate_w.data.v.eq(Mux(fire | pool_pass, nu.v_fire, nu.v_rest)),
                        nstate_w.data.th.eq(Mux(fire, nu.th_fire, nu.th_rest)),
                    ]
                    with m.If(~pool_pass | fire):
                        for lane in range(B):
                            with m.If(lane_of(j) == lane):
                                m.d.comb += [
                                    nlane_w[lane].addr.eq(row_of(j) if LB else j),
                                    nlane_w[lane].data.current.eq(0),
                                    nlane_w[lane].data.y.eq(Mux(fire, y_fired, nu_lane.y)),
                                    nlane_w[lane].data.ref.eq(Mux(fire, nu.ref_fire,
                                                                  nu.ref_rest)),
                                    nlane_w[lane].en.eq(1),
                                ]
                    with m.If(fire):
                        record_spike(j)
                        set_pending(j, [slane_r[lane].data for lane in range(B)])
                    with m.If(~pool_pass & pool & nu.candidate
                              & (~best_valid | (nu.margin > best_margin))):
                        m.d.sync += [best_valid.eq(1), best_margin.eq(nu.margin), best_j.eq(j)]
                with m.If(~issuing & ~sweep1_valid):
                    m.d.sync += [sweep.eq(0), sweep1_valid.eq(0)]
                    with m.If(~pool_pass & best_valid):
                        m.d.sync += pool_pass.eq(1)
                    with m.Else():
                        m.d.sync += spike_index.eq(0)
                        m.next = "D_FETCH"

            # -- Phase D: one column walk per spike -------------------------------------------------
            with m.State("D_FETCH"):
                m.d.comb += [self.busy.eq(1), spikelist_r.addr.eq(spike_index)]
                nothing_listed = (x_count == 0) if self._trace_list else Const(0)
                with m.If((spike_index == spike_count) | ~(learn & regs.ltp_en) | nothing_listed):
                    m.next = "D_DRAIN"
                with m.Else():
                    m.d.sync += [spike_index.eq(spike_index + 1), x_index.eq(0)]
                    m.next = "D_ENTRY"

            with m.State("D_ENTRY"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += walk_j.eq(spikelist_r.data)
                m.next = "D_WALK"

            # The walk visits only the listed groups; the list is read one step ahead.
            with m.State("D_WALK"):
                # Without the list every group is visited (those with x = 0 change nothing).
                m.d.comb += [self.busy.eq(1), walking.eq(1),
                             step.eq(xlist_r.data if self._trace_list else x_index)]
                rot = lane_of(walk_j)
                may_issue = ~slot if spram else Const(1)
                with m.If(may_issue):
                    m.d.comb += [
                        issue.valid.eq(1), issue.ltp.eq(1), issue.write.eq(1),
                        issue.rot.eq(rot), issue.lane_addr.eq(step),
                        xlist_r.addr.eq(x_index + 1),
                    ]
                    for b in range(B):
                        lane = (b - rot)[:LB] if LB else Const(0, 0)
                        m.d.comb += issue.addr[b].eq(_join(_join(step, B, lane), NB,
                                                           walk_j >> LB))
                    m.d.sync += x_index.eq(x_index + 1)
                    with m.If(x_index == ((x_count - 1) if self._trace_list else SB - 1)):
                        m.next = "D_FETCH"

            with m.State("D_DRAIN"):
                m.d.comb += self.busy.eq(1)
                with m.If(~in_flight):
                    m.d.sync += spike_index.eq(0)
                    m.next = "E_FETCH"

            # -- Phase E: report the spikes, then the end of the tick --------------------------
            with m.State("E_FETCH"):
                m.d.comb += [self.busy.eq(1), spikelist_r.addr.eq(spike_index)]
                with m.If(spike_index == spike_count):
                    m.d.sync += [fold.eq(Status.CLEAR), fold_zero.eq(0)]
                    m.next = "FOLD"
                with m.Else():
                    m.d.sync += spike_index.eq(spike_index + 1)
                    m.next = "E_SPIKE"

            with m.State("E_SPIKE"):
                m.d.comb += self.busy.eq(1)
                respond(Kind.SPIKE, spikelist_r.data)
                m.next = "E_SEND"

            with m.State("E_SEND"):
                m.d.comb += [self.busy.eq(1), self.rsp.valid.eq(1)]
                with m.If(self.rsp.ready):
                    m.next = "E_FETCH"

            # -- The counters: add this tick's counts (or, after a reset or a CLEAR, zero them),
            # one a cycle: read counter `fold` while writing counter `fold - 1`. Then the end of
            # the tick. The cycle counts are those up to TICK_DONE. -------------------------------
            with m.State("FOLD"):
                m.d.comb += [self.busy.eq(~fold_zero), counter_r.addr.eq(fold)]
                m.d.sync += fold.eq(fold + 1)
                written = Signal(range(16))
                m.d.comb += written.eq(fold - 1)
                delta = Signal(32)
                with m.Switch(written):
                    with m.Case(Status.CLEAR):
                        m.d.comb += delta.eq(1)
                    with m.Case(Status.PRE_EVENTS):
                        m.d.comb += delta.eq(pre_tick)
                    with m.Case(Status.SYNAPTIC_OPS):
                        m.d.comb += delta.eq(pre_tick * N)
                    with m.Case(Status.POST_SPIKES):
                        m.d.comb += delta.eq(spike_count)
                    with m.Case(Status.LTD_WRITES):
                        m.d.comb += delta.eq(ltd_tick)
                    with m.Case(Status.LTP_WRITES):
                        m.d.comb += delta.eq(ltp_tick)
                    if self._instrument:
                        with m.Case(Status.LAST_TICK_CYCLES):
                            m.d.comb += delta.eq(tick_cycles + 2)
                        with m.Case(Status.TICK_CYCLES):
                            m.d.comb += delta.eq(tick_cycles + 1)
                base = Mux(written == Status.LAST_TICK_CYCLES, 0, counter_r.data)
                with m.If(fold != Status.CLEAR):
                    m.d.comb += [counter_w.addr.eq(written), counter_w.en.eq(1),
                                 counter_w.data.eq(Mux(fold_zero, 0, base + delta))]
                with m.If(written == Status.TICK_CYCLES):
                    with m.If(fold_zero):
                        m.next = "IDLE"
                    with m.Else():
                        respond(Kind.TICK_DONE, t)
                        m.d.sync += t.eq(t + 1)
                        m.next = "RESPOND"

        # Pre-events are counted as phase A finds them.
        with m.If(prelist_w.en):
            m.d.sync += pre_tick.eq(pre_tick + sum(prelist_w.data.mask[lane] for lane in range(B)))

        return m

    # ---- Pieces of the FSM -------------------------------------------------------------------

    @staticmethod
    def _read_neuron(m, j, nparam_r, nstate_r, nlane_r, slane_r, B, LB, lane_of, row_of,
                     source_address):
        m.d.comb += [nparam_r.addr.eq(j), nstate_r.addr.eq(j)]
        for lane in range(B):
            m.d.comb += [nlane_r[lane].addr.eq(row_of(j) if LB else j),
                         slane_r[lane].addr.eq(source_address(j))]

    def _write(self, m, cmd_reg, regs, t, counters, counter_w, banks, syn_bank, syn_addr, nparam_w,
               nstate_w, nlane_w, slane_w, nlane_r, B, LB, lane_of, row_of):
        addr, value = cmd_reg.addr, cmd_reg.data
        nrn, half = addr[1:], addr[0]
        with m.Switch(cmd_reg.space):
            with m.Case(Space.REG):
                with m.Switch(addr):
                    for r in REGISTERS:
                        with m.Case(r.address):
                            m.d.sync += getattr(regs, register_field(r.name)).eq(value)
                m.d.comb += [counter_w.addr.eq(Cat(addr[:5], Const(1, 1))),
                             counter_w.data.eq(value), counter_w.en.eq(1)]
            with m.Case(Space.SYN):
                for b, bank in enumerate(banks):
                    with m.If(syn_bank == b):
                        m.d.comb += [bank.waddr.eq(syn_addr), bank.wdata.eq(value[:16]),
                                     bank.wen.eq(1)]
            with m.Case(Space.NPARAM):
                m.d.comb += [nparam_w.addr.eq(nrn), nparam_w.data.eq(Cat(value, value)),
                             nparam_w.en.eq(Mux(half, 0b10, 0b01))]
            with m.Case(Space.NSTATE):
                with m.If(half):
                    for lane in range(B):
                        with m.If(lane_of(nrn) == lane):
                            m.d.comb += [
                                nlane_w[lane].addr.eq(row_of(nrn) if LB else nrn),
                                nlane_w[lane].data.current.eq(0),
                                nlane_w[lane].data.ref.eq(value[:4]),
                                nlane_w[lane].data.y.eq(value[4:12]),
                                nlane_w[lane].en.eq(1),
                            ]
                with m.Else():
                    m.d.comb += [nstate_w.addr.eq(nrn), nstate_w.data.eq(value),
                                 nstate_w.en.eq(1)]
            with m.Case(Space.SOURCE):
                for lane in range(B):
                    with m.If(lane_of(addr) == lane):
                        m.d.comb += [slane_w[lane].addr.eq(row_of(addr) if LB else addr),
                                     slane_w[lane].data.eq(value[:10]), slane_w[lane].en.eq(1)]
            with m.Case(Space.STATUS):
                with m.If(addr == Status.T):
                    m.d.sync += t.eq(value)
                    m.d.comb += [counter_w.addr.eq(Status.T), counter_w.data.eq(value),
                                 counter_w.en.eq(1)]
                with m.Else():
                    for counter in counters.values():
                        m.d.sync += counter.eq(0)
