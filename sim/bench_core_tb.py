"""The cocotb side of :mod:`plasticore.sim.bench_core`: run the reference workload on one preset's
core, tick by tick, against the golden model, and record the STATUS counters after every tick.

Parameters come from environment variables set by :func:`plasticore.sim.bench_core.run_preset`:

``PLASTICORE_BENCH_PRESET``
    The preset's name; the core must report its sizes, banks and memory kind.
``PLASTICORE_BENCH_TICKS``, ``PLASTICORE_BENCH_SEED``
    Ticks to run; seed of the network and the stimulus.
``PLASTICORE_BENCH_SYNAPSES``
    ``1``: compare the whole synapse memory at the end too.
``PLASTICORE_BENCH_OUT``
    Where the raw results go, as JSON.
"""

import json
import os

import cocotb
import numpy as np

from plasticore.hdl.core import Op, Space, Status
from plasticore.hdl.presets import PRESETS
from plasticore.sim.bench_core import (listed_groups, pending_entries, reference_network,
                                       reference_stimulus)
from plasticore.sim.cocotb_core import CoreTB

PRESET = os.environ.get("PLASTICORE_BENCH_PRESET", "up5k")
TICKS = int(os.environ.get("PLASTICORE_BENCH_TICKS", "100"))
SEED = int(os.environ.get("PLASTICORE_BENCH_SEED", "1"))
SYNAPSES = os.environ.get("PLASTICORE_BENCH_SYNAPSES", "1") == "1"
OUT = os.environ.get("PLASTICORE_BENCH_OUT")

#: Counters read after every tick.
COUNTERS = (Status.LAST_TICK_CYCLES, Status.TICK_CYCLES, Status.PRE_EVENTS,
            Status.SYNAPTIC_OPS, Status.POST_SPIKES, Status.LTD_WRITES, Status.LTP_WRITES,
            Status.BANK_ACCESSES, Status.WALK_CYCLES)

# Simulated time: loading and reading back take a few cycles per word; the worst tick (every
# source an event, every neuron a spike) of either preset is below 300,000 cycles of 10 ns.
_TIMEOUT_MS = 100 + 3 * TICKS


async def read_counters(tb):
    values = await tb.read_many([(Op.READ, Space.STATUS, c, 0) for c in COUNTERS])
    return {c.name.lower(): v for c, v in zip(COUNTERS, values)}


@cocotb.test(timeout_time=_TIMEOUT_MS, timeout_unit="ms")
async def bench(dut):
    preset = PRESETS[PRESET]
    tb = CoreTB(dut)
    await tb.reset()
    config, banks = tb.config, tb.banks
    memory = "spram" if tb.spram else "bram"
    assert (config, banks, memory) == (preset.config, preset.banks, preset.memory), (
        f"the core reports {config}, {banks} banks of {memory}; preset {PRESET} is "
        f"{preset.config}, {preset.banks} banks of {preset.memory}")

    compiled = reference_network(config, SEED)
    stimulus = reference_stimulus(config, TICKS, SEED)
    await tb.load(compiled.image)
    before = await read_counters(tb)
    assert before["tick_cycles"] == 0 and before["pre_events"] == 0, before

    per_tick = {k: [] for k in ("cycles", "pre_events", "pre_entries", "post_spikes",
                                "listed_groups", "synaptic_ops", "ltd_writes", "ltp_writes",
                                "bank_accesses", "walk_cycles", "input_spikes")}
    last = before
    for inputs in stimulus:
        model = tb.model
        pending = np.concatenate([inputs, model.state.last_spikes[:config.n_recurrent]])
        spikes = await tb.step(inputs, True, check_state=False)
        now = await read_counters(tb)
        delta = {k: (now[k] - last[k]) & 0xFFFFFFFF for k in now}
        assert delta["tick_cycles"] == now["last_tick_cycles"], (delta, now)
        assert delta["post_spikes"] == len(spikes), (delta, spikes)
        assert delta["pre_events"] == int(pending.sum()), (delta, int(pending.sum()))
        per_tick["cycles"].append(now["last_tick_cycles"])
        per_tick["pre_entries"].append(pending_entries(pending, banks))
        per_tick["listed_groups"].append(listed_groups(tb.model.state.x, banks))
        per_tick["input_spikes"].append(int(inputs.sum()))
        for k in ("pre_events", "post_spikes", "synaptic_ops", "ltd_writes", "ltp_writes",
                  "bank_accesses", "walk_cycles"):
            per_tick[k].append(delta[k])
        last = now

    await tb.compare(synapses=SYNAPSES)
    await tb.check_counters()
    await tb.check_flags()
    await tb.finish()

    raw = {
        "config": {"n_inputs": config.n_inputs, "n_neurons": config.n_neurons,
                   "n_recurrent": config.n_recurrent, "n_synapses": config.n_synapses},
        "banks": banks, "memory": memory, "learn": True, "seed": SEED,
        "ticks": per_tick, "totals": last,
        "check": {"ticks_compared": TICKS, "synapses": SYNAPSES},
    }
    if OUT:
        with open(OUT, "w") as f:
            json.dump(raw, f)
