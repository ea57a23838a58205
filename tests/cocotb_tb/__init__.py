"""cocotb test modules, run inside the simulator by the pytest wrappers in ``tests/``.

Each module is passed to :func:`plasticore.sim.build.run_cocotb` by its importable name (take
``module.__name__`` after importing it, rather than spelling the dotted path). Module names do
not start with ``test_``, so pytest does not collect them; and this package is not called
``cocotb``, because ``tests/`` is on :data:`sys.path` and would shadow the real package.
"""
