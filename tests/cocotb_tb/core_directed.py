"""Directed tests of the core: corner cases a random image rarely reaches.

Every test builds its image by hand, runs ticks through :meth:`CoreTB.step` (spikes and state
compared with the golden model every tick), checks what the test is about directly on the
values read back (not only against the model, which could share a misreading of the spec),
and ends with the synapse memory, counters and flags compared and :meth:`CoreTB.finish`.

The tests adapt to the core's sizes (read from its STATUS space); the wrapper runs them on the
16-input, 16-neuron, 8-recurrent core with 4 banks.
"""

import itertools

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, FallingEdge

from plasticore.config import REGISTERS, REGISTERS_BY_NAME
from plasticore.hdl.core import Op, Space, Status
from plasticore.image import CoreImage, pack_synapses, synapse_field
from plasticore.sim.cocotb_core import CoreTB, diff_snapshot
from plasticore.sim.coreport import syn_address
from plasticore.sim.stimulus import random_image

TIMEOUT = dict(timeout_time=10, timeout_unit="ms")


async def end_of_test(tb):
    """The common ending: whole state and synapses, counters, flags, nothing left over."""
    await tb.compare(synapses=True)
    await tb.check_counters()
    await tb.check_flags()
    await tb.finish()


def firing_neurons(image, neurons, bias=100):
    """Make *neurons* fire on every tick: threshold 0, a positive bias, no refractory period."""
    prm = image.neuron_params
    prm["threshold"][neurons] = 0
    prm["bias"][neurons] = bias
    prm["refractory"][neurons] = 0
    prm["reset"][neurons] = 0
    prm["wta"][neurons] = 0


async def wait_until_high(dut, name, cycles):
    """Wait (sampling at falling edges) until port *name* is high."""
    for _ in range(cycles):
        if dut[name].value == 1:
            return
        await FallingEdge(dut.clk)
    raise AssertionError(f"{name} stayed low for {cycles} cycles")


async def synapse_weight(tb, s, j):
    return synapse_field(await tb.read(Space.SYN, syn_address(s, j)), "w")


@cocotb.test(**TIMEOUT)
async def weights_saturate_at_both_hard_bounds(dut):
    """Repeated causal pairing drives w up to W_MAX and holds it there; then repeated
    anti-causal pairing drives it down to 0 and holds it there (SOFT_BOUNDS = 0). A weight the
    host wrote above W_MAX is never raised and stays until depression lowers it."""
    tb = CoreTB(dut)
    await tb.reset()
    cfg = tb.config
    image = CoreImage.blank(cfg)
    image.registers.update(SOFT_BOUNDS=0, W_MAX=200, A_PLUS=40, SHIFT_PLUS=9, A_MINUS=60,
                           SHIFT_MINUS=9, LTP_EN=1, LTD_EN=0, CONSOL_EN=0)
    firing_neurons(image, [0], bias=1)
    # (0, 0) climbs from 20; (1, 0) sits above W_MAX; (2, 0) starts just below it.
    for s, w in ((0, 20), (1, 250), (2, 195)):
        image.synapses[s, 0] = pack_synapses(w=w, p=0, en=1)
    await tb.load(image)
    inputs = np.zeros(cfg.n_inputs, bool)
    inputs[:3] = True

    history = []
    for _ in range(16):
        assert await tb.step(inputs, learn=True) == [0]
        history.append([await synapse_weight(tb, s, 0) for s in range(3)])
    climb = [h[0] for h in history]
    assert climb == sorted(climb), f"potentiation lowered a weight: {climb}"
    assert climb[-1] == 200 and climb.count(200) >= 4, f"w never held at W_MAX: {climb}"
    assert climb.index(200) >= 5, f"w reached W_MAX too fast to test pairing: {climb}"
    assert all(h[1] == 250 for h in history), "a weight above W_MAX must not change under LTP"
    assert history[0][2] == 200, "a step past W_MAX must clamp to W_MAX"

    await tb.write_register("LTP_EN", 0)
    await tb.write_register("LTD_EN", 1)
    history = []
    for _ in range(16):
        assert await tb.step(inputs, learn=True) == [0]
        history.append([await synapse_weight(tb, s, 0) for s in range(3)])
    for s in range(3):
        fall = [h[s] for h in history]
        assert fall == sorted(fall, reverse=True), f"depression raised w({s}, 0): {fall}"
        assert fall[-1] == 0 and fall.count(0) >= 4, f"w({s}, 0) never held at 0: {fall}"
    assert history[0][1] < 250, "depression must lower a weight above W_MAX"
    await end_of_test(tb)


