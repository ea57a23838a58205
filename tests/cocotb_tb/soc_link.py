"""cocotb tests of the whole SoC (UART, SLIP framing, command engine, core) through its pins.

The top is :class:`plasticore.hdl.soc.SoC`, driven only through ``uart_rx`` and ``uart_tx`` at
the production divisor (4 cycles per bit: 3 Mbaud on the iCEBreaker's 12 MHz) by
:class:`plasticore.sim.cocotb_soc.SoCTB`, which feeds every byte it sends to a
:class:`~plasticore.sim.link_model.ModelPeer` as well and compares every frame the SoC sends with
the peer's, byte for byte (``ModelPeer``: "given the same bytes while idle, both send the same
bytes"; during a run, the same holds when each tick runs where the SoC's TICK frames say it
did). On top of that, each test checks what it is about directly (error codes, round-tripped
words, spike counts), so that the two implementations cannot agree on a misreading of the spec.

The SoC's parameters come from the wrapper in ``PLASTICORE_SOC`` (JSON: sizes, banks, SPRAM,
clock, divisor); the tests adapt to them. Every test ends with :meth:`SoCTB.finish`: a STATUS
equal to the peer's (with the framing errors the test caused), nothing left on the line.
"""

import itertools
import json
import os
import struct

import cocotb
import numpy as np

from plasticore.config import REGISTERS, REGISTERS_BY_NAME, CoreConfig
from plasticore.hdl.core import Space, Status
from plasticore.protocol import (END, END_OF_TICK, ESC, ESC_END, MAX_SPIKES, MAX_WORDS,
                                 OPTIONAL_FEATURES,
                                 PROTOCOL_VERSION, Capability, ErrorCode, IdentifyInfo, Opcode,
                                 Reply, RunFlags, TickFrame, build_frame, crc16,
                                 slip_encode)
from plasticore.sim.cocotb_soc import SoCTB
from plasticore.sim.link_model import ModelPeer
from plasticore.sim.stimulus import random_image, random_registers

TIMEOUT = dict(timeout_time=20, timeout_unit="ms")


def soc_parameters() -> dict:
    return json.loads(os.environ["PLASTICORE_SOC"])


def make_tb(dut, **kwargs) -> SoCTB:
    p = soc_parameters()
    config = CoreConfig(n_inputs=p["n_inputs"], n_neurons=p["n_neurons"],
                        n_recurrent=p["n_recurrent"])
    peer = ModelPeer(config, queue_depth=p["queue_depth"], rx_buffer=p["rx_buffer"],
                     clock_hz=p["clock_hz"], baud_divisor=p["divisor"], banks=p["banks"],
                     spram=p["spram"])
    return SoCTB(dut, peer, **kwargs)


async def loaded_tb(dut, seed, **kwargs) -> SoCTB:
    """A reset SoC with a random image loaded into it and into the peer."""
    tb = make_tb(dut, **kwargs)
    await tb.reset()
    cfg = tb.config
    await tb.load(random_image(seed, (cfg.n_inputs, cfg.n_neurons, cfg.n_recurrent)))
    return tb


#: Sequence numbers of the hand-made frames: every one differs from the last, so a reply that
#: echoes a stale one shows.
_SEQ = itertools.count(0x40)


def frame(op, payload=b"", seq=None) -> bytes:
    return build_frame(next(_SEQ) & 0xFF if seq is None else seq, op, payload)


def read_cmd(space, addr, count, seq=None) -> bytes:
    return frame(Opcode.READ, struct.pack("<BIH", _int(space), addr, count), seq)


def write_cmd(space, addr, words, seq=None) -> bytes:
    return frame(Opcode.WRITE, struct.pack(f"<BI{len(words)}I", _int(space), addr, *words),
                 seq)


def _int(value) -> int:
    """An amaranth enum member (``Space``) or an int, as an int."""
    return getattr(value, "value", value)


def named(*values):
    """Parameter values named after themselves in the test names."""
    return [cocotb.Param(value, name=value) for value in values]


def spikes_cmd(entries) -> bytes:
    return frame(Opcode.SPIKES, struct.pack(f"<{len(entries)}H", *entries))


