"""The ECP5 PLL (EHXPLLL): the formulas, a solver for exact frequencies, and the instance.

Ref: Lattice, "ECP5 and ECP5-5G sysCLOCK PLL/DLL Design and User Guide", FPGA-TN-02200 (TN1263);
Project Trellis ``ecppll`` (``libtrellis/tools/ecppll.cpp``), whose limits and search this module
follows.

The formulas
------------
With the feedback taken from CLKOP (``FEEDBK_PATH="CLKOP"``)::

    f_PFD   = f_CLKI / CLKI_DIV                    3.125 MHz .. 400 MHz
    f_CLKOP = f_PFD * CLKFB_DIV                    10 MHz .. 400 MHz  (the feedback clock)
    f_VCO   = f_CLKOP * CLKOP_DIV                  400 MHz .. 800 MHz
    f_CLKOS = f_VCO / CLKOS_DIV                    the clock the design uses

This is ``ecppll --highres``: the secondary output divides the VCO, so its frequency need not be
``f_CLKI * CLKFB_DIV / CLKI_DIV``. The ULX3S has a 25 MHz oscillator and 3 Mbaud needs a clock
that is a multiple of 3 MHz. 48 MHz, for example, cannot come from CLKOP (``48 / 25`` needs
``CLKI_DIV = 25``, a 1 MHz PFD, below the 3.125 MHz minimum) but comes exactly from CLKOS::

    f_PFD = 25 MHz / 5 = 5 MHz;  f_CLKOP = 5 MHz * 2 = 10 MHz;  f_VCO = 10 MHz * 48 = 480 MHz;
    f_CLKOS = 480 MHz / 10 = 48 MHz                          (3 Mbaud: 16 cycles per bit)

The clocks the boards use (``plasticore.boards.targets`` says why not 48 MHz)::

    24 MHz: CLKI_DIV 1, CLKFB_DIV 1, CLKOP_DIV 24: f_PFD = f_CLKOP = 25 MHz, f_VCO = 600 MHz,
            CLKOS_DIV 25                                     (8 cycles per bit)
    21 MHz: CLKI_DIV 5, CLKFB_DIV 2, CLKOP_DIV 63: f_PFD = 5 MHz, f_CLKOP = 10 MHz,
            f_VCO = 630 MHz, CLKOS_DIV 30                    (7 cycles per bit)

``yowasp-ecppll -i 25 -o F --highres`` gives the same dividers for each (``tests/test_boards.py``
runs it). The phase settings (``CLKOP_CPHASE = 9``, ``CLKOS_CPHASE = 0``, ``FPHASE = 0``) are
the ones it writes; they shift phases only, not frequencies, and nothing here needs the PLL's
outputs aligned with its input (the power-on reset crosses into the PLL's domain through a reset
synchronizer).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

from amaranth.hdl import Instance, Signal

__all__ = ["EHXPLLLParams", "solve_highres", "ehxplll"]

#: Limits, in Hz, from ecppll.cpp (PFD_MIN/MAX, VCO_MIN/MAX, OUTPUT_MIN/MAX).
PFD_RANGE = (3_125_000, 400_000_000)
VCO_RANGE = (400_000_000, 800_000_000)
OUTPUT_RANGE = (10_000_000, 400_000_000)
#: Divider ranges searched (ecppll searches CLKFB_DIV up to 80).
CLKI_DIVS = range(1, 129)
CLKFB_DIVS = range(1, 81)
OUTPUT_DIVS = range(1, 129)


@dataclasses.dataclass(frozen=True)
class EHXPLLLParams:
    """The dividers and phases of an EHXPLLL whose CLKOS is the output, with CLKOP as feedback.

    Attributes
    ----------
    clki_div, clkfb_div, clkop_div, clkos_div : int
    clkop_cphase, clkos_cphase : int
        Coarse phase settings, as ``ecppll --highres`` writes them.
    """

    clki_div: int
    clkfb_div: int
    clkop_div: int
    clkos_div: int
    clkop_cphase: int = 9
    clkos_cphase: int = 0

    def frequencies(self, f_in: int) -> dict[str, Fraction]:
        """``{"pfd", "clkop", "vco", "clkos"}`` in Hz, exactly, for an input of ``f_in`` Hz."""
        pfd = Fraction(f_in, self.clki_div)
        clkop = pfd * self.clkfb_div
        vco = clkop * self.clkop_div
        return {"pfd": pfd, "clkop": clkop, "vco": vco, "clkos": vco / self.clkos_div}

    def check(self, f_in: int) -> Fraction:
        """Return the output frequency (Hz) for ``f_in``; raise ``ValueError`` if a divider or
        an internal frequency is outside the EHXPLLL's limits."""
        for name, value, allowed in (("CLKI_DIV", self.clki_div, CLKI_DIVS),
                                     ("CLKFB_DIV", self.clkfb_div, CLKFB_DIVS),
                                     ("CLKOP_DIV", self.clkop_div, OUTPUT_DIVS),
                                     ("CLKOS_DIV", self.clkos_div, OUTPUT_DIVS)):
            if value not in allowed:
                raise ValueError(f"{name} = {value} is outside {allowed.start}..{allowed.stop - 1}")
        f = self.frequencies(f_in)
        for name, key, (lo, hi) in (("PFD", "pfd", PFD_RANGE), ("VCO", "vco", VCO_RANGE),
                                    ("CLKOP (feedback)", "clkop", OUTPUT_RANGE),
                                    ("CLKOS", "clkos", OUTPUT_RANGE)):
            if not lo <= f[key] <= hi:
                raise ValueError(f"{name} frequency {float(f[key]) / 1e6:g} MHz is outside "
                                 f"{lo / 1e6:g}..{hi / 1e6:g} MHz")
        return f["clkos"]


