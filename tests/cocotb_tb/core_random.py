"""Random images and stimuli on the core, compared with the golden model every tick.

Each seed gives a random core image (:func:`~plasticore.sim.stimulus.random_image`, with the
core's own sizes) and a random stimulus (input spikes, learn flags mostly on). After every tick
the spikes, the tick number and the state of every neuron and source are compared with the
golden model; after the run, the whole synapse memory, the counters and the flags. The seed
also picks the handshake pattern: plain, paused commands, slow response reader, or both.

Parameters come from environment variables set by the pytest wrapper
(``tests/test_hdl_core_cocotb.py``):

``PLASTICORE_SEEDS``
    Comma-separated seeds; one cocotb test per seed (default ``0``).
``PLASTICORE_TICKS``
    Ticks per seed (default 200).
``PLASTICORE_EXPECT``
    The build the wrapper meant to run, ``<n_inputs>,<n_neurons>,<n_recurrent>,<banks>,<memory>``;
    checked against what the core reports, so a wrong build cannot pass silently.
"""

import itertools
import os

import cocotb

from plasticore.sim.cocotb_core import CoreTB
from plasticore.sim.stimulus import random_image, random_stimulus

SEEDS = [int(s) for s in os.environ.get("PLASTICORE_SEEDS", "0").split(",")]
TICKS = int(os.environ.get("PLASTICORE_TICKS", "200"))
EXPECT = os.environ.get("PLASTICORE_EXPECT")

# (command pause, response backpressure) by seed % 4: the {pause} x {backpressure} matrix.
_HANDSHAKES = [
    (None, None),
    (lambda: itertools.cycle([0, 0, 1]), None),
    (None, lambda: itertools.cycle([0, 1, 0, 0, 1, 1])),
    (lambda: itertools.cycle([1, 0]), lambda: itertools.cycle([1, 0, 0])),
]


def check_build(tb):
    """The core is the build the wrapper asked for."""
    if EXPECT is None:
        return
    n_inputs, n_neurons, n_recurrent, banks, memory = EXPECT.split(",")
    got = (tb.config.n_inputs, tb.config.n_neurons, tb.config.n_recurrent, tb.banks,
           "spram" if tb.spram else "bram")
    assert got == (int(n_inputs), int(n_neurons), int(n_recurrent), int(banks), memory), (
        f"the core reports {got}, the wrapper expected {EXPECT}")


@cocotb.test(timeout_time=20, timeout_unit="ms")
@cocotb.parametrize(seed=SEEDS)
async def random_run(dut, seed):
    pause, backpressure = _HANDSHAKES[seed % len(_HANDSHAKES)]
    tb = CoreTB(dut, pause=pause and pause(), backpressure=backpressure and backpressure())
    await tb.reset()
    check_build(tb)
    config = tb.config
    image = random_image(seed, (config.n_inputs, config.n_neurons, config.n_recurrent),
                         ticks=TICKS)
    spikes, learn = random_stimulus(seed, config.n_inputs, ticks=TICKS)
    await tb.load(image)
    await tb.run(spikes, learn)
    await tb.finish()
