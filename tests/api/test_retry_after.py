"""Every 429 the API can answer says when to retry (Retry-After), found by walking the source:
each call that passes the status 429 either gives `retry_after=` or sits in a function that sets
the header itself. The behaviour of each is tested where its limit is (sign-in, registration,
message sends, code requests, Socket.IO sessions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import api
from api._errors import ApiError

API = Path(api.__file__).parent


def _is_429(node: ast.expr) -> bool:
    """429 written as a number or as `HTTPStatus.TOO_MANY_REQUESTS`."""
    if isinstance(node, ast.Constant):
        return node.value == 429
    return isinstance(node, ast.Attribute) and node.attr == "TOO_MANY_REQUESTS"


def _answers_429(tree: ast.AST) -> list[tuple[ast.Call, ast.AST]]:
    """Each call passing the status 429 (as an argument or `status=`), with the function
    around it."""
    found: list[tuple[ast.Call, ast.AST]] = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and any(
                _is_429(value)
                for value in [*node.args, *(keyword.value for keyword in node.keywords)]
            ):
                found.append((node, function))
    return found


def test_every_429_in_the_api_carries_retry_after() -> None:
    seen, missing = 0, []
    for path in sorted(API.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for call, function in _answers_429(tree):
            seen += 1
            keyword = any(keyword.arg == "retry_after" for keyword in call.keywords)
            header = any(
                isinstance(node, ast.Constant) and node.value == "Retry-After"
                for node in ast.walk(function)
            )
            if not (keyword or header):
                missing.append(f"{path.name}:{call.lineno}")
    assert not missing, f"429 without Retry-After at {missing}"
    # sign-in, registration, message sends, code requests/tries/reports, Socket.IO sessions
    assert seen >= 5


def test_the_walk_finds_each_way_of_writing_429() -> None:
    source = """
def a():
    return error_response(429, "x", "y")
def b():
    return Response("", status=HTTPStatus.TOO_MANY_REQUESTS)
def c():
    return Response("", status=200)
"""
    assert [call.lineno for call, _ in _answers_429(ast.parse(source))] == [3, 5]


def test_a_429_without_retry_after_cannot_be_made() -> None:
    with pytest.raises(TypeError, match="retry_after"):
        ApiError(429, "too_many", "slow down")
    assert ApiError(429, "too_many", "slow down", retry_after=2).retry_after == 2
