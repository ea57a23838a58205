"""Simulation: the bit-exact golden model, the toolchain locator and the cocotb testbench library."""