def run_payload(ticks, flags=0, period=0) -> bytes:
    return struct.pack("<IBI", ticks, int(flags), period)


def raw_frame(body: bytes) -> bytes:
    """A frame with a body taken as it is (no CRC appended)."""
    return slip_encode(body)


def damaged(op, payload=b"", *, byte=None, crc_flip=0) -> bytes:
    """A frame whose CRC is that of the intact body, after flipping bit 0 of payload byte
    *byte* (if given) and the CRC bits *crc_flip*."""
    body = bytearray([next(_SEQ) & 0xFF, op, *payload])
    crc = crc16(bytes(body)) ^ crc_flip
    if byte is not None:
        body[2 + byte] ^= 1
    return raw_frame(bytes(body) + struct.pack("<H", crc))


# ---- Identify -------------------------------------------------------------------------------

@cocotb.test(**TIMEOUT)
@cocotb.parametrize(seq=[0x00, END, ESC, 0xFF])
async def identify_matches_the_configuration(dut, seq):
    """IDENTIFY (with sequence numbers that need SLIP stuffing) answers DATA with the SoC's
    sizes, buffers, clock and divisor; STATUS after reset shows nothing running and nothing
    lost."""
    tb = make_tb(dut)
    await tb.reset()
    p = soc_parameters()
    reply = await tb.command(Opcode.IDENTIFY, seq=seq)
    assert (reply.seq, reply.op, reply.payload[0]) == (seq, Reply.DATA, Opcode.IDENTIFY)
    info = IdentifyInfo.unpack(reply.payload[1:])
    assert info == IdentifyInfo(
        version=PROTOCOL_VERSION, n_inputs=p["n_inputs"], n_neurons=p["n_neurons"],
        n_recurrent=p["n_recurrent"], banks=p["banks"],
        capabilities=int(OPTIONAL_FEATURES | (Capability.SPRAM if p["spram"] else 0)),
        queue_depth=p["queue_depth"], rx_buffer=p["rx_buffer"], clock_hz=p["clock_hz"],
        baud_divisor=p["divisor"]), info
    status = await tb.status()
    assert status.running == 0 and status.queue_free == p["queue_depth"]
    assert (status.rx_overflows, status.framing_errors, status.bad_frames,
            status.tick_frames) == (0, 0, 0, 0)
    # The core's own view of its sizes, through the STATUS space.
    sizes, core = await tb.read(Space.STATUS, Status.CONFIG_SIZES, 2)
    assert sizes == p["n_inputs"] | p["n_neurons"] << 16
    assert core == p["n_recurrent"] | p["banks"] << 16 | int(p["spram"]) << 24
    await tb.finish()


# ---- WRITE then READ ------------------------------------------------------------------------

def _kept_bits(space, addr):
    """The bits of a word written at *addr* that the space keeps (the others read 0)."""
    if space == Space.SYN:
        return 0xFFFF
    if space == Space.NSTATE and addr & 1:
        return 0xFFF          # ref:4, y:8
    if space == Space.SOURCE:
        return 0x3FF          # x:8, inhibitory:1, pending:1
    return 0xFFFFFFFF


def _space_size(cfg, space):
    return {Space.REG: len(REGISTERS), Space.SYN: cfg.n_neurons,
            Space.NPARAM: 2 * cfg.n_neurons, Space.NSTATE: 2 * cfg.n_neurons,
            Space.SOURCE: cfg.n_sources, Space.STATUS: 1}[space]


def _payload_words(rng, kind, count):
    if kind == "random":
        return [int(w) for w in rng.integers(0, 2**32, count, dtype=np.uint64)]
    # Every byte of every word is END or ESC, alternating with all-zero and all-one words:
    # the most stuffing in both directions, and every bit both ways.
    pattern = [0xC0DBC0DB, 0x00000000, 0xDBC0DBC0, 0xFFFFFFFF]
    return [pattern[k % 4] for k in range(count)]


