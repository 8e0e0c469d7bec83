"""A server's text frame made without wsproto is byte for byte the one wsproto makes, at each
size the length field changes form, and a client reads it back as the same text."""

from __future__ import annotations

import pytest
from wsproto.frame_protocol import FrameProtocol, Opcode

from api._hypercorn import _text_frame

TEXTS = [
    "",
    "x" * 125,
    "x" * 126,
    "é" * 63,  # 126 bytes from 63 characters
    "x" * 65_535,
    "x" * 65_536,
    '{"type":"message","content":"日本語 ✓"}' * 3_000,
]


@pytest.mark.parametrize("text", TEXTS, ids=lambda text: f"{len(text.encode())}B")
def test_a_text_frame_is_the_one_wsproto_makes(text: str) -> None:
    made_by_wsproto = bytes(FrameProtocol(client=False, extensions=[]).send_data(text))
    assert _text_frame(text) == made_by_wsproto


@pytest.mark.parametrize("text", TEXTS, ids=lambda text: f"{len(text.encode())}B")
def test_a_client_reads_the_frame_back(text: str) -> None:
    client = FrameProtocol(client=True, extensions=[])
    client.receive_bytes(_text_frame(text))
    (frame,) = list(client.received_frames())
    assert frame.opcode is Opcode.TEXT
    assert frame.frame_finished
    assert frame.message_finished
    assert frame.payload == text
