"""JSON nested too deeply is refused before Python's parser recurses into it."""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api._engineio import ProtocolError, decode_sio
from api._json_depth import nested_deeper_than
from telemetry._runtime import GcPauses


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=40,
)


@given(value=json_values, limit=st.integers(0, 8))
def test_the_scan_agrees_with_the_parsed_depth(value: Any, limit: int) -> None:
    text = json.dumps(value)
    assert nested_deeper_than(text, limit) == (_depth(value) > limit)
    assert nested_deeper_than(text.encode(), limit) == (_depth(value) > limit)


@pytest.fixture
def collect_at_every_allocation() -> Iterator[list[type[BaseException]]]:
    """A collection at (almost) every allocation, timed by the GC-pause metric, with what
    fails inside a collection's callback recorded."""
    unraisable: list[type[BaseException]] = []
    hook, threshold = sys.unraisablehook, gc.get_threshold()
    sys.unraisablehook = lambda args: unraisable.append(args.exc_type)
    try:
        with GcPauses(lambda generation, wall, cpu: None):
            gc.set_threshold(1)
            yield unraisable
    finally:
        gc.set_threshold(*threshold)
        sys.unraisablehook = hook


def test_a_deep_payload_never_reaches_the_parser_while_collections_run(
    collect_at_every_allocation: list[type[BaseException]],
) -> None:
    # Without the scan, a collection near the bottom of the parser's recursion ran the
    # GC-pause callback with no room left: RecursionError, reported as unraisable.
    for depth in range(sys.getrecursionlimit() - 120, sys.getrecursionlimit() + 1):
        with pytest.raises(ProtocolError, match="nests at most"):
            decode_sio("2" + "[" * depth + '"x"' + "]" * depth)
    assert collect_at_every_allocation == []
