"""Cached Verilog generation, Verilator builds and cocotb runs.

The cocotb tests and the virtual board share one build cache, ``sim`` in :func:`plasticore.cache_root` (``~/.cache/plasticore``):

* :func:`write_verilog` converts an Amaranth design and stores the text in a folder named after
  the design and a hash of the text, ``<name>-<sha1[:12]>/<name>.v``. Unchanged gateware maps to
  the same folder, so nothing downstream rebuilds.
* :func:`build_cocotb` Verilates that file into a folder inside the hash folder, named after a
  hash of everything else the binary depends on (build arguments, tool versions). A finished
  build leaves a stamp and is never run again; a file lock makes concurrent pytest-xdist workers
  wait for one build instead of racing ``make`` in the same folder.
* :func:`run_cocotb` runs a cocotb test module against a build and raises
  :class:`AssertionError` naming the failed tests, so a pytest wrapper fails when cocotb does.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import cocotb_tools.config
from amaranth.back import verilog
from cocotb_tools.runner import get_runner

from .. import write_atomically
from .toolchain import check_host_tools, prepare_environment, verilator_root

__all__ = [
    "DEFAULT_BUILD_ARGS",
    "VerilatorBuildError",
    "CocotbResult",
    "write_verilog",
    "build_cocotb",
    "run_cocotb",
]

DEFAULT_BUILD_ARGS: tuple[str, ...] = ("-Wno-CASEINCOMPLETE",)
"""Verilator arguments every build gets.

Amaranth FSMs lower to ``case`` statements without a default, which Verilator reports as the
fatal warning ``CASEINCOMPLETE``. Only that warning is silenced: ``-Wno-fatal`` would hide real
problems, and ``-Wall`` drowns them in lint about generated code.
"""

_STAMP_NAME = "plasticore-build.json"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class VerilatorBuildError(RuntimeError):
    """Verilating or compiling a design failed; the message ends with the build log's tail."""


@dataclass(frozen=True)
class CocotbResult:
    """Outcome of a cocotb run in which no test failed.

    Attributes
    ----------
    results_xml : pathlib.Path
        The xUnit results file cocotb wrote.
    passed : tuple of str
        Names of the tests that passed (including expected failures), in run order.
    skipped : tuple of str
        Names of the tests that were skipped.
    """

    results_xml: Path
    passed: tuple[str, ...]
    skipped: tuple[str, ...]


def _check_identifier(what: str, value: str) -> None:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise ValueError(f"{what} must be a Verilog identifier, not {value!r}")


def _sha1(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha1(data).hexdigest()


def write_verilog(
    component_or_elaboratable,
    name: str,
    out_root: Path | None = None,
    *,
    ports=None,
) -> Path:
    """Convert an Amaranth design to Verilog in a folder named after its content.

    Parameters
    ----------
    component_or_elaboratable : amaranth.lib.wiring.Component or amaranth.hdl.Elaboratable
        The design. A component's ports come from its signature; other elaboratables need
        *ports*. A ``sync`` domain that the design uses but does not define becomes the ports
        ``clk`` and ``rst``.
    name : str
        Name of the top-level Verilog module and of the file.
    out_root : pathlib.Path, optional
        Root of the build cache. Relative paths are relative to the current directory.
    ports : optional
        Passed to :func:`amaranth.back.verilog.convert` for designs that are not components.

    Returns
    -------
    pathlib.Path
        Absolute path of ``out_root/<name>-<sha1(verilog)[:12]>/<name>.v``. The file is written
        only if it does not exist yet, so its mtime changes only when the gateware does.

    Raises
    ------
    ValueError
        If *name* is not a Verilog identifier.
    """
    _check_identifier("Module name", name)
    # emit_src=False: source attributes carry absolute paths and line numbers, so any edit to
    # any Python file would change the hash and force a rebuild.
    text = verilog.convert(component_or_elaboratable, name=name, ports=ports, emit_src=False)
    if out_root is None:
        from .. import cache_root
        out_root = cache_root() / "sim"
    folder = Path(out_root).resolve() / f"{name}-{_sha1(text)[:12]}"
    path = folder / f"{name}.v"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text)
    return path


