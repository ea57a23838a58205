"""The quick-start demo: a winner-take-all layer learns four input patterns with on-chip STDP.

Four groups of eight input axons fire in turn (a "pattern" is one group firing at a high rate
over a low background). Four detector neurons in a winner-take-all pool, with adaptive
thresholds, start from random weights. With learning on, pair STDP strengthens the synapses
from each detector's winning pattern and weakens the rest, and consolidation makes the synapses
that keep winning less plastic. The demo prints each detector's responses before and after, its
receptive field, the plasticity levels that consolidation reached, and the core's counters.

Run it with ``make demo`` or ``python -m plasticore.host.demo [--backend sim|model|PORT]``: by
default on the virtual board (the whole SoC in Verilator, reached over a pseudo-terminal and the
UART protocol, built on first use), with ``model`` on the golden model (the same results, faster),
or on a board at a serial port.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from tqdm import tqdm

from ..image import features_needed
from .backend import FEATURE_NAMES
from .device import Device
from .network import Network

N_PATTERNS = 4
GROUP = 8
ON_RATE, OFF_RATE = 0.5, 0.01
PRESENT, REST = 20, 10
SHADES = " .:-=+*#%@"


def build_network(seed: int) -> tuple[Network, object, object, object]:
    net = Network("patterns")
    pixels = net.inputs(N_PATTERNS * GROUP, name="pixels")
    detectors = net.population(N_PATTERNS, name="detectors", threshold=400, leak_shift=2,
                               refractory=1, th_plus=40, wta=True)
    synapses = net.connect(pixels, detectors, weights=("uniform", 30, 69, seed),
                           name="pixels->detectors")
    # Additive pair STDP with short presynaptic traces: only inputs that fired just before a
    # detector's spike gain; inputs that keep firing after it lose a little more. Depression
    # steps drain the consolidation counter, so the coin is fair (q0 = 0) for promotions to show.
    net.learning(seed=seed, soft_bounds=False, a_plus=128, a_minus=128, shift_plus=9,
                 shift_minus=10, x_decay_shift=1, y_decay_shift=3, th_decay_shift=6,
                 th_decay_period=2, q0=0)
    return net, pixels, detectors, synapses


def pattern_raster(rng, pattern: int) -> np.ndarray:
    """One presentation: the pattern's group fires at ON_RATE, the rest at OFF_RATE, then rest."""
    rates = np.full(N_PATTERNS * GROUP, OFF_RATE)
    rates[pattern * GROUP:(pattern + 1) * GROUP] = ON_RATE
    raster = np.zeros((PRESENT + REST, rates.size), bool)
    raster[:PRESENT] = rng.random((PRESENT, rates.size)) < rates
    return raster


def responses(dev, pixels, detectors, rng, repeats=5) -> np.ndarray:
    """Spike counts of each detector (rows) for each pattern (columns), learning off."""
    counts = np.zeros((N_PATTERNS, N_PATTERNS), int)
    for _ in range(repeats):
        for pattern in range(N_PATTERNS):
            result = dev.run(PRESENT + REST, {pixels: pattern_raster(rng, pattern)}, learn=False)
            counts[:, pattern] += result.spike_counts(detectors)
    return counts


