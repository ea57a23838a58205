"""The boards plasticore builds bitstreams for, and what each one runs.

==========  =========  ======  ========  =======================  ===================
board       FPGA       clock   preset    UART                     openFPGALoader
==========  =========  ======  ========  =======================  ===================
icebreaker  iCE40UP5K  12 MHz  UP5K      3 Mbaud, 4 cycles a bit  ``-b ice40_generic``
ulx3s-12f   LFE5U-12F  24 MHz  ECP5_25F  3 Mbaud, 8 cycles a bit  ``-b ulx3s``
ulx3s-25f   LFE5U-25F  24 MHz  ECP5_25F  3 Mbaud, 8 cycles a bit  ``-b ulx3s``
ulx3s-45f   LFE5U-45F  24 MHz  ECP5_45F  3 Mbaud, 8 cycles a bit  ``-b ulx3s``
ulx3s-85f   LFE5U-85F  21 MHz  ECP5_85F  3 Mbaud, 7 cycles a bit  ``-b ulx3s``
==========  =========  ======  ========  =======================  ===================

The iCEBreaker runs from its 12 MHz oscillator, where 3 Mbaud is exactly 4 cycles per bit. The
ULX3S has a 25 MHz oscillator, where 3 Mbaud would be 8.33 cycles per bit (4% off): an EHXPLLL
(:mod:`.pll`) makes a multiple of 3 MHz. 48 MHz (16 cycles per bit) was the first choice, but
the core's neuron update (neuron state read, two multiplies, the winner-take-all compare and the
state write, in one cycle) reached only 29.05 MHz on the 25F and 25.03 MHz on the 85F (nextpnr
0.11.1, seed 1, constrained to 48 MHz). So the 12F, 25F and 45F run at 24 MHz (8 cycles per bit)
and the 85F, whose memories spread over a larger die, at 21 MHz (7 cycles per bit), with
margins that survive small changes to the core (``docs/boards.md`` has the Fmax of each). The
LFE5U-12F is a 25F die, and nextpnr (like Amaranth) gives it the 25F's resources, so both boards
run the 25F preset. (Lattice's data sheet lists 12K LUT4 and 32 EBR for the 12F; the 12F
bitstream uses 56 EBR, which nextpnr allows. Not yet tried on a 12F board.)

LEDs: iCEBreaker: heartbeat on the green LED (``led 1``), error on the red one (``led 0``), a run
in progress on the break-off section's LED at PMOD2 pin 7 (``led 2``). ULX3S: heartbeat on LED 0,
running on LED 1, error on LED 7.
"""

from __future__ import annotations

import dataclasses

from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import (ULX3S_12F_Platform, ULX3S_25F_Platform, ULX3S_45F_Platform,
                                   ULX3S_85F_Platform)

from ..hdl import presets
from ..hdl.presets import CorePreset
from ..hdl.soc import SoC

__all__ = ["Board", "BOARDS", "board_named"]

#: The link's baud rate on every board.
BAUD = 3_000_000


@dataclasses.dataclass(frozen=True)
class Board:
    """One board: its platform, the core it runs and how it is clocked and programmed.

    Attributes
    ----------
    name : str
        The name on the command line (``plasticore build --board NAME``).
    title : str
        For tables: ``"iCEBreaker"``, ``"ULX3S-85F"``.
    platform_class : type
        The amaranth-boards platform.
    preset : CorePreset
    clock_hz : int
        The clock the SoC runs on (and reports in IDENTIFY).
    divisor : int
        Clock cycles per UART bit: ``clock_hz / BAUD`` exactly.
    oscillator, oscillator_hz
        The platform's clock resource and its frequency; a PLL makes ``clock_hz`` from it
        when they differ.
    leds : dict
        ``{"heartbeat" | "running" | "error": (resource name, number)}``.
    loader_board : str
        openFPGALoader's ``-b`` name.
    bitstream : str
        The file that is programmed (``top.bin`` on iCE40, ``top.bit`` on ECP5).
    """

    name: str
    title: str
    platform_class: type
    preset: CorePreset
    clock_hz: int
    oscillator: str
    oscillator_hz: int
    leds: dict
    loader_board: str
    extra_resources: str | None = None

    def __post_init__(self):
        if self.clock_hz % BAUD:
            raise ValueError(f"{self.name}: {self.clock_hz} Hz is not a whole number of cycles "
                             f"per bit at {BAUD} baud")

    @property
    def family(self) -> str:
        return self.preset.family

    @property
    def device(self) -> str:
        return self.platform_class.device

    @property
    def divisor(self) -> int:
        return self.clock_hz // BAUD

    @property
    def baud(self) -> int:
        return self.clock_hz // self.divisor

    @property
    def bitstream(self) -> str:
        return "top.bin" if self.family == "ice40" else "top.bit"

    def platform(self):
        """A new platform instance (with the board's extra resources added)."""
        platform = self.platform_class()
        if self.extra_resources:
            platform.add_resources(getattr(platform, self.extra_resources))
        return platform

    def build_soc(self) -> SoC:
        """The SoC this board runs: :meth:`CorePreset.build_soc()
        <plasticore.hdl.presets.CorePreset.build_soc>` of its preset (with the optional parts
        the preset builds) at the board's clock and divisor."""
        return self.preset.build_soc(divisor=self.divisor, clock_hz=self.clock_hz)

    def build_top(self):
        """A new :class:`~.top.BoardTop` around a new :meth:`build_soc`."""
        from .top import BoardTop
        return BoardTop(self, self.build_soc())


_ULX3S_LEDS = {"heartbeat": ("led", 0), "running": ("led", 1), "error": ("led", 7)}


def _ulx3s(size: str, platform_class: type, preset: CorePreset, clock_hz: int) -> Board:
    return Board(name=f"ulx3s-{size.lower()}", title=f"ULX3S-{size}",
                 platform_class=platform_class, preset=preset, clock_hz=clock_hz,
                 oscillator="clk25", oscillator_hz=25_000_000, leds=_ULX3S_LEDS,
                 loader_board="ulx3s")


#: Every board, by name.
BOARDS: dict[str, Board] = {board.name: board for board in (
    Board(name="icebreaker", title="iCEBreaker", platform_class=ICEBreakerPlatform,
          preset=presets.UP5K, clock_hz=12_000_000, oscillator="clk12",
          oscillator_hz=12_000_000,
          leds={"heartbeat": ("led", 1), "running": ("led", 2), "error": ("led", 0)},
          loader_board="ice40_generic", extra_resources="break_off_pmod"),
    _ulx3s("12F", ULX3S_12F_Platform, presets.ECP5_25F, 24_000_000),
    _ulx3s("25F", ULX3S_25F_Platform, presets.ECP5_25F, 24_000_000),
    _ulx3s("45F", ULX3S_45F_Platform, presets.ECP5_45F, 24_000_000),
    _ulx3s("85F", ULX3S_85F_Platform, presets.ECP5_85F, 21_000_000),
)}


def board_named(name: str) -> Board:
    """The board called ``name``; ``ValueError`` naming the boards if there is none."""
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; boards are {', '.join(BOARDS)}") from None
