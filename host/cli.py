"""The ``plasticore`` command: a thin layer over the host library.

    plasticore info --port PORT    identify a running core (a board, or a virtual board's port)
    plasticore vboard              start a virtual board and print the port to open
    plasticore demo [--backend B]  the quick-start demo
    plasticore build --board B     build a board's bitstream (cached; fails if timing is not met)
    plasticore flash --board B     program it into the board (SRAM; --flash for the SPI flash)

Boards: icebreaker, ulx3s-12f, ulx3s-25f, ulx3s-45f, ulx3s-85f.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _info(args) -> int:
    from ..protocol import OPTIONAL_FEATURES, Capability
    from .backend import FEATURE_NAMES
    from .link import Link, LinkException
    from .transport import SerialTransport, TransportError

    try:
        with Link(SerialTransport(args.port, args.baud, timeout=args.timeout),
                  timeout=args.timeout) as link:
            info = link.identify()
            status = link.status()
    except (TransportError, LinkException) as error:
        print(f"plasticore info: {error}", file=sys.stderr)
        return 1
    print(f"port            {args.port}")
    print(f"protocol        version {info.version}")
    print(f"core            {info.n_inputs} inputs, {info.n_neurons} neurons, "
          f"{info.n_recurrent} recurrent, {info.banks} synapse bank(s)")
    print(f"clock           {info.clock_hz / 1e6:g} MHz, UART divisor {info.baud_divisor} "
          f"({info.clock_hz / info.baud_divisor / 1e6:g} Mbaud)")
    print(f"buffers         input queue {info.queue_depth} entries, receive {info.rx_buffer} B")
    has = Capability(info.capabilities)
    parts = [FEATURE_NAMES[flag.name] for flag in OPTIONAL_FEATURES if has & flag]
    lacks = [FEATURE_NAMES[flag.name] for flag in OPTIONAL_FEATURES if not has & flag]
    print(f"optional parts  {', '.join(parts) or 'none'}"
          + (f" (built without {', '.join(lacks)})" if lacks else ""))
    memory = "single-ported (SPRAM)" if has & Capability.SPRAM else "dual-ported block RAM"
    print(f"synapse memory  {memory}")
    print(f"state           tick {status.t}, {'running' if status.running else 'idle'}")
    print(f"losses          {status.rx_overflows} receive overflows, {status.framing_errors} "
          f"framing errors, {status.bad_frames} ERROR replies (refused frames and commands)")
    return 0


def _vboard(args) -> int:
    from ..sim.vboard import VirtualBoard
    from .sim_backend import build_executable

    what = f"the {args.board} SoC" if args.board else "the virtual board"
    print(f"building {what} (cached after the first time)...", flush=True)
    executable = build_executable(board=args.board)
    with VirtualBoard(executable) as board:
        print(f"virtual board running on {board.port}")
        # The simulation is slower than a board: replies need more than a port's default 1 s.
        print(f"  open it with Device({board.port!r}, timeout=20) or plasticore info --port "
              f"{board.port}")
        print("  Ctrl-C stops it", flush=True)
        try:
            while board.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


def _demo(args) -> int:
    from . import demo
    return demo.run(args)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, not {text!r}")
    return value


def _board(name: str):
    from ..boards.targets import board_named
    return board_named(name)


def _print_build(result) -> None:
    d = result.data
    print(f"board           {d['title']} ({d['device']}), core preset {d['preset']}")
    print(f"core            {d['inputs']} inputs, {d['neurons']} neurons, {d['recurrent']} "
          f"recurrent, {d['synapses']:,} synapses in {d['banks']} bank(s)")
    print(f"clock           {d['clock_hz'] / 1e6:g} MHz, UART divisor {d['divisor']} "
          f"({d['baud'] / 1e6:g} Mbaud)")
    for name in ("LUT4", "FF", "logic cells", "block RAM", "SPRAM", "DSP"):
        used, available = d["resources"].get(name, (0, 0))
        if used or available:
            print(f"{name:<16}{used}" + (f" / {available}" if available else ""))
    if result.fmax_mhz is not None:
        print(f"Fmax            {result.fmax_mhz:.2f} MHz (target {result.target_mhz:g} MHz)")
    print(f"build time      {d['seconds']:.0f} s, seed {d['seed']}"
          f"{' (cached: nothing was rebuilt)' if result.cached else ''}")
    print(f"bitstream       {result.bitstream}")


def _build(args) -> int:
    from ..boards.build import BuildError, build

    board = _board(args.board)
    try:
        result = build(board, seed=args.seed, build_root=args.build_dir, force=args.force,
                       progress=print)
    except BuildError as error:
        print(f"plasticore build: {error}" + (f" (log: {error.log})" if error.log else ""),
              file=sys.stderr)
        return 1
    except OSError as error:
        print(f"plasticore build: {error}", file=sys.stderr)
        return 1
    _print_build(result)
    if args.report:
        from ..boards import report
        return report.main(["--build-dir", str(result.directory.parent)]
                           if args.build_dir else [])
    return 0


def _flash(args) -> int:
    from ..boards.build import BuildError, build
    from ..boards.flash import FlashError, flash

    board = _board(args.board)
    bitstream = args.bitstream
    try:
        if bitstream is None:
            bitstream = build(board, seed=args.seed, build_root=args.build_dir,
                              progress=print).bitstream
        flash(board, bitstream, to_flash=args.flash, progress=print)
    except (BuildError, FlashError, OSError) as error:
        print(f"plasticore flash: {error}", file=sys.stderr)
        return 1
    print(f"{board.title}: programmed {bitstream} into its "
          f"{'SPI flash' if args.flash else 'configuration SRAM'}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="plasticore", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="identify a running core")
    info.add_argument("--port", required=True, help="serial port, pty path or socket:// URL")
    info.add_argument("--baud", type=int, default=3_000_000, help="baud rate (default 3000000)")
    info.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for a reply")
    info.set_defaults(run=_info)

    from ..boards.targets import BOARDS

    vboard = commands.add_parser("vboard", help="start a virtual board and print its port")
    vboard.add_argument("--board", choices=list(BOARDS), default=None,
                        help="simulate this board's own SoC (its sizes, parts and clock) rather "
                             "than the full-featured virtual board")
    vboard.set_defaults(run=_vboard)

    from . import demo as demo_module

    demo = commands.add_parser("demo", help="run the quick-start demo")
    demo_module.add_arguments(demo)
    demo.set_defaults(run=_demo)

    build = commands.add_parser("build", help="build a board's bitstream (cached)")
    build.add_argument("--board", required=True, choices=list(BOARDS))
    build.add_argument("--seed", type=_seed, default=1, help="nextpnr placer seed (default 1)")
    build.add_argument("--build-dir", type=Path, default=None,
                       help="build cache root (default: boards in the cache, ~/.cache/plasticore)")
    build.add_argument("--force", action="store_true", help="build even if cached")
    build.add_argument("--report", action="store_true",
                       help="then rewrite docs/boards.md from every board's build")
    build.set_defaults(run=_build)

    flash = commands.add_parser("flash", help="program a board (builds first if needed)")
    flash.add_argument("--board", required=True, choices=list(BOARDS))
    flash.add_argument("--bitstream", type=Path, default=None,
                       help="the file to program (default: the board's cached build)")
    flash.add_argument("--flash", action="store_true",
                       help="write the SPI flash (kept over power cycles) instead of the SRAM")
    flash.add_argument("--seed", type=_seed, default=1, help="of the build to program")
    flash.add_argument("--build-dir", type=Path, default=None, help="build cache root")
    flash.set_defaults(run=_flash)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
