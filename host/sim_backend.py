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

__all__ = ["SimBackend", "VIRTUAL_BOARD"]

#: The virtual board's defaults: the iCEBreaker's sizes (iCE40UP5K: 256 neurons, 64k synapses in
#: single-ported SPRAM, one bank) at its clock and UART divisor (12 MHz, 3 Mbaud), with every
#: optional part (the iCEBreaker's own build leaves out pacing, the winner-take-all pool and the
#: adaptive threshold to fit its logic cells: ``docs/boards.md``).
VIRTUAL_BOARD = dict(config=CoreConfig(n_inputs=128, n_neurons=256, n_recurrent=128), banks=1,
                     memory="spram", hash_rounds_per_stage=4, clock_hz=12_000_000, divisor=4)


class SimBackend(LinkBackend):
    """A virtual board, started on construction and stopped by :meth:`close`.

    Parameters
    ----------
    config : CoreConfig, optional
        The core's sizes (default: the iCEBreaker's, :data:`VIRTUAL_BOARD`); they must be
        multiples of ``banks``.
    banks, memory, hash_rounds_per_stage, clock_hz, divisor
        Passed to :class:`~plasticore.hdl.soc.SoC` (defaults from :data:`VIRTUAL_BOARD`).
    timeout : float
        Seconds to wait for each reply; the simulation is slower than a board.
    start_timeout : float
        Seconds to wait for the board to start (after it is built).
    """

    def __init__(self, config: CoreConfig | None = None, *, timeout: float = 20.0,
                 start_timeout: float = 30.0, **soc_args):
        from ..hdl.soc import SoC
        from ..sim.vboard import VirtualBoard, build_virtual_board

        args = dict(VIRTUAL_BOARD)
        if config is not None:
            args["config"] = config
        unknown = set(soc_args) - set(args)
        if unknown:
            raise TypeError(f"unknown SoC arguments {sorted(unknown)}; "
                            f"known: {sorted(set(args) - {'config'})}")
        args.update(soc_args)
        cfg = args.pop("config")
        if not isinstance(cfg, CoreConfig):
            raise TypeError(f"config must be a CoreConfig, not {cfg!r}")
        soc = SoC(cfg, **args)
        name = (f"vboard_{cfg.n_inputs}_{cfg.n_neurons}_{cfg.n_recurrent}"
                f"_b{args['banks']}_{args['memory']}")
        executable = build_virtual_board(soc, name, divisor=args["divisor"])
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
