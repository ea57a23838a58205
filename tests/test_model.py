"""Behaviour of the golden model against the rules of docs/core-model.md.

Each test sets up a small core image by hand, so that the expected numbers follow from the
document alone.
"""

import numpy as np
import pytest

from plasticore.config import LEAK_OFF, CoreConfig
from plasticore.image import CoreImage, pack_synapses, synapse_field
from plasticore.sim.arith import decay
from plasticore.sim.model import GoldenModel


def image_for(n_inputs, n_neurons, n_recurrent=0, **registers):
    image = CoreImage.blank(CoreConfig(n_inputs, n_neurons, n_recurrent))
    image.registers.update(registers)
    image.neuron_params["leak_shift"][:] = 0      # memoryless: v starts from 0 every tick
    image.neuron_params["threshold"][:] = 100
    return image


def decayed(value, shift, ticks):
    for _ in range(ticks):
        value = int(decay(value, shift))
    return value


def pairing_model(delta_t, **registers):
    """Input 0 (measured synapse, inhibitory so it never drives firing) and input 1 (driver,
    non-plastic) onto every neuron; returns the model and the input raster for one pre/post pair
    at ``delta_t = t_post - t_pre``."""
    n = registers.pop("n_neurons", 1)
    image = image_for(2, n, **registers)
    image.source_inhibitory[0] = True
    start_w = 0 if delta_t >= 0 else 255
    image.synapses[0] = pack_synapses(w=start_w, en=1)
    image.synapses[1] = pack_synapses(w=255, en=0)
    t_pre, t_post = (2, 2 + delta_t) if delta_t >= 0 else (2 - delta_t, 2)
    ticks = max(t_pre, t_post) + 3
    raster = np.zeros((ticks, 2), bool)
    raster[t_pre, 0] = True
    raster[t_post, 1] = True
    return GoldenModel(image), raster, start_w


@pytest.mark.parametrize("delta_t", range(-20, 21))
def test_stdp_window_exact_shape(delta_t):
    # Additive rule, factor 1, no shift: the step equals the trace, exactly (no rounding).
    model, raster, start_w = pairing_model(
        delta_t, SOFT_BOUNDS=0, A_PLUS=1, A_MINUS=1, SHIFT_PLUS=0, SHIFT_MINUS=0, CONSOL_EN=0,
        X_DECAY_SHIFT=2, Y_DECAY_SHIFT=3)
    spikes, _ = model.run(len(raster), raster)
    t_post = 2 + max(delta_t, 0)
    assert spikes[:, 0].nonzero()[0].tolist() == [t_post]
    dw = int(synapse_field(model.synapses[0, 0], "w")) - start_w
    if delta_t >= 0:
        assert dw == decayed(255, 2, delta_t)
    else:
        assert dw == -decayed(255, 3, -delta_t)


def test_stdp_window_with_soft_bounds_and_rounding_has_the_documented_mean():
    # 4096 independent synapses per delta_t: the mean step is x * base / 2^shift.
    n = 4096
    for delta_t in (-6, -2, -1, 0, 1, 3, 8):
        model, raster, start_w = pairing_model(
            delta_t, n_neurons=n, SHIFT_PLUS=9, SHIFT_MINUS=10, CONSOL_EN=0)
        model.synapses[0] = pack_synapses(w=100, en=1)
        model.run(len(raster), raster)
        dw = synapse_field(model.synapses[0], "w") - 100
        if delta_t >= 0:
            expected = decayed(255, 3, delta_t) * (255 - 100) / 2**9
        else:
            expected = -decayed(255, 3, -delta_t) * 100 / 2**10
        # SR's variance is at most 1/4 per synapse: 6 standard errors.
        assert abs(dw.mean() - expected) < 6 * 0.5 / np.sqrt(n), (delta_t, dw.mean(), expected)
        assert np.all(np.abs(dw - expected) < 1)  # every step is the floor or the ceiling


CYCLE = 16  # ticks per pairing: with decay shift 1 a trace of 255 is 0 after 8 ticks


