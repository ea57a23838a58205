"""LinkBackend over a real pseudo-terminal against the golden model: Device code gives the same
spikes, membrane traces, synapse words, state and counters on both."""

import numpy as np
import pytest

from plasticore.config import CoreConfig
from plasticore.host import Device, Network
from plasticore.host.backend import ModelBackend
from plasticore.host.link_backend import LinkBackend
from plasticore.host.transport import SerialTransport, TransportError
from plasticore.image import pack_synapses
from plasticore.protocol import ErrorCode, RunFlags
from plasticore.sim.link_model import ModelPeer, PtyPeer
from plasticore.sim.stimulus import random_image, random_stimulus

from pty_board import pty_board

CFG = CoreConfig(n_inputs=16, n_neurons=24, n_recurrent=8)


@pytest.fixture
def pty():
    with PtyPeer(ModelPeer(CFG, queue_depth=32)) as pty:
        yield pty


def _network(seed=5):
    """Inputs onto an excitatory WTA layer with recurrent inhibition; learning on."""
    net = Network("small")
    pixels = net.inputs(16, "pixels")
    layer = net.population(6, "layer", threshold=300, leak_shift=3, refractory=1, th_plus=30,
                           wta=True)
    inhib = net.population(2, "inhib", threshold=100, leak_shift=2, inhibitory=True)
    hidden = net.population(5, "hidden", threshold=150, bias=3, leak_shift=4)
    ff = net.connect(pixels, layer, weights=("uniform", 20, 90, seed), name="ff")
    net.connect(layer, inhib, weights=60, name="layer_inhib")
    net.connect(inhib, layer, weights=40, name="inhib_layer")
    mask = np.random.default_rng(seed).random((16, 5)) < 0.6
    net.connect(pixels, hidden, weights=("uniform", 0, 60, seed + 1), plasticity=2,
                connectivity=mask, name="pixels_hidden")
    net.learning(seed=seed, soft_bounds=True, shift_plus=6, shift_minus=7, x_decay_shift=2,
                 y_decay_shift=2, th_decay_shift=5, q0=0)
    return net, pixels, layer, inhib, hidden, ff


