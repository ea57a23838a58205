"""The network API: describe a spiking network as groups and projections; compile it for a core.

A :class:`Network` holds input groups (:meth:`Network.inputs`), populations of neurons
(:meth:`Network.population`), projections between them (:meth:`Network.connect`) and the global
learning settings (:meth:`Network.learning`). It knows nothing about a particular core until
:meth:`Network.compile` places it on one, producing a :class:`CompiledNetwork`: a validated
:class:`~plasticore.image.CoreImage` and the :class:`Layout` that maps groups to axon, neuron and
source indices. Every argument is checked when it is given, so an error points at the call that
caused it; only what depends on the core's sizes or on ``W_MAX`` is checked at compile time.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..config import (MAX_INDEX, NEURON_PARAM_FIELDS, PLASTICITY_FROZEN, REGISTERS_BY_NAME,
                      WEIGHT_MAX, CoreConfig, check_register, default_registers)
from ..image import CoreImage, pack_synapses

__all__ = ["Network", "InputGroup", "Population", "Projection", "CompiledNetwork", "Layout",
           "LEARNING_SETTINGS"]

#: The largest group the biggest core can hold.
_MAX_GROUP = MAX_INDEX + 1

#: The keyword names of :meth:`Network.learning`, each with the register (or registers) it sets.
LEARNING_SETTINGS = {
    "seed": "SEED",
    "w_max": "W_MAX",
    "ltp": "LTP_EN",
    "ltd": "LTD_EN",
    "soft_bounds": "SOFT_BOUNDS",
    "a_plus": "A_PLUS",
    "a_minus": "A_MINUS",
    "shift_plus": "SHIFT_PLUS",
    "shift_minus": "SHIFT_MINUS",
    "x_decay_shift": "X_DECAY_SHIFT",
    "y_decay_shift": "Y_DECAY_SHIFT",
    "x_inc": "X_INC",
    "y_inc": "Y_INC",
    "all_to_all": "TRACE_ALL_TO_ALL",
    "gate_shifts": tuple(f"GATE_SHIFT_{p}" for p in range(PLASTICITY_FROZEN)),
    "consolidation": "CONSOL_EN",
    "q0": "CONSOL_Q0",
    "qs": "CONSOL_QS",
    "c_max": "CONSOL_C_MAX",
    "p_learn_max": "P_LEARN_MAX",
    "th_shift": "TH_SHIFT",
    "th_decay_shift": "TH_DECAY_SHIFT",
    "th_decay_period": "TH_DECAY_PERIOD",
}

_PARAM_FIELDS = {f.name: f for f in NEURON_PARAM_FIELDS}


# --- Validation helpers -----------------------------------------------------------------------

def _is_int(value) -> bool:
    return (isinstance(value, (int, np.integer))
            and not isinstance(value, (bool, np.bool_)))


def _check_name(what: str, name) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"{what} name must be a non-empty str, not {name!r}")
    return name


def _check_size(owner: str, n) -> int:
    if not _is_int(n):
        raise TypeError(f"{owner}: n must be an int, not {n!r}")
    if not 1 <= n <= _MAX_GROUP:
        raise ValueError(f"{owner}: n = {n} is out of range 1..{_MAX_GROUP}")
    return int(n)


def _int_array(what: str, value, shape: tuple, lo: int, hi: int, *, kinds: str = "iu",
               where=None) -> np.ndarray:
    """``value`` (a scalar or an array of ``shape``) as a read-only int64 array of ``shape``.

    Only the entries selected by ``where`` are range-checked. ``kinds`` are the numpy dtype kinds
    accepted: integers by default, so that a float or a bool is a TypeError rather than silently
    truncated.
    """
    if _is_int(value) and "i" in kinds and not lo <= value <= hi:
        # Checked before numpy sees it: an int beyond 64 bits would become an object array.
        raise ValueError(f"{what} = {value} is out of range {lo}..{hi}")
    array = np.asarray(value)
    if array.dtype.kind not in kinds:
        kind = "a bool" if kinds == "b" else "an integer"
        if array.ndim:
            raise TypeError(f"{what} must be {kind} or an array of them, "
                            f"not an array of {array.dtype}")
        raise TypeError(f"{what} must be {kind}, not {value!r}")
    if array.ndim and array.shape != shape:
        raise ValueError(f"{what} has shape {array.shape}, expected {shape}")
    result = np.broadcast_to(array.astype(np.int64), shape)
    checked = result if where is None else np.where(where, result, lo)
    bad = np.argwhere((checked < lo) | (checked > hi))
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        where_text = f"[{', '.join(map(str, index))}]" if array.ndim else ""
        raise ValueError(f"{what}{where_text} = {result[index]} is out of range {lo}..{hi}")
    result = np.array(result)
    result.flags.writeable = False
    return result


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array)
    array.flags.writeable = False
    return array


# --- Groups and projections -------------------------------------------------------------------

class _Group:
    """What input groups and populations share: a name, a network, a size and a sign."""

    def __init__(self, network: "Network", n: int, name: str, inhibitory: bool):
        self._network, self._n, self._name, self._inhibitory = network, n, name, inhibitory

    @property
    def name(self) -> str:
        return self._name

    @property
    def network(self) -> "Network":
        return self._network

    @property
    def inhibitory(self) -> bool:
        return self._inhibitory

    def __len__(self) -> int:
        return self._n


class InputGroup(_Group):
    """A group of input axons, created by :meth:`Network.inputs`.

    ``len(group)`` is its number of axons. Groups compare and hash by identity, so they serve as
    dictionary keys (as in :meth:`plasticore.host.device.Device.run`).

    Attributes
    ----------
    name : str
    network : Network
        The network that created the group.
    inhibitory : bool
        The sign of every synapse the group drives (Dale's law): True subtracts the weight.
    """

    def __repr__(self) -> str:
        sign = ", inhibitory=True" if self._inhibitory else ""
        return f"InputGroup({self._name!r}, {self._n}{sign})"


class Population(_Group):
    """A population of LIF neurons, created by :meth:`Network.population`.

    ``len(population)`` is its number of neurons. Populations compare and hash by identity.

    Attributes
    ----------
    name : str
    network : Network
    inhibitory : bool
        The sign of every synapse the population drives (Dale's law).
    params : dict of str to ndarray
        One read-only int64 array of length ``len(population)`` per field of
        :data:`plasticore.config.NEURON_PARAM_FIELDS` (``wta`` as 0 or 1).
    """

    def __init__(self, network: "Network", n: int, name: str, inhibitory: bool, params: dict):
        super().__init__(network, n, name, inhibitory)
        self._params = params

    @property
    def params(self) -> dict:
        return dict(self._params)

    def __repr__(self) -> str:
        sign = ", inhibitory=True" if self._inhibitory else ""
        return f"Population({self._name!r}, {self._n}{sign})"


class Projection:
    """Synapses from one group to a population, created by :meth:`Network.connect`.

    All arrays have shape ``(len(pre), len(post))``, are read-only, and hold the values given at
    creation (the device's current values come from
    :meth:`plasticore.host.device.Device.weights`).

    Attributes
    ----------
    name : str
    pre : InputGroup or Population
    post : Population
    mask : ndarray of bool
        True where the projection has a synapse.
    weights : ndarray of int64
        Initial weight, 0..255; -1 where there is no synapse.
    plasticity : ndarray of int64
        Initial plasticity level, 0..7 (7 is frozen); -1 where there is no synapse.
    plastic : ndarray of bool
        The plasticity enable bit; False where there is no synapse.
    pairs : ndarray of int64, shape ``(n_synapses, 2)``
        The ``(pre, post)`` index of each synapse, in row-major order.
    """

    def __init__(self, name, pre, post, mask, weights, plasticity, plastic):
        self._name, self._pre, self._post = name, pre, post
        self._mask = _frozen(mask)
        self._weights = _frozen(np.where(mask, weights, -1))
        self._plasticity = _frozen(np.where(mask, plasticity, -1))
        self._plastic = _frozen(mask & (plastic != 0))
        self._pairs = _frozen(np.argwhere(mask))

    name = property(lambda self: self._name)
    pre = property(lambda self: self._pre)
    post = property(lambda self: self._post)
    mask = property(lambda self: self._mask)
    weights = property(lambda self: self._weights)
    plasticity = property(lambda self: self._plasticity)
    plastic = property(lambda self: self._plastic)
    pairs = property(lambda self: self._pairs)

    def __len__(self) -> int:
        """The number of synapses."""
        return len(self._pairs)

    def __repr__(self) -> str:
        return (f"Projection({self._name!r}, {self._pre.name!r} -> {self._post.name!r}, "
                f"{len(self)} synapses)")


# --- Compilation results ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Layout:
    """Where a compiled network sits on the core.

    Groups occupy consecutive indices, so every mapping below is a ``range``.

    Attributes
    ----------
    inputs : dict of InputGroup to range
        The input axons of each input group.
    neurons : dict of Population to range
        The neurons of each population.
    sources : dict of (InputGroup or Population) to range
        The synapse-memory rows of every group that is the ``pre`` of a projection: an input
        group's rows are its axons; a population's rows are ``n_inputs + neuron``.
    synapses : dict of Projection to ndarray
        Per projection, a read-only int64 array of shape ``(len(projection), 2)``: the
        ``(source_row, neuron)`` of each synapse, in the order of :attr:`Projection.pairs`.
    """
    inputs: dict
    neurons: dict
    sources: dict
    synapses: dict


@dataclasses.dataclass(frozen=True, eq=False)
class CompiledNetwork:
    """A network placed on a core: what :meth:`Network.compile` returns.

    Attributes
    ----------
    network : Network
    image : CoreImage
        Validated; ready for :meth:`plasticore.host.backend.Backend.load`.
    layout : Layout
    """
    network: "Network"
    image: CoreImage
    layout: Layout


# --- The network ------------------------------------------------------------------------------

class Network:
    """A spiking network, described independently of the core it will run on.

    Parameters
    ----------
    name : str
        Used in error messages.

    Raises
    ------
    TypeError
        If ``name`` is not a non-empty str.
    """

    def __init__(self, name: str = "network"):
        self._name = _check_name("network", name)
        self._inputs: list[InputGroup] = []
        self._populations: list[Population] = []
        self._projections: list[Projection] = []
        self._registers: dict[str, int] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def input_groups(self) -> tuple:
        """The input groups, in creation order."""
        return tuple(self._inputs)

    @property
    def populations(self) -> tuple:
        """The populations, in creation order."""
        return tuple(self._populations)

    @property
    def projections(self) -> tuple:
        """The projections, in creation order."""
        return tuple(self._projections)

    def __repr__(self) -> str:
        return (f"Network({self._name!r}, {len(self._inputs)} input groups, "
                f"{len(self._populations)} populations, {len(self._projections)} projections)")

    def _new_name(self, what: str, name, prefix: str, count: int) -> str:
        if name is None:
            name = f"{prefix}{count}"
        _check_name(what, name)
        for obj in (*self._inputs, *self._populations, *self._projections):
            if obj.name == name:
                raise ValueError(f"network {self._name!r} already has an object named {name!r}: "
                                 f"{obj!r}")
        return name

    def _check_member(self, role: str, group, types: tuple):
        if not isinstance(group, types):
            allowed = " or ".join(t.__name__ for t in types)
            raise TypeError(f"{role} must be {allowed}, not {group!r}")
        if group.network is not self:
            raise ValueError(f"{role} {group!r} belongs to network {group.network.name!r}, "
                             f"not {self._name!r}")

    # -- groups ---------------------------------------------------------------------------------

    def inputs(self, n: int, name: str | None = None, *, inhibitory: bool = False) -> InputGroup:
        """Add ``n`` input axons.

        Parameters
        ----------
        n : int
            1..16384.
        name : str, optional
            Unique in the network; ``"input<k>"`` by default.
        inhibitory : bool
            The sign of the group's synapses.

        Returns
        -------
        InputGroup

        Raises
        ------
        TypeError, ValueError
            On a bad ``n``, ``name`` or ``inhibitory``; the message names the value and the limit.
        """
        name = self._new_name("input group", name, "input", len(self._inputs))
        n = _check_size(f"input group {name!r}", n)
        if not isinstance(inhibitory, (bool, np.bool_)):
            raise TypeError(f"input group {name!r}: inhibitory must be a bool, not {inhibitory!r}")
        group = InputGroup(self, n, name, bool(inhibitory))
        self._inputs.append(group)
        return group

    def population(self, n: int, name: str | None = None, *, threshold=256, reset=0, bias=0,
                   leak_shift=4, refractory=0, th_plus=0, wta=False,
                   inhibitory: bool = False) -> Population:
        """Add ``n`` LIF neurons.

        Each neuron parameter is a scalar or an array of length ``n``; their ranges are those of
        :data:`plasticore.config.NEURON_PARAM_FIELDS`.

        Parameters
        ----------
        n : int
            1..16384.
        name : str, optional
            Unique in the network; ``"population<k>"`` by default.
        threshold : int or array
            Base firing threshold, 0..32767.
        reset : int or array
            Membrane potential after a spike, -32768..32767.
        bias : int or array
            Added to the input current every tick, -32768..32767.
        leak_shift : int or array
            Each tick ``v`` loses ``ceil(|v| / 2**leak_shift)``, 0..15; 15 means no leak.
        refractory : int or array
            Ticks without integration after a spike, 0..15.
        th_plus : int or array
            Adaptive threshold step at each spike (while learning), 0..255.
        wta : bool or array of bool
            Member of the core's winner-take-all pool.
        inhibitory : bool
            The sign of the synapses the population drives.

        Returns
        -------
        Population

        Raises
        ------
        TypeError
            On a non-integer parameter (``wta``: non-bool), or an array of the wrong dtype.
        ValueError
            On a bad size or a parameter out of range; the message names the parameter, the
            offending value (and its index for an array) and the range.
        """
        name = self._new_name("population", name, "population", len(self._populations))
        owner = f"population {name!r}"
        n = _check_size(owner, n)
        if not isinstance(inhibitory, (bool, np.bool_)):
            raise TypeError(f"{owner}: inhibitory must be a bool, not {inhibitory!r}")
        given = dict(threshold=threshold, reset=reset, bias=bias, leak_shift=leak_shift,
                     refractory=refractory, th_plus=th_plus, wta=wta)
        params = {}
        for key, value in given.items():
            f = _PARAM_FIELDS[key]
            params[key] = _int_array(f"{owner}: {key}", value, (n,), f.lo, f.hi,
                                     kinds="b" if key == "wta" else "iu")
        population = Population(self, n, name, bool(inhibitory), params)
        self._populations.append(population)
        return population

    # -- projections ----------------------------------------------------------------------------

    def connect(self, pre, post, *, weights, connectivity="dense", plasticity=0, plastic=True,
                name: str | None = None) -> Projection:
        """Add synapses from ``pre`` to ``post``.

        A population as ``pre`` makes a recurrent projection: its spikes arrive one tick after
        they are fired. The synapses' sign is ``pre.inhibitory``.

        Parameters
        ----------
        pre : InputGroup or Population
        post : Population
        weights : int, array of int, or tuple
            A scalar, an array of shape ``(len(pre), len(post))`` (only entries inside the
            connectivity are used or checked), or ``("uniform", lo, hi, seed)``: a
            ``(len(pre), len(post))`` draw of ``numpy.random.default_rng(seed).integers`` in
            ``lo..hi`` inclusive. Weights are 0..255, and at compile time at most ``W_MAX``.
        connectivity : "dense", array of bool, or array of int
            ``"dense"`` (all pairs), a bool mask of shape ``(len(pre), len(post))``, or a list
            or array of ``(pre_index, post_index)`` pairs, each at most once.
        plasticity : int or array of int
            Plasticity level 0..7 (7 is frozen), like ``weights``.
        plastic : bool or array of bool
            The plasticity enable bit, like ``weights``.
        name : str, optional
            Unique in the network; ``"projection<k>"`` by default.

        Returns
        -------
        Projection

        Raises
        ------
        TypeError
            On a wrong type (a group of the wrong kind, a float weight, an int ``plastic``).
        ValueError
            On a group of another network, a bad shape, an index or value out of range, or a
            synapse that an earlier projection already defines; the message names the projection,
            the value and the limit.
        """
        name = self._new_name("projection", name, "projection", len(self._projections))
        owner = f"projection {name!r}"
        self._check_member(f"{owner}: pre", pre, (InputGroup, Population))
        self._check_member(f"{owner}: post", post, (Population,))
        shape = (len(pre), len(post))
        mask = self._connectivity(owner, connectivity, shape)

        if isinstance(weights, tuple) and weights and isinstance(weights[0], str):
            weights = self._uniform(owner, weights, shape)
        weights = _int_array(f"{owner}: weights", weights, shape, 0, WEIGHT_MAX, where=mask)
        plasticity = _int_array(f"{owner}: plasticity", plasticity, shape, 0, PLASTICITY_FROZEN,
                                where=mask)
        plastic = _int_array(f"{owner}: plastic", plastic, shape, 0, 1, kinds="b")

        for other in self._projections:
            if other.pre is pre and other.post is post:
                both = np.argwhere(other.mask & mask)
                if both.size:
                    i, j = (int(k) for k in both[0])
                    raise ValueError(f"{owner} and projection {other.name!r} both define the "
                                     f"synapse {pre.name}[{i}] -> {post.name}[{j}]")
        projection = Projection(name, pre, post, mask, weights, plasticity, plastic)
        self._projections.append(projection)
        return projection

    @staticmethod
    def _connectivity(owner: str, connectivity, shape: tuple) -> np.ndarray:
        if isinstance(connectivity, str):
            if connectivity != "dense":
                raise ValueError(f"{owner}: connectivity {connectivity!r} is not 'dense', a bool "
                                 f"mask or a list of (pre, post) pairs")
            return np.ones(shape, bool)
        array = np.asarray(connectivity)
        if array.dtype.kind == "b":
            if array.shape != shape:
                raise ValueError(f"{owner}: connectivity mask has shape {array.shape}, "
                                 f"expected {shape}")
            return array.copy()
        if array.size == 0:
            return np.zeros(shape, bool)
        if array.dtype.kind not in "iu":
            raise TypeError(f"{owner}: connectivity must be 'dense', a bool mask or (pre, post) "
                            f"pairs of ints, not an array of {array.dtype}")
        if array.ndim != 2 or array.shape[1] != 2:
            raise ValueError(f"{owner}: connectivity pairs have shape {array.shape}, "
                             f"expected (n_pairs, 2)")
        for column, side in enumerate(("pre", "post")):
            size = shape[column]
            bad = np.flatnonzero((array[:, column] < 0) | (array[:, column] >= size))
            if bad.size:
                pair = tuple(int(k) for k in array[bad[0]])
                raise ValueError(f"{owner}: pair {pair} has {side} index {pair[column]} out of "
                                 f"range 0..{size - 1}")
        flat = array[:, 0] * shape[1] + array[:, 1]
        unique, counts = np.unique(flat, return_counts=True)
        if np.any(counts > 1):
            pair = divmod(int(unique[np.argmax(counts > 1)]), shape[1])
            raise ValueError(f"{owner}: pair {pair} appears more than once")
        mask = np.zeros(shape, bool)
        mask[array[:, 0], array[:, 1]] = True
        return mask

    @staticmethod
    def _uniform(owner: str, spec: tuple, shape: tuple) -> np.ndarray:
        if len(spec) != 4 or spec[0] != "uniform":
            raise ValueError(f"{owner}: weights {spec!r} is not ('uniform', lo, hi, seed)")
        _, lo, hi, seed = spec
        lo = int(_int_array(f"{owner}: uniform weights lo", lo, (), 0, WEIGHT_MAX))
        hi = int(_int_array(f"{owner}: uniform weights hi", hi, (), lo, WEIGHT_MAX))
        if not _is_int(seed):
            raise TypeError(f"{owner}: uniform weights seed must be an int, not {seed!r}")
        if seed < 0:
            raise ValueError(f"{owner}: uniform weights seed = {seed} must be >= 0")
        return np.random.default_rng(seed).integers(lo, hi, size=shape, endpoint=True)

    # -- learning -------------------------------------------------------------------------------

    def learning(self, **settings) -> dict[str, int]:
        """Set global learning registers; return every register set so far.

        Keywords are the names of :data:`LEARNING_SETTINGS` (``gate_shifts`` takes 7 values, for
        ``GATE_SHIFT_0`` .. ``GATE_SHIFT_6``) or register names in upper case (``SHIFT_PLUS=10``).
        One-bit registers (``ltp``, ``soft_bounds``, ...) also take a bool. Registers not set keep
        their defaults. A call either applies all its settings or none.

        Returns
        -------
        dict of str to int
            The registers set by this and earlier calls, by register name.

        Raises
        ------
        TypeError
            On an unknown keyword (the message lists the valid ones) or a non-integer value.
        ValueError
            On a value out of its register's range (the message names the value and the range),
            a register set twice in one call, or ``gate_shifts`` of the wrong length.
        """
        updates: dict[str, int] = {}

        def put(register, value, keyword):
            if register in updates:
                raise ValueError(f"network {self._name!r}: learning register {register} is set "
                                 f"twice in one call (by {keyword})")
            if isinstance(value, (bool, np.bool_)) and REGISTERS_BY_NAME[register].width == 1:
                value = int(value)
            updates[register] = check_register(register, value)

        for keyword, value in settings.items():
            target = LEARNING_SETTINGS.get(keyword, keyword if keyword in REGISTERS_BY_NAME
                                           else None)
            if target is None:
                raise TypeError(f"network {self._name!r}: unknown learning setting {keyword!r}; "
                                f"valid settings are {', '.join(LEARNING_SETTINGS)}, or a "
                                f"register name in upper case such as SHIFT_PLUS")
            if isinstance(target, tuple):
                if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
                    raise TypeError(f"network {self._name!r}: {keyword} must be a sequence of "
                                    f"{len(target)} ints, not {value!r}")
                if len(value) != len(target):
                    raise ValueError(f"network {self._name!r}: {keyword} has {len(value)} "
                                     f"values, expected {len(target)}")
                for register, item in zip(target, value):
                    put(register, item, keyword)
            else:
                put(target, value, keyword)
        self._registers.update(updates)
        return dict(self._registers)

    # -- compilation ----------------------------------------------------------------------------

    def compile(self, config: CoreConfig) -> CompiledNetwork:
        """Place the network on a core of size ``config``.

        Input groups get consecutive input axons in creation order. Populations that are the
        ``pre`` of a projection get the first neurons (only the first ``n_recurrent`` neurons have
        outgoing rows), the others the next ones, each in creation order. Neurons left over keep
        the parameters of :meth:`CoreImage.blank` and receive no synapses, so they never fire.

        Returns
        -------
        CompiledNetwork

        Raises
        ------
        TypeError
            If ``config`` is not a :class:`~plasticore.config.CoreConfig`.
        ValueError
            If the inputs or neurons do not fit, a source population falls outside the recurrent
            neurons, a weight exceeds ``W_MAX``, or the registers are inconsistent; the message
            names the object, the value and the limit.
        """
        if not isinstance(config, CoreConfig):
            raise TypeError(f"config must be a CoreConfig, not {config!r}")
        net = f"network {self._name!r}"

        n_inputs = sum(len(g) for g in self._inputs)
        if n_inputs > config.n_inputs:
            raise ValueError(f"{net} needs {n_inputs} input axons, more than the core's "
                             f"n_inputs = {config.n_inputs}")
        n_neurons = sum(len(p) for p in self._populations)
        if n_neurons > config.n_neurons:
            raise ValueError(f"{net} needs {n_neurons} neurons, more than the core's "
                             f"n_neurons = {config.n_neurons}")

        inputs, start = {}, 0
        for group in self._inputs:
            inputs[group] = range(start, start + len(group))
            start += len(group)

        # The first projection out of each source population, to name it in errors.
        outgoing = {}
        for proj in self._projections:
            if isinstance(proj.pre, Population):
                outgoing.setdefault(proj.pre, proj)
        order = ([p for p in self._populations if p in outgoing]
                 + [p for p in self._populations if p not in outgoing])
        neurons, start = {}, 0
        for pop in order:
            neurons[pop] = range(start, start + len(pop))
            start += len(pop)
            if pop in outgoing and start > config.n_recurrent:
                raise ValueError(f"{net}: population {pop.name!r} is the pre of projection "
                                 f"{outgoing[pop].name!r}, so it needs neurons with outgoing "
                                 f"rows, but it would occupy neurons {neurons[pop].start}.."
                                 f"{start - 1} and only the first n_recurrent = "
                                 f"{config.n_recurrent} have them")

        sources = dict(inputs)
        for pop in outgoing:
            rows = neurons[pop]
            sources[pop] = range(config.n_inputs + rows.start, config.n_inputs + rows.stop)
        sources = {g: r for g, r in sources.items()
                   if any(proj.pre is g for proj in self._projections)}

        image = CoreImage.blank(config)
        image.registers.update(self._registers)
        w_max = image.registers["W_MAX"]
        for pop, cols in neurons.items():
            for key, value in pop.params.items():
                image.neuron_params[key][cols.start:cols.stop] = value
        for group, rows in sources.items():
            image.source_inhibitory[rows.start:rows.stop] = group.inhibitory

        synapses = {}
        for proj in self._projections:
            i, j = proj.pairs[:, 0], proj.pairs[:, 1]
            w = proj.weights[i, j]
            if np.any(w > w_max):
                k = int(np.argmax(w > w_max))
                raise ValueError(f"projection {proj.name!r}: weight {w[k]} at ({i[k]}, {j[k]}) "
                                 f"exceeds W_MAX = {w_max}")
            rows = sources[proj.pre].start + i
            cols = neurons[proj.post].start + j
            image.synapses[rows, cols] = pack_synapses(
                w=w, p=proj.plasticity[i, j], en=proj.plastic[i, j].astype(np.int64))
            synapses[proj] = _frozen(np.column_stack([rows, cols]).astype(np.int64))

        return CompiledNetwork(self, image.validate(),
                               Layout(inputs=inputs, neurons=neurons, sources=sources,
                                      synapses=synapses))