def repeated_pairing(model, cycles, causal=True):
    """Pair input 0 with a postsynaptic spike of neuron 0 (forced by the drivers, inputs 1 and 2)
    once per cycle: coincident (causal) or post one tick before pre (anti-causal)."""
    raster = np.zeros((cycles * CYCLE, model.config.n_inputs), bool)
    raster[0 if causal else 1::CYCLE, 0] = True
    raster[0::CYCLE, 1:3] = True
    return model.run(len(raster), raster)


def driven_image(n_neurons=1, **registers):
    registers = dict(dict(X_DECAY_SHIFT=1, Y_DECAY_SHIFT=1), **registers)
    # Input 0 is inhibitory, so it never fires the neuron; two drivers outweigh it at any weight.
    image = image_for(3, n_neurons, **registers)
    image.source_inhibitory[0] = True
    image.synapses[1:3] = pack_synapses(w=255, en=0)
    return image


def test_weights_saturate_at_w_max_and_at_zero():
    image = driven_image(SOFT_BOUNDS=0, A_PLUS=255, A_MINUS=255, SHIFT_PLUS=4, SHIFT_MINUS=4,
                         W_MAX=200, CONSOL_EN=0)
    image.synapses[0] = pack_synapses(w=150, en=1)
    model = GoldenModel(image)
    history = []
    for _ in range(20):
        repeated_pairing(model, 1, causal=True)
        history.append(int(synapse_field(model.synapses[0, 0], "w")))
    assert history[-1] == 200 and max(history) == 200
    assert history.index(200) < 5  # it got there and stayed
    history = []
    for _ in range(40):
        repeated_pairing(model, 1, causal=False)
        history.append(int(synapse_field(model.synapses[0, 0], "w")))
    assert history[-1] == 0 and min(history) == 0
    assert all(a >= b for a, b in zip(history, history[1:]))


def test_potentiation_never_lowers_a_weight_above_w_max():
    image = driven_image(W_MAX=100, SHIFT_PLUS=0, CONSOL_EN=0, LTD_EN=0)
    image.synapses[0] = pack_synapses(w=180, en=1)
    model = GoldenModel(image)
    repeated_pairing(model, 10)
    assert int(synapse_field(model.synapses[0, 0], "w")) == 180


def random_activity_model(seed, words):
    """A core driven hard by random input; returns it after 300 ticks with learning on."""
    rng = np.random.default_rng(seed)
    n_inputs, n = words.shape
    image = image_for(n_inputs, n, SHIFT_PLUS=4, SHIFT_MINUS=4)
    image.neuron_params["threshold"][:] = 150
    image.synapses[:] = words
    model = GoldenModel(image)
    model.run(300, rng.random((300, n_inputs)) < 0.3)
    return model


def test_disabled_and_frozen_synapses_never_change_while_plastic_ones_do():
    rng = np.random.default_rng(5)
    w = rng.integers(40, 200, (16, 12))
    p = np.zeros((16, 12), int)
    en = np.ones((16, 12), int)
    p[:, 0:4] = 7           # frozen
    en[:, 4:8] = 0          # disabled, at various levels
    p[:, 4:8] = rng.integers(0, 7, (16, 4))
    tag = rng.integers(0, 2, (16, 12))
    words = pack_synapses(w=w, p=p, en=en, c=rng.integers(0, 4, (16, 12)), tag=tag)
    model = random_activity_model(1, words)
    assert np.array_equal(model.synapses[:, :8], words[:, :8])
    assert np.array_equal(synapse_field(model.synapses, "tag"), tag)
    assert np.count_nonzero(model.synapses[:, 8:] != words[:, 8:]) > 32
    assert model.counters.ltp_writes > 0 and model.counters.ltd_writes > 0


