"""The core benchmark's analysis and workload, without a simulator.

``python -m plasticore.sim.bench_core`` builds each preset's core in Verilator (about a minute
for the UP5K core, two for the ECP5 core) and runs the reference workload on it; that is a
benchmark, not part of the suite. These tests cover what it computes from the counters (the fit,
the port utilisation, the theory, the table, the report) with synthetic numbers, and the
reference workload on the golden model.
"""

import math

import numpy as np
import pytest

from plasticore.config import CoreConfig
from plasticore.hdl.presets import PRESETS
from plasticore.sim import bench_core
from plasticore.sim.bench_core import (analyse, bin_table, fit_cycles, format_report,
                                       listed_groups, pending_entries, port_utilisation,
                                       ports_per_bank, reference_network, reference_stimulus,
                                       theory, walk_step_cycles)
from plasticore.sim.model import GoldenModel

UP5K = CoreConfig(n_inputs=128, n_neurons=256, n_recurrent=128)
ECP5 = CoreConfig(n_inputs=256, n_neurons=512, n_recurrent=128)


# ---- Ports, steps and utilisation ---------------------------------------------------------------

def test_ports_and_step_cycles():
    assert ports_per_bank("spram") == 1 and ports_per_bank("bram") == 2
    assert walk_step_cycles("spram", learn=True) == 2
    assert walk_step_cycles("spram", learn=False) == 1
    assert walk_step_cycles("bram", learn=True) == 1


def test_port_utilisation_counts_every_port_of_every_bank():
    # One BRAM row walk of 64 steps on 8 banks: a read and a write per bank and step; the
    # pipeline (6 stages) drains for 6 cycles after the last read.
    assert port_utilisation(64 * 2 * 8, 64 + 6, 8, "bram") == pytest.approx(64 / 70)
    # One SPRAM learning walk of 256 steps: 512 cycles of alternating reads and writes, plus
    # the last write-back 3 stages later.
    assert port_utilisation(512, 515, 1, "spram") == pytest.approx(512 / 515)
    # Fully busy ports.
    assert port_utilisation(2 * 4 * 100, 100, 4, "bram") == 1.0
    assert port_utilisation(4 * 100, 100, 4, "spram") == 1.0
    assert math.isnan(port_utilisation(0, 0, 8, "bram"))


def test_theory_of_walk_costs():
    up = theory(UP5K, 1, "spram")
    assert (up["row_steps"], up["row_walk_cycles"], up["column_step_cycles"]) == (256, 512, 2)
    assert up["max_column_steps"] == 256
    ecp = theory(ECP5, 8, "bram")
    assert (ecp["row_steps"], ecp["row_walk_cycles"], ecp["column_step_cycles"]) == (64, 64, 1)
    assert ecp["max_column_steps"] == 48
    assert theory(UP5K, 4, "spram", learn=False)["row_walk_cycles"] == 64


# ---- Fit and table -------------------------------------------------------------------------------

def _synthetic_ticks(n=80, seed=3):
    rng = np.random.default_rng(seed)
    pre = rng.integers(0, 40, n)
    post = rng.integers(0, 60, n)
    groups = rng.integers(20, 250, n)
    cycles = 528 + 516 * pre + 5 * post + 2 * post * groups
    return cycles, pre, post, groups


def test_fit_recovers_exact_coefficients():
    cycles, pre, post, groups = _synthetic_ticks()
    fit = fit_cycles(cycles, {"pre": pre, "post": post, "post_x_groups": post * groups})
    assert fit.rank == 4
    for name, value in {"1": 528, "pre": 516, "post": 5, "post_x_groups": 2}.items():
        assert fit.coefficients[name] == pytest.approx(value, abs=1e-6)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.rms < 1e-6 and fit.max_abs < 1e-6
    regressors = {"pre": [1, 2], "post": [0, 3], "post_x_groups": [0, 300]}
    assert fit.predict(regressors) == pytest.approx([1044, 528 + 1032 + 15 + 600])


def test_fit_reports_how_well_it_fits():
    cycles, pre, post, groups = _synthetic_ticks(n=400)
    noise = np.random.default_rng(4).normal(0, 50, len(cycles))
    fit = fit_cycles(cycles + noise, {"pre": pre, "post": post, "post_x_groups": post * groups})
    assert 0.99 < fit.r2 < 1.0
    assert 40 < fit.rms < 60
    assert fit.coefficients["pre"] == pytest.approx(516, abs=2)
    # Leaving out the listed groups fits worse, and puts the column walk into the post term.
    simple = fit_cycles(cycles, {"pre": pre, "post": post})
    assert simple.r2 < fit.r2
    assert simple.coefficients["post"] > 100


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="one value per tick"):
        fit_cycles([1, 2, 3], {"pre": [1, 2]})
    with pytest.raises(ValueError, match="cannot fit"):
        fit_cycles([1, 2], {"pre": [1, 2], "post": [3, 4]})


def test_bin_table_partitions_the_ticks():
    cycles, pre, post, _ = _synthetic_ticks(n=90)
    table = bin_table(cycles, pre, post, bins=3)
    assert sum(map(sum, table["count"])) == 90
    assert table["pre_edges"][0] == 0 and table["pre_edges"][-1] is None
    assert table["post_edges"][0] == 0 and table["post_edges"][-1] is None
    # Each cell is the mean of the ticks in it.
    lo, hi = table["pre_edges"][0], table["pre_edges"][1]
    plo, phi = table["post_edges"][0], table["post_edges"][1]
    sel = (pre >= lo) & (pre < hi) & (post >= plo) & (post < phi)
    assert table["mean"][0][0] == pytest.approx(cycles[sel].mean())
    # Constant data: one bin per axis.
    flat = bin_table([5, 5], [0, 0], [0, 0])
    assert flat["count"] == [[2]] and flat["mean"] == [[5.0]]


