"""The whole SoC in Verilator under cocotb, driven only through its UART pins.

The cocotb module ``tests/cocotb_tb/soc_link.py`` does the work: UART bus functional models at
the production divisor (4 cycles per bit, the iCEBreaker's 3 Mbaud at 12 MHz) on ``uart_rx``
and ``uart_tx``, every frame compared byte for byte with :class:`~plasticore.sim.link_model.
ModelPeer`. The functions here build the SoC once (a small core: 8 inputs, 8 neurons, 4
recurrent, one SPRAM bank, as the virtual board's small configuration) and run the module in two
groups of about equal length, so that pytest-xdist runs them side by side. The build is cached by
content hash (``sim`` in :func:`plasticore.cache_root`) (:func:`~plasticore.sim.build.build_cocotb`).
"""

import json
import os
from pathlib import Path

import pytest

from plasticore import cache_root
from plasticore.config import CoreConfig
from plasticore.hdl.core import Space
from plasticore.hdl.soc import SoC
from plasticore.sim.build import build_cocotb, run_cocotb, write_verilog

from cocotb_tb import soc_link

BUILD_ROOT = cache_root() / "sim"
TOP = "soc"
CONFIG = CoreConfig(n_inputs=8, n_neurons=8, n_recurrent=4)
SOC_ARGS = dict(banks=1, memory="spram", hash_rounds_per_stage=4, clock_hz=12_000_000,
                divisor=4, rx_fifo_depth=512, tx_fifo_depth=512, queue_depth=256)

#: As the core's cocotb build (``tests/test_hdl_core_cocotb.py``, which explains each one).
BUILD_ARGS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNSIGNED", "-Wno-CMPCONST",
              "--output-split", "0", "-CFLAGS", "-O1")


def _names(base, option, values):
    return {f"{base}/{option}={value}" for value in values}


#: The cocotb tests of each group, by full name.
GROUPS = {
    "link": (
        _names("identify_matches_the_configuration", "seq", (0, 192, 219, 255))
        | {f"write_then_read_round_trips/space={space.name}/payload={payload}"
           for space in (Space.REG, Space.SYN, Space.NPARAM, Space.NSTATE, Space.SOURCE,
                         Space.STATUS) for payload in ("random", "stuffing")}
        | _names("refused_commands_change_nothing", "kind", soc_link.ERROR_CLASSES)
        | {"register_writes_beyond_the_shift_limit_are_accepted"}
    ),
    "runs": (
        _names("run_tick_frames_equal_the_model", "case", soc_link.RUN_MODES)
        | _names("stop_ends_a_run_until_stop", "waiting", (False, True))
        | _names("framing_error_is_counted_and_the_link_recovers", "where",
                 ("between", "inside", "break"))
        | _names("host_clock_two_percent_off", "baud_error", (0.02, -0.02))
    ),
}


@pytest.fixture(scope="module")
def soc_build():
    soc = SoC(CONFIG, **SOC_ARGS)
    return build_cocotb(write_verilog(soc, TOP, BUILD_ROOT), TOP, build_args=BUILD_ARGS)


def soc_env(group) -> dict:
    parameters = dict(
        n_inputs=CONFIG.n_inputs, n_neurons=CONFIG.n_neurons, n_recurrent=CONFIG.n_recurrent,
        banks=SOC_ARGS["banks"], spram=SOC_ARGS["memory"] == "spram",
        clock_hz=SOC_ARGS["clock_hz"], divisor=SOC_ARGS["divisor"],
        queue_depth=SOC_ARGS["queue_depth"], rx_buffer=SOC_ARGS["rx_fifo_depth"])
    bases = sorted({name.split("/")[0] for name in GROUPS[group]})
    # run_cocotb's `testcase` matches whole names only; a filter selects every parametrisation.
    return {"PLASTICORE_SOC": json.dumps(parameters),
            "COCOTB_TEST_FILTER": rf"\.({'|'.join(bases)})(/|$)"}


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_soc_through_the_uart(soc_build, group):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    result = run_cocotb(soc_build, TOP, soc_link.__name__, extra_env=soc_env(group),
                        test_dir=soc_build / "runs" / f"soc_link.{group}.{worker}")
    prefix = soc_link.__name__ + "."
    assert {name.removeprefix(prefix) for name in result.passed} == GROUPS[group]
    assert not result.skipped