def test_device_on_the_pty_equals_the_golden_model(pty):
    net, pixels, layer, inhib, hidden, ff = _network()
    rng = np.random.default_rng(11)
    with Device(pty_board(pty.path)) as board, Device("model", config=CFG) as model:
        assert isinstance(board.backend, LinkBackend) and board.config == CFG
        for dev in (board, model):
            dev.load(net)
        for block in range(4):
            raster = rng.random((40, 16)) < (0.15 + 0.1 * block)
            record = (layer, inhib, hidden) if block % 2 == 0 else ()
            learn = block != 3
            got = board.run(40, {pixels: raster}, learn=learn, record=record)
            want = model.run(40, {pixels: raster}, learn=learn, record=record)
            np.testing.assert_array_equal(got.spikes, want.spikes)
            np.testing.assert_array_equal(got.v, want.v)
            assert got.spikes.any()
            for projection in net.projections:
                for field, values in board.synapses(projection).items():
                    np.testing.assert_array_equal(values, model.synapses(projection)[field],
                                                  err_msg=f"{projection.name}.{field}")
        np.testing.assert_array_equal(board.backend.read_synapses(),
                                      model.backend.read_synapses())
        got, want = board.state(), model.state()
        for name in ("v", "th", "ref", "y", "x"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
        np.testing.assert_array_equal(got.last_spikes[:CFG.n_recurrent],
                                      want.last_spikes[:CFG.n_recurrent])
        assert got.t == want.t == 160
        assert board.counters() == model.counters()
        assert board.counters()["ltp_writes"] > 0
        # Plasticity levels written through the board reach it.
        board.freeze(ff)
        model.freeze(ff)
        np.testing.assert_array_equal(board.synapses(ff)["p"], model.synapses(ff)["p"])
        raster = rng.random((30, 16)) < 0.4
        np.testing.assert_array_equal(board.run(30, {pixels: raster}).spikes,
                                      model.run(30, {pixels: raster}).spikes)
        np.testing.assert_array_equal(board.weights(ff), model.weights(ff))
    with pty.lock:
        assert sum(pty.peer.errors.values()) == 0


@pytest.mark.parametrize("seed", range(8))
def test_random_images_run_alike(seed):
    image = random_image(seed, ticks=60)
    cfg = image.config
    spikes, learn = random_stimulus(seed, cfg.n_inputs, ticks=60)
    peer = ModelPeer(cfg, queue_depth=cfg.n_inputs + 1 + seed % 3)
    with PtyPeer(peer) as pty, pty_board(pty.path) as board:
        model = ModelBackend(cfg)
        for backend in (board, model):
            backend.load(image)
        record = np.arange(cfg.n_neurons)[::-1]
        for start in range(0, 60, 15):
            part = slice(start, start + 15)
            rec = record if start % 30 == 0 else ()
            got = board.run(15, spikes[part], learn=bool(learn[start]), record_v=rec)
            want = model.run(15, spikes[part], learn=bool(learn[start]), record_v=rec)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(board.read_synapses(), model.read_synapses())
        got, want = board.read_state(), model.read_state()
        for name in ("v", "th", "ref", "y", "x"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
        assert got.t == want.t
        assert board.counters() == {k: v & 0xFFFFFFFF for k, v in model.counters().items()}
        with pty.lock:
            assert sum(peer.errors.values()) == 0


def test_load_reaches_every_field(pty):
    image = random_image(4, sizes=(CFG.n_inputs, CFG.n_neurons, CFG.n_recurrent))
    with pty_board(pty.path) as board:
        board.load(image)
        with pty.lock:
            model = pty.peer.core.model
            assert model.registers == image.registers
            for name, values in image.neuron_params.items():
                np.testing.assert_array_equal(model.params[name], values, err_msg=name)
            np.testing.assert_array_equal(model.inhibitory, image.source_inhibitory)
            np.testing.assert_array_equal(model.synapses, image.synapses)
            for name in ("v", "th", "ref", "y", "x"):
                np.testing.assert_array_equal(getattr(model.state, name),
                                              getattr(image.state, name))
            np.testing.assert_array_equal(model.state.last_spikes[:CFG.n_recurrent],
                                          image.state.last_spikes[:CFG.n_recurrent])
            assert model.state.t == image.state.t
            assert not pty.peer.core.input_pending.any()


def test_block_write_and_read(pty):
    with pty_board(pty.path) as board:
        assert not board.read_synapses().any()    # a new backend holds the blank image
        words = pack_synapses(w=np.arange(6).reshape(2, 3) + 1, p=2)
        board.write_synapses(words, 3, 1)
        memory = board.read_synapses()
        assert memory.shape == (CFG.n_sources, CFG.n_neurons) and memory.dtype == np.uint16
        np.testing.assert_array_equal(memory[3:5, 1:4], words)
        memory[3:5, 1:4] = 0
        assert not memory.any()
        np.testing.assert_array_equal(board.read_synapses(4, 2, (1, 2)), words[1:, 1:])
        assert board.read_synapses(0, 0, (0, 5)).shape == (0, 5)
        board.write_synapses(np.zeros((CFG.n_sources, CFG.n_neurons), np.uint16))
        assert not board.read_synapses().any()
        spikes, v = board.run(0, record_v=[1])
        assert spikes.shape == (0, CFG.n_neurons) and v.shape == (0, 1)


def test_construction_stops_a_leftover_run_and_loads_blank(pty):
    with pty.lock:
        pty.peer.core.write_word(1, 5, 0xFFFF)
    with pty_board(pty.path) as first:
        first.link.run(0, RunFlags.INPUTS)   # left running by a host that went away
        first.link.spikes([1, 2])
    with pty_board(pty.path) as board:
        status = board.link.status()
        assert status.running == 0 and status.queue_free == 32
        assert not board.read_synapses().any()
        assert board.counters() == dict.fromkeys(
            ("ticks", "pre_events", "synaptic_ops", "post_spikes", "ltd_writes", "ltp_writes"), 0)
        assert repr(board) == f"LinkBackend({pty.path!r})"


def test_closed_backend_refuses_work_and_closes_its_port(pty):
    board = pty_board(pty.path)
    board.close()
    board.close()
    with pytest.raises(RuntimeError, match=r"LinkBackend is closed"):
        board.read_state()
    with pytest.raises(TransportError, match=r"is closed"):
        board.link.transport.read(1, 0)


def test_device_serial_port_arguments(pty):
    with pytest.raises(ValueError, match=r"config CoreConfig\(n_inputs=128.*contradicts the "
                                         r"backend's CoreConfig\(n_inputs=16"):
        Device(pty.path, config=CoreConfig())
    with Device(pty.path, config=CFG) as dev:   # the port was closed and can be reopened
        assert dev.config == CFG
    with pytest.raises(TransportError, match=r"cannot open serial port "
                                             r"'/dev/plasticore-none': No such file"):
        Device("/dev/plasticore-none")
    with pytest.raises(TransportError, match=r"'socket://127\.0\.0\.1:1': Connection refused"):
        Device("socket://127.0.0.1:1")
    with pytest.raises(TypeError, match=r"transport must be a Transport, not 'COM3'"):
        LinkBackend("COM3")


def test_a_tick_too_wide_for_the_queue_is_refused_before_running():
    cfg = CoreConfig(n_inputs=8, n_neurons=4, n_recurrent=0)
    with PtyPeer(ModelPeer(cfg, queue_depth=6)) as pty, Device(pty_board(pty.path)) as dev:
        net = Network()
        inputs = net.inputs(8)
        net.connect(inputs, net.population(4), weights=1)
        dev.load(net)
        dev.run(2, {inputs: np.eye(2, 8, dtype=bool)})
        with pytest.raises(ValueError, match=r"tick 1 has 6 distinct inputs; with its "
                                             r"END_OF_TICK that exceeds the core's input queue "
                                             r"of 6 entries"):
            dev.run(2, {inputs: np.array([[True] * 2 + [False] * 6, [True] * 6 + [False] * 2])})
        assert dev.backend.link.status().running == 0
        with pty.lock:
            assert pty.peer.errors[ErrorCode.QUEUE_FULL] == 0
