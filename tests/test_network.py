"""The network API: argument validation and its messages, allocation and compilation to an image."""

import numpy as np
import pytest

from plasticore.config import REGISTERS_BY_NAME, CoreConfig, default_registers
from plasticore.host.network import LEARNING_SETTINGS, Network
from plasticore.image import CoreImage, unpack_synapses

CFG = CoreConfig(n_inputs=8, n_neurons=10, n_recurrent=4)


@pytest.fixture
def net():
    """A network with an input group ``in`` (2 axons) and a population ``pop`` (3 neurons)."""
    net = Network("net")
    net.inputs(2, "in")
    net.population(3, "pop")
    return net


def _groups(net):
    return net.input_groups[0], net.populations[0]


# --- Validation -------------------------------------------------------------------------------

@pytest.mark.parametrize("make, exc, match", [
    (lambda: Network(3), TypeError, r"network name must be a non-empty str, not 3"),
    (lambda: Network(""), TypeError, r"network name must be a non-empty str, not ''"),
])
def test_network_name_wrong(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("call, exc, match", [
    (lambda n: n.inputs(0), ValueError, r"input group 'input1': n = 0 is out of range 1\.\.16384"),
    (lambda n: n.inputs(16385), ValueError, r"n = 16385 is out of range 1\.\.16384"),
    (lambda n: n.inputs(True), TypeError, r"n must be an int, not True"),
    (lambda n: n.inputs(2.0), TypeError, r"n must be an int, not 2\.0"),
    (lambda n: n.inputs(2, 5), TypeError, r"input group name must be a non-empty str, not 5"),
    (lambda n: n.inputs(2, "pop"), ValueError,
     r"network 'net' already has an object named 'pop': Population\('pop', 3\)"),
    (lambda n: n.inputs(2, inhibitory=1), TypeError, r"inhibitory must be a bool, not 1"),
    (lambda n: n.population(0), ValueError,
     r"population 'population1': n = 0 is out of range 1\.\.16384"),
    (lambda n: n.population(2, "in"), ValueError, r"already has an object named 'in'"),
    (lambda n: n.population(3, threshold=32768), ValueError,
     r"threshold = 32768 is out of range 0\.\.32767"),
    (lambda n: n.population(3, threshold=-1), ValueError,
     r"threshold = -1 is out of range 0\.\.32767"),
    (lambda n: n.population(3, threshold=2**70), ValueError,
     rf"threshold = {2**70} is out of range 0\.\.32767"),
    (lambda n: n.population(3, reset=-32769), ValueError,
     r"reset = -32769 is out of range -32768\.\.32767"),
    (lambda n: n.population(3, bias=32768), ValueError,
     r"bias = 32768 is out of range -32768\.\.32767"),
    (lambda n: n.population(3, leak_shift=16), ValueError,
     r"leak_shift = 16 is out of range 0\.\.15"),
    (lambda n: n.population(3, refractory=16), ValueError,
     r"refractory = 16 is out of range 0\.\.15"),
    (lambda n: n.population(3, th_plus=256), ValueError, r"th_plus = 256 is out of range 0\.\.255"),
    (lambda n: n.population(3, threshold=1.5), TypeError,
     r"threshold must be an integer, not 1\.5"),
    (lambda n: n.population(3, threshold=True), TypeError,
     r"threshold must be an integer, not True"),
    (lambda n: n.population(3, threshold=np.array([1.0, 2.0, 3.0])), TypeError,
     r"threshold must be an integer or an array of them, not an array of float64"),
    (lambda n: n.population(3, threshold=[1, 2]), ValueError,
     r"threshold has shape \(2,\), expected \(3,\)"),
    (lambda n: n.population(3, name="p", threshold=[1, 2, 40000]), ValueError,
     r"population 'p': threshold\[2\] = 40000 is out of range 0\.\.32767"),
    (lambda n: n.population(3, wta=1), TypeError, r"wta must be a bool, not 1"),
    (lambda n: n.population(3, inhibitory="yes"), TypeError,
     r"inhibitory must be a bool, not 'yes'"),
])
def test_group_arguments_wrong(net, call, exc, match):
    with pytest.raises(exc, match=match):
        call(net)


_INPUTS = object()  # stands for the fixture's input group, which exists only inside a test

_CONNECT_WRONG = [
    (dict(pre=3), TypeError, r"projection 'p': pre must be InputGroup or Population, not 3"),
    (dict(post=_INPUTS), TypeError, r"post must be Population, not InputGroup\('in', 2\)"),
    (dict(connectivity="sparse"), ValueError,
     r"connectivity 'sparse' is not 'dense', a bool mask or a list of \(pre, post\) pairs"),
    (dict(connectivity=np.ones((3, 3), bool)), ValueError,
     r"connectivity mask has shape \(3, 3\), expected \(2, 3\)"),
    (dict(connectivity=[(2, 0)]), ValueError,
     r"pair \(2, 0\) has pre index 2 out of range 0\.\.1"),
    (dict(connectivity=[(0, 0), (-1, 0)]), ValueError,
     r"pair \(-1, 0\) has pre index -1 out of range 0\.\.1"),
    (dict(connectivity=[(1, 3)]), ValueError,
     r"pair \(1, 3\) has post index 3 out of range 0\.\.2"),
    (dict(connectivity=[(0, 1, 2)]), ValueError,
     r"connectivity pairs have shape \(1, 3\), expected \(n_pairs, 2\)"),
    (dict(connectivity=[(0.5, 1)]), TypeError,
     r"connectivity must be 'dense', a bool mask or \(pre, post\) pairs of ints, "
     r"not an array of float64"),
    (dict(connectivity=[(0, 1), (1, 2), (0, 1)]), ValueError,
     r"pair \(0, 1\) appears more than once"),
    (dict(weights=256), ValueError, r"projection 'p': weights = 256 is out of range 0\.\.255"),
    (dict(weights=-1), ValueError, r"weights = -1 is out of range 0\.\.255"),
    (dict(weights=1.5), TypeError, r"weights must be an integer, not 1\.5"),
    (dict(weights=True), TypeError, r"weights must be an integer, not True"),
    (dict(weights=np.zeros((3, 2), int)), ValueError,
     r"weights has shape \(3, 2\), expected \(2, 3\)"),
    (dict(weights=np.array([[1, 2, 3], [4, 5, 300]])), ValueError,
     r"weights\[1, 2\] = 300 is out of range 0\.\.255"),
    (dict(weights=("normal", 0, 5, 1)), ValueError,
     r"weights \('normal', 0, 5, 1\) is not \('uniform', lo, hi, seed\)"),
    (dict(weights=("uniform", 0, 5)), ValueError, r"is not \('uniform', lo, hi, seed\)"),
    (dict(weights=("uniform", -1, 5, 1)), ValueError,
     r"uniform weights lo = -1 is out of range 0\.\.255"),
    (dict(weights=("uniform", 0, 300, 1)), ValueError,
     r"uniform weights hi = 300 is out of range 0\.\.255"),
    (dict(weights=("uniform", 5, 3, 1)), ValueError,
     r"uniform weights hi = 3 is out of range 5\.\.255"),
    (dict(weights=("uniform", 0, 3, -1)), ValueError, r"uniform weights seed = -1 must be >= 0"),
    (dict(weights=("uniform", 0, 3, 1.5)), TypeError,
     r"uniform weights seed must be an int, not 1\.5"),
    (dict(plasticity=8), ValueError, r"plasticity = 8 is out of range 0\.\.7"),
    (dict(plasticity=np.array([[0, 0, 0], [0, -1, 0]])), ValueError,
     r"plasticity\[1, 1\] = -1 is out of range 0\.\.7"),
    (dict(plasticity=0.5), TypeError, r"plasticity must be an integer, not 0\.5"),
    (dict(plastic=1), TypeError, r"plastic must be a bool, not 1"),
    (dict(plastic=np.ones((2, 3), int)), TypeError,
     r"plastic must be a bool or an array of them, not an array of int64"),
    (dict(name=""), TypeError, r"projection name must be a non-empty str, not ''"),
    (dict(name="pop"), ValueError, r"already has an object named 'pop'"),
]


@pytest.mark.parametrize("change, exc, match", _CONNECT_WRONG)
def test_connect_arguments_wrong(net, change, exc, match):
    inp, pop = _groups(net)
    kwargs = dict(pre=inp, post=pop, weights=1, name="p")
    kwargs.update(change)
    if kwargs["post"] is _INPUTS:
        kwargs["post"] = inp
    with pytest.raises(exc, match=match):
        net.connect(**kwargs)
    assert net.projections == ()


def test_connect_group_of_other_network(net):
    other = Network("other")
    foreign = other.inputs(2, "far")
    with pytest.raises(ValueError, match=r"pre InputGroup\('far', 2\) belongs to network "
                                         r"'other', not 'net'"):
        net.connect(foreign, net.populations[0], weights=1)


def test_connect_clash_names_both_projections_and_a_pair(net):
    inp, pop = _groups(net)
    net.connect(inp, pop, weights=1, connectivity=[(0, 0), (1, 2)], name="first")
    with pytest.raises(ValueError, match=r"projection 'second' and projection 'first' both "
                                         r"define the synapse in\[1\] -> pop\[2\]"):
        net.connect(inp, pop, weights=1, connectivity=[(1, 1), (1, 2)], name="second")
    assert [p.name for p in net.projections] == ["first"]
    # Disjoint synapses between the same groups are fine.
    net.connect(inp, pop, weights=1, connectivity=[(1, 1)], name="second")


@pytest.mark.parametrize("settings, exc, match", [
    (dict(tau=3), TypeError,
     r"network 'net': unknown learning setting 'tau'; valid settings are seed, w_max, ltp, .*"
     r"th_decay_period, or a register name in upper case"),
    (dict(shift_plus=25), ValueError, r"register SHIFT_PLUS = 25 is out of range 0\.\.24"),
    (dict(SHIFT_PLUS=25), ValueError, r"register SHIFT_PLUS = 25 is out of range 0\.\.24"),
    (dict(w_max=0), ValueError, r"register W_MAX = 0 is out of range 1\.\.255"),
    (dict(c_max=9), ValueError, r"register CONSOL_C_MAX = 9 is out of range 1\.\.8"),
    (dict(seed=1.5), TypeError, r"register SEED must be an integer, not 1\.5"),
    (dict(a_plus=True), TypeError, r"register A_PLUS must be an integer, not True"),
    (dict(gate_shifts=[1, 2]), ValueError, r"gate_shifts has 2 values, expected 7"),
    (dict(gate_shifts=3), TypeError, r"gate_shifts must be a sequence of 7 ints, not 3"),
    (dict(gate_shifts=[0] * 6 + [16]), ValueError,
     r"register GATE_SHIFT_6 = 16 is out of range 0\.\.15"),
    (dict(seed=1, SEED=2), ValueError, r"learning register SEED is set twice in one call"),
])
def test_learning_wrong(net, settings, exc, match):
    net.learning(x_inc=9)
    with pytest.raises(exc, match=match):
        net.learning(y_inc=7, **settings)
    # A failing call applies none of its settings.
    assert net.learning() == {"X_INC": 9}


def _too_big(n_inputs=1, n_neurons=1, source=1):
    net = Network("big")
    net.inputs(n_inputs, "in")
    src = net.population(source, "src")
    net.population(n_neurons, "other")
    net.connect(src, src, weights=1, name="rec")
    return net


@pytest.mark.parametrize("make, exc, match", [
    (lambda: _too_big(n_inputs=9), ValueError,
     r"network 'big' needs 9 input axons, more than the core's n_inputs = 8"),
    (lambda: _too_big(n_neurons=10), ValueError,
     r"network 'big' needs 11 neurons, more than the core's n_neurons = 10"),
    (lambda: _too_big(source=5), ValueError,
     r"population 'src' is the pre of projection 'rec', so it needs neurons with outgoing rows, "
     r"but it would occupy neurons 0\.\.4 and only the first n_recurrent = 4 have them"),
])
def test_compile_does_not_fit(make, exc, match):
    net = make()
    with pytest.raises(exc, match=match):
        net.compile(CFG)


def test_compile_second_source_population_does_not_fit():
    net = Network("net")
    a, b = net.population(3, "a"), net.population(2, "b")
    net.connect(a, b, weights=1, name="ab")
    net.connect(b, a, weights=1, name="ba")
    with pytest.raises(ValueError, match=r"population 'b' is the pre of projection 'ba'.* "
                                         r"neurons 3\.\.4 and only the first n_recurrent = 4"):
        net.compile(CFG)


def test_compile_config_wrong(net):
    with pytest.raises(TypeError, match=r"config must be a CoreConfig, not \(8, 10, 4\)"):
        net.compile((8, 10, 4))


def test_compile_weight_above_w_max(net):
    inp, pop = _groups(net)
    weights = np.array([[1, 2, 3], [4, 101, 6]])
    net.connect(inp, pop, weights=weights, name="p")
    net.learning(w_max=101)
    net.compile(CFG)
    net.learning(w_max=100)
    with pytest.raises(ValueError, match=r"projection 'p': weight 101 at \(1, 1\) exceeds "
                                         r"W_MAX = 100"):
        net.compile(CFG)


def test_compile_accepts_shift_plus_gate_above_24(net):
    # docs/core-model.md 3.3: the core clamps SHIFT_x + GATE_SHIFT_p at 24, so any in-range
    # registers compile, whatever their sum.
    net.learning(shift_plus=20, shift_minus=24, gate_shifts=[0, 0, 0, 0, 0, 0, 15])
    regs = net.compile(CFG).image.registers
    assert (regs["SHIFT_PLUS"], regs["SHIFT_MINUS"], regs["GATE_SHIFT_6"]) == (20, 24, 15)


# --- Allocation and compilation ---------------------------------------------------------------

def test_inputs_are_consecutive_in_creation_order():
    net = Network()
    a, b, c = net.inputs(3), net.inputs(1), net.inputs(4)
    layout = net.compile(CFG).layout
    assert layout.inputs == {a: range(0, 3), b: range(3, 4), c: range(4, 8)}


def test_source_populations_come_first():
    net = Network()
    plain1 = net.population(2, "plain1")
    src1 = net.population(1, "src1")
    plain2 = net.population(3, "plain2")
    src2 = net.population(2, "src2")
    net.connect(src2, plain1, weights=1)
    net.connect(src1, plain2, weights=1)
    layout = net.compile(CFG).layout
    assert layout.neurons == {src1: range(0, 1), src2: range(1, 3), plain1: range(3, 5),
                              plain2: range(5, 8)}
    assert layout.sources == {src1: range(8, 9), src2: range(9, 11)}


def test_dense_projection_lands_in_its_block(net):
    inp, pop = _groups(net)
    net.inputs(3, "first_free")
    weights = np.array([[10, 11, 12], [20, 21, 22]])
    plasticity = np.array([[0, 1, 2], [3, 4, 7]])
    plastic = np.array([[True, False, True], [False, True, True]])
    proj = net.connect(inp, pop, weights=weights, plasticity=plasticity, plastic=plastic)
    other = net.population(2, "other")
    image = net.compile(CFG).image
    fields = unpack_synapses(image.synapses)
    block = np.s_[0:2, 0:3]
    np.testing.assert_array_equal(fields["w"][block], weights)
    np.testing.assert_array_equal(fields["p"][block], plasticity)
    np.testing.assert_array_equal(fields["en"][block], plastic)
    np.testing.assert_array_equal(fields["c"][block], 0)
    np.testing.assert_array_equal(fields["tag"][block], 0)
    outside = np.ones(image.synapses.shape, bool)
    outside[block] = False
    assert not image.synapses[outside].any()
    assert proj.pairs.shape == (6, 2)
    assert len(other) == 2


def test_mask_and_pairs_select_the_same_synapses(net):
    inp, pop = _groups(net)
    mask = np.array([[True, False, False], [False, False, True]])
    weights = np.array([[7, -5, -5], [-5, -5, 9]])  # entries outside the mask are ignored
    by_mask = net.connect(inp, pop, weights=weights, connectivity=mask)
    image_mask = net.compile(CFG).image

    net2 = Network("net")
    inp2, pop2 = net2.inputs(2, "in"), net2.population(3, "pop")
    by_pairs = net2.connect(inp2, pop2, weights=weights, connectivity=[(1, 2), (0, 0)])
    image_pairs = net2.compile(CFG).image

    np.testing.assert_array_equal(image_mask.synapses, image_pairs.synapses)
    w = unpack_synapses(image_mask.synapses)["w"]
    assert w[0, 0] == 7 and w[1, 2] == 9 and np.count_nonzero(image_mask.synapses) == 2
    np.testing.assert_array_equal(by_mask.mask, by_pairs.mask)
    np.testing.assert_array_equal(by_mask.weights, [[7, -1, -1], [-1, -1, 9]])
    np.testing.assert_array_equal(by_pairs.pairs, [[0, 0], [1, 2]])


def test_recurrent_projection_uses_rows_n_inputs_plus_neuron():
    net = Network()
    net.inputs(2, "in")
    target = net.population(3, "target")
    src = net.population(2, "src")
    proj = net.connect(src, target, weights=np.array([[1, 2, 3], [4, 5, 6]]),
                       connectivity=np.array([[True, False, True], [False, True, False]]))
    compiled = net.compile(CFG)
    # src is a source, so it takes neurons 0..1 (rows 8..9); target takes neurons 2..4.
    np.testing.assert_array_equal(compiled.layout.synapses[proj], [[8, 2], [8, 4], [9, 3]])
    w = unpack_synapses(compiled.image.synapses)["w"]
    assert (w[8, 2], w[8, 4], w[9, 3]) == (1, 3, 5)
    assert np.count_nonzero(w) == 3


def test_sign_follows_the_pre_group(net):
    inp, pop = _groups(net)
    inh_in = net.inputs(3, "inh_in", inhibitory=True)
    inh_pop = net.population(2, "inh_pop", inhibitory=True)
    exc_pop = net.population(1, "exc_pop")
    for pre in (inp, inh_in, exc_pop, inh_pop):
        net.connect(pre, pop, weights=1)
    compiled = net.compile(CFG)
    expected = np.zeros(CFG.n_sources, bool)
    expected[2:5] = True  # inh_in's axons
    expected[8 + 0:8 + 2] = True  # inh_pop is the first source population: neurons 0..1
    np.testing.assert_array_equal(compiled.image.source_inhibitory, expected)
    assert compiled.layout.neurons[exc_pop] == range(2, 3)


def test_neuron_parameters_land_in_their_columns():
    net = Network()
    a = net.population(2, "a", threshold=[100, 200], reset=-5, bias=3, leak_shift=15,
                       refractory=2, th_plus=9, wta=[True, False])
    b = net.population(3, "b")
    image = net.compile(CFG).image
    params = image.neuron_params
    np.testing.assert_array_equal(params["threshold"][:5], [100, 200, 256, 256, 256])
    np.testing.assert_array_equal(params["reset"][:5], [-5, -5, 0, 0, 0])
    np.testing.assert_array_equal(params["bias"][:5], [3, 3, 0, 0, 0])
    np.testing.assert_array_equal(params["leak_shift"][:5], [15, 15, 4, 4, 4])
    np.testing.assert_array_equal(params["refractory"][:5], [2, 2, 0, 0, 0])
    np.testing.assert_array_equal(params["th_plus"][:5], [9, 9, 0, 0, 0])
    np.testing.assert_array_equal(params["wta"][:5], [1, 0, 0, 0, 0])
    blank = CoreImage.blank(CFG)
    for key, value in params.items():
        np.testing.assert_array_equal(value[5:], blank.neuron_params[key][5:])
    assert (len(a), len(b)) == (2, 3)


def test_uniform_weights_are_reproducible(net):
    inp, pop = _groups(net)
    proj = net.connect(inp, pop, weights=("uniform", 3, 5, 42))
    expected = np.random.default_rng(42).integers(3, 6, size=(2, 3))
    np.testing.assert_array_equal(proj.weights, expected)
    w = unpack_synapses(net.compile(CFG).image.synapses)["w"][0:2, 0:3]
    np.testing.assert_array_equal(w, expected)

    other = Network()
    draws = [other.connect(other.inputs(20), other.population(20),
                           weights=("uniform", 0, 2, seed)).weights for seed in (1, 1, 2)]
    np.testing.assert_array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0], draws[2])
    assert set(np.unique(draws[0])) == {0, 1, 2}  # hi is inclusive


