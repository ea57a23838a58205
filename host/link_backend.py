"""A backend that drives a core over the link protocol: a board, or anything speaking it.

:class:`LinkBackend` implements :class:`~plasticore.host.backend.Backend` with
:class:`~plasticore.host.link.Link` commands, so :class:`~plasticore.host.device.Device` code
runs unchanged on a board on a serial port, on the software peer
(:mod:`plasticore.sim.link_model`) on a pseudo-terminal, and on the golden model.
"""

from __future__ import annotations

import numpy as np

from ..config import NEURON_PARAM_FIELDS, REGISTERS, CoreConfig
from ..hdl.core import Space, Status
from ..image import CoreImage, NeuronState, features_needed
from ..protocol import MAX_WORDS, OPTIONAL_FEATURES, PROTOCOL_VERSION, Capability
from ..sim.coreport import decode_readback, syn_address
from .backend import Backend
from .link import Link
from .transport import Transport

__all__ = ["LinkBackend"]

_COUNTERS = (("ticks", Status.CLEAR), ("pre_events", Status.PRE_EVENTS),
             ("synaptic_ops", Status.SYNAPTIC_OPS), ("post_spikes", Status.POST_SPIKES),
             ("ltd_writes", Status.LTD_WRITES), ("ltp_writes", Status.LTP_WRITES))


def _param_words(image: CoreImage, j: int) -> tuple[int, int]:
    word = 0
    for f in NEURON_PARAM_FIELDS:
        word |= (int(image.neuron_params[f.name][j]) & f.mask) << f.lsb
    return word & 0xFFFFFFFF, word >> 32


