"""How deeply a JSON text nests, read before it is parsed.

Python's parser recurses once per level, and a garbage collection that starts near the bottom
of that recursion runs its callbacks (the GC-pause metric's among them) with almost no room
left: they failed with RecursionError, reported as unraisable. A text nested deeper than any
of ours needs is therefore refused before the parser sees it.
"""

from __future__ import annotations

import re

# A string (its brackets are not nesting) or one bracket.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def nested_deeper_than(text: str | bytes, limit: int) -> bool:
    """True when the text opens more than `limit` arrays or objects inside one another.

    A text with no more than `limit` opening brackets in all is answered without a scan."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", "replace")
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for token in _TOKENS.finditer(text):
        match token.group():
            case "[" | "{":
                depth += 1
                if depth > limit:
                    return True
            case "]" | "}":
                depth -= 1
            case _:
                pass
    return False
