"""The link protocol's pure functions, and docs/protocol.md against plasticore.protocol."""

import re
from pathlib import Path

from hypothesis import given, strategies as st

from plasticore.protocol import (END, MAX_BODY, ErrorCode, Frame, FrameError, Opcode, Reply,
                                 SlipDecoder, TickFrame, build_frame, crc16, parse_frame,
                                 slip_encode)

DOC = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()


def test_crc16_known_answers():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF
    assert crc16(b"\x00") == 0xE1F0


@given(st.binary(max_size=300))
def test_slip_round_trip(body):
    encoded = slip_encode(body)
    assert encoded.count(END) == 2 and encoded[0] == encoded[-1] == END
    frames = SlipDecoder().feed(encoded)
    assert frames == ([body] if body else [])


@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=MAX_BODY - 4))
def test_frames_round_trip(seq, op, payload):
    (body,) = SlipDecoder().feed(build_frame(seq, op, payload))
    assert parse_frame(body) == Frame(seq, op, payload)


@given(st.binary(max_size=200), st.integers(0, 255), st.binary(max_size=40))
def test_decoder_recovers_after_garbage(garbage, seq, payload):
    good = build_frame(seq, Opcode.WRITE, payload)
    results = [parse_frame(b) for b in SlipDecoder().feed(garbage + good)]
    assert results[-1] == Frame(seq, Opcode.WRITE, payload)
    assert all(isinstance(r, FrameError) or r.op is not None for r in results)


def test_corrupted_frame_is_reported_not_raised():
    frame = bytearray(build_frame(1, Opcode.READ, b"\x01\x00\x00\x00\x00\x01\x00"))
    frame[4] ^= 0x01
    (body,) = SlipDecoder().feed(bytes(frame))
    assert parse_frame(body).code == ErrorCode.BAD_CRC
    assert parse_frame(b"\x01\x02").code == ErrorCode.BAD_LENGTH


def test_bad_escape_and_overlong_bodies_are_bad_frames():
    decoder = SlipDecoder(limit=8)
    out = decoder.feed(bytes([END, 1, 0xDB, 0x00, 2, END]) + bytes([END]) + bytes(range(1, 20))
                       + bytes([END]))
    assert [r.code for r in out] == [ErrorCode.BAD_FRAME, ErrorCode.BAD_FRAME]


def test_tick_frame_round_trip():
    frame = TickFrame(t=0xDEADBEEF, spikes=(3, 0, 255), queue_free=17)
    assert TickFrame.unpack(frame.pack()) == frame


def test_document_lists_every_code_with_its_number():
    for enum, prefix in ((Opcode, "0x"), (Reply, "0x")):
        for member in enum:
            assert re.search(rf"\| {prefix}{member.value:02X} \| `{member.name}` \|", DOC), member
    for member in ErrorCode:
        assert re.search(rf"\| {member.value} \| `{member.name}` \|", DOC), member
    assert f"`MAX_BODY` = {MAX_BODY}" in DOC
