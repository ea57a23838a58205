"""The whole core in Amaranth's simulator against the golden model, tick by tick.

These are the quick checks of the core (no Verilator build): small random images, random input
spikes and learn flags; spikes compared every tick, neuron state every tick, synapse memory at the
end. The long randomised runs are in the cocotb suite.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from plasticore.config import CoreConfig
from plasticore.hdl.core import Core, Kind, Op, Space, Status
from plasticore.image import CoreImage, pack_synapses
from plasticore.sim.coreport import (decode_readback, load_commands, pack_command,
                                     readback_commands, unpack_response, syn_address)
from plasticore.sim.model import GoldenModel
from plasticore.sim.stimulus import random_image, random_stimulus


class PortDriver:
    """Drives the core's command port in an async testbench and records every response."""

    def __init__(self, ctx, dut):
        self.ctx, self.dut = ctx, dut
        self.responses = []
        ctx.set(dut.rsp.ready, 1)

    async def cycle(self):
        if self.ctx.get(self.dut.rsp.valid):
            self.responses.append(unpack_response(self.ctx.get(self.dut.rsp.payload.as_value())))
        await self.ctx.tick()

    async def send(self, op, space, addr=0, data=0):
        ctx, dut = self.ctx, self.dut
        ctx.set(dut.cmd.payload.as_value(), pack_command(op, space, addr, data))
        ctx.set(dut.cmd.valid, 1)
        while True:
            ready = ctx.get(dut.cmd.ready)
            await self.cycle()
            if ready:
                break
        ctx.set(dut.cmd.valid, 0)

    async def until_idle(self):
        while self.ctx.get(self.dut.busy):
            await self.cycle()

    async def read(self, space, addr):
        await self.send(Op.READ, space, addr)
        start = len(self.responses)
        while len(self.responses) == start:
            await self.cycle()
        kind, value = self.responses.pop()
        assert kind == Kind.DATA, f"read of {space.name} {addr:#x} answered {kind.name}"
        return value

    async def tick(self, learn):
        start = len(self.responses)
        await self.send(Op.TICK, Space.STATUS, 0, int(learn))
        while not any(k == Kind.TICK_DONE for k, _ in self.responses[start:]):
            await self.cycle()
        got = self.responses[start:]
        del self.responses[start:]
        assert got[-1][0] == Kind.TICK_DONE
        assert all(k == Kind.SPIKE for k, _ in got[:-1]), got
        return [value for _, value in got[:-1]], got[-1][1]


def run_core(image, spikes, learn, *, banks, memory="bram", check_state_every_tick=True,
             **core_options):
    """Run image on the core and on the model; return a list of mismatch descriptions."""
    cfg = image.config
    model = GoldenModel(image)
    dut = Core(cfg, banks=banks, memory=memory, **core_options)
    problems = []

    async def testbench(ctx):
        port = PortDriver(ctx, dut)
        for cmd in load_commands(image):
            await port.send(*cmd)
        await port.until_idle()
        assert not port.responses, f"loading answered {port.responses}"
        for tick, (inputs, on) in enumerate(zip(spikes, learn)):
            for i in np.flatnonzero(inputs):
                await port.send(Op.SPIKE, Space.SOURCE, int(i))
            expected = np.flatnonzero(model.tick(inputs, bool(on))).tolist()
            got, t_done = await port.tick(bool(on))
            if sorted(got) != expected:
                problems.append(f"tick {tick}: spikes {sorted(got)} != model {expected}")
                return
            if check_state_every_tick or tick == len(spikes) - 1:
                with_syn = True
                values = [await port.read(space, addr)
                          for _, space, addr, _ in readback_commands(cfg, synapses=with_syn)]
                words, state = decode_readback(cfg, values, synapses=with_syn)
                for name in ("v", "th", "ref", "y", "x"):
                    a, b = getattr(state, name), getattr(model.state, name)
                    bad = np.flatnonzero(a != b)
                    if bad.size:
                        problems.append(f"tick {tick}: {name}[{bad[0]}] core {a[bad[0]]} "
                                        f"model {b[bad[0]]}")
                r = cfg.n_recurrent
                if not np.array_equal(state.last_spikes[:r], model.state.last_spikes[:r]):
                    problems.append(f"tick {tick}: last_spikes differ")
                if state.t != model.state.t:
                    problems.append(f"tick {tick}: t core {state.t} model {model.state.t}")
                if with_syn:
                    bad = np.argwhere(words != model.synapses)
                    if bad.size:
                        s, j = bad[0]
                        problems.append(f"tick {tick}: synapse ({s}, {j}) core "
                                        f"{int(words[s, j]):#06x} model "
                                        f"{int(model.synapses[s, j]):#06x}")
                if problems:
                    return
        counters = {name: await port.read(Space.STATUS, Status[name.upper()])
                    for name in ("pre_events", "synaptic_ops", "post_spikes", "ltd_writes",
                                 "ltp_writes")}
        for name, value in counters.items():
            if value != getattr(model.counters, name):
                problems.append(f"counter {name}: core {value} model "
                                f"{getattr(model.counters, name)}")
        flags = await port.read(Space.STATUS, Status.FLAGS)
        if flags:
            problems.append(f"FLAGS = {flags:#x}: a single-ported bank was misused")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return problems


