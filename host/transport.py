"""Transports: the byte pipes between the host and a core.

A :class:`Transport` moves bytes and nothing else; framing and the codec live in
:mod:`plasticore.protocol` (pure functions) and the protocol client in
:mod:`plasticore.host.link`. :class:`SerialTransport` reaches a board's UART, a pseudo-terminal
(the software peer :mod:`plasticore.sim.link_model`, or the virtual board) or any pyserial URL
such as ``socket://host:port``.
"""

from __future__ import annotations

import abc
import errno
import numbers
import os

import serial

__all__ = ["Transport", "TransportError", "SerialTransport"]


class TransportError(OSError):
    """A transport could not be opened, or failed while in use. The message names the port."""


class Transport(abc.ABC):
    """A bidirectional byte pipe.

    Contract
    --------
    :meth:`write` sends every byte it is given, in order, or raises :exc:`TransportError`.
    :meth:`read` returns the bytes that have arrived, at least one and at most ``max_bytes``,
    waiting up to ``timeout`` seconds for the first one; it returns ``b""`` when none arrived in
    time (a timeout is not an error at this layer). After :meth:`close` every method but
    :meth:`close` raises :exc:`TransportError`; closing twice is allowed. A transport is a
    context manager that closes on exit.
    """

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """What the transport is connected to, for messages (a port path or a URL)."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send ``data``."""

    @abc.abstractmethod
    def read(self, max_bytes: int, timeout: float) -> bytes:
        """Up to ``max_bytes`` received bytes; ``b""`` if none arrived within ``timeout`` s."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _reason(exc: BaseException) -> str:
    """The operating system's reason behind a pyserial exception, without pyserial's wrapping."""
    seen = exc
    while seen is not None:
        code = getattr(seen, "errno", None)
        if isinstance(code, int) and code > 0:
            reason = os.strerror(code)
            if code in (errno.EACCES, errno.EPERM):
                reason += " (on Linux, is your user in the 'dialout' group?)"
            elif code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY):
                reason += " (is another program using the port?)"
            return reason
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


class SerialTransport(Transport):
    """A serial port, a pseudo-terminal, or a pyserial URL.

    Parameters
    ----------
    url : str
        A device path (``/dev/ttyUSB0``, ``COM3``), a pseudo-terminal path (``/dev/pts/7``), or
        a URL that :func:`serial.serial_for_url` understands (``socket://localhost:4000``,
        ``rfc2217://host:port``).
    baudrate : int
        Bits per second on a real UART (ignored by pseudo-terminals and sockets).
    timeout : float
        Seconds a single :meth:`write` may take before it fails.

    Raises
    ------
    TypeError, ValueError
        On a bad argument.
    TransportError
        If the port cannot be opened; the message names the port and the operating system's
        reason.

    .. note::
        Device paths are opened exclusively (``flock``) on POSIX systems, and the driver's
        low-latency mode is requested where it exists (Linux ``ASYNC_LOW_LATENCY``, which sets
        an FTDI adapter's latency timer to 1 ms); ports without it are used as they are.
    """

    def __init__(self, url: str, baudrate: int = 3_000_000, *, timeout: float = 1.0):
        if not isinstance(url, str) or not url:
            raise TypeError(f"url must be a non-empty str, not {url!r}")
        if isinstance(baudrate, bool) or not isinstance(baudrate, numbers.Integral):
            raise TypeError(f"baudrate must be an int, not {baudrate!r}")
        if baudrate <= 0:
            raise ValueError(f"baudrate = {baudrate} must be > 0")
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
            raise TypeError(f"timeout must be a number of seconds, not {timeout!r}")
        if not timeout > 0:
            raise ValueError(f"timeout = {timeout} must be > 0")
        self._url = url
        extra = {}
        if os.name == "posix" and "://" not in url:
            extra["exclusive"] = True
        try:
            self._serial = serial.serial_for_url(url, baudrate=int(baudrate), timeout=0,
                                                 write_timeout=float(timeout), **extra)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"cannot open serial port {url!r}: {_reason(exc)}") from None
        self._read_timeout = 0.0
        set_low_latency = getattr(self._serial, "set_low_latency_mode", None)
        if set_low_latency is not None:
            try:
                set_low_latency(True)
            except (OSError, ValueError):
                pass  # not a real UART (a pseudo-terminal) or a driver without the flag

    @property
    def name(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"SerialTransport({self._url!r})"

    def _port(self):
        if self._serial is None:
            raise TransportError(f"serial port {self._url!r} is closed")
        return self._serial

    def write(self, data: bytes) -> None:
        port = self._port()
        try:
            port.write(data)
        except serial.SerialTimeoutException:
            raise TransportError(f"serial port {self._url!r}: writing {len(data)} bytes timed "
                                 f"out (is the other end reading?)") from None
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"serial port {self._url!r}: write failed: "
                                 f"{_reason(exc)}") from None

    def read(self, max_bytes: int, timeout: float) -> bytes:
        port = self._port()
        timeout = max(0.0, float(timeout))
        try:
            waiting = port.in_waiting
            if waiting:
                return port.read(min(waiting, max_bytes))
            # Changing pyserial's timeout reconfigures the port; only do it when it changes.
            if timeout != self._read_timeout:
                port.timeout = self._read_timeout = timeout
            first = port.read(1)
            if not first or max_bytes <= 1:
                return bytes(first)
            waiting = port.in_waiting
            return bytes(first) + (port.read(min(waiting, max_bytes - 1)) if waiting else b"")
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"serial port {self._url!r}: read failed: "
                                 f"{_reason(exc)}") from None

    def close(self) -> None:
        if self._serial is not None:
            port, self._serial = self._serial, None
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass  # the device may already be gone; there is nothing left to release
