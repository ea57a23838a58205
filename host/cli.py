"""The ``plasticore`` command: a thin layer over the host library.

    plasticore info --port PORT    identify a running core (a board, or a virtual board's port)
    plasticore vboard              start a virtual board and print the port to open
    plasticore demo [--backend B]  the quick-start demo
"""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["main"]


def _info(args) -> int:
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
    print(f"state           tick {status.t}, {'running' if status.running else 'idle'}")
    print(f"losses          {status.rx_overflows} receive overflows, {status.framing_errors} "
          f"framing errors, {status.bad_frames} refused frames")
    return 0


def _vboard(args) -> int:
    from ..hdl.soc import SoC
    from ..sim.vboard import VirtualBoard, build_virtual_board
    from .sim_backend import VIRTUAL_BOARD

    settings = dict(VIRTUAL_BOARD)
    config = settings.pop("config")
    print("building the virtual board (cached after the first time)...", flush=True)
    executable = build_virtual_board(SoC(config, **settings), "vboard_cli",
                                     divisor=settings["divisor"])
    with VirtualBoard(executable) as board:
        print(f"virtual board running on {board.port}")
        print(f"  open it with Device({board.port!r}) or plasticore info --port {board.port}")
        print("  Ctrl-C stops it", flush=True)
        try:
            while board.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


def _demo(args) -> int:
    from . import demo
    return demo.main(["--backend", args.backend])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="plasticore", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="identify a running core")
    info.add_argument("--port", required=True, help="serial port, pty path or socket:// URL")
    info.add_argument("--baud", type=int, default=3_000_000, help="baud rate (default 3000000)")
    info.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for a reply")
    info.set_defaults(run=_info)

    vboard = commands.add_parser("vboard", help="start a virtual board and print its port")
    vboard.set_defaults(run=_vboard)

    demo = commands.add_parser("demo", help="run the quick-start demo")
    demo.add_argument("--backend", default="model", help="model, sim, or a port")
    demo.set_defaults(run=_demo)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
