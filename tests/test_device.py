"""The device API on the "model" backend: validation, and networks running end to end."""

import numpy as np
import pytest

from plasticore.config import CoreConfig
from plasticore.host import Device, Network
from plasticore.host.backend import Backend, ModelBackend
from plasticore.host.transport import TransportError
from plasticore.image import CoreImage, pack_synapses

CFG = CoreConfig(n_inputs=4, n_neurons=5, n_recurrent=2)


def _single(**params):
    """Two input axons onto one neuron with weights 60 and 30, no leak by default."""
    net = Network("single")
    inp = net.inputs(2, "in", inhibitory=params.pop("inhibitory", False))
    params = dict(threshold=100, leak_shift=15) | params
    neuron = net.population(1, "n", **params)
    proj = net.connect(inp, neuron, weights=np.array([[60], [30]]), name="in_n")
    return net, inp, neuron, proj


@pytest.fixture
def dev():
    with Device("model", config=CFG) as dev:
        yield dev


@pytest.fixture
def loaded(dev):
    net, inp, neuron, proj = _single()
    dev.load(net)
    return dev, inp, neuron, proj


# --- Construction -----------------------------------------------------------------------------

@pytest.mark.parametrize("args, kwargs, exc, match", [
    (("/dev/plasticore-none",), {}, TransportError,
     r"cannot open serial port '/dev/plasticore-none': No such file or directory"),
    (("COM3",), {}, TransportError, r"cannot open serial port 'COM3'"),
    (("socket://127.0.0.1:1",), {}, TransportError, r"'socket://127\.0\.0\.1:1': Connection refused"),
    (("fpga",), {}, ValueError, r"unknown backend 'fpga'; expected 'model', 'sim' or a serial "
                                r"port"),
    ((3,), {}, TypeError, r"backend must be a str or a Backend, not 3"),
    (("model",), dict(config=(4, 5, 2)), TypeError,
     r"config must be a CoreConfig or None, not \(4, 5, 2\)"),
    ((ModelBackend(CFG),), dict(config=CoreConfig()), ValueError,
     r"config CoreConfig\(n_inputs=128, n_neurons=256, n_recurrent=128\) contradicts the "
     r"backend's CoreConfig\(n_inputs=4"),
])
def test_device_arguments_wrong(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Device(*args, **kwargs)


def test_device_takes_a_backend_and_default_config():
    backend = ModelBackend(CFG)
    assert Device(backend).backend is backend
    assert Device(backend, config=CFG).config == CFG
    assert Device().config == CoreConfig()


def test_backend_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        Backend()


# --- Validation of run and the synapse accessors ----------------------------------------------

def test_run_before_load(dev):
    with pytest.raises(RuntimeError, match=r"no network is loaded; call Device.load\(network\)"):
        dev.run(1)


def test_load_wrong(dev):
    with pytest.raises(TypeError, match=r"network must be a Network, not 3"):
        dev.load(3)
    net = Network("wide")
    net.inputs(5)
    with pytest.raises(ValueError, match=r"needs 5 input axons, more than the core's "
                                         r"n_inputs = 4"):
        dev.load(net)


_OTHER = Network("other")
_OTHER_IN = _OTHER.inputs(2, "in")
_OTHER_POP = _OTHER.population(1, "n")
_OTHER_PROJ = _OTHER.connect(_OTHER_IN, _OTHER_POP, weights=1, name="in_n")


@pytest.mark.parametrize("call, exc, match", [
    (lambda d, i, n: d.run(-1), ValueError, r"ticks = -1 must be >= 0"),
    (lambda d, i, n: d.run(2.0), TypeError, r"ticks must be an int, not 2\.0"),
    (lambda d, i, n: d.run(3, [(0, 0)]), TypeError,
     r"inputs must be a dict of InputGroup to spikes, not \[\(0, 0\)\]"),
    (lambda d, i, n: d.run(3, {n: [(0, 0)]}), TypeError,
     r"inputs keys must be InputGroups, not Population\('n', 1\)"),
    (lambda d, i, n: d.run(3, {_OTHER_IN: [(0, 0)]}), ValueError,
     r"input group 'in' is not part of the loaded network 'single'"),
    (lambda d, i, n: d.run(3, {i: np.zeros((2, 2), bool)}), ValueError,
     r"input group 'in': spike array has shape \(2, 2\), expected \(3, 2\)"),
    (lambda d, i, n: d.run(3, {i: [(3, 0)]}), ValueError,
     r"input group 'in': event \(3, 0\) has tick 3 out of range 0\.\.2"),
    (lambda d, i, n: d.run(3, {i: [(0, 0), (-1, 1)]}), ValueError,
     r"event \(-1, 1\) has tick -1 out of range 0\.\.2"),
    (lambda d, i, n: d.run(3, {i: [(1, 2)]}), ValueError,
     r"event \(1, 2\) has index 2 out of range 0\.\.1"),
    (lambda d, i, n: d.run(3, {i: [(0.0, 1)]}), TypeError,
     r"spikes must be a bool array or \(tick, index\) events of ints, not an array of float64"),
    (lambda d, i, n: d.run(3, {i: [(0, 1, 1)]}), ValueError,
     r"events have shape \(1, 3\), expected \(n_events, 2\)"),
    (lambda d, i, n: d.run(3, learn=1), TypeError, r"learn must be a bool, not 1"),
    (lambda d, i, n: d.run(3, record=5), ValueError, r"record: neuron 5 is out of range 0\.\.4"),
    (lambda d, i, n: d.run(3, record=["n"]), TypeError,
     r"record must hold Populations and neuron indices, not 'n'"),
    (lambda d, i, n: d.run(3, record=_OTHER_POP), ValueError,
     r"population 'n' is not part of the loaded network 'single'"),
    (lambda d, i, n: d.weights(_OTHER_PROJ), ValueError,
     r"projection 'in_n' is not part of the loaded network 'single'"),
    (lambda d, i, n: d.weights(n), TypeError, r"expected a Projection, not Population\('n', 1\)"),
    (lambda d, i, n: d.run(1).spikes_of(i), TypeError,
     r"expected a Population, not InputGroup\('in', 2\)"),
    (lambda d, i, n: d.run(1).spikes_of(_OTHER_POP), ValueError,
     r"population 'n' was not part of the loaded network"),
    (lambda d, i, n: d.run(1, record=[1]).v_of(n), ValueError,
     r"population 'n' was not recorded \(neuron 0 is missing\)"),
    (lambda d, i, n: d.run(1, record=[n]).v_of(3), ValueError,
     r"neuron 3 was not recorded; recorded neurons are \[0\]"),
])
def test_run_arguments_wrong(loaded, call, exc, match):
    dev, inp, neuron, _ = loaded
    with pytest.raises(exc, match=match):
        call(dev, inp, neuron)


@pytest.mark.parametrize("level, exc, match", [
    (8, ValueError, r"projection 'in_n': plasticity = 8 is out of range 0\.\.7"),
    (np.array([[0], [-1]]), ValueError, r"plasticity\[1, 0\] = -1 is out of range 0\.\.7"),
    (1.5, TypeError, r"plasticity must be an integer, not 1\.5"),
    (np.zeros((1, 2), int), ValueError, r"plasticity has shape \(1, 2\), expected \(2, 1\)"),
])
def test_set_plasticity_wrong(loaded, level, exc, match):
    dev, _, _, proj = loaded
    before = dev.synapses(proj)
    with pytest.raises(exc, match=match):
        dev.set_plasticity(proj, level)
    np.testing.assert_array_equal(dev.synapses(proj)["p"], before["p"])


def test_closed_device_refuses_work():
    net, inp, _, proj = _single()
    with Device("model", config=CFG) as dev:
        dev.load(net)
    dev.close()  # closing twice is allowed
    for call in (lambda: dev.run(1), lambda: dev.weights(proj), dev.state, dev.counters,
                 lambda: dev.load(net)):
        with pytest.raises(RuntimeError, match=r"ModelBackend is closed"):
            call()


@pytest.mark.parametrize("call, exc, match", [
    (lambda b: b.load(3), TypeError, r"image must be a CoreImage, not 3"),
    (lambda b: b.load(CoreImage.blank(CoreConfig())), ValueError,
     r"image is for CoreConfig\(n_inputs=128.*but the core is CoreConfig\(n_inputs=4"),
    (lambda b: b.run(2, np.zeros((2, 4), int)), TypeError,
     r"input_spikes must be a bool array, not an array of int64"),
    (lambda b: b.run(2, np.zeros((2, 3), bool)), ValueError,
     r"input_spikes has shape \(2, 3\), expected \(2, 4\)"),
    (lambda b: b.run(2, record_v=[0, 5]), ValueError, r"record_v neuron 5 is out of range 0\.\.4"),
    (lambda b: b.read_synapses(6), ValueError, r"row = 6 is out of range 0\.\.5"),
    (lambda b: b.read_synapses(0, 5), ValueError, r"col = 5 is out of range 0\.\.4"),
    (lambda b: b.read_synapses(0, 0.5), TypeError, r"col must be an int, not 0\.5"),
    (lambda b: b.read_synapses(2, 1, (5, 1)), ValueError,
     r"block rows 2\.\.6 exceed the limit 5"),
    (lambda b: b.read_synapses(2, 1, (1, 5)), ValueError, r"block cols 1\.\.5 exceed the limit 4"),
    (lambda b: b.read_synapses(0, 0, (-1, 1)), ValueError, r"block rows count = -1 must be >= 0"),
    (lambda b: b.read_synapses(0, 0, 3), TypeError,
     r"shape must be a pair of ints \(rows, cols\), not 3"),
    (lambda b: b.write_synapses(np.full((1, 1), 65536)), ValueError,
     r"words\[0, 0\] = 65536 is out of range 0\.\.65535"),
    (lambda b: b.write_synapses(np.zeros(3, int)), TypeError,
     r"words must be a 2-D integer array, not an array of int64 with shape \(3,\)"),
    (lambda b: b.write_synapses(np.zeros((2, 2), int), 5, 0), ValueError,
     r"block rows 5\.\.6 exceed the limit 5"),
])
def test_backend_arguments_wrong(call, exc, match):
    backend = ModelBackend(CFG)
    with pytest.raises(exc, match=match):
        call(backend)


def test_backend_block_write_and_read():
    backend = ModelBackend(CFG)
    words = pack_synapses(w=np.arange(6).reshape(2, 3) + 1, p=2)
    backend.write_synapses(words, 3, 1)
    memory = backend.read_synapses()
    assert memory.shape == (CFG.n_sources, CFG.n_neurons) and memory.dtype == np.uint16
    np.testing.assert_array_equal(memory[3:5, 1:4], words)
    memory[3:5, 1:4] = 0
    assert not memory.any()
    np.testing.assert_array_equal(backend.read_synapses(4, 2, (1, 2)), words[1:, 1:])
    backend.write_synapses(np.zeros((CFG.n_sources, CFG.n_neurons), np.uint16))
    assert not backend.read_synapses().any()


# --- End to end -------------------------------------------------------------------------------

def test_input_spikes_integrate_to_threshold(dev):
    net, inp, neuron, proj = _single(reset=-7)
    dev.load(net)
    result = dev.run(9, {inp: [(2, 0), (5, 0), (7, 1)]}, learn=False, record=neuron)
    # v += weight per input spike; 60 + 60 >= 100 fires at tick 5 and resets to -7.
    np.testing.assert_array_equal(result.v_of(neuron)[:, 0], [0, 0, 60, 60, 60, -7, -7, 23, 23])
    np.testing.assert_array_equal(np.flatnonzero(result.spikes_of(neuron)[:, 0]), [5])
    assert result.spikes.shape == (9, CFG.n_neurons) and result.ticks == 9
    assert result.spikes.sum() == 1  # the unused neurons never fire


def test_leak_and_refractory_reach_the_core(dev):
    net, inp, neuron, _ = _single(leak_shift=1)
    dev.load(net)
    result = dev.run(9, {inp: [(2, 0), (5, 0)]}, learn=False, record=neuron)
    # Each tick v loses ceil(v / 2) before the input arrives: 60, 30, 15, then 7 + 60.
    np.testing.assert_array_equal(result.v_of(neuron)[:, 0], [0, 0, 60, 30, 15, 67, 33, 16, 8])
    assert not result.spikes.any()

    net, inp, neuron, _ = _single(refractory=2, threshold=60)
    dev.load(net)
    result = dev.run(8, {inp: np.array([[True, False]] * 8)}, learn=False)
    # After a spike a neuron ignores its input for 2 ticks.
    np.testing.assert_array_equal(np.flatnonzero(result.spikes_of(neuron)), [0, 3, 6])


def test_inhibitory_inputs_subtract(dev):
    net, inp, neuron, _ = _single(inhibitory=True)
    dev.load(net)
    result = dev.run(3, {inp: [(1, 0), (2, 1)]}, learn=False, record=neuron)
    np.testing.assert_array_equal(result.v_of(neuron)[:, 0], [0, -60, -90])


def test_recurrent_projection_delivers_one_tick_later(dev):
    net = Network("chain")
    inp = net.inputs(1, "in")
    second = net.population(1, "second", threshold=50, leak_shift=15)
    first = net.population(1, "first", threshold=50, leak_shift=15)
    net.connect(inp, first, weights=60)
    net.connect(first, second, weights=60)
    compiled = dev.load(net)
    assert compiled.layout.neurons[first] == range(0, 1)  # a source, so placed first
    result = dev.run(8, {inp: [(3, 0)]}, learn=False, record=[second])
    np.testing.assert_array_equal(np.flatnonzero(result.spikes_of(first)), [3])
    np.testing.assert_array_equal(np.flatnonzero(result.spikes_of(second)), [4])
    np.testing.assert_array_equal(result.v_of(second)[:5, 0], [0, 0, 0, 0, 0])


def _learner(dev):
    """An input that fires every tick onto a neuron that fires every tick, LTP only."""
    net = Network("learner")
    inp = net.inputs(2, "in")
    neuron = net.population(1, "n", threshold=50, th_plus=10, leak_shift=15)
    proj = net.connect(inp, neuron, weights=60, connectivity=[(0, 0)])
    net.learning(ltd=False)
    dev.load(net)
    return inp, neuron, proj, {inp: np.array([[True, False]] * 6)}


def test_learn_false_leaves_synapses_and_thresholds(dev):
    inp, neuron, proj, inputs = _learner(dev)
    before = dev.synapses(proj)
    result = dev.run(6, inputs, learn=False)
    assert result.spike_counts(neuron)[0] == 6
    for name, value in dev.synapses(proj).items():
        np.testing.assert_array_equal(value, before[name])
    assert not dev.state().th.any()

    dev.run(6, inputs, learn=True)
    weights = dev.weights(proj)
    assert weights[0, 0] > 60 and weights[1, 0] == -1
    assert dev.state().th[0] > 0


def test_frozen_projection_does_not_learn(dev):
    inp, neuron, proj, inputs = _learner(dev)
    dev.freeze(proj)
    np.testing.assert_array_equal(dev.synapses(proj)["p"], [[7], [-1]])
    result = dev.run(6, inputs, learn=True)
    assert result.spike_counts(neuron)[0] > 0  # so a plastic synapse would have potentiated
    np.testing.assert_array_equal(dev.weights(proj), [[60], [-1]])
    dev.set_plasticity(proj, 0)
    dev.run(6, inputs, learn=True)
    assert dev.weights(proj)[0, 0] > 60


def test_set_plasticity_touches_only_its_projection(dev):
    net = Network()
    inp = net.inputs(2, "in")
    pop = net.population(2, "pop")
    a = net.connect(inp, pop, weights=5, connectivity=[(0, 0), (1, 1)], plasticity=1)
    b = net.connect(inp, pop, weights=9, connectivity=[(0, 1)], plasticity=2, plastic=False)
    dev.load(net)
    dev.set_plasticity(a, np.array([[3, 99], [99, 4]]))
    synapses_a, synapses_b = dev.synapses(a), dev.synapses(b)
    np.testing.assert_array_equal(synapses_a["p"], [[3, -1], [-1, 4]])
    np.testing.assert_array_equal(synapses_a["w"], [[5, -1], [-1, 5]])
    np.testing.assert_array_equal(synapses_a["en"], [[1, -1], [-1, 1]])
    np.testing.assert_array_equal(synapses_b["p"], [[-1, 2], [-1, -1]])
    np.testing.assert_array_equal(synapses_b["w"], [[-1, 9], [-1, -1]])
    np.testing.assert_array_equal(synapses_b["en"], [[-1, 0], [-1, -1]])
    np.testing.assert_array_equal(synapses_b["c"], [[-1, 0], [-1, -1]])


def _random_network():
    net = Network("random")
    inp = net.inputs(3, "in")
    pop = net.population(4, "pop", threshold=90, leak_shift=2)
    rec = net.population(1, "rec", threshold=20, leak_shift=2, inhibitory=True)
    net.connect(inp, pop, weights=("uniform", 20, 80, 7))
    net.connect(inp, rec, weights=15)
    net.connect(rec, pop, weights=40)
    net.learning(seed=5)
    return net, inp, pop, rec


def test_event_inputs_equal_dense_inputs():
    dense = np.random.default_rng(3).random((40, 3)) < 0.4
    events = np.argwhere(dense)
    events = np.concatenate([events, events[::5]])[::-1]  # repeated and out of order
    results = []
    for spikes in (dense, events.tolist()):
        net, inp, pop, rec = _random_network()
        with Device("model", config=CFG) as dev:
            dev.load(net)
            result = dev.run(40, {inp: spikes}, learn=True, record=[pop, rec])
            results.append((result, [dev.weights(p) for p in net.projections]))
            assert result.spike_counts(pop).sum() > 0  # the comparison is not vacuous
    (dense_result, dense_weights), (event_result, event_weights) = results
    np.testing.assert_array_equal(dense_result.spikes, event_result.spikes)
    np.testing.assert_array_equal(dense_result.v, event_result.v)
    for a, b in zip(dense_weights, event_weights):
        np.testing.assert_array_equal(a, b)


def test_record_returns_membrane_traces(dev):
    net, inp, pop, rec = _random_network()
    compiled = dev.load(net)
    neurons = compiled.layout.neurons
    result = dev.run(20, {inp: [(t, t % 3) for t in range(20)]}, learn=False,
                     record=[pop, neurons[rec].start, neurons[pop].start + 2])
    assert result.recorded == (*neurons[pop], neurons[rec].start, neurons[pop].start + 2)
    assert result.v.dtype == np.int16 and result.v.shape == (20, 6)
    v_pop = result.v_of(pop)
    assert v_pop.shape == (20, 4) and v_pop.any()
    np.testing.assert_array_equal(result.v_of(neurons[pop].start + 2), v_pop[:, 2])
    np.testing.assert_array_equal(result.v_of(rec), result.v_of(neurons[rec].start)[:, None])
    # The trace is the potential after each tick: the state read afterwards matches its last row.
    np.testing.assert_array_equal(dev.state().v[neurons[pop].start:neurons[pop].stop],
                                  v_pop[-1])


def test_counters_and_reload(dev):
    net, inp, pop, rec = _random_network()
    dev.load(net)
    initial = [dev.weights(p) for p in net.projections]
    result = dev.run(25, {inp: np.ones((25, 3), bool)}, learn=True)
    counters = dev.counters()
    assert counters["ticks"] == 25 and dev.state().t == 25
    assert counters["post_spikes"] == result.spikes.sum() > 0
    assert counters["pre_events"] >= 75
    assert any(not np.array_equal(a, dev.weights(p)) for a, p in zip(initial, net.projections))
    dev.load(net)
    assert dev.counters()["ticks"] == 0 and dev.state().t == 0
    for a, p in zip(initial, net.projections):
        np.testing.assert_array_equal(dev.weights(p), a)


def test_weights_match_the_projection_after_load(dev):
    net, inp, pop, rec = _random_network()
    dev.load(net)
    for proj in net.projections:
        np.testing.assert_array_equal(dev.weights(proj), proj.weights)
        np.testing.assert_array_equal(dev.synapses(proj)["en"], np.where(proj.mask, 1, -1))
