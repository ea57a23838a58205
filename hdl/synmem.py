"""Synapse memory banks: a generic block-RAM bank and an iCE40UP5K SPRAM bank, one interface.

Ref: Lattice iCE40 SPRAM Usage Guide (TN1314 / FPGA-TN-02022): SB_SPRAM256KA is 16384 x 16,
single-ported, registered read (data one cycle after the address), no read during a write.
"""

from amaranth import Array, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["SynapseBank", "SPRAM_DEPTH", "MEMORY_KINDS"]

SPRAM_DEPTH = 16384
MEMORY_KINDS = ("bram", "spram")


class SynapseBank(wiring.Component):
    """One bank of synapse memory: ``depth`` words of 16 bits.

    Contract
    --------
    Reads are registered: ``rdata`` holds the word at ``raddr`` in the cycle after the one in
    which ``ren`` was high (and only then is it defined). A write with ``wen`` high lands at the
    clock edge ending that cycle. Memory contents are not reset.

    ``kind = "bram"`` has separate read and write ports: a read and a write may happen in the same
    cycle (to different addresses), so a read-modify-write costs one port cycle.
    ``kind = "spram"`` is single-ported, like the UP5K's SB_SPRAM256KA: the user must not read and
    write in the same cycle, so a read-modify-write costs two. A cycle that does both anyway sets
    ``conflict`` (sticky until reset) and the read returns undefined data in hardware.

    Parameters
    ----------
    depth : int
    kind : "bram" or "spram"

    Members
    -------
    raddr, ren : In
    rdata : Out(16)
    waddr, wdata, wen : In
    conflict : Out(1)

    Platform overrides
    ------------------
    On an iCE40 platform, ``kind = "spram"`` instantiates ``ceil(depth / 16384)`` SB_SPRAM256KA
    primitives (Yosys does not infer them); everywhere else it is a behavioural model.
    """

    def __init__(self, depth: int, kind: str = "bram"):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive int, not {depth!r}")
        if kind not in MEMORY_KINDS:
            raise ValueError(f"kind must be one of {MEMORY_KINDS}, not {kind!r}")
        self._depth, self._kind = depth, kind
        abits = max(1, (depth - 1).bit_length())
        super().__init__({
            "raddr": In(abits), "ren": In(1), "rdata": Out(16),
            "waddr": In(abits), "wdata": In(16), "wen": In(1),
            "conflict": Out(1),
        })

    @property
    def depth(self):
        return self._depth

    @property
    def kind(self):
        return self._kind

    def elaborate(self, platform):
        m = Module()
        if self._kind == "spram":
            m.d.sync += self.conflict.eq(self.conflict | (self.ren & self.wen))
        if self._kind == "spram" and _is_ice40(platform):
            self._elaborate_spram(m)
            return m
        m.submodules.memory = memory = Memory(shape=16, depth=self._depth, init=[])
        write = memory.write_port()
        read = memory.read_port()
        m.d.comb += [
            read.addr.eq(self.raddr), read.en.eq(self.ren), self.rdata.eq(read.data),
            write.addr.eq(self.waddr), write.data.eq(self.wdata), write.en.eq(self.wen),
        ]
        return m

    def _elaborate_spram(self, m):
        blocks = -(-self._depth // SPRAM_DEPTH)
        address = Mux(self.wen, self.waddr, self.raddr)
        selected = Signal(range(blocks))
        outputs = []
        for b in range(blocks):
            chosen = address[14:] == b if blocks > 1 else Const(1)
            dataout = Signal(16, name=f"spram{b}_dataout")
            m.submodules[f"spram{b}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=address[:14], i_DATAIN=self.wdata, i_MASKWREN=Const(0b1111, 4),
                i_WREN=self.wen, i_CHIPSELECT=chosen & (self.wen | self.ren),
                i_CLOCK=ClockSignal("sync"), i_STANDBY=Const(0), i_SLEEP=Const(0), i_POWEROFF=Const(1),
                o_DATAOUT=dataout)
            outputs.append(dataout)
        if blocks > 1:
            with m.If(self.ren):
                m.d.sync += selected.eq(self.raddr[14:])
            m.d.comb += self.rdata.eq(Array(outputs)[selected])
        else:
            m.d.comb += self.rdata.eq(outputs[0])


def _is_ice40(platform) -> bool:
    # Amaranth's SiliconBluePlatform (every amaranth-boards iCE40 board) says "iCE40".
    family = getattr(platform, "family", None) if platform is not None else None
    return isinstance(family, str) and family.lower() == "ice40"
