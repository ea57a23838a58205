"""The send queue shared by the source bus models (:class:`~.cocotb_core.CommandSource`,
:class:`~.cocotb_uart.UartSource`).

A source queues items (stream payloads, UART bytes) without waiting, and a background task of
its own takes them in order and puts them on its port. This base class holds the queue and the
"idle" state: nothing queued and nothing on the port. A subclass's task sets ``_active`` while
an item is on the port, and sets ``_idle`` when it finds the queue empty with nothing on it.
"""

from __future__ import annotations

from cocotb.queue import Queue
from cocotb.triggers import Event

__all__ = ["QueuedSource"]


class QueuedSource:
    """A queue of items to send, with the state a testbench waits on."""

    def __init__(self):
        self._queue: Queue[int] = Queue()
        self._idle = Event()
        self._idle.set()
        self._active = False

    def _put(self, items) -> None:
        items = list(items)
        if items:
            self._idle.clear()
        for item in items:
            self._queue.put_nowait(item)

    def count(self) -> int:
        """Items queued and not yet on the port."""
        return self._queue.qsize()

    def empty(self) -> bool:
        """Nothing is queued (an item may still be on the port)."""
        return self._queue.empty()

    def idle(self) -> bool:
        """Nothing is queued and nothing is on the port."""
        return self.empty() and not self._active

    def clear(self) -> None:
        """Drop every queued item (one already on the port still completes)."""
        while not self._queue.empty():
            self._queue.get_nowait()

    async def wait(self) -> None:
        """Wait until every queued item has left the port (for a UART, stop bits included)."""
        await self._idle.wait()