@cocotb.test(**TIMEOUT)
async def pre_and_post_spike_on_the_same_synapse_in_one_tick(dut):
    """Every input spikes and every neuron fires in the same ticks, with postsynaptic traces
    already up: each input synapse is depressed in phase B and then potentiated in phase D of
    the same tick, and D must read B's result."""
    tb = CoreTB(dut)
    await tb.reset()
    cfg = tb.config
    rng = np.random.default_rng(2)
    image = CoreImage.blank(cfg)
    image.registers.update(SHIFT_PLUS=6, SHIFT_MINUS=6, CONSOL_Q0=0, CONSOL_C_MAX=2)
    firing_neurons(image, np.arange(cfg.n_neurons))
    image.synapses[:] = pack_synapses(w=rng.integers(40, 220, image.synapses.shape), p=0,
                                      c=rng.integers(0, 3, image.synapses.shape), en=1)
    image.state.y[:] = 200
    await tb.load(image)
    inputs = np.ones(cfg.n_inputs, bool)
    for tick in range(6):
        before = await tb.read_counters()
        assert await tb.step(inputs, learn=True) == list(range(cfg.n_neurons))
        after = await tb.read_counters()
        ltd = after["ltd_writes"] - before["ltd_writes"]
        ltp = after["ltp_writes"] - before["ltp_writes"]
        # Most input synapses change in both phases of this one tick.
        assert ltd > cfg.n_inputs * cfg.n_neurons // 2, f"tick {tick}: only {ltd} LTD writes"
        assert ltp > cfg.n_inputs * cfg.n_neurons // 2, f"tick {tick}: only {ltp} LTP writes"
        await tb.compare(synapses=True)
    await end_of_test(tb)


@cocotb.test(**TIMEOUT)
async def frozen_and_disabled_synapses_never_change(dut):
    """Under heavy activity and aggressive learning, frozen (p = 7) and disabled (en = 0)
    synapse words stay exactly as written, while the plastic ones around them do change."""
    tb = CoreTB(dut)
    await tb.reset()
    cfg = tb.config
    rng = np.random.default_rng(3)
    image = CoreImage.blank(cfg)
    image.registers.update(SOFT_BOUNDS=0, A_PLUS=255, A_MINUS=255, SHIFT_PLUS=3, SHIFT_MINUS=3,
                           CONSOL_Q0=0, CONSOL_C_MAX=1, P_LEARN_MAX=6, TRACE_ALL_TO_ALL=1)
    firing_neurons(image, np.arange(cfg.n_neurons), bias=30)
    image.neuron_params["refractory"][1::3] = 1
    shape = image.synapses.shape
    kind = (np.arange(shape[0])[:, None] + np.arange(shape[1])[None, :]) % 3
    w = rng.integers(0, 256, shape)
    c = rng.integers(0, 8, shape)
    tag = rng.integers(0, 2, shape)
    frozen = pack_synapses(w=w, p=7, c=c, tag=tag, en=1)
    disabled = pack_synapses(w=w, p=rng.integers(0, 8, shape), c=c, tag=tag, en=0)
    plastic = pack_synapses(w=w, p=rng.integers(0, 3, shape), c=c % 2, tag=tag, en=1)
    image.synapses[:] = np.select([kind == 0, kind == 1], [frozen, disabled], plastic)
    image.source_inhibitory[::5] = True
    image.state.last_spikes[:] = True
    image.state.y[:] = 255
    image.state.x[:] = 255
    await tb.load(image)
    for tick in range(30):
        inputs = rng.random(cfg.n_inputs) < 0.9
        await tb.step(inputs, learn=tick % 7 != 6)
    words = (await tb.readback(synapses=True)).synapses
    still = kind != 2
    changed = np.argwhere(still & (words != image.synapses))
    assert changed.size == 0, (
        f"{len(changed)} frozen or disabled synapse(s) changed, first (s, j) = "
        f"{tuple(changed[0])}: {int(image.synapses[tuple(changed[0])]):#06x} -> "
        f"{int(words[tuple(changed[0])]):#06x}")
    moved = np.count_nonzero((kind == 2) & (words != image.synapses))
    assert moved > np.count_nonzero(kind == 2) // 2, (
        f"only {moved} plastic synapses changed: the activity was not heavy enough to matter")
    await end_of_test(tb)


