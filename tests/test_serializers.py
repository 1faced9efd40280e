"""OrjsonSerializer must be indistinguishable from JsonSerializer except in speed."""

from __future__ import annotations

import collections
import enum
import json
import math
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import persistdict
from persistdict.serializers import JsonSerializer, serializer_for

orjson = pytest.importorskip("orjson")
from persistdict.serializers import OrjsonSerializer  # noqa: E402 - needs orjson

STDLIB = JsonSerializer()
FAST = OrjsonSerializer()


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types, NaN equal to NaN, -0.0 different from 0.0, same order.

    Walks with a stack, not recursion: Python 3.13's json decodes nesting 2000 deep, past
    the interpreter's recursion limit.
    """
    pending = [(a, b)]
    while pending:
        a, b = pending.pop()
        if type(a) is not type(b):
            return False
        if isinstance(a, float):
            if math.isnan(a) or math.isnan(b):
                if not (math.isnan(a) and math.isnan(b)):
                    return False
            elif not (a == b and math.copysign(1, a) == math.copysign(1, b)):
                return False
        elif isinstance(a, list):
            if len(a) != len(b):
                return False
            pending.extend(zip(a, b, strict=True))
        elif isinstance(a, dict):
            if list(a) != list(b):
                return False
            pending.extend((a[k], b[k]) for k in a)
        elif a != b:
            return False
    return True


def outcome(fn: Any, arg: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(arg)
    except Exception as exc:
        return type(exc).__name__, str(exc)


def assert_same_outcome(fn_a: Any, fn_b: Any, arg: Any) -> None:
    kind_a, got_a = outcome(fn_a, arg)
    kind_b, got_b = outcome(fn_b, arg)
    assert kind_a == kind_b, (arg, got_a, got_b)
    if kind_a == "ok":
        assert same(got_a, got_b), (arg, got_a, got_b)
    else:
        assert got_a == got_b


class Tag(str):
    pass


class Count(int):
    pass


class Level(enum.IntEnum):
    LOW = 1


class Color(enum.Enum):
    RED = "red"


# Every character, lone surrogates included; hypothesis's default text leaves them out.
any_text = st.text(st.characters(codec=None, categories=None), max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and infinities included
    | any_text
    | st.builds(Tag, any_text)
    | st.builds(Count, st.integers())
    | st.just(Level.LOW)
)
keys = any_text | st.integers() | st.floats() | st.booleans() | st.none()
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(any_text, inner, max_size=4)
        | st.dictionaries(keys, inner, max_size=3)
        | st.dictionaries(any_text, inner, max_size=4).map(collections.OrderedDict)
    ),
    max_leaves=12,
)


@settings(max_examples=400)
@given(values)
def test_same_stored_text_and_same_errors_for_any_value(value: Any) -> None:
    assert_same_outcome(STDLIB.dumps, FAST.dumps, value)


@settings(max_examples=400)
@given(values)
def test_reads_back_the_same_values_from_str_and_bytes(value: Any) -> None:
    try:
        text = STDLIB.dumps(value)
    except (TypeError, ValueError):
        return
    assert_same_outcome(STDLIB.loads, FAST.loads, text)
    try:
        data = text.encode()
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 form to store
        return
    assert_same_outcome(STDLIB.loads, FAST.loads, data)


@settings(max_examples=400)
@given(st.text(max_size=40) | st.binary(max_size=40))
def test_any_input_decodes_or_fails_the_same(data: str | bytes) -> None:
    assert_same_outcome(STDLIB.loads, FAST.loads, data)


@pytest.mark.parametrize(
    "text",
    [
        "18446744073709551615",  # 2**64 - 1: orjson's largest int
        "18446744073709551616",  # orjson alone would turn this into a float
        "-9223372036854775809",
        '{"n": 123456789012345678901234567890}',
        "9223372036854775807.5",
        "NaN",
        "[Infinity, -Infinity]",
        "1e400",
        '"\\ud800"',
        '"\\udc00\\ud800"',
        "[" * 2000 + "]" * 2000,
        "\ufeff{}",
        '{"a": 1, "a": 2}',
        "-0",
        "-0.0",
        ' {"a" : [1 , 2 ]} \n',
        '"\x7f\u2028"',
        '"tab\there"',
        "",
        "{",
    ],
)
def test_edge_cases_decode_as_json_does(text: str) -> None:
    assert_same_outcome(STDLIB.loads, FAST.loads, text)
    assert_same_outcome(STDLIB.loads, FAST.loads, text.encode("utf-8", "surrogatepass"))


def test_big_numbers_stay_exact_ints() -> None:
    assert FAST.loads("123456789012345678901234567890") == 123456789012345678901234567890
    assert type(FAST.loads(b"[18446744073709551616]")[0]) is int


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        {"x": float("inf")},
        {1: "a", "1": "b"},
        {None: 1, True: 2, 1.5: 3},
        2**64,
        -(2**63) - 1,
        Tag("t"),
        Level.LOW,
        collections.OrderedDict([("b", 1), ("a", 2)]),
        1e-7,
        1.5e-5,
        1e16,
        "\ud800",
    ],
)
def test_values_orjson_would_write_differently_are_stored_as_json_does(value: Any) -> None:
    assert_same_outcome(STDLIB.dumps, FAST.dumps, value)


@pytest.mark.parametrize("value", [Color.RED, uuid.UUID(int=1), {"id": uuid.UUID(int=1)}])
def test_values_json_refuses_are_refused_with_the_same_message(value: Any) -> None:
    with pytest.raises(TypeError) as stdlib:
        STDLIB.dumps(value)
    with pytest.raises(TypeError) as fast:
        FAST.dumps(value)
    assert str(fast.value) == str(stdlib.value)


def test_is_the_default_and_equal_to_json_serializer() -> None:
    assert type(serializer_for(None)) is OrjsonSerializer
    assert type(serializer_for("json")) is OrjsonSerializer
    assert OrjsonSerializer() == JsonSerializer()
    assert OrjsonSerializer(sort_keys=True) != JsonSerializer()
    assert repr(OrjsonSerializer()) == "OrjsonSerializer(ensure_ascii=False, separators=(',', ':'))"
    assert isinstance(OrjsonSerializer(), persistdict.Serializer)


def test_options_are_honoured_like_json_serializer() -> None:
    fast = OrjsonSerializer(sort_keys=True, ensure_ascii=True)
    value = {"b": "é", "a": [1, 2.5]}
    assert fast.dumps(value) == '{"a":[1,2.5],"b":"\\u00e9"}'
    assert fast.loads(fast.dumps(value)) == value


def test_a_sqlite_dict_stores_the_same_text_as_with_json_serializer(tmp_path: Path) -> None:
    value = {"name": "Zoë", "n": 2**70, "f": 1e-7, "nested": [None, True, {"x": -0.0}]}
    with persistdict.open(tmp_path / "fast.db") as fast:
        fast["k"] = value
        assert same(fast["k"], json.loads(json.dumps(value)))
    with persistdict.open(tmp_path / "plain.db", serializer=JsonSerializer()) as plain:
        plain["k"] = value
    stored = []
    for name in ("fast.db", "plain.db"):
        with sqlite3.connect(tmp_path / name) as cx:
            stored.append(cx.execute("SELECT value, typeof(value) FROM items").fetchall())
        cx.close()
    assert stored[0] == stored[1]
    assert stored[0][0][1] == "text"


def test_without_orjson_the_default_is_json_serializer() -> None:
    code = (
        "import sys; sys.modules['orjson'] = None\n"
        "import persistdict.serializers as s\n"
        "print(type(s.serializer_for(None)).__name__)\n"
        "try:\n"
        "    s.OrjsonSerializer()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [
        "JsonSerializer",
        "OrjsonSerializer needs orjson: pip install 'python-persistdict[fast]'",
    ]


def _reference_json_file(data: dict[str, Any]) -> bytes:
    """The JSON file format spelled out with the stdlib's public encoder, one call per item;
    NaN and Infinity refused, as other JSON readers refuse them."""
    for ensure_ascii in (False, True):  # lone surrogates force \u escapes
        enc = json.JSONEncoder(ensure_ascii=ensure_ascii, allow_nan=False).encode
        body = ",\n".join(f"  {enc(k)}: {enc(v)}" for k, v in data.items())
        try:
            return (f"{{\n{body}\n}}\n" if data else "{}\n").encode()
        except UnicodeEncodeError:
            continue
    raise AssertionError("unreachable")


@settings(max_examples=300)
@given(st.dictionaries(any_text, values, max_size=6))
def test_json_file_bytes_are_the_stdlib_encoders(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder, persistdict.open(Path(folder) / "d.json") as d:
        assert_same_outcome(d.backend.encode, _reference_json_file, data)


def test_json_file_refuses_a_circular_value_as_json_does(tmp_path: Path) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with persistdict.open(tmp_path / "d.json") as d:
        with pytest.raises(ValueError, match="Circular reference detected"):
            d.backend.encode({"k": loop})
        d["k"] = [1]
    assert (tmp_path / "d.json").read_bytes() == b'{\n  "k": [1]\n}\n'


@pytest.mark.parametrize("base", ["json", "orjson"])
def test_a_subclass_that_overrides_dumps_or_loads_is_used(tmp_path: Path, base: str) -> None:
    parent: type[JsonSerializer] = JsonSerializer if base == "json" else OrjsonSerializer

    class Tagged(parent):  # type: ignore[valid-type,misc]
        def dumps(self, obj: Any, /) -> str:
            text: str = super().dumps({"tagged": obj})
            return text

        def loads(self, data: str | bytes, /) -> Any:
            return super().loads(data)["tagged"]

    path = tmp_path / "data.db"
    with persistdict.open(path, serializer=Tagged()) as d:
        d["a"] = [1, "two"]
    with sqlite3.connect(path) as cx:
        assert cx.execute("SELECT value FROM items").fetchall() == [('{"tagged":[1,"two"]}',)]
    with persistdict.open(path, serializer=Tagged()) as d:
        assert d["a"] == [1, "two"]
