"""Boards: synthesis checks, top-levels, bitstream builds, flashing and their report.

* :mod:`.synth`: does a core preset fit its FPGA (Yosys only)?
* :mod:`.targets`: the boards (iCEBreaker, ULX3S-12F/25F/45F/85F), their clocks and presets.
* :mod:`.top`: the design around the SoC: clocking (:mod:`.pll` on ECP5), power-on reset, UART
  pins and status LEDs.
* :mod:`.build`: cached bitstream builds with the YoWASP tools, failing when timing is not met.
* :mod:`.flash`: programming with openFPGALoader (or iceprog), with one-line errors.
* :mod:`.report`: ``docs/boards.md`` from the builds (``python -m plasticore.boards.report``).
"""
