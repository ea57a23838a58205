"""The link benchmark: its byte accounting and analysis without a simulator, and short runs on
the small virtual board (the one ``tests/test_sim_backend.py`` builds and caches).

The board runs in lockstep with the host (see :mod:`plasticore.sim.bench_link`), so a run's
cycle counts do not depend on the host's speed: the run is checked for consistency (every
payload byte the stimulus implies was counted, the harness and the host saw the same bytes,
every fraction lies in (0, 1]), for the 0.8 target, and for giving the same cycles twice. A
free-running run, whose cycles include the host's reaction time, is checked for its bytes only.
"""

import math
import struct

import numpy as np
import pytest

from plasticore.host import Device
from plasticore.protocol import END, END_OF_TICK, ESC, Opcode, Reply, build_frame
from plasticore.sim import bench_link
from plasticore.sim.bench_link import (TARGET, Kind, LinkWorkload, analyse, classify_stream,
                                       expected_payload, format_report, link_network,
                                       link_stimulus, run_benchmark, window_counts)

SMALL = bench_link.PRESETS["small"]["config"]
TICKS = 300


def _spikes_frame(seq, entries):
    return build_frame(seq, Opcode.SPIKES, struct.pack(f"<{len(entries)}H", *entries))


def _tick_frame(seq, spikes, t, free):
    return build_frame(seq, Reply.TICK, struct.pack(f"<{len(spikes)}HIH", *spikes, t, free))


def _counts(stream, direction):
    kinds, ends = classify_stream(stream, direction)
    return window_counts(kinds, ends, 0, len(stream))


# ---- Workload ------------------------------------------------------------------------------------

def test_workload_rejects_bad_parameters():
    with pytest.raises(TypeError, match=r"ticks must be an int, not 1\.5"):
        LinkWorkload(ticks=1.5)
    with pytest.raises(TypeError, match="spikes_per_tick must be an int, not True"):
        LinkWorkload(spikes_per_tick=True)
    with pytest.raises(ValueError, match="ticks = 9 must be at least 10"):
        LinkWorkload(ticks=9)
    with pytest.raises(ValueError, match="outputs_per_tick = -1 must be at least 0"):
        LinkWorkload(outputs_per_tick=-1)
    with pytest.raises(TypeError, match="learn must be a bool, not 1"):
        LinkWorkload(learn=1)
    with pytest.raises(ValueError, match="spikes_per_tick = 9 exceeds the core's 8 inputs"):
        LinkWorkload(spikes_per_tick=9).check(SMALL)
    with pytest.raises(ValueError, match="outputs_per_tick = 9 exceeds the core's 8 neurons"):
        LinkWorkload(outputs_per_tick=9).check(SMALL)


def test_stimulus_has_distinct_inputs_per_tick():
    workload = LinkWorkload(ticks=50, spikes_per_tick=5, seed=3)
    stimulus = link_stimulus(SMALL, workload)
    assert len(stimulus) == 50
    for inputs in stimulus:
        assert len(set(inputs.tolist())) == 5 and list(inputs) == sorted(inputs)
        assert 0 <= inputs.min() and inputs.max() < SMALL.n_inputs
    assert any(not np.array_equal(stimulus[0], s) for s in stimulus[1:])
    again = link_stimulus(SMALL, workload)
    assert all(np.array_equal(a, b) for a, b in zip(stimulus, again))


def test_network_fires_exactly_the_chosen_neurons_every_tick():
    """On the golden model: the last ``outputs_per_tick`` neurons fire every tick, whatever the
    inputs, and no other neuron ever does."""
    workload = LinkWorkload(ticks=30, spikes_per_tick=8, outputs_per_tick=3)
    assert workload.firing(SMALL) == (5, 6, 7)
    net = link_network(SMALL, workload)
    raster = np.zeros((30, SMALL.n_inputs), bool)
    for k, inputs in enumerate(link_stimulus(SMALL, workload)):
        raster[k, inputs] = True
    with Device("model", config=SMALL) as dev:
        dev.load(net)
        result = dev.run(30, {net.input_groups[0]: raster})
    expected = np.zeros((30, SMALL.n_neurons), bool)
    expected[:, [5, 6, 7]] = True
    assert np.array_equal(result.spikes, expected)


def test_expected_payload():
    payload = expected_payload(LinkWorkload(ticks=100, spikes_per_tick=6, outputs_per_tick=2))
    assert payload == {"host_to_board": {"spikes": 1200, "tick": 200},
                       "board_to_host": {"spikes": 400, "tick": 400}}


