"""How values are stored (JSON text, tagged bytes, signed pickles) and read back."""

import hashlib
import hmac
import os
import pickle
from collections import OrderedDict
from decimal import Decimal

import pytest

import distri


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


JSON_VALUES = ["", "hello", "ünïcødé ✓", "123", 0, -7, 2 ** 70, 1.5, True, False, None,
               [], {}, [1, "a", None], {"nested": {"list": [1, {"x": 2}]}}]


@pytest.mark.parametrize("value", JSON_VALUES, ids=repr)
def test_json_values_round_trip(room, value):
    room["v"] = value
    assert room["v"] == value
    assert type(room["v"]) is type(value)


def test_json_is_stored_as_plain_text(room, redis_client):
    room["doc"] = {"name": "ada", "n": [1, 2]}
    room["s"] = "hi"
    room["i"] = 42
    redis_client.execute_command("ROOM.JOIN", room.code)
    assert redis_client.get("doc") == b'{"name":"ada","n":[1,2]}'
    assert redis_client.get("s") == b'"hi"'
    assert redis_client.get("i") == b"42"


def test_tuples_become_lists(room):
    room["t"] = (1, 2)
    assert room["t"] == [1, 2]


def test_bytes_are_tagged_raw(room, redis_client):
    blob = bytes(range(256))
    room["b"] = blob
    assert room["b"] == blob
    room["empty"] = b""
    assert room["empty"] == b""
    room["ba"] = bytearray(b"xyz")
    assert room["ba"] == b"xyz"
    room["looks_like_json"] = b"123"
    assert room["looks_like_json"] == b"123"          # still bytes, not the int 123
    redis_client.execute_command("ROOM.JOIN", room.code)
    assert redis_client.get("b") == b"\x00" + blob


def test_values_written_by_other_tools(room, redis_client):
    redis_client.execute_command("ROOM.JOIN", room.code)
    redis_client.set("word", "hello")           # not JSON: a str
    redis_client.set("num", "41")               # JSON number (INCR writes these)
    redis_client.set("bin", b"\xff\xfe")         # not UTF-8: bytes
    redis_client.set("nan", "NaN")              # not strict JSON: a str
    assert room["word"] == "hello"
    assert room["num"] == 41
    assert room["bin"] == b"\xff\xfe"
    assert room["nan"] == "NaN"


def test_non_json_refused_without_pickle(room):
    for value in (Point(1, 2), {1, 2}, Decimal("1.5"), float("nan"), {"k": object()}):
        with pytest.raises(distri.EncodeError):
            room["x"] = value
    assert "x" not in room


def test_pickle_needs_room_key(server):
    with pytest.raises(ValueError):
        distri.connect(server.url, pickle=True, quiet=True)


def test_pickle_opt_in_round_trip(server):
    a = distri.connect(server.url, room_key="s3cret", pickle=True, quiet=True)
    b = distri.connect(a.url, room_key=b"s3cret", pickle=True)
    a["p"] = Point(3, 4)
    a["s"] = {1, 2, 3}
    a["j"] = {"still": "json"}                 # JSON values stay readable text
    assert b["p"] == Point(3, 4)
    assert b["s"] == {1, 2, 3}
    assert a.get_raw("j") == b'{"still":"json"}'
    assert a.get_raw("p")[:1] == b"\x01"
    a.close()
    b.close()


def test_pickle_not_read_without_opt_in(server):
    a = distri.connect(server.url, room_key="k", pickle=True, quiet=True)
    a["p"] = Point(1, 1)
    for kwargs in ({}, {"room_key": "k"}):          # no key / key without opt-in
        plain = distri.connect(a.url, **kwargs)
        with pytest.raises(distri.DecodeError):
            plain["p"]
        plain.close()
    a.close()


def test_pickle_wrong_key_rejected(server):
    a = distri.connect(server.url, room_key="right", pickle=True, quiet=True)
    b = distri.connect(a.url, room_key="wrong", pickle=True)
    a["p"] = Point(1, 2)
    with pytest.raises(distri.SignatureError):
        b["p"]
    a.close()
    b.close()


class _Evil:
    """Unpickling this creates a file: the proof that a payload was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_tampered_pickle_rejected_before_unpickling(server, tmp_path):
    room = distri.connect(server.url, room_key="key", pickle=True, quiet=True)
    room["p"] = Point(1, 2)
    stored = room.get_raw("p")
    mac, payload = stored[1:33], stored[33:]

    marker = tmp_path / "unpickled"
    evil = pickle.dumps(_Evil(str(marker)))
    # 1. payload swapped, old signature kept
    room.set_raw("p", b"\x01" + mac + evil)
    with pytest.raises(distri.SignatureError):
        room["p"]
    # 2. one bit of the payload flipped
    flipped = bytearray(payload)
    flipped[len(flipped) // 2] ^= 1
    room.set_raw("p", b"\x01" + mac + bytes(flipped))
    with pytest.raises(distri.SignatureError):
        room["p"]
    # 3. signed with another key
    forged = hmac.new(b"guess", b"distri-pickle-v1" + evil, hashlib.sha256).digest()
    room.set_raw("p", b"\x01" + forged + evil)
    with pytest.raises(distri.SignatureError):
        room["p"]
    # 4. too short to hold a signature
    room.set_raw("p", b"\x01abc")
    with pytest.raises(distri.SignatureError):
        room["p"]
    assert not marker.exists()
    # the untampered value still reads
    room.set_raw("p", stored)
    assert room["p"] == Point(1, 2)
    room.close()


def test_tampered_pickle_in_mirror_raises_on_read(server, tmp_path):
    room = distri.connect(server.url, room_key="key", pickle=True, quiet=True)
    room["p"] = Point(5, 6)
    marker = tmp_path / "unpickled"
    evil = pickle.dumps(_Evil(str(marker)))
    room.set_raw("bad", b"\x01" + os.urandom(32) + evil)
    room.wait_until(lambda d: "bad" in d and "p" in d, timeout=10)
    assert room.data["p"] == Point(5, 6)
    with pytest.raises(distri.SignatureError):
        room.data["bad"]
    assert not marker.exists()
    room.close()


def test_codec_rules_directly():
    c = distri.Codec()
    assert c.encode("x") == b'"x"'
    assert c.encode({"a": 1}) == b'{"a":1}'
    assert c.encode(OrderedDict(b=1, a=2)) == b'{"b":1,"a":2}'
    assert c.encode(b"\x01") == b"\x00\x01"
    assert c.decode(b"\x00") == b""
    assert c.decode(b"") == ""
    assert c.decode(b"  7 ") == 7
    assert c.decode(b"Infinity") == "Infinity"
    assert c.decode(b"[" * 100000) == "[" * 100000        # too deep: kept as text
