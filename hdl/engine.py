"""The command engine: the link protocol of ``docs/protocol.md`` in front of a core.

The engine takes complete, CRC-checked frames from the SLIP decoder (the frame's bytes sit in a
buffer it reads), validates each command completely before acting on it, drives the core's
command port, keeps the input-spike queue, runs ticks, and writes reply and TICK frames as a byte
stream to the SLIP encoder (which appends the CRC and the delimiters).
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import REGISTERS, CoreConfig
from ..protocol import (END_OF_TICK, MAX_BODY, MAX_SPIKES, MAX_WORDS, PROTOCOL_VERSION,
                        Capability, ErrorCode, IdentifyInfo, Opcode, Reply)
from .core import (NO_RW_CHECK, Command, Kind, Op, Response, Space, Status, register_value_ok,
                   registered_read_port)
from .datapath import feature_value_ok, lt_const
from .framing import BodyByte, FrameStatus, frame_done_layout

__all__ = ["CommandEngine"]

_STATUS_WORDS = Status.FLAGS + 1


class CommandEngine(wiring.Component):
    """The protocol engine.

    Contract
    --------
    ``frame`` carries one decoded frame at a time; the engine reads the frame's bytes through
    ``buf_addr`` / ``buf_data`` (a synchronous read port: data one cycle after the address) and
    takes the frame (``frame.ready``) when it has finished with it, replies included, so the
    decoder must not overwrite the buffer before that. Between frames, while a run is in
    progress, it runs ticks. Every command gets one reply; a refused command changes nothing.
    Reply and TICK bodies leave on ``tx`` (``last`` on the final byte) under the stream rules;
    when ``tx`` is not ready the engine waits, and so does the core. ``framing_error`` and
    ``rx_overflow`` are one-cycle pulses the engine counts. Reset: not running, empty queue,
    counters zero. ``refused`` pulses for one cycle for every command refused with ``ERROR``
    (for a status LED).

    Parameters
    ----------
    config : CoreConfig
    banks : int
    spram : bool
    queue_depth : int
        Entries of the input-spike queue.
    rx_buffer : int
        Bytes of the receive buffer in front of the decoder (reported by IDENTIFY).
    clock_hz, baud_divisor : int
        Reported by IDENTIFY.
    paced : bool
        Build tick pacing (``RUN`` with a period). Without it a ``RUN`` with a nonzero period
        is refused with ``BAD_VALUE`` (detail: the period).
    wta, adaptive_threshold : bool
        Whether the core has these parts (as :class:`~.core.Core`); without one, ``WRITE``s of
        neuron parameters or state that would use it are refused with ``BAD_VALUE`` (detail: the
        word's address). All three are reported by IDENTIFY as capabilities.
    """

    def __init__(self, config: CoreConfig, *, banks: int, spram: bool, queue_depth: int = 256,
                 rx_buffer: int = 512, clock_hz: int = 12_000_000, baud_divisor: int = 4,
                 paced: bool = True, wta: bool = True, adaptive_threshold: bool = True):
        if queue_depth < MAX_SPIKES or queue_depth & (queue_depth - 1):
            raise ValueError(f"queue_depth must be a power of two of at least {MAX_SPIKES}, "
                             f"not {queue_depth!r}")
        self._config = config
        self._paced, self._wta = bool(paced), bool(wta)
        self._adaptive_threshold = bool(adaptive_threshold)
        capabilities = Capability.SPRAM if spram else Capability(0)
        for flag, present in ((Capability.PACED, paced), (Capability.WTA, wta),
                              (Capability.ADAPTIVE_THRESHOLD, adaptive_threshold)):
            if present:
                capabilities |= flag
        self._identify = IdentifyInfo(
            version=PROTOCOL_VERSION, n_inputs=config.n_inputs, n_neurons=config.n_neurons,
            n_recurrent=config.n_recurrent, banks=banks,
            capabilities=int(capabilities),
            queue_depth=queue_depth, rx_buffer=rx_buffer, clock_hz=clock_hz,
            baud_divisor=baud_divisor)
        self._queue_depth = queue_depth
        super().__init__({
            "frame": In(stream.Signature(frame_done_layout(MAX_BODY))),
            "buf_addr": Out(range(MAX_BODY)),
            "buf_data": In(8),
            "core_cmd": Out(stream.Signature(Command)),
            "core_rsp": In(stream.Signature(Response)),
            "tx": Out(stream.Signature(BodyByte)),
            "framing_error": In(1),
            "rx_overflow": In(1),
            "running": Out(1),
            "refused": Out(1),
        })

    @property
    def identify(self) -> IdentifyInfo:
        return self._identify

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        N, S = cfg.n_neurons, cfg.n_sources
        QD = self._queue_depth

        # ---- Counters and run state ----------------------------------------------------------
        rx_overflows = Signal(16)
        framing_errors = Signal(16)
        bad_frames = Signal(16)
        tick_frames = Signal(32)
        with m.If(self.rx_overflow & (rx_overflows != 0xFFFF)):
            m.d.sync += rx_overflows.eq(rx_overflows + 1)
        with m.If(self.framing_error & (framing_errors != 0xFFFF)):
            m.d.sync += framing_errors.eq(framing_errors + 1)

        running = self.running
        forever = Signal()
        ticks_left = Signal(32)
        run_flags = Signal(8)
        period = Signal(32)
        # Cycles until the next tick may start: the period, counted down from the start of the
        # last tick (a tick may start when `since >= period`, `since` counting up from 0).
        wait = Signal(32)
        if self._paced:
            with m.If(wait != 0):
                m.d.sync += wait.eq(wait - 1)
        tick_seq = Signal(8)

        # ---- Input queue -----------------------------------------------------------------------
        # Pushes (frames) and pops (ticks) never happen in the same cycle.
        m.submodules.queue = queue_mem = Memory(shape=16, depth=QD, init=[], attrs=NO_RW_CHECK)
        queue_w = queue_mem.write_port()
        queue_r = registered_read_port(m, queue_mem, "queue")
        head = Signal(range(QD))
        tail = Signal(range(QD))
        used = Signal(range(QD + 1))
        queued_ticks = Signal(range(QD + 1))
        queue_free = Signal(16)
        m.d.comb += [queue_free.eq(QD - used), queue_r.addr.eq(head)]

        # ---- Frame fields ---------------------------------------------------------------------
        seq = Signal(8)
        op = Signal(8)
        length = Signal(range(MAX_BODY + 1))
        plen = Signal(range(MAX_BODY + 1))
        m.d.comb += plen.eq(length - 4)
        space = Signal(8)
        addr = Signal(32)
        count = Signal(16)
        index = Signal(16)        # loop counter over words or entries
        index_next = Signal(17)
        m.d.comb += index_next.eq(index + 1)
        last_index = index_next == count     # index == count - 1
        error = Signal(4)
        # The detail of an ERROR reply: one of the registers that hold it.
        DETAIL_ZERO, DETAIL_WORD, DETAIL_ADDR, DETAIL_COUNT, DETAIL_FREE = range(5)
        detail_sel = Signal(range(5))

        # Loading bytes from the frame buffer: `ld_n` bytes from `ld_ptr`, little-endian, into
        # `word`; then continue at `ld_cont`. A load that follows another in the frame goes on
        # from where that one stopped.
        word = Signal(32)
        ld_ptr = Signal(range(MAX_BODY + 1))
        ld_n = Signal(3)
        ld_i = Signal(2)
        m.d.comb += self.buf_addr.eq(ld_ptr)

        # Emitting bytes: `em_n` bytes of `em_val`, little-endian, the last one marked `last`
        # when `em_last`; then continue at `em_cont`.
        em_val = Signal(32)
        em_n = Signal(3)
        em_last = Signal()

        ld_conts = ["HEADER_DONE", "READ_SPACE", "READ_ADDR", "READ_COUNT", "WRITE_SPACE",
                    "WRITE_ADDR", "WRITE_CHECK_NEXT", "WRITE_DO", "SPIKES_CHECK", "SPIKES_PUSH",
                    "RUN_TICKS", "RUN_FLAGS", "RUN_PERIOD", "RUN_CHECK"]
        em_conts = ["ID_NEXT", "READ_NEXT", "STATUS_2", "STATUS_3", "STATUS_4", "STATUS_5",
                    "STATUS_6", "STATUS_7", "ACK_2", "ERR_2", "REPLY_DONE", "IDLE", "TICK_WAIT",
                    "TICK_RSP", "TICK_END_2", "TICK_END_3", "RUN_END_3", "RUN_END_4"]
        ld_index = {name: i for i, name in enumerate(ld_conts)}
        em_index = {name: i for i, name in enumerate(em_conts)}
        ld_cont = Signal(range(len(ld_conts)))
        em_cont = Signal(range(len(em_conts)))
        end_pending = Signal()     # a RUN_END frame follows the current reply
        end_reason = Signal(8)

        def load(m, ptr, n, cont):
            """Load ``n`` bytes from ``ptr`` (None: where the last load stopped)."""
            m.d.sync += [ld_n.eq(n), ld_i.eq(0), word.eq(0), ld_cont.eq(ld_index[cont])]
            if ptr is not None:
                m.d.sync += ld_ptr.eq(ptr)
            m.next = "LOAD_ADDR"

        def emit(m, value, n, cont, last=False):
            m.d.sync += [em_val.eq(value), em_n.eq(n), em_last.eq(last),
                         em_cont.eq(em_index[cont])]
            m.next = "EMIT"

        def goto(m, register, names):
            with m.Switch(register):
                for i, name in enumerate(names):
                    with m.Case(i):
                        m.next = name

        # Core commands: the command is chosen by `core_sel` and presented from the engine's
        # own registers until the core takes it; READs wait for their word. Each command has
        # its continuation.
        (CORE_READ_WORD, CORE_WRITE_WORD, CORE_STATUS_T, CORE_END_T, CORE_RESET_NSTATE,
         CORE_RESET_SOURCE_READ, CORE_RESET_SOURCE_WRITE, CORE_RESET_T, CORE_SPIKE) = range(9)
        core_conts = ["READ_WORD", "WRITE_NEXT", "STATUS_1", "RUN_END_2", "RESET_NEXT",
                      "RESET_SOURCE_WRITE", "RESET_NEXT", "ACK", "TICK_POP_WAIT"]
        core_sel = Signal(range(len(core_conts)))
        reset_sources = Signal()   # RESET_STATE: 0 while neuron states, 1 while sources

        # The command's fields come from the engine's registers: every state that issues one
        # first sets `space`, `addr` and `index` (the word address is addr + index) and `word`
        # (the data), so the port needs no multiplexer beyond the spike's address.
        word_addr = Signal(28)
        cmd = self.core_cmd.payload
        core_ops = [Op.READ, Op.WRITE, Op.READ, Op.READ, Op.WRITE, Op.READ, Op.WRITE, Op.WRITE,
                    Op.SPIKE]
        spike_sel = core_sel == CORE_SPIKE
        with m.Switch(core_sel):
            for sel, op_ in enumerate(core_ops):
                with m.Case(sel):
                    m.d.comb += cmd.op.eq(op_)
        m.d.comb += [cmd.space.eq(Mux(spike_sel, Space.SOURCE, space[:3])),
                     cmd.addr.eq(Mux(spike_sel, queue_r.data, word_addr)),
                     cmd.data.eq(word)]
        tick_cmd = Signal()
        with m.If(tick_cmd):
            # The flags are in `word` (bit 0: learn); the core ignores a TICK's address.
            m.d.comb += cmd.op.eq(Op.TICK)

        def core(m, sel):
            m.d.sync += core_sel.eq(sel)
            m.next = "CORE_SEND"

        # ---- Block checks ---------------------------------------------------------------------
        # Every block of a valid command lies below 2**16 (2 * n_neurons <= 32768) except a
        # synapse block, whose source and neuron fields are checked apart; so the end of the
        # block, `addr + count`, is computed on 17 bits and compared with constants.
        low_zero = addr[16:] == 0
        block_end = Signal(17)
        m.d.comb += block_end.eq(addr[:16] + count)
        column_end = Signal(15)
        m.d.comb += column_end.eq(addr[:14] + count)

        def below(limit):   # addr + count - 1 < limit
            return low_zero & lt_const(block_end, limit + 1)

        block_ok = Signal()
        with m.Switch(space):
            with m.Case(Space.REG):
                m.d.comb += block_ok.eq(below(len(REGISTERS)))
            with m.Case(Space.SYN):
                m.d.comb += block_ok.eq((addr[28:] == 0) & lt_const(addr[14:28], S)
                                        & lt_const(column_end, N + 1))
            with m.Case(Space.NPARAM, Space.NSTATE):
                m.d.comb += block_ok.eq(below(2 * N))
            with m.Case(Space.SOURCE):
                m.d.comb += block_ok.eq(below(S))
            with m.Case(Space.STATUS):
                m.d.comb += block_ok.eq(Mux(op == Opcode.WRITE, below(Status.CLEAR + 1),
                                            below(_STATUS_WORDS)))
        # Within a checked block, the word's address: only a synapse block reaches bit 15, and
        # its neuron field does not carry into the source field.
        m.d.comb += word_addr.eq(Cat((addr[:15] + index)[:15], addr[15:28]))
        features_ok = feature_value_ok(space == Space.NPARAM, space == Space.NSTATE, word_addr[0],
                                       word, wta=self._wta,
                                       adaptive_threshold=self._adaptive_threshold)
        value_ok = Mux(space == Space.REG, register_value_ok(m, word_addr, word), features_ok)
        # Blocks whose words are checked one by one before anything is written.
        checked_space = space == Space.REG
        if not (self._wta and self._adaptive_threshold):
            checked_space |= (space == Space.NPARAM) | (space == Space.NSTATE)

        identify_bytes = self._identify.pack()
        id_rom = Signal(8)
        with m.Switch(index):
            for i, b in enumerate(identify_bytes):
                with m.Case(i):
                    m.d.comb += id_rom.eq(b)

        tick_ready = Signal()
        m.d.comb += tick_ready.eq(running & ((wait == 0) if self._paced else 1)
                                  & (~run_flags[1] | (queued_ticks != 0)))

        def push_entry(m, entry):
            m.d.comb += [queue_w.addr.eq(tail), queue_w.data.eq(entry), queue_w.en.eq(1)]
            m.d.sync += [tail.eq(tail + 1)]

        with m.FSM(name="engine"):
            with m.State("IDLE"):
                with m.If(self.frame.valid):
                    m.d.sync += [length.eq(self.frame.payload.length),
                                 error.eq(self.frame.payload.status.as_value())]
                    m.next = "FRAME"
                with m.Elif(tick_ready):
                    if self._paced:
                        m.d.sync += wait.eq(period)
                    m.next = "TICK_INPUTS"

            # -- Frames ----------------------------------------------------------------------
            with m.State("FRAME"):
                m.d.sync += [seq.eq(0), op.eq(0), detail_sel.eq(DETAIL_ZERO)]
                with m.If(length >= 2):
                    load(m, 0, 2, "HEADER_DONE")
                with m.Else():
                    m.next = "REFUSE"

            with m.State("HEADER_DONE"):
                m.d.sync += [seq.eq(word[:8]), op.eq(word[8:16])]
                with m.If(error != FrameStatus.OK.value):
                    m.next = "REFUSE"
                with m.Else():
                    m.next = "DISPATCH"

            with m.State("REFUSE"):
                # Count the refusal; the reply says why.
                m.d.comb += self.refused.eq(1)
                with m.If(bad_frames != 0xFFFF):
                    m.d.sync += bad_frames.eq(bad_frames + 1)
                m.next = "ERR_1"

            with m.State("DISPATCH"):
                def bad(code):
                    m.d.sync += [error.eq(code), detail_sel.eq(DETAIL_ZERO)]
                    m.next = "REFUSE"
                with m.Switch(op):
                    with m.Case(Opcode.IDENTIFY):
                        with m.If(plen != 0):
                            bad(ErrorCode.BAD_LENGTH)
                        with m.Else():
                            m.d.sync += index.eq(0)
                            emit(m, Cat(seq, Const(Reply.DATA, 8), op), 3, "ID_NEXT")
                    with m.Case(Opcode.READ):
                        with m.If(plen != 7):
                            bad(ErrorCode.BAD_LENGTH)
                        with m.Else():
                            load(m, 2, 1, "READ_SPACE")
                    with m.Case(Opcode.WRITE):
                        with m.If(lt_const(plen, 9) | (plen[:2] != 1)
                                  | ~lt_const(plen, 5 + 4 * MAX_WORDS + 1)):
                            bad(ErrorCode.BAD_LENGTH)
                        with m.Else():
                            m.d.sync += count.eq((plen - 5) >> 2)
                            load(m, 2, 1, "WRITE_SPACE")
                    with m.Case(Opcode.SPIKES):
                        with m.If((plen == 0) | plen[0] | ~lt_const(plen, 2 * MAX_SPIKES + 1)):
                            bad(ErrorCode.BAD_LENGTH)
                        with m.Else():
                            m.d.sync += [count.eq(plen >> 1), index.eq(0)]
                            load(m, 2, 2, "SPIKES_CHECK")
                    with m.Case(Opcode.RUN):
                        with m.If(plen != 9):
                            bad(ErrorCode.BAD_LENGTH)
                        with m.Elif(running):
                            bad(ErrorCode.BUSY)
                        with m.Elif(self._paced):
                            load(m, 2, 4, "RUN_TICKS")
                        with m.Else():
                            load(m, 7, 4, "RUN_CHECK")
                    with m.Case(Opcode.STOP):
                        with m.If(plen != 0):
                            bad(ErrorCode.BAD_LENGTH)
                        with m.Else():
                            m.next = "STOP"
                    with m.Case(Opcode.STATUS):
                        with m.If(plen != 0):
                            bad(ErrorCode.BAD_LENGTH)
                        with m.Else():
                            m.d.sync += [space.eq(Space.STATUS), addr.eq(Status.T), index.eq(0)]
                            core(m, CORE_STATUS_T)
                    with m.Case(Opcode.RESET_STATE):
                        with m.If(plen != 0):
                            bad(ErrorCode.BAD_LENGTH)
                        with m.Elif(running):
                            bad(ErrorCode.BUSY)
                        with m.Else():
                            m.d.sync += [index.eq(0), reset_sources.eq(0), addr.eq(0),
                                         space.eq(Space.NSTATE), word.eq(0)]
                            m.next = "RESET_NEXT"
                    with m.Default():
                        bad(ErrorCode.BAD_OPCODE)

            # -- IDENTIFY --------------------------------------------------------------------
            with m.State("ID_NEXT"):
                last = index == len(identify_bytes) - 1
                m.d.sync += index.eq(index_next)
                emit(m, id_rom, 1, "ID_NEXT", last=last)
                with m.If(last):
                    m.d.sync += em_cont.eq(em_index["REPLY_DONE"])

            # -- READ ------------------------------------------------------------------------
            with m.State("READ_SPACE"):
                m.d.sync += space.eq(word[:8])
                load(m, None, 4, "READ_ADDR")
            with m.State("READ_ADDR"):
                m.d.sync += addr.eq(word)
                load(m, None, 2, "READ_COUNT")
            with m.State("READ_COUNT"):
                m.d.sync += [count.eq(word[:16]), index.eq(0)]
                m.next = "READ_CHECK"
            with m.State("READ_CHECK"):
                with m.If((count == 0) | ~lt_const(count, MAX_WORDS + 1)):
                    m.d.sync += [error.eq(ErrorCode.BAD_LENGTH), detail_sel.eq(DETAIL_COUNT)]
                    m.next = "REFUSE"
                with m.Elif(~lt_const(space, Space.STATUS.value + 1) | ~block_ok):
                    m.d.sync += [error.eq(ErrorCode.BAD_ADDRESS), detail_sel.eq(DETAIL_ADDR)]
                    m.next = "REFUSE"
                with m.Else():
                    emit(m, Cat(seq, Const(Reply.DATA, 8), op), 3, "READ_NEXT")
            with m.State("READ_NEXT"):
                with m.If(index == count):
                    m.next = "REPLY_DONE"
                with m.Else():
                    core(m, CORE_READ_WORD)
            with m.State("READ_WORD"):
                m.d.sync += index.eq(index_next)
                emit(m, word, 4, "READ_NEXT", last=last_index)

            # -- WRITE: check every address and value, then write --------------------------
            with m.State("WRITE_SPACE"):
                m.d.sync += space.eq(word[:8])
                load(m, None, 4, "WRITE_ADDR")
            with m.State("WRITE_ADDR"):
                m.d.sync += [addr.eq(word), index.eq(0)]
                m.next = "WRITE_BLOCK"
            with m.State("WRITE_BLOCK"):
                with m.If(~lt_const(space, Space.STATUS.value + 1) | ~block_ok):
                    m.d.sync += [error.eq(ErrorCode.BAD_ADDRESS), detail_sel.eq(DETAIL_ADDR)]
                    m.next = "REFUSE"
                with m.Elif(checked_space):
                    load(m, None, 4, "WRITE_CHECK_NEXT")
                with m.Else():
                    m.next = "WRITE_CHECKED"
            with m.State("WRITE_CHECK_NEXT"):
                with m.If(~value_ok):
                    # The detail is the register's address, put where the detail is read.
                    m.d.sync += [error.eq(ErrorCode.BAD_VALUE), detail_sel.eq(DETAIL_ADDR),
                                 addr.eq(word_addr)]
                    m.next = "REFUSE"
                with m.Elif(last_index):
                    m.next = "WRITE_CHECKED"
                with m.Else():
                    m.d.sync += index.eq(index_next)
                    load(m, None, 4, "WRITE_CHECK_NEXT")
            with m.State("WRITE_CHECKED"):
                m.d.sync += index.eq(0)
                load(m, 7, 4, "WRITE_DO")
            with m.State("WRITE_DO"):
                core(m, CORE_WRITE_WORD)
            with m.State("WRITE_NEXT"):
                with m.If(last_index):
                    m.next = "ACK"
                with m.Else():
                    m.d.sync += index.eq(index_next)
                    load(m, None, 4, "WRITE_DO")

            # -- SPIKES: check every entry and the room, then queue ------------------------
            with m.State("SPIKES_CHECK"):
                entry = word[:16]
                with m.If((entry != END_OF_TICK) & ~lt_const(entry, cfg.n_inputs)):
                    m.d.sync += [error.eq(ErrorCode.BAD_ADDRESS), detail_sel.eq(DETAIL_WORD)]
                    m.next = "REFUSE"
                with m.Elif(last_index):
                    with m.If(count > queue_free):
                        m.d.sync += [error.eq(ErrorCode.QUEUE_FULL), detail_sel.eq(DETAIL_FREE)]
                        m.next = "REFUSE"
                    with m.Else():
                        m.d.sync += index.eq(0)
                        load(m, 2, 2, "SPIKES_PUSH")
                with m.Else():
                    m.d.sync += index.eq(index_next)
                    load(m, None, 2, "SPIKES_CHECK")
            with m.State("SPIKES_PUSH"):
                push_entry(m, word[:16])
                with m.If(word[:16] == END_OF_TICK):
                    m.d.sync += queued_ticks.eq(queued_ticks + 1)
                m.d.sync += used.eq(used + 1)
                with m.If(last_index):
                    m.next = "ACK"
                with m.Else():
                    m.d.sync += index.eq(index_next)
                    load(m, None, 2, "SPIKES_PUSH")

            # -- RUN / STOP -------------------------------------------------------------------
            with m.State("RUN_TICKS"):
                m.d.sync += [ticks_left.eq(word), forever.eq(word == 0)]
                load(m, None, 1, "RUN_FLAGS")
            with m.State("RUN_FLAGS"):
                m.d.sync += run_flags.eq(word[:8])
                load(m, None, 4, "RUN_PERIOD")
            with m.State("RUN_PERIOD"):
                # No wait before the first tick.
                if self._paced:
                    m.d.sync += [period.eq(word), wait.eq(0)]
                m.d.sync += running.eq(1)
                m.next = "ACK"
            with m.State("RUN_CHECK"):
                # Without pacing only a period of 0 is taken: checked before anything changes.
                with m.If(word != 0):
                    m.d.sync += [error.eq(ErrorCode.BAD_VALUE), detail_sel.eq(DETAIL_WORD)]
                    m.next = "REFUSE"
                with m.Else():
                    load(m, 2, 4, "RUN_TICKS")
            with m.State("STOP"):
                with m.If(running):
                    m.d.sync += [running.eq(0), end_pending.eq(1), end_reason.eq(1)]
                m.next = "ACK"

            # -- STATUS ------------------------------------------------------------------------
            with m.State("STATUS_1"):
                # `word` holds t until STATUS_3 emits it.
                emit(m, Cat(seq, Const(Reply.DATA, 8), op, running), 4, "STATUS_2")
            with m.State("STATUS_2"):
                emit(m, ticks_left, 4, "STATUS_3")
            with m.State("STATUS_3"):
                emit(m, word, 4, "STATUS_4")
            with m.State("STATUS_4"):
                emit(m, Cat(queue_free, queued_ticks.as_unsigned()[:16]), 4, "STATUS_5")
            with m.State("STATUS_5"):
                emit(m, Cat(rx_overflows, framing_errors), 4, "STATUS_6")
            with m.State("STATUS_6"):
                emit(m, bad_frames, 2, "STATUS_7")
            with m.State("STATUS_7"):
                emit(m, tick_frames, 4, "REPLY_DONE", last=True)

            # -- RESET_STATE: zero neuron and source state, keep source signs --------------
            with m.State("RESET_NEXT"):
                with m.If(~reset_sources):
                    with m.If(lt_const(index, 2 * N)):
                        core(m, CORE_RESET_NSTATE)
                    with m.Else():
                        m.d.sync += [index.eq(0), reset_sources.eq(1), space.eq(Space.SOURCE)]
                with m.Elif(lt_const(index, S)):
                    core(m, CORE_RESET_SOURCE_READ)
                with m.Else():
                    m.d.sync += [head.eq(0), tail.eq(0), used.eq(0), queued_ticks.eq(0),
                                 space.eq(Space.STATUS), addr.eq(Status.T), index.eq(0),
                                 word.eq(0)]
                    core(m, CORE_RESET_T)
            with m.State("RESET_SOURCE_WRITE"):
                # Keep the sign, zero the trace and the pending event.
                m.d.sync += word.eq(word & 0x100)
                core(m, CORE_RESET_SOURCE_WRITE)

            # -- Replies -----------------------------------------------------------------------
            with m.State("ACK"):
                emit(m, Cat(seq, Const(Reply.ACK, 8), op), 3, "ACK_2")
            with m.State("ACK_2"):
                emit(m, queue_free, 2, "REPLY_DONE", last=True)

            with m.State("ERR_1"):
                emit(m, Cat(seq, Const(Reply.ERROR, 8), op, error), 4, "ERR_2")
            with m.State("ERR_2"):
                detail = Signal(32)
                with m.Switch(detail_sel):
                    with m.Case(DETAIL_WORD):
                        m.d.comb += detail.eq(word)
                    with m.Case(DETAIL_ADDR):
                        m.d.comb += detail.eq(addr)
                    with m.Case(DETAIL_COUNT):
                        m.d.comb += detail.eq(count)
                    with m.Case(DETAIL_FREE):
                        m.d.comb += detail.eq(queue_free)
                emit(m, detail, 4, "REPLY_DONE", last=True)

            # The reply is out: hand the buffer back to the decoder.
            with m.State("REPLY_DONE"):
                m.d.comb += self.frame.ready.eq(1)
                with m.If(end_pending):
                    m.next = "RUN_END_1"
                with m.Else():
                    m.next = "IDLE"

            # -- Ticks -------------------------------------------------------------------------
            with m.State("TICK_INPUTS"):
                m.d.sync += word.eq(run_flags[0])   # the TICK command's data: learn
                # Without the INPUTS flag a tick takes no input.
                with m.If(~run_flags[1]):
                    m.next = "TICK_HEADER"
                with m.Else():
                    m.next = "TICK_POP"
            with m.State("TICK_POP"):
                # queue_r.data is the entry at `head` (its address has been stable a cycle); the
                # head moves on when the entry has been taken.
                entry = queue_r.data
                with m.If(entry == END_OF_TICK):
                    m.d.sync += [head.eq(head + 1), used.eq(used - 1),
                                 queued_ticks.eq(queued_ticks - 1)]
                    m.next = "TICK_HEADER"
                with m.Else():
                    core(m, CORE_SPIKE)
            with m.State("TICK_POP_WAIT"):
                # One cycle for the new head's entry to be read.
                m.next = "TICK_POP"
            with m.State("TICK_HEADER"):
                emit(m, Cat(tick_seq, Const(Reply.TICK, 8)), 2, "TICK_WAIT")
            with m.State("TICK_WAIT"):
                # The TICK command, then its responses.
                m.d.comb += [self.core_cmd.valid.eq(1), tick_cmd.eq(1)]
                with m.If(self.core_cmd.ready):
                    m.next = "TICK_RSP"
            with m.State("TICK_RSP"):
                m.d.comb += self.core_rsp.ready.eq(1)
                with m.If(self.core_rsp.valid):
                    with m.If(self.core_rsp.payload.kind == Kind.TICK_DONE):
                        emit(m, self.core_rsp.payload.data, 4, "TICK_END_2")
                    with m.Else():
                        emit(m, self.core_rsp.payload.data, 2, "TICK_RSP")
            with m.State("TICK_END_2"):
                emit(m, queue_free, 2, "TICK_END_3", last=True)
            with m.State("TICK_END_3"):
                m.d.sync += [tick_seq.eq(tick_seq + 1), tick_frames.eq(tick_frames + 1)]
                with m.If(~forever & (ticks_left == 1)):
                    m.d.sync += [running.eq(0), end_reason.eq(0)]
                    m.next = "RUN_END_1"
                with m.Else():
                    m.next = "IDLE"
                with m.If(~forever):
                    m.d.sync += ticks_left.eq(ticks_left - 1)

            # RUN_END: the tick counter after the run, and why it ended (0: done, 1: stopped).
            with m.State("RUN_END_1"):
                m.d.sync += [end_pending.eq(0), space.eq(Space.STATUS), addr.eq(Status.T),
                             index.eq(0)]
                core(m, CORE_END_T)
            with m.State("RUN_END_2"):
                # `word` holds t until RUN_END_3 emits it.
                emit(m, Cat(tick_seq, Const(Reply.RUN_END, 8)), 2, "RUN_END_3")
            with m.State("RUN_END_3"):
                emit(m, word, 4, "RUN_END_4")
            with m.State("RUN_END_4"):
                emit(m, end_reason, 1, "IDLE", last=True)

            # -- Sub-machines ------------------------------------------------------------------
            with m.State("LOAD_ADDR"):
                m.next = "LOAD_DATA"
            with m.State("LOAD_DATA"):
                with m.Switch(ld_i):
                    for i in range(4):
                        with m.Case(i):
                            m.d.sync += word[8 * i:8 * i + 8].eq(self.buf_data)
                m.d.sync += [ld_i.eq(ld_i + 1), ld_ptr.eq(ld_ptr + 1)]
                with m.If(ld_i == ld_n - 1):
                    goto(m, ld_cont, ld_conts)
                with m.Else():
                    m.next = "LOAD_ADDR"

            with m.State("EMIT"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.data.eq(em_val[:8]),
                             self.tx.payload.last.eq(em_last & (em_n == 1))]
                with m.If(self.tx.ready):
                    m.d.sync += [em_val.eq(em_val >> 8), em_n.eq(em_n - 1)]
                    with m.If(em_n == 1):
                        goto(m, em_cont, em_conts)

            with m.State("CORE_SEND"):
                m.d.comb += self.core_cmd.valid.eq(1)
                with m.If(self.core_cmd.ready):
                    with m.Switch(core_sel):
                        with m.Case(CORE_READ_WORD, CORE_STATUS_T, CORE_END_T,
                                    CORE_RESET_SOURCE_READ):
                            m.next = "CORE_READ"
                        with m.Case(CORE_RESET_NSTATE, CORE_RESET_SOURCE_WRITE):
                            m.d.sync += index.eq(index_next)
                            m.next = "RESET_NEXT"
                        with m.Case(CORE_SPIKE):
                            m.d.sync += [head.eq(head + 1), used.eq(used - 1)]
                            m.next = "TICK_POP_WAIT"
                        with m.Default():
                            goto(m, core_sel, core_conts)
            with m.State("CORE_READ"):
                m.d.comb += self.core_rsp.ready.eq(1)
                with m.If(self.core_rsp.valid):
                    m.d.sync += word.eq(self.core_rsp.payload.data)
                    goto(m, core_sel, core_conts)

        return m