def test_learning_registers_reach_the_image(net):
    settings = net.learning(seed=1234, ltp=False, soft_bounds=0, gate_shifts=[7, 6, 5, 4, 3, 2, 1],
                            SHIFT_MINUS=11, q0=5)
    assert settings["LTP_EN"] == 0 and settings["GATE_SHIFT_0"] == 7
    net.learning(seed=99)
    registers = net.compile(CFG).image.registers
    expected = default_registers()
    expected.update(SEED=99, LTP_EN=0, SOFT_BOUNDS=0, SHIFT_MINUS=11, CONSOL_Q0=5)
    expected.update({f"GATE_SHIFT_{p}": 7 - p for p in range(7)})
    assert registers == expected


def test_learning_settings_reach_every_register():
    targets = set()
    for target in LEARNING_SETTINGS.values():
        targets.update(target if isinstance(target, tuple) else (target,))
    assert targets == set(REGISTERS_BY_NAME)


def test_compile_leaves_network_reusable(net):
    inp, pop = _groups(net)
    net.connect(inp, pop, weights=5)
    first = net.compile(CFG)
    first.image.synapses[:] = 0
    second = net.compile(CFG)
    assert np.count_nonzero(second.image.synapses) == 6
    with pytest.raises(ValueError, match="read-only"):
        net.projections[0].weights[0, 0] = 9