@cocotb.test(**TIMEOUT)
async def every_neuron_fires_in_one_tick(dut):
    """All neurons fire in the same tick (with learning: one column walk each), their
    recurrent rows deliver next tick; then, with every neuron in the winner-take-all pool, a
    tie goes to the lowest index and a larger margin wins."""
    tb = CoreTB(dut)
    await tb.reset()
    cfg = tb.config
    rng = np.random.default_rng(4)
    image = CoreImage.blank(cfg)
    firing_neurons(image, np.arange(cfg.n_neurons))
    image.synapses[:] = pack_synapses(w=rng.integers(0, 40, image.synapses.shape), en=1)
    image.state.x[:] = 100
    await tb.load(image)
    everyone = list(range(cfg.n_neurons))
    for _ in range(3):
        assert await tb.step(learn=True) == everyone
    counters = await tb.read_counters()
    assert counters["post_spikes"] == 3 * cfg.n_neurons
    assert counters["pre_events"] == 2 * cfg.n_recurrent, "recurrent rows deliver next tick"
    await tb.compare(synapses=True)

    image = CoreImage.blank(cfg)
    firing_neurons(image, np.arange(cfg.n_neurons))
    image.neuron_params["wta"][:] = 1
    image.neuron_params["reset"][:] = -7
    await tb.load(image)
    assert await tb.step(learn=True) == [0], "a tie in the pool goes to the lowest index"
    snapshot = await tb.readback(synapses=False)
    assert (snapshot.state.v == -7).all(), "the whole pool resets"
    await tb.set_neuron_params(5, bias=200)
    assert await tb.step(learn=True) == [5], "the largest margin wins"
    await end_of_test(tb)


@cocotb.test(**TIMEOUT)
async def silent_network_only_decays(dut):
    """No input and no recurrent event: no spike, no synapse write, no event counted; traces
    decay to 0, refractory counts run out, v leaks toward 0 (or stays with leak off) and theta
    decays while learning."""
    tb = CoreTB(dut)
    await tb.reset()
    cfg = tb.config
    rng = np.random.default_rng(5)
    image = random_image(5, (cfg.n_inputs, cfg.n_neurons, cfg.n_recurrent))
    n = cfg.n_neurons
    prm = image.neuron_params
    prm["bias"][:] = 0
    prm["threshold"][:] = 32767
    prm["leak_shift"][:] = rng.integers(0, 16, n)
    image.registers.update(TH_SHIFT=0, TH_DECAY_SHIFT=4, TH_DECAY_PERIOD=1, X_DECAY_SHIFT=3,
                           Y_DECAY_SHIFT=2)
    st = image.state
    st.v[:] = rng.integers(-20000, 20000, n)
    st.th[:] = rng.integers(1, 65536, n)
    st.last_spikes[:] = False
    st.x[:] = rng.integers(1, 256, cfg.n_sources)
    st.y[:] = rng.integers(1, 256, n)
    st.ref[:] = rng.integers(0, 16, n)
    image.validate()
    await tb.load(image)
    v0 = np.abs(st.v)
    for tick in range(40):
        assert await tb.step(learn=tick % 5 != 4) == [], f"tick {tick}: spikes in silence"
        v = np.abs((await tb.readback(synapses=False)).state.v)
        assert (v <= v0).all(), f"tick {tick}: |v| grew without input"
        v0 = v
    snapshot = await tb.readback(synapses=True)
    assert (snapshot.synapses == image.synapses).all(), "a synapse changed without any event"
    assert (snapshot.state.x == 0).all() and (snapshot.state.y == 0).all(), "traces not at 0"
    assert (snapshot.state.ref == 0).all(), "refractory counts did not run out"
    leak_off = prm["leak_shift"] == 15
    assert (snapshot.state.v[leak_off] == st.v[leak_off]).all(), "v moved with the leak off"
    assert (snapshot.state.th < st.th).all(), "theta did not decay"
    counters = await tb.read_counters()
    assert counters == {"ticks": 40, "pre_events": 0, "synaptic_ops": 0, "post_spikes": 0,
                        "ltd_writes": 0, "ltp_writes": 0}, counters
    await end_of_test(tb)