# ---- Analysis and report -----------------------------------------------------------------------

def _raw(memory="spram", banks=1, config=UP5K):
    cycles, pre, post, groups = _synthetic_ticks(n=50)
    step = walk_step_cycles(memory)
    walk = (pre * config.n_neurons // banks * step + post * groups * step + 3 * (pre + post))
    accesses = (pre * config.n_neurons // banks + post * groups) * 2 * banks
    totals = {"tick_cycles": int(cycles.sum()), "synaptic_ops": int(pre.sum()) * 256,
              "bank_accesses": int(accesses.sum()), "walk_cycles": int(walk.sum()),
              "pre_events": int(pre.sum()), "post_spikes": int(post.sum()),
              "last_tick_cycles": int(cycles[-1])}
    return {
        "preset": "test", "device": "none", "seed": 1, "hash_rounds_per_stage": 8,
        "config": {"n_inputs": config.n_inputs, "n_neurons": config.n_neurons,
                   "n_recurrent": config.n_recurrent, "n_synapses": config.n_synapses},
        "banks": banks, "memory": memory, "learn": True, "clock_hz": 12e6,
        "clock_assumed": False,
        "ticks": {"cycles": cycles.tolist(), "pre_events": pre.tolist(),
                  "pre_entries": pre.tolist(), "post_spikes": post.tolist(),
                  "listed_groups": groups.tolist(), "bank_accesses": accesses.tolist(),
                  "walk_cycles": walk.tolist()},
        "totals": totals, "check": {"ticks_compared": 50, "synapses": True},
        "workload": {"recurrent_density": 0.1, "weight_max": 127, "input_rate": 0.03,
                     "rate_spread": (0.25, 1.75)},
    }


def test_analyse_and_report():
    raw = _raw()
    result = analyse(raw)
    totals = raw["totals"]
    util = result["utilisation"]
    assert util["ports_per_bank"] == 1
    assert util["overall"] == pytest.approx(totals["bank_accesses"] / totals["walk_cycles"])
    assert util["meets_0_9"] == (util["overall"] >= 0.9)
    assert util["walks"] == totals["pre_events"] + totals["post_spikes"]
    assert result["fit_detailed"]["coefficients"]["post_x_groups"] == pytest.approx(2)
    assert result["synaptic_ops_per_cycle"] == pytest.approx(
        totals["synaptic_ops"] / totals["tick_cycles"])
    assert result["ticks_per_second"] == pytest.approx(
        12e6 / (totals["tick_cycles"] / 50))
    text = format_report(raw, result)
    for expected in ("cycles per tick", "fit: cycles =", "row walk", "column walk",
                     "ticks/s", "synaptic operations", "port utilisation", "requirement >= 0.9"):
        assert expected in text, expected


def test_report_says_when_the_clock_is_assumed_and_when_utilisation_is_low():
    raw = _raw(memory="bram", banks=8, config=ECP5)
    raw.update(clock_hz=50e6, clock_assumed=True)
    raw["totals"]["bank_accesses"] //= 2
    text = format_report(raw, analyse(raw))
    assert "assumed clock" in text
    assert "NOT MET" in text


def test_every_preset_has_a_board_clock():
    assert set(bench_core.BOARD_CLOCKS) == set(PRESETS)
    assert bench_core.BOARD_CLOCKS["up5k"] == (12e6, False)


# ---- The reference workload ---------------------------------------------------------------------

def test_listed_groups_and_pending_entries():
    x = np.array([0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 1])
    assert listed_groups(x, 4) == 2
    assert listed_groups(x, 1) == 2
    assert listed_groups(np.zeros(8), 2) == 0
    pending = np.array([1, 1, 0, 0, 0, 0, 0, 1], bool)
    assert pending_entries(pending, 4) == 2
    assert pending_entries(pending, 1) == 3


def test_stimulus_is_poisson_at_the_workload_rate():
    spikes = reference_stimulus(UP5K, 400, seed=2)
    assert spikes.shape == (400, UP5K.n_inputs) and spikes.dtype == bool
    assert spikes.mean() == pytest.approx(bench_core.WORKLOAD.input_rate, rel=0.15)
    assert np.array_equal(spikes, reference_stimulus(UP5K, 400, seed=2))
    assert not np.array_equal(spikes, reference_stimulus(UP5K, 400, seed=3))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_reference_workload_exercises_row_and_column_walks(name):
    """On the golden model: every preset's network compiles, and 40 ticks have presynaptic
    events, postsynaptic spikes in a realistic fraction of the neurons, listed groups for the
    column walks, and learning that changes synapses both ways."""
    config = PRESETS[name].config
    compiled = reference_network(config)
    image = compiled.image
    assert np.any(image.synapses[:config.n_inputs] != 0)
    assert np.any(image.synapses[config.n_inputs:] != 0)
    model = GoldenModel(image)
    ticks = 40
    posts = [int(model.tick(inputs, True).sum())
             for inputs in reference_stimulus(config, ticks)]
    c = model.counters
    assert c.pre_events > ticks and c.post_spikes > ticks
    assert 0.01 < c.post_spikes / (ticks * config.n_neurons) < 0.2
    assert max(posts) < config.n_neurons
    assert c.ltd_writes > 0 and c.ltp_writes > 0
    assert listed_groups(model.state.x, PRESETS[name].banks) > 0


def test_main_rejects_too_few_ticks(capsys):
    with pytest.raises(SystemExit):
        bench_core.main(["--preset", "up5k", "--ticks", "2"])
    assert "--ticks" in capsys.readouterr().err
