"""Amaranth layouts of the core's words, derived from :mod:`plasticore.config`.

Nothing here fixes a width of its own: every layout is built from the field and register tables
of the configuration module, which the golden model and the host read too.
"""

from amaranth import signed, unsigned
from amaranth.lib import data

from ..config import NEURON_PARAM_FIELDS, REGISTERS, SYNAPSE_FIELDS

__all__ = ["SynapseWord", "NeuronParams", "Registers", "register_field"]


def _layout(fields):
    members = {}
    position = 0
    for f in sorted(fields, key=lambda f: f.lsb):
        if f.lsb != position:
            raise AssertionError(f"field {f.name} leaves a gap at bit {position}")
        members[f.name] = signed(f.width) if f.signed else unsigned(f.width)
        position += f.width
    return data.StructLayout(members)


#: The 16-bit synapse word: ``en``, ``tag``, ``c``, ``p``, ``w`` from bit 0 up.
SynapseWord = _layout(SYNAPSE_FIELDS)

#: The 64-bit neuron parameter word.
NeuronParams = _layout(NEURON_PARAM_FIELDS)


def register_field(name: str) -> str:
    """The field name of register ``name`` in :data:`Registers` (lower case)."""
    return name.lower()


#: Every global register as one struct; the core keeps it in flip-flops.
Registers = data.StructLayout({register_field(r.name): unsigned(r.width) for r in REGISTERS})
