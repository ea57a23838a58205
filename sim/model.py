"""The golden model: the core's behaviour, tick by tick, in integer numpy.

This is the reference the HDL must match bit for bit. It is a direct transcription of
``docs/core-model.md``; the phase letters below are the document's. Within a phase every synapse
is touched at most once and every random draw depends only on (seed, tick, stream, source,
neuron), so the model processes a phase as one array operation and the hardware may walk it in any
order.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..config import (PLASTICITY_FROZEN, STREAM_LTD, STREAM_LTP, TH_MAX, TRACE_MAX, V_MAX, V_MIN,
                      CoreConfig)
from ..image import CoreImage, NeuronState, pack_synapses, unpack_synapses
from .arith import ceilsh, coin, decay, leak, rand, rounding_shift, saturate, sr, tick_key

__all__ = ["GoldenModel", "TickCounters"]


@dataclasses.dataclass
class TickCounters:
    """Event counts accumulated over ticks (the core has the same counters).

    ``pre_events``: presynaptic events delivered (row walks); ``synaptic_ops``: synapses read by
    row walks (pre events times neurons); ``post_spikes``: neuron spikes; ``ltd_writes`` and
    ``ltp_writes``: synapse words changed by depression and by potentiation.
    """
    ticks: int = 0
    pre_events: int = 0
    synaptic_ops: int = 0
    post_spikes: int = 0
    ltd_writes: int = 0
    ltp_writes: int = 0


class GoldenModel:
    """A core, simulated in integers.

    Parameters
    ----------
    image : CoreImage
        Validated and copied; the model never changes the caller's image.
    """

    def __init__(self, image: CoreImage):
        image = image.copy().validate()
        self.config: CoreConfig = image.config
        self.registers = image.registers
        self.params = image.neuron_params
        self.inhibitory = image.source_inhibitory
        self.synapses = image.synapses.astype(np.uint16)
        self.state: NeuronState = image.state
        self.counters = TickCounters()
        regs = self.registers
        self._gate = np.array([regs[f"GATE_SHIFT_{p}"] for p in range(PLASTICITY_FROZEN)] + [0])

    # -- helpers --------------------------------------------------------------------------------

    def _bump(self, trace, value):
        """A trace at a spike: set to ``value``, or incremented and saturated (all-to-all)."""
        if self.registers["TRACE_ALL_TO_ALL"]:
            return saturate(trace + value, 0, TRACE_MAX)
        return np.full_like(trace, value)

    def _plastic(self, fields):
        return (fields["en"] == 1) & (fields["p"] != PLASTICITY_FROZEN)

    # -- one tick -------------------------------------------------------------------------------

    def tick(self, input_spikes=None, learn: bool = True) -> np.ndarray:
        """Advance one tick.

        Parameters
        ----------
        input_spikes : array of bool, length ``n_inputs``, optional
            The input axons that spike in this tick.
        learn : bool
            Plasticity on (STDP, consolidation, threshold adaptation) or off.

        Returns
        -------
        ndarray of bool, length ``n_neurons``
            The neurons that spiked in this tick.
        """
        cfg, regs, st, prm = self.config, self.registers, self.state, self.params
        n_in, n = cfg.n_inputs, cfg.n_neurons
        if input_spikes is None:
            input_spikes = np.zeros(n_in, bool)
        input_spikes = np.asarray(input_spikes, dtype=bool)
        if input_spikes.shape != (n_in,):
            raise ValueError(f"input_spikes has shape {input_spikes.shape}, expected ({n_in},)")
        key = int(tick_key(regs["SEED"], st.t))
        neurons = np.arange(n)

        # A. Trace decay.
        st.x = decay(st.x, regs["X_DECAY_SHIFT"])
        st.y = decay(st.y, regs["Y_DECAY_SHIFT"])

        # B. Presynaptic events: inputs of this tick, then recurrent neurons that spiked last tick.
        pre = np.concatenate([input_spikes, st.last_spikes[:cfg.n_recurrent]])
        sources = np.flatnonzero(pre)
        current = np.zeros(n, np.int64)
        if sources.size:
            rows = self.synapses[sources].astype(np.int64)
            f = unpack_synapses(rows)
            w0 = f["w"]
            current = np.where(self.inhibitory[sources, None], -w0, w0).sum(axis=0)
            if learn and regs["LTD_EN"]:
                base = w0 if regs["SOFT_BOUNDS"] else regs["A_MINUS"]
                r = rand(key, STREAM_LTD, sources[:, None], neurons[None, :])
                shift = rounding_shift(regs["SHIFT_MINUS"], self._gate[f["p"]])
                step = sr(st.y[None, :] * base, shift, r)
                step = np.where(self._plastic(f) & (st.y[None, :] > 0), step, 0)
                f["w"] = np.maximum(w0 - step, 0)
                if regs["CONSOL_EN"]:
                    f["c"] = np.where((step > 0) & (f["c"] > 0), f["c"] - 1, f["c"])
                new = pack_synapses(**f)
                self.counters.ltd_writes += int(np.count_nonzero(new != rows))
                self.synapses[sources] = new
            st.x[sources] = self._bump(st.x[sources], regs["X_INC"])
        self.counters.pre_events += int(sources.size)
        self.counters.synaptic_ops += int(sources.size) * n

        # C. Leak, integrate, threshold, fire.
        v = leak(st.v, prm["leak_shift"])
        refractory = st.ref > 0
        st.ref = np.where(refractory, st.ref - 1, st.ref)
        v = np.where(refractory, v, saturate(v + current + prm["bias"], V_MIN, V_MAX))
        period_mask = (1 << regs["TH_DECAY_PERIOD"]) - 1
        if learn and regs["TH_DECAY_SHIFT"] < 16 and (st.t & period_mask) == 0:
            st.th = st.th - ceilsh(st.th, regs["TH_DECAY_SHIFT"])
        threshold = prm["threshold"] + (st.th >> regs["TH_SHIFT"])
        candidates = ~refractory & (v >= threshold)
        pool = prm["wta"] == 1
        spikes = candidates & ~pool
        pool_candidates = np.flatnonzero(candidates & pool)
        if pool_candidates.size:
            margin = (v - threshold)[pool_candidates]
            winner = pool_candidates[np.argmax(margin)]  # argmax keeps the lowest index on ties
            spikes[winner] = True
            v = np.where(pool, prm["reset"], v)
        v = np.where(spikes, prm["reset"], v)
        st.v = v
        st.ref = np.where(spikes, prm["refractory"], st.ref)
        if learn:
            st.th = np.where(spikes, saturate(st.th + prm["th_plus"], 0, TH_MAX), st.th)

        # D. Potentiation along the columns of the neurons that spiked; then their traces.
        posts = np.flatnonzero(spikes)
        if posts.size and learn and regs["LTP_EN"]:
            all_sources = np.arange(cfg.n_sources)
            cols = self.synapses[:, posts].astype(np.int64)
            f = unpack_synapses(cols)
            w0 = f["w"]
            w_max = regs["W_MAX"]
            base = np.maximum(w_max - w0, 0) if regs["SOFT_BOUNDS"] else regs["A_PLUS"]
            r = rand(key, STREAM_LTP, all_sources[:, None], posts[None, :])
            shift = rounding_shift(regs["SHIFT_PLUS"], self._gate[f["p"]])
            step = sr(st.x[:, None] * base, shift, r)
            step = np.where(self._plastic(f) & (st.x[:, None] > 0), step, 0)
            f["w"] = np.where(w0 + step <= w_max, w0 + step, np.maximum(w0, w_max))
            if regs["CONSOL_EN"]:
                counting = ((step > 0) & (f["p"] < regs["P_LEARN_MAX"])
                            & coin(regs["CONSOL_Q0"] + regs["CONSOL_QS"] * f["p"], r))
                promote = counting & (f["c"] + 1 >= regs["CONSOL_C_MAX"])
                f["c"] = np.where(promote, 0, np.where(counting, f["c"] + 1, f["c"]))
                f["p"] = np.where(promote, f["p"] + 1, f["p"])
            new = pack_synapses(**f)
            self.counters.ltp_writes += int(np.count_nonzero(new != cols))
            self.synapses[:, posts] = new
        st.y[posts] = self._bump(st.y[posts], regs["Y_INC"])
        self.counters.post_spikes += int(posts.size)

        # E. Spikes reach the recurrent rows next tick.
        st.last_spikes = spikes
        st.t = (st.t + 1) & 0xFFFFFFFF
        self.counters.ticks += 1
        return spikes

    # -- runs -----------------------------------------------------------------------------------

    def run(self, ticks: int, input_spikes=None, learn: bool = True, record_v=()):
        """Run ``ticks`` ticks.

        Parameters
        ----------
        ticks : int
        input_spikes : array of bool, shape ``(ticks, n_inputs)``, optional
        learn : bool
        record_v : sequence of int
            Neurons whose membrane potential (after each tick) is recorded.

        Returns
        -------
        spikes : ndarray of bool, shape ``(ticks, n_neurons)``
        v : ndarray of int16, shape ``(ticks, len(record_v))``
        """
        n_in = self.config.n_inputs
        if input_spikes is None:
            input_spikes = np.zeros((ticks, n_in), bool)
        input_spikes = np.asarray(input_spikes, dtype=bool)
        if input_spikes.shape != (ticks, n_in):
            raise ValueError(f"input_spikes has shape {input_spikes.shape}, "
                             f"expected ({ticks}, {n_in})")
        record_v = np.asarray(record_v, dtype=np.int64)
        spikes = np.zeros((ticks, self.config.n_neurons), bool)
        v = np.zeros((ticks, record_v.size), np.int16)
        for t in range(ticks):
            spikes[t] = self.tick(input_spikes[t], learn)
            v[t] = self.state.v[record_v]
        return spikes, v