@cocotb.test(**TIMEOUT)
async def maximum_fan_in(dut):
    """Every source (inputs and recurrent rows) spikes onto two neurons through weight 255:
    the current is n_sources * 255, exactly, excitatory and then inhibitory; added to a v near
    a rail it saturates there."""
    tb = CoreTB(dut)
    await tb.reset()
    cfg = tb.config
    full = cfg.n_sources * 255
    n = cfg.n_neurons
    targets = [n - 1, n - 2]          # v starts at 0 and near the rail
    for sign in (1, -1):
        image = CoreImage.blank(cfg)
        image.source_inhibitory[:] = sign < 0
        image.synapses[:, targets] = pack_synapses(w=255, p=0, en=1)
        prm = image.neuron_params
        prm["threshold"][targets] = 32767
        image.state.th[targets] = 65535         # threshold 32767 + 65535: never reached
        image.state.v[targets] = [0, sign * 30000]
        image.state.last_spikes[:cfg.n_recurrent] = True
        await tb.load(image)
        assert await tb.step(np.ones(cfg.n_inputs, bool), learn=False) == []
        v = (await tb.readback(synapses=False)).state.v
        assert v[targets[0]] == sign * full, f"current {v[targets[0]]}, not {sign * full}"
        assert v[targets[1]] == (32767 if sign > 0 else -32768), f"no saturation: {v}"
        counters = await tb.read_counters()
        assert counters["pre_events"] == cfg.n_sources
        assert counters["synaptic_ops"] == cfg.n_sources * n
        # Depression along the same full column, every word at once.
        for j in targets:
            await tb.set_neuron_state(j, y=255)
        await tb.step(np.ones(cfg.n_inputs, bool), learn=True)
        await tb.compare(synapses=True)
    await end_of_test(tb)