def test_learning_off_changes_no_synapse_and_no_threshold():
    words = pack_synapses(w=np.full((16, 12), 120), en=1)
    rng = np.random.default_rng(9)
    image = image_for(16, 12)
    image.synapses[:] = words
    image.neuron_params["th_plus"][:] = 20
    model = GoldenModel(image)
    spikes, _ = model.run(200, rng.random((200, 16)) < 0.3, learn=False)
    assert spikes.sum() > 50
    assert np.array_equal(model.synapses, words)
    assert not model.state.th.any()


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_plasticity_level_scales_the_mean_step_by_the_gating_table(level):
    # Columns at level 0 and at `level` see the same single causal pairing, 20 times over.
    n = 2048
    means = {}
    for p in (0, level):
        total = 0
        for trial in range(20):
            image = driven_image(n_neurons=n, SOFT_BOUNDS=0, A_PLUS=200, SHIFT_PLUS=8,
                                 CONSOL_EN=0, LTD_EN=0, SEED=trial * 977 + p, X_DECAY_SHIFT=3)
            image.synapses[0] = pack_synapses(w=0, p=p, en=1)
            model = GoldenModel(image)
            raster = np.zeros((2, 3), bool)
            raster[0, 0] = True    # pre at 0
            raster[1, 1:] = True   # post at 1
            model.run(2, raster)
            total += synapse_field(model.synapses[0], "w").sum()
        means[p] = total / (20 * n)
    x = decayed(255, 3, 1)
    assert means[0] == pytest.approx(x * 200 / 2**8, rel=0.02)
    assert means[level] / means[0] == pytest.approx(2.0**-level, rel=0.05 * 2**(level / 2))


def test_custom_gating_table_is_used():
    image = driven_image(n_neurons=2, SOFT_BOUNDS=0, A_PLUS=1, SHIFT_PLUS=0, CONSOL_EN=0,
                         LTD_EN=0, GATE_SHIFT_2=0, GATE_SHIFT_0=3)
    image.synapses[0] = pack_synapses(w=0, p=np.array([2, 0]), en=1)
    model = GoldenModel(image)
    model.run(1, np.ones((1, 3), bool))
    # Level 2 with shift 0 moves by exactly the trace; level 0 with shift 3 by about 1/8 of it.
    w = synapse_field(model.synapses[0], "w")
    assert w[0] == 255 and w[1] in (31, 32)


def clamped_shift_model(shift, gate, ticks=8):
    """64 inputs firing every tick onto 16 neurons that fire every tick: 1024 potentiations and
    (from the second tick) 1024 depressions per tick, every synapse plastic at shift ``shift``
    and every gate ``gate``, hard bounds with the largest product (255 · 255)."""
    gates = {f"GATE_SHIFT_{p}": gate for p in range(7)}
    image = image_for(64, 16, SOFT_BOUNDS=0, A_PLUS=255, A_MINUS=255, SHIFT_PLUS=shift,
                      SHIFT_MINUS=shift, X_INC=255, Y_INC=255, SEED=4242, **gates)
    image.synapses[:] = pack_synapses(w=100, p=np.arange(64 * 16).reshape(64, 16) % 7, en=1)
    model = GoldenModel(image)
    model.run(ticks, np.ones((ticks, 64), bool))
    return model


def test_a_total_shift_above_24_is_clamped_to_24():
    """docs/core-model.md 3.3: an update's shift is min(SHIFT_x + GATE(p), 24), so every total
    of 24 or more learns exactly as 24 does (the image is valid, the model does not refuse it)."""
    at_24 = clamped_shift_model(18, 6)
    w = synapse_field(at_24.synapses, "w")
    assert np.count_nonzero(w > 100) > 10 and np.count_nonzero(w < 100) > 10
    for shift, gate in ((20, 6), (24, 15), (24, 0), (9, 15)):
        model = clamped_shift_model(shift, gate)
        assert np.array_equal(model.synapses, at_24.synapses), (shift, gate)
        assert model.counters == at_24.counters, (shift, gate)
    # The comparison can tell shifts apart: a total of 23 learns differently.
    assert not np.array_equal(clamped_shift_model(17, 6).synapses, at_24.synapses)


def consolidation_image(**registers):
    settings = dict(SOFT_BOUNDS=0, A_PLUS=1, A_MINUS=1, SHIFT_PLUS=0, SHIFT_MINUS=0,
                    CONSOL_Q0=0, CONSOL_QS=0, CONSOL_C_MAX=3, P_LEARN_MAX=2,
                    GATE_SHIFT_1=0, GATE_SHIFT_2=0, GATE_SHIFT_3=0)
    settings.update(registers)
    return driven_image(**settings)


def fields(model):
    word = model.synapses[0, 0]
    return tuple(int(synapse_field(word, k)) for k in ("p", "c"))


