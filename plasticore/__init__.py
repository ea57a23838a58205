"""plasticore: a neuromorphic FPGA core with on-chip, per-synapse plasticity.

Subpackages: :mod:`plasticore.hdl` (Amaranth gateware), :mod:`plasticore.sim` (golden model,
Verilator virtual board, cocotb testbench library), :mod:`plasticore.host` (network API, device
API, CLI) and :mod:`plasticore.boards` (board top-levels, build and flash). The core's
configuration lives in :mod:`plasticore.config` and is shared by all of them.
"""

__version__ = "0.1.0"
