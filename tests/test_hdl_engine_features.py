"""The command engine of a core built without the optional parts (the iCEBreaker's), in
Amaranth's simulator: frames go straight into its frame buffer (no UART, no SLIP), and every
reply body must equal the software peer's for a peer with the same parts."""

import struct

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from plasticore.config import CoreConfig
from plasticore.hdl.core import Core, Space
from plasticore.hdl.engine import CommandEngine
from plasticore.hdl.framing import FrameStatus
from plasticore.protocol import (MAX_BODY, Capability, ErrorCode, Opcode, Reply, SlipDecoder,
                                 build_frame, crc16, parse_frame)
from plasticore.sim.link_model import ModelPeer

CFG = CoreConfig(n_inputs=4, n_neurons=4, n_recurrent=2)
BARE = Capability(0)


class Bench(wiring.Component):
    """Engine, core and frame buffer; the testbench writes frames into the buffer."""

    def __init__(self):
        self.engine = CommandEngine(CFG, banks=1, spram=False, paced=False, wta=False,
                                    adaptive_threshold=False)
        self.core = Core(CFG, banks=1, memory="bram", validate=False, trace_list=False,
                         wta=False, adaptive_threshold=False)
        self.buffer = Memory(shape=8, depth=MAX_BODY, init=[])
        self.write = self.buffer.write_port()
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine, m.submodules.core = self.engine, self.core
        m.submodules.buffer = self.buffer
        read = self.buffer.read_port()
        m.d.comb += [read.addr.eq(self.engine.buf_addr), self.engine.buf_data.eq(read.data)]
        wiring.connect(m, self.engine.core_cmd, self.core.cmd)
        wiring.connect(m, self.core.rsp, self.engine.core_rsp)
        return m


def frame(seq, op, payload=b""):
    body = bytes([seq, op]) + payload
    return body + struct.pack("<H", crc16(body))


def peer_bodies(data: bytes):
    return [bytes([f.seq, f.op]) + f.payload for f in map(parse_frame, SlipDecoder().feed(data))]


def write_words(space, addr, *words):
    return struct.pack(f"<BI{len(words)}I", space.value, addr, *words)


COMMANDS = [
    (Opcode.IDENTIFY, b""),
    # The memories' power-up contents are the peer's blank image's (zeros in simulation).
    (Opcode.WRITE, write_words(Space.NPARAM, 0, *[0x4000, 0x000F_0000] * CFG.n_neurons)),
    (Opcode.WRITE, write_words(Space.NSTATE, 0, *[0] * (2 * CFG.n_neurons))),
    (Opcode.WRITE, write_words(Space.NPARAM, 0, 0x7FFF, 0x00FF_FFFF)),       # accepted
    (Opcode.WRITE, write_words(Space.NPARAM, 2, 0x10, 1 << 15)),            # bit 47: bias
    (Opcode.WRITE, write_words(Space.NPARAM, 2, 1 << 15)),                  # neuron 1: wta
    (Opcode.WRITE, write_words(Space.NPARAM, 5, 0x0100_0000)),              # neuron 2: th_plus
    (Opcode.WRITE, write_words(Space.NSTATE, 4, 5, 0, 1 << 16)),            # neuron 3: th
    (Opcode.WRITE, write_words(Space.NSTATE, 0, 0xFFFF, 0xFFF)),            # accepted
    (Opcode.RUN, struct.pack("<IBI", 3, 0, 1000)),                          # a period: refused
    (Opcode.STATUS, b""),
    (Opcode.READ, struct.pack("<BIH", Space.NPARAM.value, 0, 8)),
    (Opcode.READ, struct.pack("<BIH", Space.NSTATE.value, 0, 8)),
    (Opcode.RUN, struct.pack("<IBI", 2, 1, 0)),                             # two ticks, learning
]


def test_engine_without_optional_parts_answers_as_the_peer():
    dut = Bench()
    peer = ModelPeer(CFG, features=BARE, clock=lambda: 0.0)
    assert dut.engine.identify == peer.info
    got, want = [], []

    async def testbench(ctx):
        ctx.set(dut.engine.tx.ready, 1)

        async def collect_frame():
            body = []
            for _ in range(20_000):
                if ctx.get(dut.engine.tx.valid):
                    body.append(ctx.get(dut.engine.tx.payload.data))
                    if ctx.get(dut.engine.tx.payload.last):
                        await ctx.tick()
                        return bytes(body)
                await ctx.tick()
            raise AssertionError(f"no complete reply; got {bytes(body)!r}")

        for seq, (op, payload) in enumerate(COMMANDS):
            data = frame(seq, op, payload)
            for i, byte in enumerate(data):
                ctx.set(dut.write.addr, i)
                ctx.set(dut.write.data, byte)
                ctx.set(dut.write.en, 1)
                await ctx.tick()
            ctx.set(dut.write.en, 0)
            ctx.set(dut.engine.frame.payload.length, len(data))
            ctx.set(dut.engine.frame.payload.status, FrameStatus.OK)
            ctx.set(dut.engine.frame.valid, 1)
            got.append(await collect_frame())
            for _ in range(50):
                if not ctx.get(dut.engine.frame.valid) or ctx.get(dut.engine.frame.ready):
                    break
                await ctx.tick()
            ctx.set(dut.engine.frame.valid, 0)
            await ctx.tick()
            want.extend(peer_bodies(peer.feed(build_frame(seq, op, payload))))
            if op == Opcode.RUN and want[-1][1] == Reply.ACK:
                while peer.running:
                    want.extend(peer_bodies(peer.step()))
                while len(got) < len(want):
                    got.append(await collect_frame())

    sim = Simulator(dut)
    sim.add_clock(1e-7)
    sim.add_testbench(testbench)
    sim.run()
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        assert a == b, f"reply {k}: engine {a.hex()} peer {b.hex()}"
    errors = [(body[3], struct.unpack_from("<I", body, 4)[0]) for body in want
              if body[1] == Reply.ERROR]
    assert errors == [(ErrorCode.BAD_VALUE, 2),
                      (ErrorCode.BAD_VALUE, 5), (ErrorCode.BAD_VALUE, 6),
                      (ErrorCode.BAD_VALUE, 1000)]
    assert sum(body[1] == Reply.TICK for body in want) == 2
