"""Backends: the one interface through which the host drives a core, whatever runs it.

:class:`Backend` is what :class:`plasticore.host.device.Device` talks to. The golden model
(:class:`ModelBackend`), the Verilator virtual board and a board on a serial port all implement it,
so user code does not change between them. The public methods check their arguments once, here,
and then call the ``_``-prefixed hooks a backend implements; a hook only ever sees valid input.
"""

from __future__ import annotations

import abc
import dataclasses

import numpy as np

from ..config import CoreConfig
from ..image import CoreImage, NeuronState
from ..protocol import OPTIONAL_FEATURES
from ..sim.model import GoldenModel

__all__ = ["Backend", "ModelBackend"]


def _is_int(value) -> bool:
    return (isinstance(value, (int, np.integer))
            and not isinstance(value, (bool, np.bool_)))


#: Every optional part of a core, by capability name.
ALL_FEATURES = frozenset(flag.name for flag in OPTIONAL_FEATURES)

#: What each optional part is, in words for messages.
FEATURE_NAMES = {"PACED": "tick pacing", "WTA": "the winner-take-all pool",
                 "ADAPTIVE_THRESHOLD": "the adaptive threshold"}


class Backend(abc.ABC):
    """A connected core.

    A backend holds one core. After construction the core holds
    :meth:`CoreImage.blank(config) <plasticore.image.CoreImage.blank>`, as a core does after
    reset; :meth:`load` replaces everything in it. Between calls the core is idle: nothing
    changes except through these methods. After :meth:`close` every method but :meth:`close`
    raises :exc:`RuntimeError`.

    Subclasses implement :attr:`config` and the hooks ``_load``, ``_run``, ``_read_synapses``,
    ``_write_synapses``, ``_read_state``, ``_counters`` and ``_close``, which receive arguments
    already checked by the public methods.
    """

    _closed = False

    @property
    @abc.abstractmethod
    def config(self) -> CoreConfig:
        """The sizes of the connected core."""

    @property
    def features(self) -> frozenset[str]:
        """The optional parts the core has, by their capability names (``"PACED"``, ``"WTA"``,
        ``"ADAPTIVE_THRESHOLD"``; see ``docs/protocol.md`` §6). The golden model has them all."""
        return ALL_FEATURES

    def _check_open(self):
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")

    # -- public API -----------------------------------------------------------------------------

    def load(self, image: CoreImage) -> None:
        """Load ``image`` into the core: registers, neuron parameters, signs, synapses and state.

        The counters restart from zero.

        Raises
        ------
        TypeError
            If ``image`` is not a :class:`~plasticore.image.CoreImage`.
        ValueError
            If the image is for another core size, or does not validate.
        """
        self._check_open()
        if not isinstance(image, CoreImage):
            raise TypeError(f"image must be a CoreImage, not {image!r}")
        if image.config != self.config:
            raise ValueError(f"image is for {image.config}, but the core is {self.config}")
        self._load(image.copy().validate())

    def run(self, ticks: int, input_spikes=None, *, learn: bool = True, record_v=()):
        """Run ``ticks`` ticks.

        Parameters
        ----------
        ticks : int
            0 or more.
        input_spikes : ndarray of bool, shape ``(ticks, n_inputs)``, optional
            ``input_spikes[t, i]``: input axon ``i`` spikes in tick ``t``. None: no input spikes.
        learn : bool
            Plasticity (STDP, consolidation, threshold adaptation) on or off. With False, neither
            synapses nor adaptive thresholds change.
        record_v : sequence of int
            Neurons whose membrane potential is recorded after each tick.

        Returns
        -------
        spikes : ndarray of bool, shape ``(ticks, n_neurons)``
        v : ndarray of int16, shape ``(ticks, len(record_v))``

        Raises
        ------
        TypeError, ValueError
            On a bad argument; the message names the value and the limit.
        """
        self._check_open()
        cfg = self.config
        if not _is_int(ticks):
            raise TypeError(f"ticks must be an int, not {ticks!r}")
        if ticks < 0:
            raise ValueError(f"ticks = {ticks} must be >= 0")
        if input_spikes is None:
            input_spikes = np.zeros((ticks, cfg.n_inputs), bool)
        input_spikes = np.asarray(input_spikes)
        if input_spikes.dtype != bool:
            raise TypeError(f"input_spikes must be a bool array, not an array of "
                            f"{input_spikes.dtype}")
        if input_spikes.shape != (ticks, cfg.n_inputs):
            raise ValueError(f"input_spikes has shape {input_spikes.shape}, "
                             f"expected ({ticks}, {cfg.n_inputs})")
        if not isinstance(learn, (bool, np.bool_)):
            raise TypeError(f"learn must be a bool, not {learn!r}")
        record_v = np.asarray(record_v)
        if record_v.size == 0:
            record_v = np.zeros(0, np.int64)
        if record_v.dtype.kind not in "iu" or record_v.ndim != 1:
            raise TypeError(f"record_v must be a sequence of neuron indices, not {record_v!r}")
        bad = np.flatnonzero((record_v < 0) | (record_v >= cfg.n_neurons))
        if bad.size:
            raise ValueError(f"record_v neuron {record_v[bad[0]]} is out of range "
                             f"0..{cfg.n_neurons - 1}")
        return self._run(int(ticks), input_spikes, bool(learn), record_v.astype(np.int64))

    def _check_block(self, row, col, shape):
        cfg = self.config
        for what, value, size in (("row", row, cfg.n_sources), ("col", col, cfg.n_neurons)):
            if not _is_int(value):
                raise TypeError(f"{what} must be an int, not {value!r}")
            if not 0 <= value < size:
                raise ValueError(f"{what} = {value} is out of range 0..{size - 1}")
        if shape is None:
            return cfg.n_sources - int(row), cfg.n_neurons - int(col)
        if (not isinstance(shape, (tuple, list)) or len(shape) != 2
                or not all(_is_int(k) for k in shape)):
            raise TypeError(f"shape must be a pair of ints (rows, cols), not {shape!r}")
        for what, start, count, size in (("rows", row, shape[0], cfg.n_sources),
                                         ("cols", col, shape[1], cfg.n_neurons)):
            if count < 0:
                raise ValueError(f"block {what} count = {count} must be >= 0")
            if start + count > size:
                raise ValueError(f"block {what} {start}..{start + count - 1} exceed the limit "
                                 f"{size - 1}")
        return int(shape[0]), int(shape[1])

    def read_synapses(self, row: int = 0, col: int = 0, shape=None) -> np.ndarray:
        """Read a block of the synapse memory.

        Parameters
        ----------
        row, col : int
            The block's first source row and first neuron column.
        shape : (int, int), optional
            Rows and columns of the block; by default everything from ``(row, col)`` on, so
            ``read_synapses()`` reads the whole memory.

        Returns
        -------
        ndarray of uint16, shape ``shape``
            A copy: row = source, column = neuron.

        Raises
        ------
        TypeError, ValueError
            If the block does not lie inside ``(n_sources, n_neurons)``.
        """
        self._check_open()
        shape = self._check_block(row, col, shape)
        return self._read_synapses(int(row), int(col), shape)

    def write_synapses(self, words, row: int = 0, col: int = 0) -> None:
        """Write a block of the synapse memory.

        Parameters
        ----------
        words : array of int, 2-D
            Synapse words 0..65535; ``words[i, j]`` goes to source ``row + i``, neuron
            ``col + j``. A full ``(n_sources, n_neurons)`` array with the default ``row`` and
            ``col`` rewrites the whole memory.
        row, col : int
            Where the block starts.

        Raises
        ------
        TypeError, ValueError
            If ``words`` is not a 2-D integer array of 16-bit words, or the block does not lie
            inside ``(n_sources, n_neurons)``.
        """
        self._check_open()
        words = np.asarray(words)
        if words.dtype.kind not in "iu" or words.ndim != 2:
            raise TypeError(f"words must be a 2-D integer array, not an array of {words.dtype} "
                            f"with shape {words.shape}")
        bad = np.argwhere((words < 0) | (words > 0xFFFF))
        if bad.size:
            index = tuple(int(k) for k in bad[0])
            raise ValueError(f"words[{index[0]}, {index[1]}] = {words[index]} is out of range "
                             f"0..{0xFFFF}")
        self._check_block(row, col, words.shape)
        self._write_synapses(words.astype(np.uint16), int(row), int(col))

    def read_state(self) -> NeuronState:
        """A copy of the core's dynamic state: ``v``, ``th``, ``ref``, ``y``, ``x``, ``t``."""
        self._check_open()
        return self._read_state()

    def counters(self) -> dict[str, int]:
        """Event counters since the last :meth:`load`, by name.

        ``ticks``, ``pre_events``, ``synaptic_ops``, ``post_spikes``, ``ltd_writes``,
        ``ltp_writes``; see :class:`plasticore.sim.model.TickCounters`.
        """
        self._check_open()
        return self._counters()

    def close(self) -> None:
        """Release the core. Closing twice is allowed."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- hooks ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def _load(self, image: CoreImage) -> None: ...

    @abc.abstractmethod
    def _run(self, ticks: int, input_spikes: np.ndarray, learn: bool, record_v: np.ndarray): ...

    @abc.abstractmethod
    def _read_synapses(self, row: int, col: int, shape: tuple) -> np.ndarray: ...

    @abc.abstractmethod
    def _write_synapses(self, words: np.ndarray, row: int, col: int) -> None: ...

    @abc.abstractmethod
    def _read_state(self) -> NeuronState: ...

    @abc.abstractmethod
    def _counters(self) -> dict[str, int]: ...

    @abc.abstractmethod
    def _close(self) -> None: ...


class ModelBackend(Backend):
    """A core simulated by the bit-exact golden model (:class:`plasticore.sim.model.GoldenModel`).

    Parameters
    ----------
    config : CoreConfig
        The sizes of the simulated core.

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`~plasticore.config.CoreConfig`.
    """

    def __init__(self, config: CoreConfig):
        if not isinstance(config, CoreConfig):
            raise TypeError(f"config must be a CoreConfig, not {config!r}")
        self._config = config
        self._model = GoldenModel(CoreImage.blank(config))

    @property
    def config(self) -> CoreConfig:
        return self._config

    def __repr__(self) -> str:
        return f"ModelBackend({self._config!r})"

    def _load(self, image):
        self._model = GoldenModel(image)

    def _run(self, ticks, input_spikes, learn, record_v):
        return self._model.run(ticks, input_spikes, learn, record_v)

    def _read_synapses(self, row, col, shape):
        return self._model.synapses[row:row + shape[0], col:col + shape[1]].copy()

    def _write_synapses(self, words, row, col):
        self._model.synapses[row:row + words.shape[0], col:col + words.shape[1]] = words

    def _read_state(self):
        return self._model.state.copy()

    def _counters(self):
        return dataclasses.asdict(self._model.counters)

    def _close(self):
        self._model = None
