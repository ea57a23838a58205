# amaranth: UnusedElaboratable=no
"""The SoC's block-RAM FIFO, in Amaranth's simulator: order, capacity, and both handshakes.

(The file-level comment above keeps the FIFOs that a refused depth leaves unelaborated from
warning.)
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from plasticore.hdl.fifo import StreamFIFO


def run(depth, pushes, push_chance, pop_chance, seed):
    """Push `pushes` random bytes and pop them with random stalls on both sides. Returns the
    bytes popped, the most entries ever held, and whether ready was low only when full."""
    dut = StreamFIFO(width=8, depth=depth)
    rng = np.random.default_rng(seed)
    sent = [int(x) for x in rng.integers(0, 256, pushes)]
    got, held = [], []
    wrong_ready = []

    async def testbench(ctx):
        inside = 0
        index = 0
        for _ in range(pushes * 20 + 100):
            offer = index < len(sent) and rng.random() < push_chance
            take = rng.random() < pop_chance
            ctx.set(dut.w_stream.valid, offer)
            if offer:
                ctx.set(dut.w_stream.payload, sent[index])
            ctx.set(dut.r_stream.ready, take)
            ready = ctx.get(dut.w_stream.ready)
            if not ready and inside < depth:
                wrong_ready.append(inside)
            popped = ctx.get(dut.r_stream.valid) and take
            if popped:
                got.append(ctx.get(dut.r_stream.payload))
            await ctx.tick()
            pushed = offer and ready
            index += pushed
            inside += pushed - popped
            held.append(inside)
            if len(got) == len(sent):
                break
        ctx.set(dut.w_stream.valid, 0)
        ctx.set(dut.r_stream.ready, 1)
        for _ in range(4):
            await ctx.tick()
            assert not ctx.get(dut.r_stream.valid), "an entry left over"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return sent, got, max(held), wrong_ready


@pytest.mark.parametrize("depth", [2, 4, 16])
@pytest.mark.parametrize("push_chance, pop_chance", [(0.9, 0.3), (0.5, 0.5), (0.3, 0.95)])
def test_every_entry_comes_out_once_in_order(depth, push_chance, pop_chance):
    sent, got, most, wrong_ready = run(depth, 300, push_chance, pop_chance, seed=depth)
    assert got == sent
    assert not wrong_ready, f"not ready with only {wrong_ready[:5]} entries in a {depth}-deep memory"
    if push_chance > pop_chance:
        # Filled up: the memory and the output register, and no more.
        assert most == depth + 1


@pytest.mark.parametrize("depth", [0, 3, 1, 6])
def test_depth_must_be_a_power_of_two(depth):
    with pytest.raises(ValueError, match="power of two"):
        StreamFIFO(width=8, depth=depth)