# ---- Byte accounting -----------------------------------------------------------------------------

def test_classify_spikes_frames():
    # 0xC0 and 0xDB as input indices are escaped on the line: one SLIP byte each.
    entries = [1, 0xC0, END_OF_TICK, 0xDB, END_OF_TICK]
    stream = _spikes_frame(7, entries) + _spikes_frame(8, [3, END_OF_TICK])
    counts = _counts(stream, "host_to_board")
    b = counts["bytes"]
    assert (b["spikes"], b["tick"]) == (2 * 4, 2 * 3)
    assert b["header"] == 4 and b["crc"] == 4 and b["credit"] == 0 and b["other"] == 0
    crc_escapes = sum(_spikes_frame(s, e)[-3:-1].count(v) for s, e in
                      ((7, entries), (8, [3, END_OF_TICK])) for v in (END, ESC))
    assert b["slip"] == 4 + 2 + crc_escapes
    assert counts["line_bytes"] == len(stream) == sum(b.values())
    assert counts["frames"] == {Opcode.SPIKES: 2}


def test_classify_tick_frames_and_other_frames():
    ack = build_frame(3, Reply.ACK, bytes([Opcode.SPIKES, 0x10, 0x00]))
    tick = _tick_frame(0x21, [4, 6], t=0x01020304, free=200)
    empty_tick = _tick_frame(0x22, [], t=0x01020305, free=256)
    stream = ack + tick + empty_tick + build_frame(4, Reply.RUN_END, bytes(5))
    kinds, ends = classify_stream(stream, "board_to_host")
    counts = window_counts(kinds, ends, 0, len(stream))
    b = counts["bytes"]
    assert (b["spikes"], b["tick"], b["credit"]) == (4, 8, 4)
    assert b["header"] == 4 and b["crc"] == 4 and b["slip"] == 4
    assert b["other"] == len(ack) + len(stream) - len(ack) - len(tick) - len(empty_tick)
    assert counts["frames"] == {Reply.ACK: 1, Reply.TICK: 2, Reply.RUN_END: 1}
    # Every byte of the ACK, its delimiters included, is overhead of another frame.
    assert set(kinds[:len(ack)].tolist()) == {Kind.OTHER}
    assert ends[len(ack) - 1] == Reply.ACK and ends[len(ack) + len(tick) - 1] == Reply.TICK
    # A window counts only its own bytes.
    part = window_counts(kinds, ends, len(ack), len(ack) + len(tick))
    assert part["bytes"]["spikes"] == 4 and part["frames"] == {Reply.TICK: 1}
    assert part["line_bytes"] == len(tick)


def test_classify_leaves_an_unfinished_frame_as_other():
    frame = _spikes_frame(1, [2, END_OF_TICK])
    kinds, ends = classify_stream(frame[:-3], "host_to_board")
    assert set(kinds.tolist()) == {Kind.OTHER} and (ends == -1).all()
    with pytest.raises(ValueError, match="direction must be one of"):
        classify_stream(frame, "sideways")


# ---- Analysis ------------------------------------------------------------------------------------

def _window(cycles, h2b_bytes, b2h_bytes, spikes_frames, tick_frames, wall_s=0.5):
    def counts(b, frames):
        return {"bytes": {name: b.get(name, 0) for name in Kind.NAMES},
                "line_bytes": sum(b.values()), "frames": frames}
    return {"cycles": cycles, "wall_s": wall_s,
            "host_to_board": counts(h2b_bytes, {int(Opcode.SPIKES): spikes_frames}),
            "board_to_host": counts(b2h_bytes, {int(Reply.TICK): tick_frames,
                                                int(Reply.ACK): spikes_frames})}


def _raw():
    # 10 SPIKES commands of 128 entries (9 per tick: 8 inputs and END_OF_TICK), 142 ticks.
    h2b = {"spikes": 2 * 8 * 142, "tick": 2 * 142, "slip": 20, "header": 20, "crc": 20}
    b2h = {"spikes": 4 * 142, "tick": 4 * 142, "slip": 284, "header": 284, "crc": 284,
           "credit": 284, "other": 90}
    steady = _window(1_000_000, h2b, b2h, 10, 142)
    run = _window(1_100_000, h2b, b2h, 10, 142, wall_s=0.6)
    return {"preset": "small", "executable": "vboard_test", "config": {
                "n_inputs": 8, "n_neurons": 8, "n_recurrent": 4},
            "clock_hz": 12_000_000, "divisor": 4, "queue_depth": 256, "poll_interval": 512,
            "lockstep": True,
            "workload": {"ticks": 142, "spikes_per_tick": 8, "outputs_per_tick": 2,
                         "learn": False, "seed": 1},
            "core": {"ticks": 142, "tick_cycles": 142 * 150},
            "steady": {**steady, "from_tick": 14, "to_tick": 127}, "run": run,
            "stream_wall_s": 0.6, "start_wall_s": 1.0}


