from plasticore.sim.toolchain import prepare_environment

# Before any cocotb runner exists: the runner finds verilator on PATH, and copies os.environ over
# any per-test environment, so this process's own environment must already be right.
prepare_environment()
