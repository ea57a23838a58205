"""Default core configurations, one per target FPGA.

A :class:`CorePreset` names everything :class:`~.core.Core` takes, plus the device it is sized
for. ``plasticore.boards.synth`` synthesises each preset and checks it against the device's
limits; ``tests/test_synthesis.py`` keeps both within them.

* :data:`UP5K`, iCE40UP5K: 128 inputs + 128 recurrent sources by 256 neurons = 65,536 synapses,
  16 bits each = 1 Mbit, exactly the four 16384 x 16 SPRAMs, as one bank (one synapse per port
  cycle is what the 5,280 logic cells leave room for: a learning lane, a hash and a neuron
  update each). To fit the whole SoC in the 5,280 logic cells and meet 12 MHz, it leaves out
  the benchmark-only counters, the optional parts (tick pacing, the winner-take-all pool, the
  adaptive threshold: ``docs/protocol.md`` section 6; networks that need them run on the
  ULX3S and on the virtual board) and the list of active source groups (column walks visit all
  256, so learning ticks take more cycles), and computes the random numbers in two passes
  through four rounds (:class:`~.rng.HashHalves`).
* :data:`ECP5_85F`, LFE5U-85F: 256 inputs + 128 recurrent sources by 512 neurons = 196,608
  synapses in eight banks of 24,576 x 16, 24 DP16KD each in 1024 x 18 mode: 192 of the 208.

Two more ECP5 sizes, for the ULX3S boards (``plasticore.boards``). They are not in
:data:`PRESETS`, whose two presets the synthesis checks and benchmarks cover; the board builds
(``plasticore build``, ``docs/boards.md``) check these by placing and routing them.

* :data:`ECP5_25F`, LFE5U-25F (and LFE5U-12F, the same die): 128 inputs + 48 recurrent sources by
  256 neurons = 45,056 synapses in four banks of 11,264 x 16, 11 DP16KD each: 44 of the 56, the
  other 12 hold the lanes, neuron memories, spike list, FIFOs and frame buffer.
* :data:`ECP5_45F`, LFE5U-45F: 256 inputs + 128 recurrent sources by 256 neurons = 98,304
  synapses in eight banks of 12,288 x 16, 12 DP16KD each: 96 of the 108 (the lanes, 32 words
  each, go to distributed RAM).
"""

from __future__ import annotations

import dataclasses

from ..config import CoreConfig
from .core import Core
from .soc import SoC
from .synmem import MEMORY_KINDS

__all__ = ["CorePreset", "UP5K", "ECP5_85F", "ECP5_25F", "ECP5_45F", "PRESETS"]


@dataclasses.dataclass(frozen=True)
class CorePreset:
    """A core configuration sized for one device.

    Attributes
    ----------
    name : str
        Short name, used for file names and tables.
    device : str
        The device it is sized for (a key of ``plasticore.boards.synth.DEVICES``).
    family : str
        ``"ice40"`` or ``"ecp5"``: the synthesis flow, and the platform family the core is
        elaborated for (``"ice40"`` instantiates SPRAM primitives for ``memory="spram"``).
    config : CoreConfig
    banks, memory, hash_rounds_per_stage, instrument
        Passed to :class:`~.core.Core`.
    trace_list : bool
        Passed to :class:`~.core.Core`.
    paced, wta, adaptive_threshold : bool
        The optional parts built (see :class:`~.soc.SoC`); a preset leaves out what its device
        has no room for.
    """

    name: str
    device: str
    family: str
    config: CoreConfig
    banks: int
    memory: str
    hash_rounds_per_stage: int
    instrument: bool = True
    trace_list: bool = True
    paced: bool = True
    wta: bool = True
    adaptive_threshold: bool = True

    def __post_init__(self):
        if self.family not in ("ice40", "ecp5"):
            raise ValueError(f"family must be 'ice40' or 'ecp5', not {self.family!r}")
        if self.memory not in MEMORY_KINDS:
            raise ValueError(f"memory must be one of {MEMORY_KINDS}, not {self.memory!r}")

    @property
    def n_neurons(self) -> int:
        return self.config.n_neurons

    @property
    def n_synapses(self) -> int:
        return self.config.n_synapses

    def build(self) -> Core:
        """A new :class:`~.core.Core` with this preset's parameters."""
        return Core(self.config, banks=self.banks, memory=self.memory,
                    hash_rounds_per_stage=self.hash_rounds_per_stage,
                    instrument=self.instrument, trace_list=self.trace_list, wta=self.wta,
                    adaptive_threshold=self.adaptive_threshold)

    def build_soc(self, **kwargs) -> SoC:
        """A new :class:`~.soc.SoC` (UART, framing, command engine and this preset's core);
        ``kwargs`` go to :class:`~.soc.SoC` (``divisor``, ``clock_hz``, ...)."""
        return SoC(self.config, banks=self.banks, memory=self.memory,
                   hash_rounds_per_stage=self.hash_rounds_per_stage,
                   instrument=self.instrument, trace_list=self.trace_list, paced=self.paced,
                   wta=self.wta,
                   adaptive_threshold=self.adaptive_threshold, **kwargs)


#: iCE40UP5K (iCEBreaker, iCESugar; 12 MHz): 256 neurons, 64k synapses in the four SPRAMs.
UP5K = CorePreset(
    name="up5k", device="iCE40UP5K", family="ice40",
    config=CoreConfig(n_inputs=128, n_neurons=256, n_recurrent=128),
    banks=1, memory="spram", hash_rounds_per_stage=4, instrument=False,
    trace_list=False, paced=False, wta=False, adaptive_threshold=False,
)

#: LFE5U-85F (ULX3S-85F, ECPIX-5 85): 512 neurons, 192k synapses in 192 of the 208 DP16KD.
ECP5_85F = CorePreset(
    name="ecp5-85f", device="LFE5U-85F", family="ecp5",
    config=CoreConfig(n_inputs=256, n_neurons=512, n_recurrent=128),
    banks=8, memory="bram", hash_rounds_per_stage=2,
)

#: LFE5U-25F and LFE5U-12F (ULX3S-25F/-12F; 24 MHz): 256 neurons, 45k synapses in 44 of the 56
#: DP16KD.
ECP5_25F = CorePreset(
    name="ecp5-25f", device="LFE5U-25F", family="ecp5",
    config=CoreConfig(n_inputs=128, n_neurons=256, n_recurrent=48),
    banks=4, memory="bram", hash_rounds_per_stage=2,
)

#: LFE5U-45F (ULX3S-45F; 24 MHz): 256 neurons, 96k synapses in 96 of the 108 DP16KD.
ECP5_45F = CorePreset(
    name="ecp5-45f", device="LFE5U-45F", family="ecp5",
    config=CoreConfig(n_inputs=256, n_neurons=256, n_recurrent=128),
    banks=8, memory="bram", hash_rounds_per_stage=2,
)

#: Every preset, by name.
PRESETS = {preset.name: preset for preset in (UP5K, ECP5_85F)}