def _waves_enabled(waves: bool) -> bool:
    # cocotb lets the WAVES environment variable override the argument; the cache key must see
    # the value the build will actually use.
    value = os.environ.get("WAVES", "").strip().lower()
    if not value:
        return waves
    return value in ("1", "yes", "y", "on", "true", "enable")


def _build_key(
    verilog_path: Path,
    toplevel: str,
    build_args: Sequence[str],
    waves: bool,
    timescale: tuple[str, str] | None,
) -> dict:
    return {
        "source_sha1": _sha1(verilog_path.read_bytes()),
        "toplevel": toplevel,
        "build_args": list(build_args),
        "waves": waves,
        "timescale": list(timescale) if timescale is not None else None,
        "verilator": metadata.version("verilator"),
        "verilator_root": str(verilator_root()),
        "cocotb": metadata.version("cocotb"),
        # The binary links libcocotbvpi_verilator through an absolute rpath into this venv.
        "cocotb_libs": str(cocotb_tools.config.libs_dir),
    }


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _is_built(build_dir: Path, toplevel: str, stamp: str) -> bool:
    stamp_path = build_dir / _STAMP_NAME
    return (
        (build_dir / toplevel).is_file()
        and stamp_path.is_file()
        and stamp_path.read_text(encoding="utf-8") == stamp
    )


def _log_tail(log_path: Path, lines: int = 40) -> str:
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no build log)"
    return "\n".join(text.splitlines()[-lines:])


def build_cocotb(
    verilog_path: Path,
    toplevel: str,
    *,
    build_args: Sequence[str] = (),
    waves: bool = False,
    timescale: tuple[str, str] | None = None,
) -> Path:
    """Verilate a design for cocotb, or reuse an identical earlier build.

    Safe to call from several processes at once: one builds while the others wait on a file
    lock, then reuse its result. A build first applies
    :func:`~plasticore.sim.toolchain.prepare_environment` to :data:`os.environ` and runs
    :func:`~plasticore.sim.toolchain.check_host_tools`; a cache hit runs no tool at all.

    Parameters
    ----------
    verilog_path : pathlib.Path
        The Verilog file, normally from :func:`write_verilog`. The build folder goes next to it.
    toplevel : str
        Name of the top-level module.
    build_args : sequence of str, optional
        Verilator arguments, after :data:`DEFAULT_BUILD_ARGS`.
    waves : bool, optional
        Compile in VCD tracing; cocotb's ``WAVES`` environment variable overrides it. Tracing
        must be chosen at build time, so traced and untraced builds get separate folders.
    timescale : tuple of (str, str), optional
        Time unit and precision for Verilator's ``--timescale``. Amaranth's Verilog declares no
        timescale, so by default Verilator simulates at 1 ps precision.

    Returns
    -------
    pathlib.Path
        The build folder, ``<verilog folder>/verilator-<sha1[:8]>``, which holds the simulator
        binary named *toplevel*. Pass it to :func:`run_cocotb`.

    Raises
    ------
    ValueError
        If *toplevel* is not a Verilog identifier.
    FileNotFoundError
        If *verilog_path* does not exist.
    plasticore.sim.toolchain.ToolchainError
        If Verilator or a host tool it needs is missing.
    VerilatorBuildError
        If Verilator or the C++ build fails.
    """
    _check_identifier("Top-level name", toplevel)
    verilog_path = Path(verilog_path).resolve()
    if not verilog_path.is_file():
        raise FileNotFoundError(f"Verilog source {verilog_path} does not exist")
    waves = _waves_enabled(waves)
    args = [*DEFAULT_BUILD_ARGS, *build_args]
    key = _build_key(verilog_path, toplevel, args, waves, timescale)
    stamp = json.dumps(key, indent=2, sort_keys=True) + "\n"
    build_dir = verilog_path.parent / f"verilator-{_sha1(stamp)[:8]}"

    if _is_built(build_dir, toplevel, stamp):
        return build_dir
    with _locked(build_dir.with_suffix(".lock")):
        # Another worker may have finished this build while we waited for the lock.
        if _is_built(build_dir, toplevel, stamp):
            return build_dir
        # The runner finds verilator with shutil.which() and copies os.environ into the build.
        prepare_environment()
        check_host_tools()
        (build_dir / _STAMP_NAME).unlink(missing_ok=True)
        log_path = build_dir.with_suffix(".log")
        runner = get_runner("verilator")
        try:
            runner.build(
                sources=[verilog_path],
                hdl_toplevel=toplevel,
                build_args=args,
                build_dir=build_dir,
                waves=waves,
                timescale=timescale,
                log_file=log_path,
            )
        except (RuntimeError, SystemExit) as exc:
            raise VerilatorBuildError(
                f"Verilator build of {toplevel} in {build_dir} failed ({exc}); "
                f"log {log_path} ends with:\n{_log_tail(log_path)}"
            ) from exc
        if not (build_dir / toplevel).is_file():
            raise VerilatorBuildError(
                f"Verilator build of {toplevel} in {build_dir} produced no binary; "
                f"log {log_path} ends with:\n{_log_tail(log_path)}"
            )
        write_atomically(build_dir / _STAMP_NAME, stamp)
    return build_dir


