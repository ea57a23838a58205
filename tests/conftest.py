from hypothesis import HealthCheck, settings

from plasticore.sim.toolchain import prepare_environment

# Before any cocotb runner exists: the runner finds verilator on PATH, and copies os.environ over
# any per-test environment, so this process's own environment must already be right.
prepare_environment()

# Hypothesis's per-example deadline and its too-slow check measure wall-clock time, which a busy
# machine (two pytest workers beside Verilator compiles) stretches; they would fail tests for
# the machine's load, not for the code. A test's own @settings still override this profile.
settings.register_profile("plasticore", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("plasticore")
