"""The "sim" backend: the virtual board, reached over the link protocol like a real board.

The whole SoC (core, command engine, UART) is built with Verilator on first use (and cached by
content hash), started behind a pseudo-terminal, and driven through the same
:class:`~plasticore.host.link_backend.LinkBackend` that drives a board on a serial port: the same
protocol bits cross the same UART.
"""

from __future__ import annotations

from ..config import CoreConfig
from .link_backend import LinkBackend
from .transport import SerialTransport

__all__ = ["SimBackend", "VIRTUAL_BOARD", "build_executable"]

#: The virtual board's defaults: the iCEBreaker's sizes (iCE40UP5K: 256 neurons, 64k synapses in
#: single-ported SPRAM, one bank) at its clock and UART divisor (12 MHz, 3 Mbaud), with every
#: optional part (the iCEBreaker's own build leaves out pacing, the winner-take-all pool and the
#: adaptive threshold to fit its logic cells: ``docs/boards.md``).
VIRTUAL_BOARD = dict(config=CoreConfig(n_inputs=128, n_neurons=256, n_recurrent=128), banks=1,
                     memory="spram", hash_rounds_per_stage=4, clock_hz=12_000_000, divisor=4)


#: The optional parts and options a virtual board may be built with or without (SoC defaults:
#: all built, counters instrumented).
_SOC_FLAGS = ("instrument", "trace_list", "paced", "wta", "adaptive_threshold")


def build_executable(config: CoreConfig | None = None, *, board: str | None = None,
                     **soc_args):
    """Build (or find in the cache) a virtual board's executable; returns its path.

    ``board`` names a board (``"icebreaker"``, ``"ulx3s-85f"``, ...): the very SoC its bitstream
    is built from (``plasticore.boards.targets.Board.build_soc``), with that board's sizes,
    optional parts, clock and divisor. Otherwise the SoC is :data:`VIRTUAL_BOARD`'s, with
    ``config`` and ``soc_args`` (``banks``, ``memory``, ``hash_rounds_per_stage``,
    ``clock_hz``, ``divisor``, and the flags ``instrument``, ``trace_list``, ``paced``, ``wta``,
    ``adaptive_threshold``) changing it.
    """
    from ..hdl.soc import SoC
    from ..sim.vboard import build_virtual_board

    if board is not None:
        if config is not None or soc_args:
            raise TypeError(f"board={board!r} is a whole SoC; it takes no config or SoC "
                            f"arguments (got {sorted(soc_args) or 'config'})")
        from ..boards.targets import board_named
        target = board_named(board)
        return build_virtual_board(target.build_soc(), "vboard_" + target.name.replace("-", "_"),
                                   divisor=target.divisor)
    args = dict(VIRTUAL_BOARD)
    if config is not None:
        args["config"] = config
    unknown = set(soc_args) - set(args) - set(_SOC_FLAGS)
    if unknown:
        raise TypeError(f"unknown SoC arguments {sorted(unknown)}; "
                        f"known: {sorted((set(args) | set(_SOC_FLAGS)) - {'config'})}")
    args.update(soc_args)
    cfg = args.pop("config")
    if not isinstance(cfg, CoreConfig):
        raise TypeError(f"config must be a CoreConfig, not {cfg!r}")
    name = (f"vboard_{cfg.n_inputs}_{cfg.n_neurons}_{cfg.n_recurrent}"
            f"_b{args['banks']}_{args['memory']}")
    return build_virtual_board(SoC(cfg, **args), name, divisor=args["divisor"])


class SimBackend(LinkBackend):
    """A virtual board, started on construction and stopped by :meth:`close`.

    Parameters
    ----------
    config : CoreConfig, optional
        The core's sizes (default: the iCEBreaker's, :data:`VIRTUAL_BOARD`); they must be
        multiples of ``banks``.
    board : str, optional
        Simulate this board's own SoC instead (``"icebreaker"``: its sizes and clock, without
        the optional parts it leaves out), to try code on it before flashing; see
        :func:`build_executable`.
    timeout : float
        Seconds to wait for each reply; the simulation is slower than a board.
    start_timeout : float
        Seconds to wait for the board to start (after it is built).
    **soc_args
        ``banks``, ``memory``, ``hash_rounds_per_stage``, ``clock_hz``, ``divisor`` and the
        optional parts' flags, passed to :class:`~plasticore.hdl.soc.SoC` (defaults from
        :data:`VIRTUAL_BOARD`, every part built).
    """

    def __init__(self, config: CoreConfig | None = None, *, board: str | None = None,
                 timeout: float = 20.0, start_timeout: float = 30.0, **soc_args):
        from ..sim.vboard import VirtualBoard

        executable = build_executable(config, board=board, **soc_args)
        self._board = VirtualBoard(executable, start_timeout=start_timeout)
        self._board.start()
        try:
            super().__init__(SerialTransport(self._board.port, timeout=timeout), timeout=timeout)
        except BaseException:
            self._board.stop()
            raise

    @property
    def board(self):
        """The running :class:`~plasticore.sim.vboard.VirtualBoard`."""
        return self._board

    def __repr__(self) -> str:
        return f"SimBackend({self._board.port!r})"

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self._board.stop()