def _register_words(rng, kind):
    if kind == "random":
        regs = random_registers(rng)
        return [regs[r.name] for r in REGISTERS]
    # Every register at its top or (at random) its bottom, SEED all END and ESC bytes. At the
    # top SHIFT + GATE_SHIFT is 39, which is written (the core clamps the shift at 24).
    words = [r.hi for r in REGISTERS] if rng.random() < 0.5 else [r.lo for r in REGISTERS]
    words[REGISTERS_BY_NAME["SEED"].address] = 0xC0DBC0DB
    return words


@cocotb.test(**TIMEOUT)
@cocotb.parametrize(space=[Space.REG, Space.SYN, Space.NPARAM, Space.NSTATE, Space.SOURCE,
                           Space.STATUS], payload=["random", "stuffing"])
async def write_then_read_round_trips(dut, space, payload):
    """Blocks of words written to one space read back as written (the bits the space keeps),
    and each reply equals the peer's. Blocks: the whole space (or a synapse row), one word at
    each end, and random blocks; the synapse rows are spread over every source."""
    tb = make_tb(dut)
    await tb.reset()
    cfg = tb.config
    rng = np.random.default_rng(1000 * space.value + len(payload))
    size = _space_size(cfg, space)
    blocks = [(0, size), (size - 1, 1), (0, 1)]
    for _ in range(3):
        first = int(rng.integers(0, size))
        blocks.append((first, int(rng.integers(1, min(size - first, MAX_WORDS) + 1))))
    written = {}
    for k, (first, count) in enumerate(blocks):
        if space == Space.REG:
            words = _register_words(rng, payload)[first:first + count]
        else:
            words = _payload_words(rng, payload, count)
        base = first
        if space == Space.SYN:
            base |= (k * 5 % cfg.n_sources) << 14
        reply = await tb.write(space, base, words)
        assert (reply.op, reply.payload[0]) == (Reply.ACK, Opcode.WRITE), reply
        for i, w in enumerate(words):
            written[base + i] = w
        back = await tb.read(space, base, count)
        assert back == [w & _kept_bits(space, base + i) for i, w in enumerate(words)], (
            f"block {k} at {base:#x}: wrote {[hex(w) for w in words]}, "
            f"read {[hex(w) for w in back]}")
    # Later blocks did not disturb earlier ones: a sample of single words.
    for base, expect in sorted(written.items())[:: max(1, len(written) // 8)]:
        assert await tb.read(space, base, 1) == [expect & _kept_bits(space, base)]
    await tb.finish()


# ---- Refused commands -----------------------------------------------------------------------

def error_cases(cfg, name):
    """``(what, line bytes, the ErrorCode of the reply or None for no reply)`` for one class of
    refused command. Every line is refused (or ignored) and must change nothing."""
    S, N, I = cfg.n_sources, cfg.n_neurons, cfg.n_inputs
    rng = np.random.default_rng(7)
    if name == "bad_crc":
        return [
            ("READ, the count's bit 0 flipped",
             damaged(Opcode.READ, struct.pack("<BIH", 0, 0, 4), byte=5),
             ErrorCode.BAD_CRC),
            ("WRITE, a word's bit 0 flipped",
             damaged(Opcode.WRITE, struct.pack("<BI2I", 1, 1 << 14, 0x1234, 0x5678),
                     byte=9), ErrorCode.BAD_CRC),
            ("IDENTIFY, the CRC's top bit flipped", damaged(Opcode.IDENTIFY, crc_flip=0x8000),
             ErrorCode.BAD_CRC),
            ("RUN, the CRC's bit 0 flipped", damaged(Opcode.RUN, run_payload(3), crc_flip=1),
             ErrorCode.BAD_CRC),
            ("SPIKES, the op's bit 0 flipped (STOP), the payload intact",
             raw_frame(bytes([0x5A, Opcode.STOP, 0xFF, 0xFF]) + struct.pack(
                 "<H", crc16(bytes([0x5A, Opcode.SPIKES, 0xFF, 0xFF])))), ErrorCode.BAD_CRC),
        ]
    if name == "bad_opcode":
        return [(f"opcode {op:#04x}", frame(op, payload), ErrorCode.BAD_OPCODE)
                for op, payload in ((0x00, b""), (0x09, b""), (0x80, b"\x01\x02"),
                                    (0xFF, bytes(9)))]
    if name == "bad_length":
        return [
            ("body of 3 bytes", raw_frame(b"\x01\x02\x03"), ErrorCode.BAD_LENGTH),
            ("body of 1 byte", raw_frame(b"\x07"), ErrorCode.BAD_LENGTH),
            ("IDENTIFY with a payload byte", frame(Opcode.IDENTIFY, b"\0"),
             ErrorCode.BAD_LENGTH),
            ("READ without its count", frame(Opcode.READ, struct.pack("<BI", 0, 0)),
             ErrorCode.BAD_LENGTH),
            ("READ of 0 words", read_cmd(Space.REG, 0, 0), ErrorCode.BAD_LENGTH),
            ("READ of MAX_WORDS + 1 words", read_cmd(Space.REG, 0, MAX_WORDS + 1),
             ErrorCode.BAD_LENGTH),
            ("WRITE without words", frame(Opcode.WRITE, struct.pack("<BI", 0, 0)),
             ErrorCode.BAD_LENGTH),
            ("WRITE with a partial word",
             frame(Opcode.WRITE, struct.pack("<BII", 1, 0, 1) + b"\x01\x02"),
             ErrorCode.BAD_LENGTH),
            ("SPIKES with an odd length", frame(Opcode.SPIKES, b"\x01\x00\x02"),
             ErrorCode.BAD_LENGTH),
            ("SPIKES without entries", frame(Opcode.SPIKES), ErrorCode.BAD_LENGTH),
            ("SPIKES of MAX_SPIKES + 1", spikes_cmd([0] * (MAX_SPIKES + 1)),
             ErrorCode.BAD_LENGTH),
            ("RUN one byte short", frame(Opcode.RUN, run_payload(1)[:-1]),
             ErrorCode.BAD_LENGTH),
            ("STOP with a payload", frame(Opcode.STOP, b"\0"), ErrorCode.BAD_LENGTH),
            ("STATUS with a payload", frame(Opcode.STATUS, b"\0\0"), ErrorCode.BAD_LENGTH),
            ("RESET_STATE with a payload", frame(Opcode.RESET_STATE, b"\0"),
             ErrorCode.BAD_LENGTH),
            ("WRITE of MAX_WORDS + 1 words (body beyond MAX_BODY)",
             write_cmd(Space.SYN, 0, [0] * (MAX_WORDS + 1)), ErrorCode.BAD_FRAME),
        ]
    if name == "bad_address":
        return [
            (f"READ space {space}", read_cmd(space, 0, 1), ErrorCode.BAD_ADDRESS)
            for space in (6, 7, 0x80, 0xFF)
        ] + [
            ("READ REG across the end", read_cmd(Space.REG, len(REGISTERS) - 1, 2),
             ErrorCode.BAD_ADDRESS),
            ("READ REG at 2**32 - 1", read_cmd(Space.REG, 0xFFFFFFFF, 1), ErrorCode.BAD_ADDRESS),
            ("READ REG at 2**16 (wraps to 0 in 16 bits)", read_cmd(Space.REG, 1 << 16, 1),
             ErrorCode.BAD_ADDRESS),
            ("READ SYN of a source that does not exist", read_cmd(Space.SYN, S << 14, 1),
             ErrorCode.BAD_ADDRESS),
            ("READ SYN across the end of a row", read_cmd(Space.SYN, (N - 1), 2),
             ErrorCode.BAD_ADDRESS),
            ("READ SYN with address bit 28", read_cmd(Space.SYN, 1 << 28, 1),
             ErrorCode.BAD_ADDRESS),
            ("READ NPARAM past the last neuron", read_cmd(Space.NPARAM, 2 * N, 1),
             ErrorCode.BAD_ADDRESS),
            ("READ NSTATE across the end", read_cmd(Space.NSTATE, 2 * N - 1, 2),
             ErrorCode.BAD_ADDRESS),
            ("READ SOURCE past the last", read_cmd(Space.SOURCE, S, 1), ErrorCode.BAD_ADDRESS),
            ("READ STATUS past FLAGS", read_cmd(Space.STATUS, Status.FLAGS, 2),
             ErrorCode.BAD_ADDRESS),
            ("WRITE STATUS at a read-only counter", write_cmd(Space.STATUS, Status.PRE_EVENTS,
                                                              [5]), ErrorCode.BAD_ADDRESS),
            ("WRITE STATUS T, CLEAR and one more", write_cmd(Space.STATUS, Status.T,
                                                             [1, 0, 0]), ErrorCode.BAD_ADDRESS),
            ("WRITE SYN of MAX_WORDS words (a MAX_BODY frame) past a row",
             write_cmd(Space.SYN, 1 << 14, [0xFFFF] * MAX_WORDS), ErrorCode.BAD_ADDRESS),
            ("WRITE NPARAM one past the end", write_cmd(Space.NPARAM, 1, [7] * (2 * N)),
             ErrorCode.BAD_ADDRESS),
            ("SPIKES with input n_inputs", spikes_cmd([0, I, END_OF_TICK]),
             ErrorCode.BAD_ADDRESS),
            ("SPIKES with 0xFFFE", spikes_cmd([END_OF_TICK, 0xFFFE]), ErrorCode.BAD_ADDRESS),
        ]
    if name == "bad_value":
        regs = [r.default for r in REGISTERS]
        cases = []
        for reg, value in (("W_MAX", 0), ("W_MAX", 256), ("LTP_EN", 2), ("CONSOL_C_MAX", 9),
                           ("CONSOL_C_MAX", 0), ("P_LEARN_MAX", 7), ("TH_DECAY_SHIFT", 17),
                           ("SHIFT_PLUS", 25), ("X_DECAY_SHIFT", 0x10000)):
            r = REGISTERS_BY_NAME[reg]
            if r.lo <= value <= r.hi:
                continue
            cases.append((f"{reg} = {value} alone", write_cmd(Space.REG, r.address, [value]),
                          ErrorCode.BAD_VALUE))
        # The whole register block, every value but the last fine (and different from what
        # is there, so a partial write would show).
        words = [min(r.hi, r.default + 1) if r.name not in ("SHIFT_PLUS", "SHIFT_MINUS")
                 else r.default for r in REGISTERS]
        words[-1] = REGISTERS[-1].hi + 1
        cases.append(("the whole block, the last register out of range",
                      write_cmd(Space.REG, 0, words), ErrorCode.BAD_VALUE))
        words = list(regs)
        words[1] = 0   # W_MAX
        cases.append(("the whole block, W_MAX = 0", write_cmd(Space.REG, 0, words),
                      ErrorCode.BAD_VALUE))
        return cases
    if name == "garbage":
        noise = bytes(int(b) for b in rng.integers(0, 256, 40) if b not in (END, ESC))
        return [
            ("three bytes, then END", b"\x11\x22\x33" + bytes([END]), ErrorCode.BAD_LENGTH),
            ("empty frames", bytes([END] * 5), None),
            ("random bytes (no END or ESC)", noise + bytes([END]), ErrorCode.BAD_CRC),
            ("a bad escape", bytes([0x41, 0x42, ESC, 0x00, 0x43, END]), ErrorCode.BAD_FRAME),
            ("ESC END", bytes([0x41, 0x42, 0x43, ESC, END]), ErrorCode.BAD_LENGTH),
            ("a body beyond MAX_BODY", bytes([0x55] * 300) + bytes([END]),
             ErrorCode.BAD_FRAME),
            ("a frame cut short by END", frame(Opcode.READ, b"\0\0\0\0\0\1\0")[:7]
             + bytes([END]), ErrorCode.BAD_CRC),
            ("ESC ESC_END ESC ESC_END (stuffed ENDs) only",
             bytes([END, ESC, ESC_END, ESC, ESC_END, END]), ErrorCode.BAD_LENGTH),
        ]
    if name == "queue_full":
        # The wrapper's setup fills the queue (two SPIKES of MAX_SPIKES entries); then:
        return [
            ("SPIKES of one entry into a full queue", spikes_cmd([0]), ErrorCode.QUEUE_FULL),
            ("SPIKES of MAX_SPIKES into a full queue", spikes_cmd([1] * MAX_SPIKES),
             ErrorCode.QUEUE_FULL),
        ]
    raise ValueError(name)


ERROR_CLASSES = ["bad_crc", "bad_opcode", "bad_length", "bad_address", "bad_value", "garbage",
                 "queue_full"]


async def refusals(tb, cases):
    """Send each refused line, compare its reply with the peer's, check the reply's error code,
    and that the peer's state did not change (so the SoC's, compared later, must not
    either)."""
    for what, line, code in cases:
        before = tb.peer.snapshot()
        frames = await tb.exchange(line)
        if code is None:
            assert frames == [], f"{what}: answered {frames}"
        else:
            assert len(frames) == 1 and frames[0].op == Reply.ERROR, f"{what}: {frames}"
            assert frames[0].payload[1] == code, (
                f"{what}: {ErrorCode(frames[0].payload[1]).name}, expected {code.name}")
        assert tb.peer.snapshot() == before, f"{what}: the peer changed"


@cocotb.test(**TIMEOUT)
@cocotb.parametrize(kind=named(*ERROR_CLASSES))
async def refused_commands_change_nothing(dut, kind):
    """Each line of one class of refusal gets the ERROR the protocol names (the peer's, byte
    for byte) and changes nothing: afterwards a valid command is answered (the link recovered)
    and the whole state reads back equal to the peer's, which the refusals left alone."""
    tb = await loaded_tb(dut, seed=11)
    cfg = tb.config
    if kind == "queue_full":
        for entries in ([0, 1, END_OF_TICK] + [2] * (MAX_SPIKES - 3), [3] * MAX_SPIKES):
            reply = await tb.command(Opcode.SPIKES, struct.pack(f"<{len(entries)}H", *entries))
            assert reply.op == Reply.ACK
        assert struct.unpack("<H", reply.payload[1:])[0] == 0
    await refusals(tb, error_cases(cfg, kind))
    reply = await tb.identify()
    assert reply.op == Reply.DATA
    status = await tb.status()
    assert status.bad_frames == sum(tb.peer.errors.values()) > 0
    await tb.check_state()
    await tb.finish()


@cocotb.test(**TIMEOUT)
async def register_writes_beyond_the_shift_limit_are_accepted(dut):
    """SHIFT_PLUS or SHIFT_MINUS plus a GATE_SHIFT above 24 (each register in range) is written
    and acknowledged, by the SoC as by the peer: the core clamps the shift at 24
    (``docs/core-model.md`` section 3.3) and refuses nothing. A learning run with every total
    above 24 then leaves the same state in both, with at least one clamped update that stepped
    (``tests/test_hdl_core.py`` checks many more, bit for bit)."""
    tb = await loaded_tb(dut, seed=11)
    reply = await tb.write(Space.REG, 0, [r.default for r in REGISTERS])
    assert reply.op == Reply.ACK
    reg = {r.name: r.address for r in REGISTERS}
    # From the defaults: GATE_SHIFT_6 = 6, SHIFT_PLUS = 12, SHIFT_MINUS = 13. The last block
    # sets hard bounds with the largest factors and every total to 33..39.
    writes = [
        ("SHIFT_PLUS", [19]),                       # + GATE_SHIFT_6 = 6 is 25
        ("GATE_SHIFT_6", [12]),                     # + SHIFT_MINUS = 13 is 25
        ("SHIFT_PLUS", [24, 24]),                   # SHIFT_PLUS and SHIFT_MINUS in one block
        ("SOFT_BOUNDS", [0, 255, 255, 24, 24, 6, 6, 255, 255, 0, *range(9, 16)]),
    ]
    for name, words in writes:
        reply = await tb.write(Space.REG, reg[name], words)
        assert (reply.op, reply.payload[0]) == (Reply.ACK, Opcode.WRITE), reply
        assert await tb.read(Space.REG, reg[name], len(words)) == words
    ticks = 24
    entries = tick_entries(np.random.default_rng(0), tb.config.n_inputs, ticks, rate=0.5)
    for k in range(0, len(entries), MAX_SPIKES):
        chunk = entries[k:k + MAX_SPIKES]
        await tb.command(Opcode.SPIKES, struct.pack(f"<{len(chunk)}H", *chunk))
    await tb.command(Opcode.RUN, run_payload(ticks, RunFlags.INPUTS | RunFlags.LEARN))
    frames = await tb.ticks(ticks)
    assert sum(f.op == Reply.TICK for f in frames) == ticks and frames[-1].op == Reply.RUN_END
    counters = tb.peer.core.model.counters
    assert counters.ltp_writes + counters.ltd_writes > 0, counters
    await tb.check_state()
    await tb.finish()


# ---- Spikes and runs ------------------------------------------------------------------------

def tick_entries(rng, n_inputs, ticks, rate):
    entries = []
    for _ in range(ticks):
        entries += [int(i) for i in np.flatnonzero(rng.random(n_inputs) < rate)]
        entries.append(END_OF_TICK)
    return entries


RUN_MODES = {
    "queued_learn": (RunFlags.INPUTS | RunFlags.LEARN, "queued"),
    "queued": (RunFlags.INPUTS, "queued"),
    "lockstep_learn": (RunFlags.INPUTS | RunFlags.LEARN, "lockstep"),
    "no_inputs_learn": (RunFlags.LEARN, "no inputs"),
}


@cocotb.test(**TIMEOUT)
@cocotb.parametrize(case=named(*RUN_MODES))
async def run_tick_frames_equal_the_model(dut, case):
    """SPIKES then RUN: every TICK frame (spikes in the core's order, t, queue_free, its
    sequence number) and the RUN_END equal the peer's, and afterwards the whole state
    (learned synapses included) reads back equal. ``queued``: all ticks' inputs before the RUN;
    ``lockstep``: the RUN first, then one tick's inputs per SPIKES, each tick's frame awaited;
    ``no inputs``: a run without INPUTS leaves queued entries alone."""
    flags, mode = RUN_MODES[case]
    seed = {"queued": 3, "lockstep": 4, "no inputs": 5}[mode] + int(flags)
    tb = await loaded_tb(dut, seed=seed)
    cfg = tb.config
    rng = np.random.default_rng(seed)
    ticks = 24
    entries = tick_entries(rng, cfg.n_inputs, ticks, rate=0.4)
    if mode in ("queued", "no inputs"):
        for k in range(0, len(entries), MAX_SPIKES):
            chunk = entries[k:k + MAX_SPIKES]
            await tb.command(Opcode.SPIKES, struct.pack(f"<{len(chunk)}H", *chunk))
        await tb.command(Opcode.RUN, run_payload(ticks, flags))
        frames = await tb.ticks(ticks)
    else:
        await tb.command(Opcode.RUN, run_payload(ticks, flags))
        frames = []
        ends = [k for k, e in enumerate(entries) if e == END_OF_TICK]
        for first, last in zip([0] + [k + 1 for k in ends], ends):
            one_tick = entries[first:last + 1]
            await tb.command(Opcode.SPIKES, struct.pack(f"<{len(one_tick)}H", *one_tick))
            frames += await tb.ticks(1)
    ticks_seen = [f for f in frames if f.op == Reply.TICK]
    assert len(ticks_seen) == ticks and frames[-1].op == Reply.RUN_END
    decoded = [TickFrame.unpack(f.payload) for f in ticks_seen]
    # TICK frames count up from 0 after reset; each tick's t is one more than the last.
    assert [f.seq for f in ticks_seen] == list(range(ticks))
    assert all((b.t - a.t) % 2**32 == 1 for a, b in zip(decoded, decoded[1:]))
    assert struct.unpack("<IB", frames[-1].payload) == ((decoded[-1].t + 1) % 2**32, 0)
    fired = sum(len(f.spikes) for f in decoded)
    assert fired > 0, "no neuron fired: the comparison proves little"
    status = await tb.status()
    assert status.running == 0 and status.tick_frames == ticks
    expected_left = len(entries) if mode == "no inputs" else 0
    assert status.queue_free == tb.peer.info.queue_depth - expected_left
    await tb.check_state()
    await tb.finish()


@cocotb.test(**TIMEOUT)
@cocotb.parametrize(waiting=[False, True])
async def stop_ends_a_run_until_stop(dut, waiting):
    """RUN with ticks = 0: while it runs (ticking freely, or waiting for inputs that never
    come) STATUS and READ are answered between ticks, RUN and RESET_STATE are refused with
    BUSY; STOP is acknowledged and followed by RUN_END (reason 1) with the tick counter, and a
    second STOP is only acknowledged. Every frame equals the peer's, ticks placed where the
    SoC's TICK frames say. Then RESET_STATE clears the state, which reads back equal."""
    flags = RunFlags.INPUTS if waiting else RunFlags.LEARN
    tb = await loaded_tb(dut, seed=21)
    await tb.command(Opcode.RUN, run_payload(0, flags))
    if waiting:
        assert tb.dut.running.value == 1
    else:
        await tb.ticks(3)
    seq = tb.next_seq
    (reply,) = await tb.during_run(build_frame(seq(), Opcode.STATUS))
    assert reply.op == Reply.DATA and reply.payload[1] == 1   # running
    (reply,) = await tb.during_run(read_cmd(Space.NSTATE, 0, 4, seq()))
    assert reply.op == Reply.DATA
    for op, payload in ((Opcode.RUN, run_payload(5)), (Opcode.RESET_STATE, b"")):
        (reply,) = await tb.during_run(build_frame(seq(), op, payload))
        assert reply.op == Reply.ERROR and reply.payload[1] == ErrorCode.BUSY, reply
    ack, end = await tb.during_run(build_frame(seq(), Opcode.STOP))
    assert ack.op == Reply.ACK and end.op == Reply.RUN_END
    t, reason = struct.unpack("<IB", end.payload)
    assert reason == 1 and t == tb.peer.core.model.state.t
    assert tb.dut.running.value == 0
    (reply,) = await tb.exchange(build_frame(seq(), Opcode.STOP))
    assert reply.op == Reply.ACK
    await tb.command(Opcode.RESET_STATE)
    await tb.check_state()
    await tb.finish()


# ---- The UART itself ------------------------------------------------------------------------

@cocotb.test(**TIMEOUT)
@cocotb.parametrize(where=named("between", "inside", "break"))
async def framing_error_is_counted_and_the_link_recovers(dut, where):
    """A character with a low stop bit is dropped and counted in STATUS framing_errors: between
    frames it changes nothing; inside a frame the frame loses that byte (and is refused as the
    peer refuses the same bytes without it); a break (the line low for three characters)
    counts once. The next command is answered."""
    tb = await loaded_tb(dut, seed=31)
    line = write_cmd(Space.NSTATE, 2, [0x00120034, 0x56], tb.next_seq())
    if where == "inside":
        # The SoC gets the frame with one character broken; the peer the bytes that remain.
        cut = 6
        expected = tb.peer.feed(line[:cut] + line[cut + 1:])
        await tb.source.write(line[:cut])
        await tb.send_broken_character(line[cut])
        await tb.source.write(line[cut + 1:])
        (reply,) = await tb.expect(expected)
        assert reply.op == Reply.ERROR
    else:
        if where == "break":
            await tb.send_broken_character(0x00, low_bits=30)
        else:
            await tb.send_broken_character(0x55)
        (reply,) = await tb.exchange(line)
        assert reply.op == Reply.ACK
    status = await tb.status()
    assert status.framing_errors == 1 and status.rx_overflows == 0
    assert (await tb.identify()).op == Reply.DATA
    await tb.check_state()
    await tb.finish()


@cocotb.test(**TIMEOUT)
@cocotb.parametrize(baud_error=[0.02, -0.02])
async def host_clock_two_percent_off(dut, baud_error):
    """A host whose UART runs 2% fast or slow (sending and receiving) loads a whole image and
    reads it back: every frame equals the peer's, nothing is lost or broken."""
    tb = await loaded_tb(dut, seed=41, baud_error=baud_error)
    await tb.check_state()
    status = await tb.status()
    assert (status.framing_errors, status.rx_overflows, status.bad_frames) == (0, 0, 0)
    await tb.finish()
