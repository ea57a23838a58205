"""The core image: everything a backend loads into a core.

A :class:`CoreImage` is what the network compiler produces and what every backend (the golden
model, the virtual board, a real board) consumes: the global registers, the per-neuron parameters,
the per-source sign bits, the synapse memory and the initial neuron and trace state. It is plain
numpy data with one validator, so nothing half-formed reaches a core.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .config import (LEAK_OFF, NEURON_PARAM_FIELDS, NEURON_STATE_FIELDS, REGISTERS,
                     SYNAPSE_FIELDS, TRACE_MAX, CoreConfig, check_register, default_registers)

__all__ = ["CoreImage", "NeuronState", "pack_synapses", "unpack_synapses", "synapse_field",
           "features_needed"]

_SYN = {f.name: f for f in SYNAPSE_FIELDS}


def synapse_field(words, name: str) -> np.ndarray:
    """Extract field ``name`` (``w``, ``p``, ``c``, ``tag`` or ``en``) from synapse words."""
    f = _SYN[name]
    return (np.asarray(words, dtype=np.int64) >> f.lsb) & f.mask


def pack_synapses(*, w, p=0, c=0, en=1, tag=0) -> np.ndarray:
    """Pack synapse fields (scalars or arrays, broadcast together) into uint16 words.

    Raises
    ------
    ValueError
        If a field value does not fit its width; the message names the field and its range.
    """
    values = dict(w=w, p=p, c=c, en=en, tag=tag)
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.int64) for v in values.values()))
    word = np.zeros(arrays[0].shape, dtype=np.int64)
    for (name, value) in zip(values, arrays):
        f = _SYN[name]
        bad = (value < 0) | (value > f.mask)
        if np.any(bad):
            raise ValueError(f"synapse field {name} = {value[bad].flat[0]} is out of range "
                             f"0..{f.mask}")
        word |= value << f.lsb
    return word.astype(np.uint16)


def unpack_synapses(words) -> dict[str, np.ndarray]:
    """Every field of ``words``, by name, as int64 arrays."""
    return {f.name: synapse_field(words, f.name) for f in SYNAPSE_FIELDS}


@dataclasses.dataclass
class NeuronState:
    """The dynamic state of a core: per-neuron ``v``, ``th``, ``ref``, ``y``; per-source ``x``;
    which neurons spiked in the last tick; and the tick counter ``t``."""
    v: np.ndarray
    th: np.ndarray
    ref: np.ndarray
    y: np.ndarray
    x: np.ndarray
    last_spikes: np.ndarray
    t: int = 0

    @classmethod
    def zeros(cls, config: CoreConfig) -> "NeuronState":
        n, s = config.n_neurons, config.n_sources
        return cls(v=np.zeros(n, np.int64), th=np.zeros(n, np.int64), ref=np.zeros(n, np.int64),
                   y=np.zeros(n, np.int64), x=np.zeros(s, np.int64),
                   last_spikes=np.zeros(n, bool), t=0)

    def copy(self) -> "NeuronState":
        return dataclasses.replace(self, **{k: np.array(getattr(self, k)) for k in
                                            ("v", "th", "ref", "y", "x", "last_spikes")})


@dataclasses.dataclass
class CoreImage:
    """A complete, validated description of a core's contents.

    Attributes
    ----------
    config : CoreConfig
    registers : dict of str to int
        Every global register by name (see :data:`plasticore.config.REGISTERS`).
    neuron_params : dict of str to ndarray
        One int array of length ``n_neurons`` per field of
        :data:`plasticore.config.NEURON_PARAM_FIELDS`.
    source_inhibitory : ndarray of bool, length ``n_sources``
        True where the source's weights are subtracted from the input current.
    synapses : ndarray of uint16, shape ``(n_sources, n_neurons)``
        The synapse memory, row = source, column = neuron.
    state : NeuronState
        The initial dynamic state.
    """
    config: CoreConfig
    registers: dict
    neuron_params: dict
    source_inhibitory: np.ndarray
    synapses: np.ndarray
    state: NeuronState

    @classmethod
    def blank(cls, config: CoreConfig) -> "CoreImage":
        """An image with default registers, unreachable neurons and no connections."""
        n = config.n_neurons
        params = {f.name: np.zeros(n, np.int64) for f in NEURON_PARAM_FIELDS}
        params["threshold"][:] = 1 << 14
        params["leak_shift"][:] = LEAK_OFF
        return cls(config=config, registers=default_registers(), neuron_params=params,
                   source_inhibitory=np.zeros(config.n_sources, bool),
                   synapses=np.zeros((config.n_sources, n), np.uint16),
                   state=NeuronState.zeros(config))

    def copy(self) -> "CoreImage":
        return CoreImage(config=self.config, registers=dict(self.registers),
                         neuron_params={k: np.array(v) for k, v in self.neuron_params.items()},
                         source_inhibitory=np.array(self.source_inhibitory),
                         synapses=np.array(self.synapses), state=self.state.copy())

    def validate(self) -> "CoreImage":
        """Check every register, field and array shape; return ``self``.

        Raises
        ------
        ValueError, TypeError, KeyError
            Naming the first bad item, its value and its limit.
        """
        cfg = self.config
        missing = [r.name for r in REGISTERS if r.name not in self.registers]
        if missing:
            raise KeyError(f"image lacks registers {', '.join(missing)}")
        for name, value in self.registers.items():
            self.registers[name] = check_register(name, value)

        n, s = cfg.n_neurons, cfg.n_sources
        _check_array("synapses", self.synapses, (s, n), 0, 0xFFFF)
        self.synapses = np.asarray(self.synapses, dtype=np.uint16)
        _check_array("source_inhibitory", self.source_inhibitory, (s,), 0, 1)
        self.source_inhibitory = np.asarray(self.source_inhibitory, dtype=bool)
        for f in NEURON_PARAM_FIELDS:
            if f.name not in self.neuron_params:
                raise KeyError(f"image lacks neuron parameter {f.name!r}")
            _check_array(f"neuron parameter {f.name}", self.neuron_params[f.name], (n,),
                         f.lo, f.hi)
        st = self.state
        for f in NEURON_STATE_FIELDS:
            _check_array(f"neuron state {f.name}", getattr(st, f.name), (n,), f.lo, f.hi)
        _check_array("source trace x", st.x, (s,), 0, TRACE_MAX)
        _check_array("last_spikes", st.last_spikes, (n,), 0, 1)
        if not 0 <= int(st.t) <= 0xFFFFFFFF:
            raise ValueError(f"tick counter t = {st.t} is out of range 0..{0xFFFFFFFF}")
        return self


def _check_array(what, array, shape, lo, hi):
    array = np.asarray(array)
    if array.shape != shape:
        raise ValueError(f"{what} has shape {array.shape}, expected {shape}")
    if array.dtype.kind not in "iub":
        raise TypeError(f"{what} must hold integers, not {array.dtype}")
    if array.size:
        a = array.astype(np.int64)
        bad = np.flatnonzero((a < lo) | (a > hi))
        if bad.size:
            index = np.unravel_index(bad[0], shape)
            index = index[0] if len(index) == 1 else index
            raise ValueError(f"{what}[{index}] = {a.flat[bad[0]]} is out of range {lo}..{hi}")


def features_needed(image: CoreImage) -> dict[str, np.ndarray]:
    """The optional parts of a core (``docs/protocol.md``, "Optional features") that ``image``
    uses, by capability name (``"WTA"``, ``"ADAPTIVE_THRESHOLD"``), each with the neurons that
    use it. A core built without a part runs exactly the images that do not use it."""
    params, st = image.neuron_params, image.state
    needed = {}
    wta = np.flatnonzero(params["wta"] != 0)
    if wta.size:
        needed["WTA"] = wta
    adaptive = np.flatnonzero((params["th_plus"] != 0) | (st.th != 0))
    if adaptive.size:
        needed["ADAPTIVE_THRESHOLD"] = adaptive
    return needed