def test_analyse_computes_fractions_of_the_line_rate():
    raw = _raw()
    result = analyse(raw)
    assert result["byte_cycles"] == 40
    assert result["line_rate_bytes_per_s"] == pytest.approx(300_000)
    assert result["ack_cycles"] == 9 * 40
    steady = result["windows"]["steady"]
    h2b = steady["host_to_board"]
    assert h2b["payload_bytes"] == 2556 and h2b["line_bytes"] == 2616
    assert h2b["payload_fraction"] == pytest.approx(2556 * 40 / 1_000_000)
    assert h2b["busy"] == pytest.approx(2616 * 40 / 1_000_000)
    assert h2b["efficiency"] == pytest.approx(2556 / 2616)
    assert h2b["spike_fraction"] == pytest.approx(2272 * 40 / 1_000_000)
    assert sum(h2b["shares"].values()) == pytest.approx(1.0)
    assert h2b["idle_cycles"] == 1_000_000 - 2616 * 40
    assert steady["idle_cycles_per_command"] == pytest.approx(h2b["idle_cycles"] / 10)
    assert steady["entries_per_command"] == pytest.approx(9 * 142 / 10)
    b2h = steady["board_to_host"]
    assert b2h["credit_bytes"] == 284 and b2h["other_bytes"] == 90
    assert sum(b2h["shares"].values()) == pytest.approx(1.0)
    assert steady["ticks_per_sim_second"] == pytest.approx(142 * 12e6 / 1e6)
    assert steady["cycles_per_wall_second"] == pytest.approx(2e6)
    assert steady["core_busy"] == pytest.approx(142 * 150 / 1e6)
    assert steady["bottleneck"] == "host_to_board"
    assert result["payload_fraction"] == h2b["payload_fraction"]
    assert result["meets_target"] is (h2b["payload_fraction"] >= 0.8)


def test_report_names_the_target_and_the_bottleneck():
    raw = _raw()
    text = format_report(raw, analyse(raw))
    for expected in ("payload fraction", "line busy", "efficiency", "waiting for credits",
                     "ticks/s (simulated time)", "simulated cycles per wall second",
                     "bottleneck: the host->board line", "requirement >= 0.8: NOT MET",
                     "steady state", "whole run", "clock in lockstep with the host"):
        assert expected in text, expected
    raw["lockstep"] = False
    assert "clock running freely" in format_report(raw, analyse(raw))
    raw["core"]["tick_cycles"] = 142 * 5000
    assert "bottleneck: the core" in format_report(raw, analyse(raw))


def test_run_benchmark_rejects_bad_arguments():
    with pytest.raises(TypeError, match="lockstep must be a bool, not 1"):
        run_benchmark("small", lockstep=1)
    with pytest.raises(TypeError, match="workload must be a LinkWorkload, not 5"):
        run_benchmark("small", 5)


def test_main_rejects_a_workload_the_core_cannot_take(capsys):
    with pytest.raises(SystemExit):
        bench_link.main(["--spikes-per-tick", "9"])
    assert "exceeds the core's 8 inputs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_link.main(["--ticks", "5"])
    assert "ticks = 5 must be at least 10" in capsys.readouterr().err


# ---- A run on the virtual board ------------------------------------------------------------------

@pytest.fixture(scope="module")
def run():
    workload = LinkWorkload(ticks=TICKS, spikes_per_tick=8, outputs_per_tick=2)
    raw = run_benchmark("small", workload)
    return workload, raw, analyse(raw)


