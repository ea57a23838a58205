"""The core's configuration: the one source of truth shared by the HDL, the golden model and the host.

Everything that fixes a bit of the core's behaviour is defined here: the core's sizes
(:class:`CoreConfig`), the layout of the 16-bit synapse word (:data:`SYNAPSE_FIELDS`), the
per-neuron parameter fields (:data:`NEURON_PARAM_FIELDS`), the global register map
(:data:`REGISTERS`) and the constants of the counter-based random number generator. The arithmetic
that uses them is written down in ``docs/core-model.md``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

__all__ = [
    "CoreConfig", "Field", "Register", "SYNAPSE_FIELDS", "NEURON_PARAM_FIELDS",
    "NEURON_STATE_FIELDS", "REGISTERS", "REGISTERS_BY_NAME", "PLASTICITY_FROZEN",
    "PLASTICITY_LEVELS", "WEIGHT_MAX", "TRACE_MAX", "V_MIN", "V_MAX", "TH_MAX", "LEAK_OFF",
    "SR_RANDOM_BITS", "COIN_RANDOM_BITS", "COIN_NEVER", "HASH_ROUNDS", "HASH_ROT_HI",
    "HASH_ROT_LO", "RAND_STREAM_SHIFT", "RAND_A_SHIFT", "RAND_INDEX_BITS", "STREAM_LTD",
    "STREAM_LTP", "MAX_INDEX", "default_registers", "check_register",
]


# --- Widths and ranges ------------------------------------------------------------------------

WEIGHT_MAX = 255            #: weights are unsigned 8-bit
TRACE_MAX = 255             #: pre- and postsynaptic traces are unsigned 8-bit
V_MIN, V_MAX = -32768, 32767  #: membrane potential is signed 16-bit, saturating
TH_MAX = 65535              #: adaptive threshold component is unsigned 16-bit, saturating
LEAK_OFF = 15               #: a leak shift of 15 means "no leak"

PLASTICITY_LEVELS = 8       #: p is 3 bits: 0 is the most plastic level
PLASTICITY_FROZEN = 7       #: p = 7 is frozen: the learning engine never writes such a synapse

#: Stochastic rounding takes the low 24 bits of a draw; the total shift is at most this.
SR_RANDOM_BITS = 24
#: Consolidation coins take the top 8 bits of the same draw.
COIN_RANDOM_BITS = 8
#: A coin exponent above this never comes up.
COIN_NEVER = COIN_RANDOM_BITS + 1


# --- Counter-based random number generator ----------------------------------------------------

HASH_ROUNDS = 8   #: rounds of the 32-bit ARX permutation (Speck32-style round, key = round index)
HASH_ROT_HI = 7   #: the high half is rotated right by this before the add
HASH_ROT_LO = 2   #: the low half is rotated left by this before the xor

RAND_INDEX_BITS = 14       #: a and b of RAND(stream, a, b) are 14-bit indices
RAND_A_SHIFT = 14          #: a sits at bits 27:14 of the draw's input word
RAND_STREAM_SHIFT = 28     #: the 4-bit stream number sits at bits 31:28
MAX_INDEX = (1 << RAND_INDEX_BITS) - 1  #: the largest source or neuron index the RNG can address

STREAM_LTD = 1  #: draws for depression at a presynaptic event: RAND(1, source, neuron)
STREAM_LTP = 2  #: draws for potentiation at a postsynaptic spike: RAND(2, source, neuron)


# --- Bit fields -------------------------------------------------------------------------------

class Field(NamedTuple):
    """A bit field: ``name``, least significant bit ``lsb``, ``width`` in bits, ``signed``."""
    name: str
    lsb: int
    width: int
    signed: bool = False

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1

    @property
    def lo(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else self.mask


#: The 16-bit synapse word, from bit 0 up.
SYNAPSE_FIELDS = (
    Field("en", 0, 1),    # plasticity enable: 0 = the learning engine never writes this synapse
    Field("tag", 1, 1),   # reserved for a third-factor tag; kept as written
    Field("c", 2, 3),     # consolidation counter
    Field("p", 5, 3),     # plasticity level: 0 most plastic .. 6, 7 = frozen
    Field("w", 8, 8),     # unsigned weight; its sign comes from the source's sign bit
)

#: Per-neuron parameters, packed in one 64-bit word of the neuron parameter memory.
NEURON_PARAM_FIELDS = (
    Field("threshold", 0, 15),                # base threshold V_TH, 0..32767
    Field("wta", 15, 1),                      # member of the winner-take-all pool
    Field("reset", 16, 16, signed=True),      # V_RESET, written to v after a spike
    Field("bias", 32, 16, signed=True),       # added to the input current every tick
    Field("leak_shift", 48, 4),               # 0..14, or 15 (LEAK_OFF) for no leak
    Field("refractory", 52, 4),               # ticks without integration after a spike
    Field("th_plus", 56, 8),                  # adaptive threshold step at each spike
)

#: Per-neuron state.
NEURON_STATE_FIELDS = (
    Field("v", 0, 16, signed=True),   # membrane potential
    Field("th", 16, 16),              # adaptive threshold component theta
    Field("ref", 32, 4),              # refractory ticks left
    Field("y", 36, 8),                # postsynaptic trace
)


# --- Global registers -------------------------------------------------------------------------

class Register(NamedTuple):
    """A global register of the core: address, width in bits, reset value and legal range."""
    name: str
    address: int
    width: int
    default: int
    lo: int
    hi: int
    doc: str


def _registers():
    table = [
        ("SEED", 32, 1, 0, 2**32 - 1, "seed of the counter-based random number generator"),
        ("W_MAX", 8, 255, 1, WEIGHT_MAX, "upper weight bound; the lower bound is 0"),
        ("LTP_EN", 1, 1, 0, 1, "potentiation at postsynaptic spikes"),
        ("LTD_EN", 1, 1, 0, 1, "depression at presynaptic spikes"),
        ("SOFT_BOUNDS", 1, 1, 0, 1,
         "1: steps scale with W_MAX - w (LTP) and w (LTD); 0: with A_PLUS and A_MINUS"),
        ("A_PLUS", 8, 128, 0, 255, "additive potentiation factor (SOFT_BOUNDS = 0)"),
        ("A_MINUS", 8, 128, 0, 255, "additive depression factor (SOFT_BOUNDS = 0)"),
        ("SHIFT_PLUS", 5, 12, 0, SR_RANDOM_BITS, "right shift of the potentiation product"),
        ("SHIFT_MINUS", 5, 13, 0, SR_RANDOM_BITS, "right shift of the depression product"),
        ("X_DECAY_SHIFT", 4, 3, 0, 15, "presynaptic trace decay shift (tau ~ 2^s ticks)"),
        ("Y_DECAY_SHIFT", 4, 3, 0, 15, "postsynaptic trace decay shift"),
        ("X_INC", 8, 255, 0, TRACE_MAX, "presynaptic trace value (or increment) at a spike"),
        ("Y_INC", 8, 255, 0, TRACE_MAX, "postsynaptic trace value (or increment) at a spike"),
        ("TRACE_ALL_TO_ALL", 1, 0, 0, 1, "0: traces are set at a spike; 1: incremented, saturating"),
    ]
    table += [(f"GATE_SHIFT_{p}", 4, p, 0, 15,
               f"extra right shift of every update of a synapse at plasticity level {p}")
              for p in range(PLASTICITY_FROZEN)]
    table += [
        ("CONSOL_EN", 1, 1, 0, 1, "metaplasticity: consolidation promotes plasticity levels"),
        ("CONSOL_Q0", 4, 2, 0, 15, "coin exponent at level 0: a count needs a 2^-(Q0+QS*p) coin"),
        ("CONSOL_QS", 2, 1, 0, 3, "coin exponent added per plasticity level"),
        ("CONSOL_C_MAX", 4, 4, 1, 8, "counts that promote a synapse by one level"),
        ("P_LEARN_MAX", 3, 3, 0, PLASTICITY_FROZEN - 1, "highest level consolidation promotes to"),
        ("TH_SHIFT", 4, 0, 0, 15, "threshold = V_TH + (theta >> TH_SHIFT)"),
        ("TH_DECAY_SHIFT", 5, 8, 0, 16, "theta decays by ceil(theta / 2^s); 16 = no decay"),
        ("TH_DECAY_PERIOD", 4, 0, 0, 15, "theta decays on ticks t with t mod 2^P == 0"),
    ]
    return tuple(Register(name, address, width, default, lo, hi, doc)
                 for address, (name, width, default, lo, hi, doc) in enumerate(table))


#: The global registers, in address order.
REGISTERS = _registers()
REGISTERS_BY_NAME = {r.name: r for r in REGISTERS}


def default_registers() -> dict[str, int]:
    """The reset value of every global register, by name."""
    return {r.name: r.default for r in REGISTERS}


def check_register(name: str, value) -> int:
    """Return ``value`` as an int if it is legal for register ``name``; raise otherwise.

    Raises
    ------
    KeyError
        If there is no register ``name``.
    TypeError
        If ``value`` is not an integer.
    ValueError
        If ``value`` is outside the register's range; the message names both.
    """
    try:
        reg = REGISTERS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"no register named {name!r}; registers are "
                       f"{', '.join(REGISTERS_BY_NAME)}") from None
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"register {name} must be an integer, not {value!r}")
    value = int(value)
    if not reg.lo <= value <= reg.hi:
        raise ValueError(f"register {name} = {value} is out of range {reg.lo}..{reg.hi}")
    return value


# --- Sizes ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CoreConfig:
    """The sizes of one core.

    Sources are the rows of the synapse memory: input axons ``0 .. n_inputs - 1`` come first,
    then the first ``n_recurrent`` neurons, whose spikes reach their rows one tick later.
    Neurons are the columns. The synapse memory holds ``n_sources * n_neurons`` 16-bit words.

    Parameters
    ----------
    n_inputs : int
        Input axons, 0..16384.
    n_neurons : int
        Neurons, 1..16384.
    n_recurrent : int
        Neurons (counted from neuron 0) with an outgoing row, 0..n_neurons.

    Raises
    ------
    TypeError, ValueError
        On a non-integer or out-of-range size; the message names the value and the limit.
    """
    n_inputs: int = 128
    n_neurons: int = 256
    n_recurrent: int = 128

    def __post_init__(self):
        for name, lo, hi in (("n_inputs", 0, MAX_INDEX + 1), ("n_neurons", 1, MAX_INDEX + 1),
                             ("n_recurrent", 0, self.n_neurons)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"CoreConfig.{name} must be an int, not {value!r}")
            if not lo <= value <= hi:
                raise ValueError(f"CoreConfig.{name} = {value} is out of range {lo}..{hi}")
        if self.n_sources < 1:
            raise ValueError("CoreConfig needs at least one source: n_inputs + n_recurrent = 0")
        if self.n_sources > MAX_INDEX + 1:
            raise ValueError(f"CoreConfig has n_inputs + n_recurrent = {self.n_sources} sources, "
                             f"more than the limit {MAX_INDEX + 1}")

    @property
    def n_sources(self) -> int:
        """Rows of the synapse memory: inputs, then recurrent neurons."""
        return self.n_inputs + self.n_recurrent

    @property
    def n_synapses(self) -> int:
        """Words in the synapse memory."""
        return self.n_sources * self.n_neurons

    def source_of_neuron(self, neuron: int) -> int:
        """The row index of neuron ``neuron``'s outgoing synapses."""
        if not 0 <= neuron < self.n_recurrent:
            raise ValueError(f"neuron {neuron} has no outgoing row: only neurons "
                             f"0..{self.n_recurrent - 1} are recurrent sources")
        return self.n_inputs + neuron