@pytest.mark.parametrize("seed, banks, memory", [
    (0, 2, "bram"), (1, 4, "bram"), (2, 1, "bram"), (3, 2, "spram"), (4, 4, "spram")])
def test_core_matches_model_on_random_images(seed, banks, memory):
    sizes = {1: (5, 3, 2), 2: (6, 4, 2), 4: (8, 8, 4)}[banks]
    image = random_image(seed, sizes, ticks=12)
    spikes, learn = random_stimulus(seed, image.config.n_inputs, ticks=12)
    assert run_core(image, spikes, learn, banks=banks, memory=memory) == []


def clamped_shift_image(seed, sizes, ticks):
    """The random image of ``seed`` with every total shift above 24 (SHIFT_x of 16..24, every
    gate 9..15), which the core clamps at 24 (docs/core-model.md section 3.3), and hard bounds
    with the largest factors, so that some clamped updates do step."""
    image = random_image(seed, sizes, ticks=ticks)
    rng = np.random.default_rng(900 + seed)
    regs = image.registers
    for p in range(7):
        regs[f"GATE_SHIFT_{p}"] = int(rng.integers(9, 16))
    regs.update(SHIFT_PLUS=int(rng.integers(16, 25)), SHIFT_MINUS=int(rng.integers(16, 25)),
                SOFT_BOUNDS=0, A_PLUS=255, A_MINUS=255, X_INC=255, Y_INC=255,
                X_DECAY_SHIFT=6, Y_DECAY_SHIFT=6, LTP_EN=1, LTD_EN=1)
    return image.validate()


@pytest.mark.parametrize("seed, memory", [(1, "bram"), (4, "spram")])
def test_core_matches_model_with_clamped_shifts(seed, memory):
    ticks = 40
    image = clamped_shift_image(seed, (8, 8, 4), ticks)
    spikes, learn = random_stimulus(seed, image.config.n_inputs, ticks=ticks)
    # Non-vacuity: clamped updates step in both directions in the model's run.
    model = GoldenModel(image)
    for inputs, on in zip(spikes, learn):
        model.tick(inputs, bool(on))
    assert model.counters.ltp_writes > 0 and model.counters.ltd_writes > 0, model.counters
    # A wrong step persists in the weight, so the state is compared at the end only (spikes,
    # every tick).
    assert run_core(image, spikes, learn, banks=4, memory=memory,
                    check_state_every_tick=False) == []


def without_wta_and_adaptive_threshold(image):
    """The image with nothing a core without the winner-take-all pool and the adaptive threshold
    lacks: no pool members, th_plus and th zero."""
    image = image.copy()
    image.neuron_params["wta"][:] = 0
    image.neuron_params["th_plus"][:] = 0
    image.state.th[:] = 0
    return image.validate()


@pytest.mark.parametrize("seed, memory, rounds", [(10, "spram", 4), (11, "bram", 8),
                                                  (12, "spram", 8)])
def test_reduced_core_matches_model(seed, memory, rounds):
    """The UP5K preset's options: no trace list (column walks visit every source group), no
    winner-take-all pool, no adaptive threshold; exact on images that use neither. With one
    single-ported bank and four rounds a stage the draws come from two passes through four
    rounds (HashHalves), as on the UP5K."""
    image = without_wta_and_adaptive_threshold(random_image(seed, (6, 4, 2), ticks=12))
    spikes, learn = random_stimulus(seed, image.config.n_inputs, ticks=12)
    assert learn.any() and spikes.any()
    assert run_core(image, spikes, learn, banks=1, memory=memory, trace_list=False, wta=False,
                    adaptive_threshold=False, hash_rounds_per_stage=rounds) == []


def test_reduced_core_refuses_what_it_lacks():
    """With validation on, a core without the pool and the adaptive threshold answers ERROR to
    writes that would use them, and changes nothing."""
    cfg = CoreConfig(n_inputs=4, n_neurons=2, n_recurrent=0)
    dut = Core(cfg, banks=1, memory="bram", wta=False, adaptive_threshold=False)
    refused = [
        (Space.NPARAM, 0, 1 << 15),            # wta
        (Space.NPARAM, 1, 1 << 24),            # th_plus (bits 56.. of the neuron's parameters)
        (Space.NSTATE, 2, 1 << 16),            # th of neuron 1
    ]
    accepted = [(Space.NPARAM, 0, 0x7FFF), (Space.NPARAM, 1, 0x00FF_FFFF),
                (Space.NSTATE, 2, 0xFFFF)]
    results = {}

    async def testbench(ctx):
        port = PortDriver(ctx, dut)
        for space, addr, _ in refused + accepted:
            await port.send(Op.WRITE, space, addr, 0)
        for space, addr, value in refused:
            await port.send(Op.WRITE, space, addr, value)
            await port.until_idle()
            results[(space, addr, "write")] = list(port.responses)
            port.responses.clear()
            results[(space, addr, "read")] = await port.read(space, addr)
        for space, addr, value in accepted:
            await port.send(Op.WRITE, space, addr, value)
            await port.until_idle()
            assert not port.responses
            results[(space, addr, "accepted")] = await port.read(space, addr)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    for space, addr, _ in refused:
        assert results[(space, addr, "write")] == [(Kind.ERROR, addr)], (space, addr)
        assert results[(space, addr, "read")] == 0, (space, addr)
    for space, addr, value in accepted:
        assert results[(space, addr, "accepted")] == value, (space, addr)