def test_run_counts_every_payload_byte_the_stimulus_implies(run):
    workload, raw, result = run
    expected = expected_payload(workload)
    whole = raw["run"]
    for direction in ("host_to_board", "board_to_host"):
        b = whole[direction]["bytes"]
        assert {"spikes": b["spikes"], "tick": b["tick"]} == expected[direction], direction
    # One TICK frame per tick, each with its 2-byte credit; one ACK per SPIKES command.
    frames_in = whole["host_to_board"]["frames"]
    frames_out = whole["board_to_host"]["frames"]
    assert frames_out[Reply.TICK] == TICKS == raw["core"]["ticks"]
    assert whole["board_to_host"]["bytes"]["credit"] == 2 * TICKS
    assert frames_out[Reply.ACK] >= frames_in[Opcode.SPIKES] >= math.ceil(9 * TICKS / 128)
    spikes_frames = frames_in[Opcode.SPIKES]
    # seq, op and CRC: 4 bytes a frame; 2 delimiters, plus an escape where seq or a CRC byte
    # happens to be END or ESC.
    b = whole["host_to_board"]["bytes"]
    assert b["header"] == b["crc"] == 2 * spikes_frames
    assert 2 * spikes_frames <= b["slip"] <= 5 * spikes_frames
    assert raw["tick_frames"] >= TICKS


def test_run_harness_and_host_saw_the_same_bytes(run):
    _, raw, _ = run
    assert raw["offsets"] == {"host_to_board": 0, "board_to_host": 0}
    assert raw["harness"]["bytes_in"] == raw["recorded"]["host_to_board"]
    assert raw["harness"]["bytes_out"] == raw["recorded"]["board_to_host"]
    assert raw["harness"]["framing_errors"] == 0
    for name in ("steady", "run"):
        for direction in ("host_to_board", "board_to_host"):
            counts = raw[name][direction]
            assert counts["line_bytes"] == sum(counts["bytes"].values()) > 0


def test_run_fractions_and_rates_are_consistent(run):
    workload, raw, result = run
    steady, whole = result["windows"]["steady"], result["windows"]["run"]
    assert 0 < steady["cycles"] < whole["cycles"] < raw["harness"]["cycles"]
    assert 0 < steady["ticks"] < whole["ticks"] == TICKS
    for window in (steady, whole):
        for direction in ("host_to_board", "board_to_host"):
            d = window[direction]
            # A byte counts from the cycle its start bit begins, so a window's count may hold
            # up to one byte more than its cycles' worth on a full line.
            full = 1 + result["byte_cycles"] / window["cycles"]
            assert 0 < d["spike_fraction"] < d["payload_fraction"] < d["busy"] < full
            assert 0 < d["efficiency"] < 1
            assert d["idle_cycles"] > -result["byte_cycles"]
            assert sum(d["shares"].values()) == pytest.approx(1.0)
        assert window["ticks_per_sim_second"] > 0
        assert window["cycles_per_wall_second"] > 0 and window["wall_s"] > 0
        assert 0 < window["core_busy"] < 1
        assert window["entries_per_command"] <= 128
    # Streaming 8 inputs per tick into a core of 8 neurons: the link, not the core, limits it.
    assert steady["bottleneck"] != "core"
    assert result["core_cycles_per_tick"] > 0
    text = format_report(raw, result)
    assert f"{TICKS} ticks" in text and "payload fraction host -> board" in text


def test_run_meets_the_target(run):
    """Host to board the stream keeps the line busy, so the payload fraction is the framing's
    efficiency: well above the target."""
    _, raw, result = run
    assert raw["lockstep"]
    h2b = result["windows"]["steady"]["host_to_board"]
    assert result["payload_fraction"] == h2b["payload_fraction"] >= TARGET
    assert result["meets_target"]
    assert h2b["busy"] > 0.95 and h2b["efficiency"] > 0.95
    assert "requirement >= 0.8: met" in format_report(raw, result)


def test_run_in_lockstep_gives_the_same_cycles_again(run):
    workload, raw, _ = run
    again = run_benchmark("small", workload)
    for name in ("steady", "run"):
        assert again[name]["cycles"] == raw[name]["cycles"], name
        for direction in ("host_to_board", "board_to_host"):
            assert again[name][direction] == raw[name][direction], (name, direction)
    assert again["core"] == raw["core"]


def test_free_running_run_counts_every_payload_byte():
    workload = LinkWorkload(ticks=60, spikes_per_tick=8, outputs_per_tick=2)
    raw = run_benchmark("small", workload, lockstep=False)
    assert not raw["lockstep"]
    expected = expected_payload(workload)
    for direction in ("host_to_board", "board_to_host"):
        b = raw["run"][direction]["bytes"]
        assert {"spikes": b["spikes"], "tick": b["tick"]} == expected[direction], direction
    assert raw["harness"]["bytes_in"] == raw["recorded"]["host_to_board"]
    assert raw["harness"]["bytes_out"] == raw["recorded"]["board_to_host"]
    assert "clock running freely" in format_report(raw, analyse(raw))
