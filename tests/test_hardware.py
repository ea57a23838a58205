"""On a real board: the end-to-end test of ``tests/test_sim_backend.py``, on ``Device(port)``.

Runs only when the environment names the board and its serial port, for example::

    PLASTICORE_BOARD=icebreaker PLASTICORE_PORT=/dev/ttyUSB1 \\
        .venv/bin/python -m pytest tests/test_hardware.py -q

With ``PLASTICORE_FLASH=1`` it first builds the board's bitstream (cached) and loads it into the
FPGA's SRAM. The network, the stimulus and the run are ``test_sim_backend``'s own (its ``run``
helper), with learning on; every spike, membrane potential, synapse field, neuron state and
counter must be the same on the board as on the golden model of the board's core.
"""

import os
import time

import pytest

from plasticore.host.link import Link
from plasticore.host.transport import SerialTransport
from test_sim_backend import assert_same, run

BOARD = os.environ.get("PLASTICORE_BOARD", "")
PORT = os.environ.get("PLASTICORE_PORT", "")
FLASH = os.environ.get("PLASTICORE_FLASH", "") not in ("", "0")

pytestmark = pytest.mark.skipif(
    not (BOARD and PORT),
    reason="no board: set PLASTICORE_BOARD (icebreaker, ulx3s-12f, ulx3s-25f, ulx3s-45f, "
           "ulx3s-85f) and PLASTICORE_PORT (its serial port, e.g. /dev/ttyUSB1); "
           "PLASTICORE_FLASH=1 programs it first")


@pytest.fixture(scope="module")
def board():
    from plasticore.boards.build import build
    from plasticore.boards.flash import flash
    from plasticore.boards.targets import board_named

    board = board_named(BOARD)
    if FLASH:
        flash(board, build(board, progress=print).bitstream, progress=print)
        time.sleep(1.0)        # configuration, PLL lock and the power-on reset
    return board


def test_board_identifies_as_its_build(board):
    with Link(SerialTransport(PORT, board.baud, timeout=2.0), timeout=2.0) as link:
        info = link.identify()
        status = link.status()
    config = board.preset.config
    assert (info.n_inputs, info.n_neurons, info.n_recurrent, info.banks) == (
        config.n_inputs, config.n_neurons, config.n_recurrent, board.preset.banks)
    assert (info.clock_hz, info.baud_divisor) == (board.clock_hz, board.divisor)
    assert status.framing_errors == 0 and status.rx_overflows == 0


def test_board_and_model_agree_bit_for_bit_with_learning_on(board):
    # Without the parts the board's core leaves out (the iCEBreaker's: docs/boards.md).
    network = dict(wta=board.preset.wta, th_plus=30 if board.preset.adaptive_threshold else 0)
    assert_same(run("model", board.preset.config, **network), run(PORT, None, **network))
