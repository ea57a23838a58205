"""The device API: load a :class:`~plasticore.host.network.Network` onto a core, run it, read it.

:class:`Device` is the object user code holds. It speaks in the network's terms (input groups,
populations, projections) and translates them through the compiled :class:`Layout` into the
core's indices for a :class:`~plasticore.host.backend.Backend`, so the same code runs on the golden
model, the virtual board and a board.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping

import numpy as np

from ..config import PLASTICITY_FROZEN, CoreConfig
from ..image import NeuronState, pack_synapses, unpack_synapses
from .backend import Backend, ModelBackend
from .link_backend import LinkBackend
from .network import CompiledNetwork, InputGroup, Layout, Network, Population, Projection
from .network import _int_array, _is_int
from .transport import SerialTransport

__all__ = ["Device", "RunResult"]

_SERIAL_PREFIXES = ("/dev/", "COM", "\\\\.\\", "socket://", "rfc2217://")


def _is_serial_port(name: str) -> bool:
    """A device path, a COM port, a pyserial URL, or an existing character device (such as a
    pseudo-terminal reached through a symbolic link)."""
    if name.startswith(_SERIAL_PREFIXES):
        return True
    try:
        return stat.S_ISCHR(os.stat(name).st_mode)
    except (OSError, ValueError):
        return False


class RunResult:
    """What :meth:`Device.run` returns.

    Attributes
    ----------
    ticks : int
    spikes : ndarray of bool, shape ``(ticks, n_neurons)``
        ``spikes[t, k]``: neuron ``k`` of the core fired in tick ``t`` of the run.
    v : ndarray of int16, shape ``(ticks, len(recorded))``
        Membrane potential after each tick of the recorded neurons.
    recorded : tuple of int
        The core's neuron index of each column of ``v``.
    """

    def __init__(self, spikes: np.ndarray, v: np.ndarray, recorded: tuple, layout: Layout):
        self._spikes, self._v, self._recorded, self._layout = spikes, v, recorded, layout
        self._column = {}
        for k, neuron in enumerate(recorded):
            self._column.setdefault(neuron, k)

    ticks = property(lambda self: self._spikes.shape[0])
    spikes = property(lambda self: self._spikes)
    v = property(lambda self: self._v)
    recorded = property(lambda self: self._recorded)

    def _neurons(self, population) -> range:
        if not isinstance(population, Population):
            raise TypeError(f"expected a Population, not {population!r}")
        if population not in self._layout.neurons:
            raise ValueError(f"population {population.name!r} was not part of the loaded network")
        return self._layout.neurons[population]

    def spikes_of(self, population: Population) -> np.ndarray:
        """The spikes of ``population``: bool, shape ``(ticks, len(population))``."""
        cols = self._neurons(population)
        return self._spikes[:, cols.start:cols.stop]

    def spike_counts(self, population: Population) -> np.ndarray:
        """Spikes per neuron of ``population`` over the run: int64, length ``len(population)``."""
        return self.spikes_of(population).sum(axis=0, dtype=np.int64)

    def v_of(self, target) -> np.ndarray:
        """The membrane potential of a recorded population or neuron.

        Parameters
        ----------
        target : Population or int
            A population passed in ``record``, or a core neuron index that was recorded.

        Returns
        -------
        ndarray of int16
            Shape ``(ticks, len(population))`` for a population, ``(ticks,)`` for a neuron.

        Raises
        ------
        ValueError
            If ``target`` was not recorded.
        """
        if _is_int(target):
            if target not in self._column:
                raise ValueError(f"neuron {target} was not recorded; recorded neurons are "
                                 f"{list(self._recorded)}")
            return self._v[:, self._column[target]]
        neurons = self._neurons(target)
        missing = [k for k in neurons if k not in self._column]
        if missing:
            raise ValueError(f"population {target.name!r} was not recorded (neuron {missing[0]} "
                             f"is missing); pass it in record=")
        return self._v[:, [self._column[k] for k in neurons]]

    def __repr__(self) -> str:
        return (f"RunResult({self.ticks} ticks, {int(self._spikes.sum())} spikes, "
                f"{len(self._recorded)} recorded neurons)")


class Device:
    """A core, reached through a backend, running one loaded network at a time.

    Parameters
    ----------
    backend : str or Backend
        ``"model"``: the bit-exact golden model. A serial port (``"/dev/ttyUSB0"``,
        ``"COM3"``, a pseudo-terminal path such as the one
        ``python -m plasticore.sim.link_model`` prints, or a pyserial URL such as
        ``"socket://host:port"``): a core speaking the link protocol, through
        :class:`~plasticore.host.link_backend.LinkBackend`. ``"sim"``: the virtual board,
        the whole SoC in Verilator behind a pseudo-terminal
        (:class:`~plasticore.host.sim_backend.SimBackend`; built on first use). A :class:`~plasticore.host.backend.Backend` instance is
        used as it is.
    config : CoreConfig, optional
        The core's sizes for the ``"model"`` and ``"sim"`` backends; by default
        :class:`CoreConfig() <plasticore.config.CoreConfig>`, the iCEBreaker's sizes (with
        every optional part, unlike the iCEBreaker's core: see :attr:`features`). With another
        backend it must be None or equal to the backend's (a core on a serial port reports its
        own sizes).
    timeout : float, optional
        For a serial port: seconds to wait for each reply (default 1). A virtual board started
        with ``plasticore vboard`` simulates the core some 20 times slower than a board runs, so
        give it more (``Device("sim")`` uses 20).

    Raises
    ------
    TypeError
        If ``backend`` or ``config`` has the wrong type.
    ValueError
        On an unknown backend name, or a ``config`` that contradicts the backend's.
    plasticore.host.transport.TransportError
        If a serial port cannot be opened.
    plasticore.host.link.LinkException
        If the core on a serial port does not answer as the protocol says.

    .. note::
        A device is a context manager: ``with Device("model") as dev:`` closes it on exit.
    """

    def __init__(self, backend="model", *, config: CoreConfig | None = None,
                 timeout: float | None = None):
        if config is not None and not isinstance(config, CoreConfig):
            raise TypeError(f"config must be a CoreConfig or None, not {config!r}")
        if timeout is not None and not (isinstance(backend, str) and _is_serial_port(backend)):
            raise ValueError(f"timeout applies to a serial port, not to backend {backend!r}")
        if isinstance(backend, Backend):
            if config is not None and config != backend.config:
                raise ValueError(f"config {config} contradicts the backend's {backend.config}")
        elif not isinstance(backend, str):
            raise TypeError(f"backend must be a str or a Backend, not {backend!r}")
        elif backend == "model":
            backend = ModelBackend(config if config is not None else CoreConfig())
        elif backend == "sim":
            from .sim_backend import SimBackend
            backend = SimBackend(config)
        elif _is_serial_port(backend):
            backend = LinkBackend(SerialTransport(backend),
                                  **({} if timeout is None else {"timeout": timeout}))
            if config is not None and config != backend.config:
                backend.close()
                raise ValueError(f"config {config} contradicts the backend's {backend.config}")
        else:
            raise ValueError(f"unknown backend {backend!r}; expected 'model', 'sim' or a serial "
                             f"port ('/dev/...', 'COM<n>', 'socket://...', or a "
                             f"pseudo-terminal's path)")
        self._backend: Backend = backend
        self._compiled: CompiledNetwork | None = None

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def config(self) -> CoreConfig:
        """The sizes of the connected core."""
        return self._backend.config

    @property
    def features(self) -> frozenset[str]:
        """The optional parts of the connected core, by capability name: ``"PACED"`` (tick
        pacing), ``"WTA"`` (the winner-take-all pool), ``"ADAPTIVE_THRESHOLD"``. The model and
        the default virtual board have them all; a board's core, or a virtual board of one
        (``SimBackend(board=...)``), may not (the iCEBreaker's has none).
        :meth:`load` refuses a network that needs a part the core lacks."""
        return self._backend.features

    @property
    def compiled(self) -> CompiledNetwork | None:
        """The network loaded last, as compiled for this core; None before :meth:`load`."""
        return self._compiled

    def __repr__(self) -> str:
        loaded = f", network {self._compiled.network.name!r}" if self._compiled else ""
        return f"Device({self._backend!r}{loaded})"

    def close(self) -> None:
        """Close the backend. Closing twice is allowed."""
        self._backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- loading --------------------------------------------------------------------------------

    def load(self, network: Network) -> CompiledNetwork:
        """Compile ``network`` for this core and load it, replacing whatever the core held.

        Returns
        -------
        CompiledNetwork
            Also kept as :attr:`compiled`; its layout maps the network onto the core.

        Raises
        ------
        TypeError
            If ``network`` is not a :class:`~plasticore.host.network.Network`.
        ValueError
            If the network does not fit the core (see :meth:`Network.compile`).
        """
        if not isinstance(network, Network):
            raise TypeError(f"network must be a Network, not {network!r}")
        compiled = network.compile(self.config)
        self._backend.load(compiled.image)
        self._compiled = compiled
        return compiled

    def _layout(self) -> Layout:
        if self._compiled is None:
            raise RuntimeError("no network is loaded; call Device.load(network) first")
        return self._compiled.layout

    def _placed(self, kind: str, obj, mapping: dict):
        if obj not in mapping:
            raise ValueError(f"{kind} {obj.name!r} is not part of the loaded network "
                             f"{self._compiled.network.name!r}")
        return mapping[obj]

    # -- running --------------------------------------------------------------------------------

    def run(self, ticks: int, inputs: Mapping | None = None, *, learn: bool = True,
            record=()) -> RunResult:
        """Run the loaded network for ``ticks`` ticks.

        Parameters
        ----------
        ticks : int
            0 or more.
        inputs : dict of InputGroup to spikes, optional
            Per input group, either a bool array of shape ``(ticks, len(group))``, or a list (or
            int array) of ``(tick, index)`` events, several per tick allowed; a repeated event is
            one spike. Groups not given are silent.
        learn : bool
            Plasticity on or off; with False, synapses and adaptive thresholds do not change.
        record : Population, int, or sequence of them
            Populations and core neuron indices whose membrane potential is recorded.

        Returns
        -------
        RunResult

        Raises
        ------
        TypeError
            On a wrong type (not a dict, a key that is not an InputGroup, a non-bool dense array
            and non-integer events, ...).
        ValueError
            On a group or population outside the loaded network, a dense array of the wrong
            shape, or an event tick or index out of range; the message names the value and the
            limit.
        RuntimeError
            If no network is loaded.
        """
        layout = self._layout()
        cfg = self.config
        if not _is_int(ticks):
            raise TypeError(f"ticks must be an int, not {ticks!r}")
        if ticks < 0:
            raise ValueError(f"ticks = {ticks} must be >= 0")
        dense = np.zeros((ticks, cfg.n_inputs), bool)
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, Mapping):
            raise TypeError(f"inputs must be a dict of InputGroup to spikes, not {inputs!r}")
        for group, spikes in inputs.items():
            if not isinstance(group, InputGroup):
                raise TypeError(f"inputs keys must be InputGroups, not {group!r}")
            axons = self._placed("input group", group, layout.inputs)
            dense[:, axons.start:axons.stop] |= self._input_spikes(group, spikes, ticks)

        if isinstance(record, Population) or _is_int(record):
            record = [record]
        recorded = []
        for target in record:
            if isinstance(target, Population):
                recorded.extend(self._placed("population", target, layout.neurons))
            elif _is_int(target):
                if not 0 <= target < cfg.n_neurons:
                    raise ValueError(f"record: neuron {target} is out of range "
                                     f"0..{cfg.n_neurons - 1}")
                recorded.append(int(target))
            else:
                raise TypeError(f"record must hold Populations and neuron indices, "
                                f"not {target!r}")

        spikes, v = self._backend.run(ticks, dense, learn=learn, record_v=recorded)
        return RunResult(spikes, v, tuple(recorded), layout)

    @staticmethod
    def _input_spikes(group: InputGroup, spikes, ticks: int) -> np.ndarray:
        owner = f"input group {group.name!r}"
        array = np.asarray(spikes)
        if array.dtype.kind == "b":
            if array.shape != (ticks, len(group)):
                raise ValueError(f"{owner}: spike array has shape {array.shape}, "
                                 f"expected {(ticks, len(group))}")
            return array
        dense = np.zeros((ticks, len(group)), bool)
        if array.size == 0:
            return dense
        if array.dtype.kind not in "iu":
            raise TypeError(f"{owner}: spikes must be a bool array or (tick, index) events of "
                            f"ints, not an array of {array.dtype}")
        if array.ndim != 2 or array.shape[1] != 2:
            raise ValueError(f"{owner}: events have shape {array.shape}, expected (n_events, 2)")
        for column, what, limit in ((0, "tick", ticks), (1, "index", len(group))):
            bad = np.flatnonzero((array[:, column] < 0) | (array[:, column] >= limit))
            if bad.size:
                event = tuple(int(k) for k in array[bad[0]])
                raise ValueError(f"{owner}: event {event} has {what} {event[column]} out of "
                                 f"range 0..{limit - 1}")
        dense[array[:, 0], array[:, 1]] = True
        return dense

    # -- synapses -------------------------------------------------------------------------------

    def _block(self, projection: Projection):
        """The projection's rectangle of the synapse memory: groups are contiguous."""
        layout = self._layout()
        if not isinstance(projection, Projection):
            raise TypeError(f"expected a Projection, not {projection!r}")
        self._placed("projection", projection, layout.synapses)
        rows, cols = layout.sources[projection.pre], layout.neurons[projection.post]
        return rows.start, cols.start, (len(rows), len(cols))

    def synapses(self, projection: Projection) -> dict[str, np.ndarray]:
        """The current synapse fields of ``projection``, read from the core.

        Returns
        -------
        dict of str to ndarray
            ``w`` (weight), ``p`` (plasticity level), ``c`` (consolidation counter) and ``en``
            (plasticity enable), each int64 of shape ``(len(pre), len(post))``, -1 where the
            projection has no synapse.

        Raises
        ------
        TypeError, ValueError, RuntimeError
            If ``projection`` is not a projection of the loaded network.
        """
        row, col, shape = self._block(projection)
        fields = unpack_synapses(self._backend.read_synapses(row, col, shape))
        return {name: np.where(projection.mask, fields[name], -1)
                for name in ("w", "p", "c", "en")}

    def weights(self, projection: Projection) -> np.ndarray:
        """The current weights of ``projection``: int64, shape ``(len(pre), len(post))``.

        Entries without a synapse are -1 (weights are never negative; the sign is the pre
        group's), so ``w[w >= 0]`` or ``w[projection.mask]`` selects the synapses.
        """
        return self.synapses(projection)["w"]

    def set_plasticity(self, projection: Projection, level) -> None:
        """Set the plasticity level of ``projection``'s synapses in the core.

        Parameters
        ----------
        level : int or array of int
            0..7 (7 is frozen); a scalar or an array of shape ``(len(pre), len(post))`` of which
            only the entries at synapses are used.

        Raises
        ------
        TypeError, ValueError
            On a bad projection or level; the message names the value and the limit.
        """
        row, col, shape = self._block(projection)
        level = _int_array(f"projection {projection.name!r}: plasticity", level, shape, 0,
                           PLASTICITY_FROZEN, where=projection.mask)
        fields = unpack_synapses(self._backend.read_synapses(row, col, shape))
        # Write back the whole rectangle: words outside the mask are rewritten unchanged.
        fields["p"] = np.where(projection.mask, level, fields["p"])
        self._backend.write_synapses(pack_synapses(**fields), row, col)

    def freeze(self, projection: Projection) -> None:
        """Freeze ``projection``: plasticity level 7, which learning never changes."""
        self.set_plasticity(projection, PLASTICITY_FROZEN)

    # -- state ----------------------------------------------------------------------------------

    def state(self) -> NeuronState:
        """A copy of the core's dynamic state (see :class:`plasticore.image.NeuronState`)."""
        return self._backend.read_state()

    def counters(self) -> dict[str, int]:
        """The core's event counters since the last load (see :meth:`Backend.counters`)."""
        return self._backend.counters()
