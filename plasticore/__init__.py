"""plasticore: a neuromorphic FPGA core with on-chip, per-synapse plasticity.

Subpackages: :mod:`plasticore.hdl` (Amaranth gateware), :mod:`plasticore.sim` (golden model,
Verilator virtual board, cocotb testbench library), :mod:`plasticore.host` (network API, device
API, CLI) and :mod:`plasticore.boards` (board top-levels, build and flash). The core's
configuration lives in :mod:`plasticore.config` and is shared by all of them.
"""

__version__ = "0.1.0"


def cache_root():
    """Where builds are cached (Verilator models, synthesis runs, bitstreams), each under a
    content hash: ``$PLASTICORE_CACHE``, or else ``~/.cache/plasticore``. It is outside the
    clone, so a fresh clone of an unchanged design finds its builds there."""
    import os
    from pathlib import Path
    return Path(os.environ.get("PLASTICORE_CACHE") or Path.home() / ".cache" / "plasticore")


def write_atomically(path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader (another test worker or session sharing the
    cache) sees either the old file or the whole new one, never a part."""
    import os
    import tempfile
    from pathlib import Path
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent,
                                     prefix=f".{path.name}.", delete=False) as temporary:
        temporary.write(text)
    os.replace(temporary.name, path)