def test_consolidation_promotes_after_c_max_counts_up_to_p_learn_max():
    # Coins always come up (Q0 = QS = 0), so each potentiation counts once.
    image = consolidation_image()
    image.synapses[0] = pack_synapses(w=0, en=1)
    model = GoldenModel(image)
    seen = []
    for _ in range(8):
        repeated_pairing(model, 1, causal=True)
        seen.append(fields(model))
    assert seen == [(0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 0), (2, 0)]


def test_depression_lowers_the_counter_but_never_the_level():
    image = consolidation_image()
    image.synapses[0] = pack_synapses(w=200, p=1, c=2, en=1)
    model = GoldenModel(image)
    seen = []
    for _ in range(4):
        repeated_pairing(model, 1, causal=False)
        seen.append(fields(model))
    assert seen == [(1, 1), (1, 0), (1, 0), (1, 0)]


def test_host_written_level_at_or_above_p_learn_max_is_respected():
    image = consolidation_image(P_LEARN_MAX=2)
    image.synapses[0] = pack_synapses(w=0, p=4, c=1, en=1)
    model = GoldenModel(image)
    repeated_pairing(model, 10, causal=True)
    assert fields(model) == (4, 1)
    assert int(synapse_field(model.synapses[0, 0], "w")) > 0  # still learning, at level 4


def test_consolidation_off_leaves_level_and_counter():
    image = consolidation_image(CONSOL_EN=0)
    image.synapses[0] = pack_synapses(w=0, c=2, en=1)
    model = GoldenModel(image)
    for _ in range(6):
        repeated_pairing(model, 1, causal=True)
        repeated_pairing(model, 1, causal=False)
    assert fields(model) == (0, 2)