def solve_highres(f_in: int, f_out: int) -> EHXPLLLParams:
    """The dividers that make exactly ``f_out`` from ``f_in`` (both in Hz) on CLKOS.

    The search is ecppll's ``--highres`` search, in exact arithmetic and for exact solutions
    only: loops over CLKI_DIV, CLKFB_DIV, CLKOP_DIV and CLKOS_DIV in increasing order, keeping
    the first solution and replacing it only by one whose VCO is strictly closer to 600 MHz.

    Raises
    ------
    ValueError
        If no divider setting gives ``f_out`` exactly.
    """
    best, best_distance = None, None
    for clki_div in CLKI_DIVS:
        pfd = Fraction(f_in, clki_div)
        if not PFD_RANGE[0] <= pfd <= PFD_RANGE[1]:
            continue
        for clkfb_div in CLKFB_DIVS:
            clkop = pfd * clkfb_div
            if not OUTPUT_RANGE[0] <= clkop <= OUTPUT_RANGE[1]:
                continue
            for clkop_div in OUTPUT_DIVS:
                vco = clkop * clkop_div
                if not VCO_RANGE[0] <= vco <= VCO_RANGE[1]:
                    continue
                clkos_div = vco / f_out
                if clkos_div.denominator != 1 or int(clkos_div) not in OUTPUT_DIVS:
                    continue
                distance = abs(vco - 600_000_000)
                if best is None or distance < best_distance:
                    best = EHXPLLLParams(clki_div, clkfb_div, clkop_div, int(clkos_div))
                    best_distance = distance
    if best is None:
        raise ValueError(f"no EHXPLLL setting makes exactly {f_out / 1e6:g} MHz from "
                         f"{f_in / 1e6:g} MHz")
    return best


def ehxplll(params: EHXPLLLParams, f_in: int, clk_in, clk_out, locked) -> Instance:
    """An EHXPLLL instance: ``clk_in`` (``f_in`` Hz) in, ``clk_out`` (CLKOS) and ``locked`` out.

    The frequency attributes let nextpnr derive the output clock's constraint; the loop-filter
    attributes are the ones ecppll writes.
    """
    f_out = params.check(f_in)
    feedback = Signal(name="pll_feedback")

    def mhz(value):
        return f"{float(value) / 1e6:g}"

    return Instance(
        "EHXPLLL",
        a_FREQUENCY_PIN_CLKI=mhz(f_in), a_FREQUENCY_PIN_CLKOS=mhz(f_out),
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
        a_MFG_GMCREF_SEL="2",
        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
        p_DPHASE_SOURCE="DISABLED",
        p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB", p_OUTDIVIDER_MUXC="DIVC",
        p_OUTDIVIDER_MUXD="DIVD",
        p_CLKI_DIV=params.clki_div,
        p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=params.clkop_div,
        p_CLKOP_CPHASE=params.clkop_cphase, p_CLKOP_FPHASE=0,
        p_CLKOS_ENABLE="ENABLED", p_CLKOS_DIV=params.clkos_div,
        p_CLKOS_CPHASE=params.clkos_cphase, p_CLKOS_FPHASE=0,
        p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=params.clkfb_div,
        i_RST=0, i_STDBY=0, i_CLKI=clk_in, o_CLKOP=feedback, i_CLKFB=feedback,
        o_CLKOS=clk_out,
        i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
        i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked,
    )