def _default_test_dir(
    build_dir: Path, test_module: str, testcase: str | Sequence[str] | None
) -> Path:
    if testcase is None:
        selection = "all"
    elif isinstance(testcase, str):
        selection = testcase
    else:
        selection = "+".join(testcase)
    # One folder per xdist worker too: two workers may run the same selection (parametrised
    # wrappers), and cocotb writes results.xml and dump.vcd into the folder.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    folder = re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{test_module}.{selection}.{worker}")
    return build_dir / "runs" / folder


def _parse_results(results_xml: Path) -> tuple[list[str], list[str], list[str]]:
    passed, skipped, failed = [], [], []
    for testcase in ElementTree.parse(results_xml).getroot().iter("testcase"):
        name = f"{testcase.get('classname')}.{testcase.get('name')}"
        problem = testcase.find("failure")
        if problem is None:
            problem = testcase.find("error")
        if problem is not None:
            message = problem.get("message") or (problem.text or "").strip() or problem.tag
            failed.append(f"{name}: {message}")
        elif testcase.find("skipped") is not None:
            skipped.append(name)
        else:
            passed.append(name)
    return passed, skipped, failed


def run_cocotb(
    build_dir: Path,
    toplevel: str,
    test_module: str,
    *,
    test_dir: Path | None = None,
    testcase: str | Sequence[str] | None = None,
    seed: int | None = 0,
    extra_env: Mapping[str, str] | None = None,
    waves: bool = False,
    plusargs: Sequence[str] = (),
) -> CocotbResult:
    """Run a cocotb test module against a Verilated build and fail loudly if any test fails.

    The simulator embeds this process's interpreter and virtual environment (so ``plasticore``
    and its editable install are importable there) and imports *test_module* by name, with
    ``PYTHONPATH`` set to this process's :data:`sys.path`. Relative entries of :data:`sys.path`
    (such as ``''``) resolve against *test_dir* in the simulator; pytest's entries are absolute.
    Python warnings are errors in the simulator too (``PYTHONWARNINGS=error``), unless the
    environment already sets ``PYTHONWARNINGS``.

    Parameters
    ----------
    build_dir : pathlib.Path
        A build folder from :func:`build_cocotb`.
    toplevel : str
        Name of the top-level module.
    test_module : str
        Dotted name of the module with the ``@cocotb.test`` functions; must be importable here.
    test_dir : pathlib.Path, optional
        Folder to run in, which receives ``results.xml`` and waveforms. Defaults to a folder under
        *build_dir* named after the module, the selection and the xdist worker; runs in one folder
        (from two test sessions at once) take turns.
    testcase : str or sequence of str, optional
        Run only these tests. An explicitly selected test runs even if it is marked
        ``skip=True``, which is how deliberately failing controls are kept out of normal runs.
    seed : int or None, optional
        Seed of cocotb's :mod:`random`; fixed by default so runs are reproducible. ``None`` lets
        cocotb pick one from the time.
    extra_env : mapping of str to str, optional
        Extra environment variables for the simulator. cocotb lets :data:`os.environ` override
        these, so they can only add variables, not change existing ones.
    waves : bool, optional
        Write ``dump.vcd`` into *test_dir*; the build must have been made with ``waves=True``.
    plusargs : sequence of str, optional
        ``+plusargs`` for the simulator.

    Returns
    -------
    CocotbResult
        The results file and the names of the passed and skipped tests.

    Raises
    ------
    FileNotFoundError
        If *build_dir* holds no simulator binary for *toplevel*.
    ModuleNotFoundError
        If *test_module* cannot be imported from this process.
    AssertionError
        If any cocotb test failed or errored (the message names each one and its error), if the
        simulator exited abnormally, or if no test ran at all.
    """
    __tracebackhide__ = True  # pytest shows the failed cocotb tests, not this function's body
    _check_identifier("Top-level name", toplevel)
    build_dir = Path(build_dir).resolve()
    if not (build_dir / toplevel).is_file():
        raise FileNotFoundError(
            f"{build_dir} holds no simulator binary {toplevel!r}; make it with build_cocotb()"
        )
    if importlib.util.find_spec(test_module) is None:
        raise ModuleNotFoundError(
            f"cocotb test module {test_module!r} is not importable from this process; the "
            f"simulator imports it by name using this process's sys.path",
            name=test_module,
        )
    test_dir = (
        _default_test_dir(build_dir, test_module, testcase)
        if test_dir is None
        else Path(test_dir).resolve()
    )
    test_dir.mkdir(parents=True, exist_ok=True)
    results_xml = test_dir / "results.xml"
    # Another session's run in the same folder waits; and the results read are this run's, not
    # a file an earlier run left (a simulator that dies before writing one must not pass; cocotb
    # removes the old file too, which this does not rely on).
    with _locked(test_dir / ".lock"):
        results_xml.unlink(missing_ok=True)

        # The runner copies os.environ over extra_env and takes PYTHONPATH from sys.path, so the
        # tool locations must be right in this process's environment itself.
        prepare_environment()
        env = {"PYTHONWARNINGS": "error", **(extra_env or {})}
        runner = get_runner("verilator")
        abnormal_exit = None
        try:
            runner.test(
                test_module=test_module,
                hdl_toplevel=toplevel,
                hdl_toplevel_lang="verilog",
                testcase=testcase,
                seed=seed,
                extra_env=env,
                waves=waves,
                plusargs=list(plusargs),
                build_dir=build_dir,
                test_dir=test_dir,
                results_xml=str(results_xml),
            )
        except (SystemExit, RuntimeError) as exc:
            # cocotb reports failed tests with sys.exit() under pytest, and a simulator that exits
            # non-zero with RuntimeError; judge by the results file, which names the tests.
            abnormal_exit = f"{type(exc).__name__}: {exc}"

        if not results_xml.is_file():
            raise AssertionError(
                f"cocotb run of {test_module} on {toplevel} wrote no results file "
                f"({abnormal_exit or 'simulator exited normally'}); see the simulator output "
                f"above. If it shows ModuleNotFoundError, the module may be reachable here only "
                f"through a relative sys.path entry, which the simulator resolves against "
                f"{test_dir}"
            )
        passed, skipped, failed = _parse_results(results_xml)
    if failed:
        raise AssertionError(
            f"{len(failed)} of {len(passed) + len(skipped) + len(failed)} cocotb test(s) failed "
            f"in {test_module} on {toplevel}:\n" + "\n".join(f"  - {line}" for line in failed)
        )
    if abnormal_exit:
        raise AssertionError(
            f"simulator run of {test_module} on {toplevel} ended abnormally ({abnormal_exit}), "
            f"though no cocotb test reported a failure; see the simulator output above"
        )
    if not passed:
        raise AssertionError(
            f"no cocotb test ran in {test_module} on {toplevel} "
            f"(selection {testcase!r}, skipped {skipped})"
        )
    return CocotbResult(results_xml, tuple(passed), tuple(skipped))
