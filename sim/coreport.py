"""The core's command port in Python: core images to commands, read-backs to state.

:class:`~plasticore.hdl.core.Core` is loaded and read through a stream of commands
``(op, space, addr, data)``. This module turns a :class:`~plasticore.image.CoreImage` into the
commands that load it, lists the reads that fetch a core's whole state, and turns the answers
back into arrays, so every driver of the port (the Amaranth simulator, cocotb, the host) shares
one encoding.
"""

from __future__ import annotations

import numpy as np

from ..config import NEURON_PARAM_FIELDS, REGISTERS, CoreConfig
from ..hdl.core import ADDRESS_BITS, Command, Kind, Op, Response, Space, Status
from ..image import CoreImage, NeuronState

__all__ = ["load_commands", "readback_commands", "decode_readback", "pack_command",
           "unpack_response", "syn_address", "COMMAND_BITS", "RESPONSE_BITS"]

COMMAND_BITS = Command.size
RESPONSE_BITS = Response.size
_OFFSETS = {name: Command._fields[name].offset for name in ("op", "space", "addr", "data")}
_KIND_OFFSET = Response._fields["kind"].offset
_DATA_OFFSET = Response._fields["data"].offset


def syn_address(source: int, neuron: int) -> int:
    """The SYN-space address of synapse ``(source, neuron)``."""
    return (source << 14) | neuron


def pack_command(op: Op, space: Space, addr: int = 0, data: int = 0) -> int:
    """The command as the integer value of the port's payload."""
    if not 0 <= addr < 1 << ADDRESS_BITS:
        raise ValueError(f"address {addr} is out of range 0..{(1 << ADDRESS_BITS) - 1}")
    return ((Op(op).value << _OFFSETS["op"]) | (Space(space).value << _OFFSETS["space"])
            | (addr << _OFFSETS["addr"]) | ((data & 0xFFFFFFFF) << _OFFSETS["data"]))


def unpack_response(value: int) -> tuple[Kind, int]:
    """``(kind, data)`` of a response payload."""
    return Kind((value >> _KIND_OFFSET) & 3), (value >> _DATA_OFFSET) & 0xFFFFFFFF


def _param_words(image: CoreImage, j: int) -> tuple[int, int]:
    word = 0
    for f in NEURON_PARAM_FIELDS:
        word |= (int(image.neuron_params[f.name][j]) & f.mask) << f.lsb
    return word & 0xFFFFFFFF, word >> 32


def load_commands(image: CoreImage) -> list[tuple[Op, Space, int, int]]:
    """The commands that load ``image`` completely (registers, memories, state, tick counter)."""
    image = image.copy().validate()
    cfg = image.config
    st = image.state
    cmds = [(Op.WRITE, Space.REG, r.address, image.registers[r.name]) for r in REGISTERS]
    for s in range(cfg.n_sources):
        for j in range(cfg.n_neurons):
            cmds.append((Op.WRITE, Space.SYN, syn_address(s, j), int(image.synapses[s, j])))
    for j in range(cfg.n_neurons):
        lo, hi = _param_words(image, j)
        cmds.append((Op.WRITE, Space.NPARAM, j << 1, lo))
        cmds.append((Op.WRITE, Space.NPARAM, (j << 1) | 1, hi))
        v = int(st.v[j]) & 0xFFFF
        cmds.append((Op.WRITE, Space.NSTATE, j << 1, v | (int(st.th[j]) << 16)))
        cmds.append((Op.WRITE, Space.NSTATE, (j << 1) | 1, int(st.ref[j]) | (int(st.y[j]) << 4)))
    for s in range(cfg.n_sources):
        pending = 0
        if s >= cfg.n_inputs:
            pending = int(st.last_spikes[s - cfg.n_inputs])
        word = int(st.x[s]) | (int(image.source_inhibitory[s]) << 8) | (pending << 9)
        cmds.append((Op.WRITE, Space.SOURCE, s, word))
    cmds.append((Op.WRITE, Space.STATUS, Status.CLEAR, 0))
    cmds.append((Op.WRITE, Space.STATUS, Status.T, int(st.t)))
    return cmds


def readback_commands(config: CoreConfig, *, synapses: bool = True
                      ) -> list[tuple[Op, Space, int, int]]:
    """The reads whose answers :func:`decode_readback` turns into state (in this order)."""
    cmds = []
    if synapses:
        cmds += [(Op.READ, Space.SYN, syn_address(s, j), 0)
                 for s in range(config.n_sources) for j in range(config.n_neurons)]
    for j in range(config.n_neurons):
        cmds += [(Op.READ, Space.NSTATE, j << 1, 0), (Op.READ, Space.NSTATE, (j << 1) | 1, 0)]
    cmds += [(Op.READ, Space.SOURCE, s, 0) for s in range(config.n_sources)]
    cmds.append((Op.READ, Space.STATUS, Status.T, 0))
    return cmds


def decode_readback(config: CoreConfig, values, *, synapses: bool = True):
    """Turn the answers to :func:`readback_commands` into ``(synapse words or None, state)``.

    ``last_spikes`` holds the pending events of the recurrent rows (the spikes of the last
    tick of neurons ``0 .. n_recurrent - 1``); the core keeps no such bit for other neurons, so
    they read as 0.
    """
    values = list(values)
    n, s = config.n_neurons, config.n_sources
    pos = 0
    words = None
    if synapses:
        words = np.array(values[:s * n], dtype=np.uint16).reshape(s, n)
        pos = s * n
    st = NeuronState.zeros(config)
    for j in range(n):
        lo, hi = values[pos], values[pos + 1]
        pos += 2
        v = lo & 0xFFFF
        st.v[j] = v - 0x10000 if v & 0x8000 else v
        st.th[j] = lo >> 16
        st.ref[j] = hi & 0xF
        st.y[j] = (hi >> 4) & 0xFF
    for k in range(s):
        word = values[pos + k]
        st.x[k] = word & 0xFF
        if k >= config.n_inputs:
            st.last_spikes[k - config.n_inputs] = bool((word >> 9) & 1)
    st.t = values[pos + s]
    return words, st