@cocotb.test(**TIMEOUT)
async def command_errors_change_nothing(dut):
    """Out-of-range addresses, illegal register values, read-only STATUS words, spikes of
    inputs that do not exist and the undefined spaces are answered ERROR with their address,
    and change nothing anywhere."""
    tb = CoreTB(dut)
    await tb.reset()
    cfg = tb.config
    image = random_image(7, (cfg.n_inputs, cfg.n_neurons, cfg.n_recurrent), ticks=10)
    await tb.load(image)
    before = await tb.read_everything()
    S, N = cfg.n_sources, cfg.n_neurons
    high = 1 << 27
    bad = []
    for op in (Op.READ, Op.WRITE):
        bad += [(op, Space.SYN, syn_address(S, 0)), (op, Space.SYN, syn_address(0, N)),
                (op, Space.SYN, syn_address(S - 1, 16383)), (op, Space.SYN, high),
                (op, Space.NPARAM, N << 1), (op, Space.NPARAM, (N << 1) | 1),
                (op, Space.NPARAM, high), (op, Space.NSTATE, N << 1),
                (op, Space.NSTATE, (N << 1) | 1), (op, Space.SOURCE, S),
                (op, Space.SOURCE, high), (op, Space.REG, len(REGISTERS)),
                (op, Space.REG, high), (op, 6, 0), (op, 7, 1)]
    bad += [(Op.READ, Space.STATUS, Status.FLAGS + 1), (Op.READ, Space.STATUS, high)]
    bad += [(Op.WRITE, Space.STATUS, s) for s in Status if s not in (Status.T, Status.CLEAR)]
    bad += [(Op.SPIKE, Space.SOURCE, cfg.n_inputs), (Op.SPIKE, Space.SOURCE, S),
            (Op.SPIKE, Space.SOURCE, high)]
    for op, space, addr in bad:
        await tb.expect_error(op, space, addr, 0xFFFFFFFF if op == Op.WRITE else 0)
    illegal = [("W_MAX", 0), ("W_MAX", 256), ("LTP_EN", 2), ("SHIFT_PLUS", 25),
               ("SHIFT_MINUS", 31), ("X_DECAY_SHIFT", 16), ("CONSOL_C_MAX", 0),
               ("CONSOL_C_MAX", 9), ("P_LEARN_MAX", 7), ("TH_DECAY_SHIFT", 17),
               ("A_PLUS", 0x100), ("GATE_SHIFT_3", 16), ("CONSOL_QS", 4)]
    for name, value in illegal:
        register = REGISTERS_BY_NAME[name]
        assert not register.lo <= value <= register.hi
        await tb.expect_error(Op.WRITE, Space.REG, register.address, value)
    after = await tb.read_everything()
    for key in ("registers", "params", "status"):
        assert before[key] == after[key], f"an erroneous command changed the {key}"
    changed = diff_snapshot(cfg, after["snapshot"], tb.model, None)
    assert not changed, "an erroneous command changed the state: " + "; ".join(map(str, changed))
    # The core still works: no spike was left pending by the refused SPIKEs.
    await tb.step(learn=True)
    await end_of_test(tb)


@cocotb.test(**TIMEOUT)
async def slow_response_reader_loses_no_spike(dut):
    """A reader that stalls for hundreds of cycles in the middle of a tick's spikes, then
    takes one response in four: the core holds every response (busy, valid high, payload
    steady) and none is lost or repeated, with commands paused too."""
    tb = CoreTB(dut, pause=itertools.cycle([0, 1, 1]))
    await tb.reset()
    cfg = tb.config
    image = random_image(8, (cfg.n_inputs, cfg.n_neurons, cfg.n_recurrent), ticks=30)
    # Every neuron fires in the first tick: excitatory sources only, reachable thresholds.
    firing_neurons(image, np.arange(cfg.n_neurons))
    image.source_inhibitory[:] = False
    image.state.v[:] = 0
    image.state.th[:] = 0
    image.state.ref[:] = 0
    await tb.load(image)

    # Hold every response from the start of the tick; the first SPIKE waits on the port.
    tb.sink.set_backpressure_generator(itertools.repeat(1))
    stepping = cocotb.start_soon(tb.step(np.ones(cfg.n_inputs, bool), learn=True))
    for release in (12, 24):
        await wait_until_high(dut, "rsp__valid", cycles=2000)
        received, payload = tb.sink.received, dut.rsp__payload.value.to_unsigned()
        await ClockCycles(dut.clk, 300, rising=False)
        assert dut.busy.value == 1 and dut.rsp__valid.value == 1, "the core did not hold"
        assert dut.rsp__payload.value.to_unsigned() == payload, "the payload changed while held"
        assert tb.sink.received == received, "a response was taken while ready was low"
        # A few ready cycles take a few responses, then the reader stalls again.
        tb.sink.set_backpressure_generator(itertools.chain(itertools.repeat(0, release),
                                                           itertools.repeat(1)))
        await ClockCycles(dut.clk, release + 1, rising=False)
        assert tb.sink.received > received, "ready cycles took nothing"
    tb.sink.set_backpressure_generator(itertools.cycle([1, 1, 1, 0]))
    assert await stepping == list(range(cfg.n_neurons))

    rng = np.random.default_rng(8)
    for tick in range(20):
        await tb.step(rng.random(cfg.n_inputs) < 0.5, learn=tick % 4 != 3)
    tb.sink.set_backpressure_generator(None)
    await end_of_test(tb)