def test_consolidation_coin_rate_is_two_to_the_minus_q0_plus_qs_p():
    n = 4096
    image = consolidation_image(n_neurons=n, CONSOL_Q0=2, CONSOL_QS=1, CONSOL_C_MAX=8,
                                P_LEARN_MAX=6)
    image.synapses[0] = pack_synapses(w=0, p=np.repeat([0, 1], n // 2), en=1)
    model = GoldenModel(image)
    repeated_pairing(model, 1, causal=True)
    c = synapse_field(model.synapses[0], "c")
    for p, expected in ((0, 1 / 4), (1, 1 / 8)):
        rate = c[p * n // 2:(p + 1) * n // 2].mean()
        assert rate == pytest.approx(expected, abs=5 * np.sqrt(expected / (n // 2)))


# --- Neuron dynamics -------------------------------------------------------------------------

def single_neuron(**params):
    image = image_for(1, 1, CONSOL_EN=0, LTP_EN=0, LTD_EN=0)
    image.synapses[0] = pack_synapses(w=params.pop("w", 50), en=0)
    for name, value in params.items():
        image.neuron_params[name][:] = value
    return GoldenModel(image)


def test_leak_integrate_and_fire_trajectory():
    model = single_neuron(w=40, threshold=100, leak_shift=2, reset=-10)
    raster = np.ones((4, 1), bool)
    spikes, v = model.run(4, raster, record_v=[0])
    # v: 0 -> 40; 40 - 10 + 40 = 70; 70 - 18 + 40 = 92; 92 - 23 + 40 = 109 >= 100 -> reset -10
    assert v[:, 0].tolist() == [40, 70, 92, -10]
    assert spikes[:, 0].tolist() == [False, False, False, True]


def test_refractory_period_skips_integration_for_that_many_ticks():
    model = single_neuron(w=200, threshold=100, refractory=3, leak_shift=LEAK_OFF)
    spikes, v = model.run(9, np.ones((9, 1), bool), record_v=[0])
    assert spikes[:, 0].nonzero()[0].tolist() == [0, 4, 8]


def test_bias_drives_firing_and_membrane_saturates():
    model = single_neuron(w=0, threshold=300, bias=100, leak_shift=LEAK_OFF)
    spikes, _ = model.run(6)
    assert spikes[:, 0].nonzero()[0].tolist() == [2, 5]
    model = single_neuron(w=0, threshold=32767, bias=-30000, leak_shift=LEAK_OFF)
    _, v = model.run(3, record_v=[0])
    assert v[:, 0].tolist() == [-30000, -32768, -32768]


def test_adaptive_threshold_rises_at_spikes_and_decays():
    model = single_neuron(w=200, threshold=100, th_plus=64, leak_shift=0)
    model.registers.update(TH_SHIFT=1, TH_DECAY_SHIFT=2, TH_DECAY_PERIOD=1)
    spikes, _ = model.run(6, np.ones((6, 1), bool))
    # t=0: spike, th=64 (thr 132); t=1: no decay (odd), 200 >= 132 spike, th=128 (thr 164);
    # t=2: decay th=96 (thr 148), spike, th=160; t=3: thr 180, spike, th=224;
    # t=4: decay th=168 (thr 184), spike th=232; t=5: thr 216, 200 < 216: no spike.
    assert spikes[:, 0].tolist() == [True, True, True, True, True, False]
    assert int(model.state.th[0]) == 232


def test_winner_take_all_fires_the_largest_margin_and_resets_the_pool():
    image = image_for(1, 4, CONSOL_EN=0, LTP_EN=0, LTD_EN=0)
    image.synapses[0] = pack_synapses(w=np.array([150, 180, 180, 250]), en=0)
    image.neuron_params["wta"][:] = [1, 1, 1, 0]
    image.neuron_params["threshold"][:] = [100, 120, 110, 100]
    image.neuron_params["reset"][:] = [-1, -2, -3, -4]
    model = GoldenModel(image)
    spikes, v = model.run(1, np.ones((1, 1), bool), record_v=[0, 1, 2, 3])
    # margins 50, 60, 70: neuron 2 wins; neuron 3 is outside the pool and fires on its own.
    assert spikes[0].tolist() == [False, False, True, True]
    assert v[0].tolist() == [-1, -2, -3, -4]


def test_winner_take_all_tie_goes_to_the_lowest_index():
    image = image_for(1, 3)
    image.synapses[0] = pack_synapses(w=150, en=0)
    image.neuron_params["wta"][:] = 1
    model = GoldenModel(image)
    spikes, _ = model.run(1, np.ones((1, 1), bool))
    assert spikes[0].tolist() == [True, False, False]


def test_recurrent_spikes_arrive_one_tick_later_with_their_sign():
    image = image_for(1, 3, n_recurrent=1, CONSOL_EN=0, LTP_EN=0, LTD_EN=0)
    image.synapses[0] = pack_synapses(w=np.array([200, 0, 0]), en=0)     # input -> neuron 0
    image.synapses[1] = pack_synapses(w=np.array([0, 150, 150]), en=0)   # neuron 0 -> 1, 2
    image.source_inhibitory[1] = False
    model = GoldenModel(image)
    raster = np.zeros((4, 1), bool)
    raster[0] = True
    spikes, _ = model.run(4, raster)
    assert spikes.nonzero()[0].tolist() == [0, 1, 1]
    assert spikes.nonzero()[1].tolist() == [0, 1, 2]
    image.source_inhibitory[1] = True
    image.neuron_params["leak_shift"][:] = LEAK_OFF
    model = GoldenModel(image)
    _, v = model.run(3, raster[:3], record_v=[1])
    assert v[:, 0].tolist() == [0, -150, -150]


def test_counters_count_events():
    model = single_neuron(w=200, threshold=100)
    model.run(5, np.array([[1], [0], [1], [1], [0]], bool))
    c = model.counters
    assert (c.ticks, c.pre_events, c.synaptic_ops, c.post_spikes) == (5, 3, 3, 3)


def test_model_does_not_change_the_callers_image():
    image = image_for(4, 4)
    image.synapses[:] = pack_synapses(w=200, en=1)
    before = image.synapses.copy()
    GoldenModel(image).run(10, np.ones((10, 4), bool))
    assert np.array_equal(image.synapses, before)


def test_bad_input_shapes_are_rejected():
    model = single_neuron()
    with pytest.raises(ValueError, match=r"shape \(2,\), expected \(1,\)"):
        model.tick(np.zeros(2, bool))
    with pytest.raises(ValueError, match=r"expected \(3, 1\)"):
        model.run(3, np.zeros((2, 1), bool))
