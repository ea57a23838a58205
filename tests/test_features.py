"""Cores built without optional parts (pacing, the winner-take-all pool, the adaptive
threshold): what the software peer refuses, what the host refuses before sending anything, and
that what remains runs exactly as the golden model."""

import struct

import numpy as np
import pytest

from plasticore.config import CoreConfig
from plasticore.hdl.core import Space
from plasticore.host import Device, Network, cli, demo
from plasticore.host.link import Link
from plasticore.host.transport import SerialTransport
from plasticore.image import features_needed
from plasticore.protocol import (OPTIONAL_FEATURES, Capability, ErrorCode, Opcode, Reply,
                                 SlipDecoder, build_frame, parse_frame)
from plasticore.sim.link_model import ModelPeer, PtyPeer

from pty_board import SLOW, pty_board

CFG = CoreConfig(n_inputs=8, n_neurons=8, n_recurrent=4)
BARE = Capability(0)


def command(peer, seq, op, payload=b""):
    """Send one command to the peer; return (reply kind, payload after the echoed opcode)."""
    decoder = SlipDecoder()
    frames = [parse_frame(body) for body in decoder.feed(
        peer.feed(build_frame(seq, op, payload)))]
    assert len(frames) == 1, frames
    assert frames[0].seq == seq and frames[0].payload[0] == op
    return frames[0].op, frames[0].payload[1:]


def write(peer, space, addr, words, seq=1):
    return command(peer, seq, Opcode.WRITE,
                   struct.pack(f"<BI{len(words)}I", space, addr, *words))


def test_identify_reports_only_the_parts_built():
    assert ModelPeer(CFG).info.capabilities & OPTIONAL_FEATURES == OPTIONAL_FEATURES
    bare = ModelPeer(CFG, features=BARE, spram=True)
    assert Capability(bare.info.capabilities) == Capability.SPRAM
    paced_only = ModelPeer(CFG, features=Capability.PACED)
    assert Capability(paced_only.info.capabilities) == Capability.PACED


@pytest.mark.parametrize("space, addr, value", [
    (Space.NPARAM, 0, 1 << 15),          # neuron 0: wta
    (Space.NPARAM, 3, 1 << 24),          # neuron 1: th_plus = 1
    (Space.NPARAM, 5, 0xFF << 24),       # neuron 2: th_plus = 255
    (Space.NSTATE, 6, 1 << 16),          # neuron 3: th = 1
])
def test_a_bare_core_refuses_writes_that_need_a_missing_part(space, addr, value):
    peer = ModelPeer(CFG, features=BARE)
    before = peer.snapshot()
    # A block: the first words are fine, the bad one is reported by its address.
    first = addr - 1 if addr else addr
    words = [0] * (addr - first) + [value]
    kind, payload = write(peer, space.value, first, words)
    assert kind == Reply.ERROR
    code, detail = struct.unpack("<BI", payload[:5])
    assert (code, detail) == (ErrorCode.BAD_VALUE, addr)
    assert peer.snapshot() == before, "a refused write changed something"
    # The full core takes the same write.
    assert write(ModelPeer(CFG), space.value, first, words)[0] == Reply.ACK


def test_a_bare_core_takes_what_does_not_need_a_missing_part():
    peer = ModelPeer(CFG, features=BARE)
    assert write(peer, Space.NPARAM.value, 0, [0x7FFF, 0x00FF_FFFF])[0] == Reply.ACK
    assert write(peer, Space.NSTATE.value, 0, [0xFFFF, 0xFFF])[0] == Reply.ACK


def test_a_core_without_pacing_refuses_a_period_and_changes_nothing():
    peer = ModelPeer(CFG, features=Capability.WTA | Capability.ADAPTIVE_THRESHOLD)
    before = peer.status()
    kind, payload = command(peer, 7, Opcode.RUN, struct.pack("<IBI", 5, 0, 1000))
    assert kind == Reply.ERROR
    assert struct.unpack("<BI", payload[:5]) == (ErrorCode.BAD_VALUE, 1000)
    assert not peer.running and peer.status().ticks_left == before.ticks_left
    assert command(peer, 8, Opcode.RUN, struct.pack("<IBI", 5, 0, 0))[0] == Reply.ACK


