"""A byte FIFO in one block RAM, for the UART paths of the SoC.

:class:`amaranth.lib.fifo.SyncFIFOBuffered` keeps a level counter beside its pointers, and for a
power-of-two depth its memory holds one entry less than that, so its pointers wrap with a
comparison. This FIFO keeps only the two pointers, one bit wider than the memory's address (the
extra bit tells a full memory from an empty one), and an output register: about half the logic,
which matters on an iCE40UP5K.
"""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["StreamFIFO"]


class StreamFIFO(wiring.Component):
    """First in, first out, between two streams, in one memory.

    Contract
    --------
    ``w_stream`` takes an entry whenever the memory has room (``w_stream.ready`` depends only on
    the FIFO's state). ``r_stream`` offers the oldest entry under the :mod:`amaranth.lib.stream`
    rules; an entry written into an empty FIFO is offered two cycles after the transfer. It holds
    up to ``depth + 1`` entries: ``depth`` in memory and one in the output register. Reset:
    empty.

    Parameters
    ----------
    width : int
        Bits of an entry.
    depth : int
        Entries of the memory, a power of two of at least 2.

    Members
    -------
    w_stream : In(stream.Signature(width))
    r_stream : Out(stream.Signature(width))
    """

    def __init__(self, *, width: int, depth: int):
        if not isinstance(depth, int) or depth < 2 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two of at least 2, not {depth!r}")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        self._width, self._depth = width, depth
        super().__init__({
            "w_stream": In(stream.Signature(width)),
            "r_stream": Out(stream.Signature(width)),
        })

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        bits = self._depth.bit_length() - 1
        m.submodules.storage = storage = Memory(shape=self._width, depth=self._depth, init=[])
        write = storage.write_port()
        read = storage.read_port(transparent_for=())

        produce = Signal(bits + 1)
        consume = Signal(bits + 1)
        empty = produce == consume
        full = (produce[bits] != consume[bits]) & (produce[:bits] == consume[:bits])

        m.d.comb += [
            self.w_stream.ready.eq(~full),
            write.addr.eq(produce[:bits]),
            write.data.eq(self.w_stream.payload),
            write.en.eq(self.w_stream.valid & ~full),
        ]
        with m.If(self.w_stream.valid & ~full):
            m.d.sync += produce.eq(produce + 1)

        # The read port's register is the output register: it loads the oldest entry when the
        # output is empty or being taken.
        fetch = ~empty & (~self.r_stream.valid | self.r_stream.ready)
        m.d.comb += [read.addr.eq(consume[:bits]), read.en.eq(fetch),
                     self.r_stream.payload.eq(read.data)]
        with m.If(fetch):
            m.d.sync += [consume.eq(consume + 1), self.r_stream.valid.eq(1)]
        with m.Elif(self.r_stream.ready):
            m.d.sync += self.r_stream.valid.eq(0)
        return m
