"""cocotb tests of the toolchain smoke design, ``SmokeCounter`` in ``tests/test_toolchain.py``.

Ports (Amaranth names members ``<stream>__<field>``): ``clk``, ``rst`` (synchronous, active
high), ``en``, and the stream ``count__payload`` (8 bits), ``count__valid``, ``count__ready``.

Inputs are driven and the stream is sampled at the falling clock edge, half a period away from
the rising edge where registers update, so no test depends on the simulator's ordering of
events at the same timestep.
"""

import itertools
import os
import sys
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

CLOCK_PERIOD_NS = 10
WIDTH = 8


class TB:
    """Clock, reset and stream sampling for ``SmokeCounter``."""

    def __init__(self, dut):
        self.dut = dut
        dut.rst.value = 1
        dut.en.value = 0
        dut.count__ready.value = 0
        Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 2, rising=False)
        self.dut.rst.value = 0

    async def transfers(self, cycles, ready=None):
        """Run *cycles* cycles, driving ``count__ready`` from the iterable *ready* (default: 1).

        Returns the payloads transferred. A transfer happens at the rising edge after a falling
        edge that sees valid and ready.
        """
        received = []
        for ready_now in itertools.islice(itertools.repeat(1) if ready is None else ready, cycles):
            await FallingEdge(self.dut.clk)
            # Writes land after this timestep, so use ready_now rather than reading ready back.
            self.dut.count__ready.value = ready_now
            if ready_now and self.dut.count__valid.value == 1:
                received.append(self.dut.count__payload.value.to_unsigned())
        return received


@cocotb.test(timeout_time=100, timeout_unit="us")
async def counts_up_and_wraps_around(dut):
    tb = TB(dut)
    await tb.reset()
    dut.en.value = 1
    received = await tb.transfers(300)
    # The first cycles only raise ready and let the output register fill.
    assert len(received) >= 290
    assert received == [i % 2**WIDTH for i in range(len(received))]
    assert received[256] == 0, "the count must wrap from 255 to 0"


@cocotb.test(timeout_time=100, timeout_unit="us")
async def holds_under_backpressure(dut):
    tb = TB(dut)
    await tb.reset()
    dut.en.value = 1
    received = await tb.transfers(200, ready=itertools.cycle([1, 1, 0, 1, 0, 0]))
    assert received == list(range(len(received)))
    assert len(received) >= 90

    dut.count__ready.value = 0
    await ClockCycles(dut.clk, 3, rising=False)
    held = dut.count__payload.value.to_unsigned()
    await ClockCycles(dut.clk, 5, rising=False)
    assert dut.count__valid.value == 1, "valid must hold until a transfer"
    assert dut.count__payload.value.to_unsigned() == held, "payload must hold until a transfer"


@cocotb.test(timeout_time=100, timeout_unit="us")
async def stops_offering_when_disabled(dut):
    tb = TB(dut)
    await tb.reset()
    dut.en.value = 1
    before = await tb.transfers(20)
    dut.en.value = 0
    # One value may still be in the output register when en falls; it is delivered, then no more.
    after = await tb.transfers(20)
    assert len(after) <= 1
    assert dut.count__valid.value == 0
    dut.en.value = 1
    resumed = await tb.transfers(20)
    assert before + after + resumed == list(range(len(before + after + resumed)))


@cocotb.test(timeout_time=10, timeout_unit="us")
async def embedded_python_is_the_venv_and_imports_plasticore(dut):
    # The simulator embeds libpython. It must run as the pytest process's interpreter and venv
    # (which the wrapper passes in), and see the editable install of this checkout, whose import
    # hook is installed by a .pth file that only site-packages processing of the venv runs.
    assert sys.version == os.environ["SMOKE_HOST_PYTHON_VERSION"]
    assert sys.prefix == os.environ["SMOKE_HOST_PYTHON_PREFIX"]
    import plasticore.sim.build

    checkout = Path(__file__).resolve().parents[2]
    assert Path(plasticore.sim.build.__file__).resolve().is_relative_to(checkout)


@cocotb.test(timeout_time=10, timeout_unit="us", skip=True)
async def expected_failure_negative_control(dut):
    """Deliberately wrong: proves a failing cocotb test fails its pytest wrapper.

    Marked ``skip`` so normal runs never count it; ``run_cocotb(testcase=...)`` selects it
    explicitly, which overrides the skip.
    """
    tb = TB(dut)
    await tb.reset()
    dut.en.value = 1
    received = await tb.transfers(20)
    # Off by one on purpose: the counter starts at 0.
    assert received[:3] == [1, 2, 3], "negative control failed, as intended"


@cocotb.test(timeout_time=10, timeout_unit="us", skip=True)
async def deprecated_call_negative_control(dut):
    """Makes a deprecated cocotb call: proves warnings are errors inside the simulator too.

    Selected only explicitly, like ``expected_failure_negative_control``.
    """
    # ``units=`` was renamed ``unit=`` in cocotb 2.0 and warns with DeprecationWarning.
    Clock(dut.clk, CLOCK_PERIOD_NS, units="ns")


@cocotb.test(timeout_time=10, timeout_unit="us", skip=True)
async def simulator_dies_negative_control(dut):
    """Ends the simulator process before cocotb writes its results: proves such a run fails its
    wrapper even where an earlier run left a results file. Selected only explicitly.
    """
    os._exit(3)