def small_network(wta, th_plus):
    net = Network("features")
    inputs = net.inputs(6, name="inputs")
    out = net.population(4, name="out", threshold=90, leak_shift=3, bias=5, wta=wta,
                         th_plus=th_plus)
    net.connect(inputs, out, weights=("uniform", 20, 90, 4), name="in->out")
    net.learning(seed=3, shift_plus=6, shift_minus=7)
    return net, inputs, out


def test_features_needed_names_the_neurons():
    net, _, _ = small_network(wta=True, th_plus=10)
    needed = features_needed(net.compile(CFG).image)
    assert set(needed) == {"WTA", "ADAPTIVE_THRESHOLD"}
    assert needed["WTA"].tolist() == [0, 1, 2, 3]
    net, _, _ = small_network(wta=False, th_plus=0)
    assert features_needed(net.compile(CFG).image) == {}


def test_the_host_refuses_a_network_the_core_cannot_run_before_sending_it():
    with PtyPeer(ModelPeer(CFG, features=BARE)) as pty:
        with Device(pty_board(pty.path)) as board:
            net, _, _ = small_network(wta=True, th_plus=0)
            with pytest.raises(ValueError, match=r"WTA \(neurons 0, 1, 2, 3\).*built without"):
                board.load(net)
        with Link(SerialTransport(pty.path), timeout=SLOW) as link:
            link.identify()
            with pytest.raises(ValueError, match="period = 500.*without tick pacing"):
                link.run(10, period=500)
            assert link.status().bad_frames == 0     # nothing reached the core


def test_a_bare_core_runs_what_it_can_exactly_as_the_model():
    net, inputs, out = small_network(wta=False, th_plus=0)
    raster = np.random.default_rng(2).random((40, 6)) < 0.4
    with PtyPeer(ModelPeer(CFG, features=BARE)) as pty:
        with Device(pty_board(pty.path)) as board, Device("model", config=CFG) as model:
            results = []
            for dev in (board, model):
                dev.load(net)
                results.append((dev.run(40, {inputs: raster}, learn=True).spikes,
                                dev.weights(net.projections[0])))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert results[0][0].any()


@pytest.mark.parametrize("features, expected", [
    (BARE, set()),
    (Capability.WTA, {"WTA"}),
    (OPTIONAL_FEATURES, {"PACED", "WTA", "ADAPTIVE_THRESHOLD"}),
])
def test_devices_and_plasticore_info_report_the_optional_parts(features, expected, capsys):
    with PtyPeer(ModelPeer(CFG, features=features)) as pty:
        with Device(pty.path, timeout=SLOW) as board:
            assert board.features == expected
        assert cli.main(["info", "--port", pty.path, "--timeout", str(SLOW)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("optional parts"))
    names = {"PACED": "tick pacing", "WTA": "the winner-take-all pool",
             "ADAPTIVE_THRESHOLD": "the adaptive threshold"}
    has = [names[f] for f in ("PACED", "WTA", "ADAPTIVE_THRESHOLD") if f in expected]
    lacks = [names[f] for f in ("PACED", "WTA", "ADAPTIVE_THRESHOLD") if f not in expected]
    assert line == ("optional parts  " + (", ".join(has) or "none")
                    + (f" (built without {', '.join(lacks)})" if lacks else ""))
    assert "synapse memory  dual-ported block RAM" in out
    assert ("losses          0 receive overflows, 0 framing errors, 0 ERROR replies (refused "
            "frames and commands)") in out
    with Device("model", config=CFG) as model:
        assert model.features == {"PACED", "WTA", "ADAPTIVE_THRESHOLD"}


def test_a_timeout_is_only_for_a_serial_port():
    with pytest.raises(ValueError, match=r"timeout applies to a serial port, not to backend "
                                         r"'model'"):
        Device("model", timeout=5)


def test_the_demo_on_a_core_without_its_parts_says_so_and_where_it_runs(capsys):
    with PtyPeer(ModelPeer(CoreConfig(), features=Capability.WTA)) as pty:
        assert demo.main(["--backend", pty.path, "--no-progress", "--timeout", str(SLOW)]) == 2
        with pty.lock:
            assert not pty.peer.core.model.synapses.any()   # the network was never sent
    err = capsys.readouterr().err
    assert (f"plasticore demo: its network needs the adaptive threshold, which the core on "
            f"{pty.path!r} was built without") in err
    assert "--backend sim" in err and "Traceback" not in err
    # The same options reach the demo through the plasticore command, whose default is sim.
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    assert "sim (the virtual board, default)" in capsys.readouterr().out