def print_responses(title, counts):
    print(title)
    print("              " + "".join(f"pattern {p}  " for p in range(N_PATTERNS)))
    for d, row in enumerate(counts):
        print(f"  detector {d}  " + "".join(f"{c:9d}  " for c in row))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options, for its own command line and for ``plasticore demo``."""
    parser.add_argument("--backend", default="sim",
                        help="sim (the virtual board, default), model, or a serial port")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--epochs", type=int, default=30, help="presentations of each pattern")
    parser.add_argument("--seed", type=int, default=3, help="seed of weights, inputs and RNG")
    parser.add_argument("--timeout", type=float, default=None,
                        help="with a serial port: seconds to wait for each reply (default 1)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plasticore.host.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """The demo with parsed options; the exit status."""
    net, pixels, detectors, synapses = build_network(args.seed)
    rng = np.random.default_rng(args.seed)
    if args.backend == "sim":
        print("starting the virtual board (built with Verilator on first use: a minute or two)",
              file=sys.stderr, flush=True)
    timeout = {"timeout": args.timeout} if args.timeout is not None else {}
    with Device(args.backend, **timeout) as dev:
        lacking = set(features_needed(net.compile(dev.config).image)) - dev.features
        if lacking:
            names = _and([FEATURE_NAMES[name] for name in sorted(lacking)])
            print(f"plasticore demo: its network needs {names}, which the core "
                  f"on {args.backend!r} was built without (the iCEBreaker's core leaves them "
                  f"out to fit). Run it on the virtual board (--backend sim), the golden model "
                  f"(--backend model) or a ULX3S.", file=sys.stderr)
            return 2
        dev.load(net)
        cfg = dev.config
        print(f"plasticore demo on backend {args.backend!r}: core of {cfg.n_inputs} inputs, "
              f"{cfg.n_neurons} neurons, {cfg.n_synapses} synapses")
        print(f"network: {len(pixels)} inputs in {N_PATTERNS} patterns of {GROUP}, "
              f"{len(detectors)} winner-take-all detectors, {len(synapses)} plastic synapses\n")
        print_responses("before learning (spikes per 5 presentations, learning off):",
                        responses(dev, pixels, detectors, rng))

        order = [p for _ in range(args.epochs) for p in rng.permutation(N_PATTERNS)]
        start = time.perf_counter()
        for pattern in tqdm(order, desc="learning", unit="pattern", file=sys.stderr,
                            disable=args.no_progress, mininterval=0.5):
            dev.run(PRESENT + REST, {pixels: pattern_raster(rng, pattern)}, learn=True)
        elapsed = time.perf_counter() - start
        ticks = len(order) * (PRESENT + REST)
        print(f"\nlearned for {ticks} ticks ({len(order)} presentations) in {elapsed:.1f} s, "
              f"{ticks / elapsed:.0f} ticks/s\n")

        counts = responses(dev, pixels, detectors, rng)
        print_responses("after learning (spikes per 5 presentations, learning off):", counts)

        fields = dev.synapses(synapses)
        w, p = fields["w"], fields["p"]
        print("\nreceptive fields (weight of each input onto each detector, "
              f"'{SHADES[0]}' = 0 .. '{SHADES[-1]}' = 255; groups of {GROUP} are the patterns):")
        for d in range(N_PATTERNS):
            row = "|".join("".join(SHADES[min(int(x) * len(SHADES) // 256, len(SHADES) - 1)]
                                   for x in w[g * GROUP:(g + 1) * GROUP, d])
                           for g in range(N_PATTERNS))
            print(f"  detector {d}  |{row}|")

        preferred = counts.argmax(axis=0)
        selectivity = counts.max(axis=0) / np.maximum(counts.sum(axis=0), 1)
        print("\nplasticity levels reached by consolidation (synapses per level, 0 = most plastic):")
        levels = np.bincount(p.ravel(), minlength=8)
        print("  " + "  ".join(f"p={k}: {levels[k]}" for k in range(8) if levels[k]))
        winning = np.zeros(p.shape, bool)
        for g in range(N_PATTERNS):
            winning[g * GROUP:(g + 1) * GROUP, preferred[g]] = True
        print(f"  mean level of each pattern's synapses onto its own detector: "
              f"{p[winning].mean():.2f}; of all other synapses: {p[~winning].mean():.2f}")
        c = dev.counters()
        print(f"\ncounters: {c['ticks']} ticks, {c['pre_events']} presynaptic events, "
              f"{c['synaptic_ops']} synaptic operations, {c['post_spikes']} spikes, "
              f"{c['ltp_writes']} potentiation and {c['ltd_writes']} depression writes")

        distinct = len(set(preferred.tolist()))
        print(f"\nresult: {distinct} of {N_PATTERNS} patterns have a detector of their own; "
              f"a pattern's detector fires {100 * selectivity.mean():.0f}% of the spikes "
              f"it evokes (chance: {100 / N_PATTERNS:.0f}%)")
        for g in range(N_PATTERNS):
            print(f"  pattern {g} -> detector {preferred[g]} ({100 * selectivity[g]:.0f}%)")
    return 0


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


if __name__ == "__main__":
    sys.exit(main())
