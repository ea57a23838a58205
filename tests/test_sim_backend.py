"""End to end: the same network, learning on, on the golden model and on the virtual board.

The virtual board is the whole SoC in Verilator behind a pseudo-terminal; the host reaches it
through pyserial, the link protocol and the UART, as it would a board. Every spike, membrane
potential and synapse word must be the same as on the golden model.
"""

import numpy as np
import pytest

from plasticore.boards.targets import board_named
from plasticore.config import CoreConfig
from plasticore.host import Device, Network
from plasticore.host.sim_backend import SimBackend

CONFIG = CoreConfig(n_inputs=8, n_neurons=8, n_recurrent=4)


def learning_network(*, wta=True, th_plus=30):
    """The end-to-end network; a core without the winner-take-all pool or the adaptive
    threshold (the iCEBreaker's) runs it with ``wta=False, th_plus=0``."""
    net = Network("e2e")
    inputs = net.inputs(6, name="inputs")
    hidden = net.population(4, name="hidden", threshold=120, leak_shift=2, refractory=1,
                            th_plus=th_plus, wta=wta)
    out = net.population(4, name="out", threshold=90, leak_shift=3, bias=5)
    net.connect(inputs, hidden, weights=("uniform", 20, 90, 4), name="in->hidden")
    net.connect(hidden, out, weights=("uniform", 30, 120, 5), plasticity=1, name="hidden->out")
    net.connect(inputs, out, weights=("uniform", 0, 40, 6), name="in->out")
    net.learning(seed=11, shift_plus=6, shift_minus=7, q0=0, c_max=2)
    return net, inputs, hidden, out


def run(backend, config, **network):
    net, inputs, hidden, out = learning_network(**network)
    rng = np.random.default_rng(2)
    raster = rng.random((60, len(inputs))) < 0.35
    with Device(backend, config=config) as dev:
        dev.load(net)
        first = dev.run(30, {inputs: raster[:30]}, learn=True, record=[hidden, out])
        second = dev.run(30, {inputs: raster[30:]}, learn=True)
        weights = {p.name: dev.weights(p) for p in net.projections}
        fields = {p.name: dev.synapses(p) for p in net.projections}
        state = dev.state()
        counters = dev.counters()
    return first, second, weights, fields, state, counters


def assert_same(model, board):
    """Two :func:`run` results agree in every spike, potential, synapse field, neuron state and
    counter, and the run was not trivial."""
    for a, b in zip(model[:2], board[:2]):
        assert np.array_equal(a.spikes, b.spikes)
        assert np.array_equal(a.v, b.v)
    assert model[0].spikes.sum() > 20 and model[1].spikes.sum() > 20   # the network is active
    for name in model[2]:
        assert np.array_equal(model[2][name], board[2][name]), name
        for field in ("w", "p", "c", "en"):
            assert np.array_equal(model[3][name][field], board[3][name][field]), (name, field)
    changed = sum(int((model[3][n]["p"] > 0).sum()) for n in model[3])
    assert changed > 0          # consolidation promoted some synapses on both
    for field in ("v", "th", "ref", "y", "x"):
        assert np.array_equal(getattr(model[4], field), getattr(board[4], field)), field
    for name in ("ticks", "pre_events", "synaptic_ops", "post_spikes", "ltd_writes",
                 "ltp_writes"):
        assert model[5][name] == board[5][name], name


def test_model_and_virtual_board_agree_bit_for_bit_with_learning_on():
    assert_same(run("model", CONFIG), run("sim", CONFIG))


# The ULX3S-85F's SoC passes this too, in 150 s: loading its 196,608 synapses twice over the
# simulated UART is most of it. The iCEBreaker's, the preset with the most left out, takes 15 s.
@pytest.mark.parametrize("name", ["icebreaker"])
def test_a_boards_own_soc_agrees_with_the_model(name):
    """The gateware a board's bitstream is built from, simulated whole, against the golden model
    of its core: the iCEBreaker's is the UP5K preset (no tick pacing, winner-take-all pool,
    adaptive threshold or source-group list; the hash in two halves; one SPRAM bank at
    12 MHz)."""
    board = board_named(name)
    preset = board.preset
    parts = {"PACED": preset.paced, "WTA": preset.wta,
             "ADAPTIVE_THRESHOLD": preset.adaptive_threshold}
    network = dict(wta=preset.wta, th_plus=30 if preset.adaptive_threshold else 0)
    with Device(SimBackend(board=name)) as dev:
        info = dev.backend.link.info
        assert dev.config == preset.config and info.banks == preset.banks
        assert dev.features == {part for part, built in parts.items() if built}
        assert (info.clock_hz, info.baud_divisor) == (board.clock_hz, board.divisor)
        if not preset.wta:
            with pytest.raises(ValueError, match=r"WTA \(neurons .*built without"):
                dev.load(learning_network()[0])
        assert_same(run("model", preset.config, **network), run(dev.backend, None, **network))
