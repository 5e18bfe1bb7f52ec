"""SSE parsing: events come out whole, whatever the chunking."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from harness.client import EventReader, parse_stream

STREAM = (
    b'event: token\ndata: {"text":"a"}\n\n'
    b": ping\n\n"
    b'event: token\r\ndata: {"text":"b"}\r\n\r\n'
    b'event: done\ndata: {"usage":{}}\n\n'
)


def test_a_stream_parses_into_events_and_skips_comments() -> None:
    events, rest = parse_stream(STREAM)
    assert [e.event for e in events] == ["token", "token", "done"]
    assert events[1].json() == {"text": "b"}
    assert rest == b""


def test_a_partial_event_stays_pending() -> None:
    events, rest = parse_stream(b'event: token\ndata: {"text":"a"}\n\nevent: tok')
    assert len(events) == 1
    assert rest == b"event: tok"


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_chunk_boundaries_do_not_change_the_events(cuts: list[int]) -> None:
    reader, events = EventReader(), []
    points = [0, *sorted(cuts), len(STREAM)]
    for start, end in itertools.pairwise(points):
        events += reader.feed(STREAM[start:end])
    assert [(e.event, e.data) for e in events] == [
        (e.event, e.data) for e in parse_stream(STREAM)[0]
    ]