class LinkBackend(Backend):
    """A core reached over the link protocol.

    On construction the backend identifies the core (its sizes become :attr:`config`), stops a
    run left over from an earlier session, and loads :meth:`CoreImage.blank(config)
    <plasticore.image.CoreImage.blank>`, as the :class:`~plasticore.host.backend.Backend`
    contract requires (a core's memories survive its reset).

    Parameters
    ----------
    transport : Transport
        Owned by the backend: :meth:`close` closes it.
    timeout : float
        Seconds to wait for each reply (see :class:`~plasticore.host.link.Link`).
    window : int
        Bulk READ/WRITE commands in flight (see :class:`~plasticore.host.link.Link`).

    Raises
    ------
    TypeError
        If ``transport`` is not a :class:`~plasticore.host.transport.Transport`.
    plasticore.host.link.LinkException
        If the core does not answer, or speaks another protocol version.

    .. note::
        ``run`` streams input spikes through the input queue; with ``record_v`` it runs in
        lockstep (the core waits for each tick's inputs while the host reads the recorded
        membrane potentials). ``read_state().last_spikes`` holds the core's pending events, so
        it is False for neurons without an outgoing row (the golden model keeps those bits, but
        nothing reads them). ``counters`` are the core's 32-bit counters.
    """

    def __init__(self, transport: Transport, *, timeout: float = 1.0, window: int = 8):
        if not isinstance(transport, Transport):
            raise TypeError(f"transport must be a Transport, not {transport!r}")
        self._link = Link(transport, timeout=timeout, window=window)
        try:
            info = self._link.identify()
            if info.version != PROTOCOL_VERSION:
                raise ValueError(f"{transport.name} speaks link protocol version "
                                 f"{info.version}; this host speaks {PROTOCOL_VERSION}")
            self._config = CoreConfig(n_inputs=info.n_inputs, n_neurons=info.n_neurons,
                                      n_recurrent=info.n_recurrent)
            if self._link.status().running:
                self._link.stop()
                self._link.wait_run_end()
            self._load(CoreImage.blank(self._config))
        except BaseException:
            self._link.close()
            raise

    @property
    def config(self) -> CoreConfig:
        return self._config

    @property
    def features(self) -> frozenset[str]:
        """The optional parts the core reports in its IDENTIFY capabilities."""
        has = Capability(self._link.info.capabilities)
        return frozenset(flag.name for flag in OPTIONAL_FEATURES if has & flag)

    @property
    def link(self) -> Link:
        """The protocol client, for what the Backend API does not cover (status, raw commands)."""
        return self._link

    def __repr__(self) -> str:
        return f"LinkBackend({self._link.transport.name!r})"

    def _check_features(self, image):
        """Refuse, before anything is sent, an image that uses a part the core lacks."""
        has = Capability(self._link.info.capabilities)
        missing = {name: neurons for name, neurons in features_needed(image).items()
                   if not has & Capability[name]}
        if missing:
            what = "; ".join(
                f"{name} (neurons {', '.join(map(str, neurons[:6]))}"
                f"{', ...' if neurons.size > 6 else ''})" for name, neurons in missing.items())
            raise ValueError(
                f"the network uses {what}, which the core on {self._link.transport.name} was "
                f"built without (its capabilities: {has!r}); leave them out of the network "
                "(wta=False, th_plus=0), or use a core that has them")

    # -- hooks ----------------------------------------------------------------------------------

    def _load(self, image):
        cfg, st, link = image.config, image.state, self._link
        self._check_features(image)
        link.reset_state()   # empties the input queue as well
        link.write(Space.REG, 0, [image.registers[r.name] for r in REGISTERS])
        self._write_synapses(image.synapses, 0, 0)
        params, nstate = [], []
        for j in range(cfg.n_neurons):
            params.extend(_param_words(image, j))
            nstate.append((int(st.v[j]) & 0xFFFF) | int(st.th[j]) << 16)
            nstate.append(int(st.ref[j]) | int(st.y[j]) << 4)
        link.write(Space.NPARAM, 0, params)
        link.write(Space.NSTATE, 0, nstate)
        sources = []
        for s in range(cfg.n_sources):
            pending = bool(st.last_spikes[s - cfg.n_inputs]) if s >= cfg.n_inputs else False
            sources.append(int(st.x[s]) | int(image.source_inhibitory[s]) << 8
                           | int(pending) << 9)
        link.write(Space.SOURCE, 0, sources)
        link.write(Space.STATUS, Status.T, [int(st.t), 0])   # T, then CLEAR the counters

    def _run(self, ticks, input_spikes, learn, record_v):
        spikes = np.zeros((ticks, self._config.n_neurons), bool)
        v = np.zeros((ticks, record_v.size), np.int16)
        if ticks == 0:
            return spikes, v
        # Refuse a tick that cannot fit the input queue before anything is sent.
        depth = self._link.info.queue_depth
        widths = input_spikes.sum(axis=1)
        wide = np.flatnonzero(widths + 1 > depth)
        if wide.size:
            k = int(wide[0])
            raise ValueError(f"tick {k} has {int(widths[k])} distinct inputs; with its "
                             f"END_OF_TICK that exceeds the core's input queue of {depth} "
                             f"entries")
        inputs = (np.flatnonzero(row) for row in input_spikes)
        on_tick = None
        if record_v.size:
            spans = self._spans(np.unique(record_v))

            def on_tick(k, _frame):
                potentials = self._potentials(spans)
                v[k] = [potentials[int(j)] for j in record_v]
        ticks_spikes = self._link.stream_run(ticks, inputs, learn=learn, on_tick=on_tick,
                                             lockstep=bool(record_v.size))
        for k, fired in enumerate(ticks_spikes):
            spikes[k, list(fired)] = True
        return spikes, v

    @staticmethod
    def _spans(neurons) -> list[tuple[int, int]]:
        """Group sorted neurons into ``(first, last)`` spans whose NSTATE words fit one READ."""
        spans = []
        for j in (int(j) for j in neurons):
            if spans and 2 * (j - spans[-1][0]) + 1 <= MAX_WORDS:
                spans[-1] = (spans[-1][0], j)
            else:
                spans.append((j, j))
        return spans

    def _potentials(self, spans) -> dict[int, int]:
        potentials = {}
        blocks = [(first << 1, 2 * (last - first) + 1) for first, last in spans]
        for (first, last), words in zip(spans, self._link.read_blocks(Space.NSTATE, blocks)):
            for j in range(first, last + 1):
                low = words[2 * (j - first)] & 0xFFFF
                potentials[j] = low - 0x10000 if low & 0x8000 else low
        return potentials

    def _read_synapses(self, row, col, shape):
        words = np.zeros(shape, np.uint16)
        if shape[0] and shape[1]:
            blocks = [(syn_address(row + i, col), shape[1]) for i in range(shape[0])]
            words[:] = self._link.read_blocks(Space.SYN, blocks)
        return words

    def _write_synapses(self, words, row, col):
        if words.shape[0] and words.shape[1]:
            self._link.write_blocks(Space.SYN, [(syn_address(row + i, col), words[i].tolist())
                                                for i in range(words.shape[0])])

    def _read_state(self) -> NeuronState:
        cfg, link = self._config, self._link
        values = link.read(Space.NSTATE, 0, 2 * cfg.n_neurons)
        values += link.read(Space.SOURCE, 0, cfg.n_sources)
        values += link.read(Space.STATUS, Status.T, 1)
        return decode_readback(cfg, values, synapses=False)[1]

    def _counters(self):
        words = self._link.read(Space.STATUS, Status.CLEAR, len(_COUNTERS))
        return {name: word for (name, _), word in zip(_COUNTERS, words)}

    def _close(self):
        self._link.close()
