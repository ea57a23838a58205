"""A link backend on a software peer's pseudo-terminal, for the tests.

The peer is a thread on a machine that may be busy (two pytest workers, Verilator compiles),
so replies get a generous timeout: a timeout only bounds how long a failure takes to show.
"""

from plasticore.host.link_backend import LinkBackend
from plasticore.host.transport import SerialTransport

#: Seconds to wait for each reply in tests on a pseudo-terminal.
SLOW = 10.0


def pty_board(path: str) -> LinkBackend:
    return LinkBackend(SerialTransport(path), timeout=SLOW)
