"""How values are stored (JSON text, tagged bytes, signed pickles) and read back."""

import hashlib
import hmac
import os
import pickle
import threading
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


def test_tampered_pickle_in_mirror_reads_as_undecodable(server, tmp_path):
    # The mirror is the whole room: a bad value there is an Undecodable (never
    # unpickled), so that it cannot break reading the rest.
    room = distri.connect(server.url, room_key="key", pickle=True, quiet=True)
    room["p"] = Point(5, 6)
    marker = tmp_path / "unpickled"
    evil = pickle.dumps(_Evil(str(marker)))
    room.set_raw("bad", b"\x01" + os.urandom(32) + evil)
    room.wait_until(lambda d: "bad" in d and "p" in d, timeout=10)
    assert room.data["p"] == Point(5, 6)
    bad = room.data["bad"]
    assert isinstance(bad, distri.Undecodable) and isinstance(bad.error, distri.SignatureError)
    assert bad.raw == room.get_raw("bad")
    with pytest.raises(distri.SignatureError):      # read by itself, it raises
        room["bad"]
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


# ---------------------------------------------------------------------------
# Pickles are bound to their room and key; values no client can misread
# ---------------------------------------------------------------------------

def test_pickle_copied_to_another_key_or_room_is_refused(server, tmp_path):
    a = distri.connect(server.url, room_key="shared", pickle=True, quiet=True)
    other = distri.connect(server.url, room_key="shared", pickle=True, quiet=True)
    a["role:alice"] = Point(1, 2)
    stored = a.get_raw("role:alice")
    # The same signed bytes at another key of the same room...
    a.set_raw("role:admin", stored)
    with pytest.raises(distri.SignatureError, match="copied from another key"):
        a["role:admin"]
    # ... and at the same key of another room with the same room key.
    other.set_raw("role:alice", stored)
    with pytest.raises(distri.SignatureError):
        other["role:alice"]
    assert a["role:alice"] == Point(1, 2)          # where it was written, it reads
    # bytes keys sign as the same key as their str spelling
    a[b"k\xc3\xa9"] = Point(3, 4)
    assert a["ké"] == Point(3, 4)
    a.close()
    other.close()


def test_old_unbound_pickle_format_is_refused_clearly(server, tmp_path):
    room = distri.connect(server.url, room_key="key", pickle=True, quiet=True)
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_Evil(str(marker)))
    old_mac = hmac.new(b"key", b"distri-pickle-v1" + payload, hashlib.sha256).digest()
    room.set_raw("old", b"\x01" + old_mac + payload)
    with pytest.raises(distri.SignatureError, match="old format"):
        room["old"]
    assert not marker.exists()
    room.close()


def test_pickle_signature_covers_room_and_key_directly():
    a = distri.Codec("k", True, room="ROOM1")
    b = distri.Codec("k", True, room="ROOM2")
    raw = a.encode(Point(1, 1), "x")
    assert a.decode(raw, "x") == Point(1, 1)
    assert a.decode(raw, b"x") == Point(1, 1)
    for codec, key in ((a, "y"), (b, "x"), (a, "x\x00")):
        with pytest.raises(distri.SignatureError):
            codec.decode(raw, key)
    # Boundaries are length-prefixed: room "ab" + key "c" != room "a" + key "bc".
    with pytest.raises(distri.SignatureError):
        distri.Codec("k", True, room="a").decode(
            distri.Codec("k", True, room="ab").encode(Point(0, 0), "c"), "bc")
    with pytest.raises(TypeError):                  # a pickle is always written for a key
        a.encode(Point(1, 1))


BIG = "1" * 5000          # past Python's default int-string limit (4300 digits)


def test_numbers_past_the_int_string_limit(room, redis_client):
    redis_client.execute_command("ROOM.JOIN", room.code)
    redis_client.set("big", BIG)
    redis_client.set("big_list", f"[{BIG}]")
    redis_client.set("small", "12")
    # Read as their text (Python refuses to convert them), never a bare ValueError.
    assert room["big"] == BIG and room.get("big") == BIG
    assert room["big_list"] == f"[{BIG}]"
    assert room.get_many(["big", "small", "big_list"]) == [BIG, 12, f"[{BIG}]"]
    room.wait_until(lambda d: "big_list" in d, timeout=10)
    assert room.data["big"] == BIG
    assert room.data.copy() == {"big": BIG, "big_list": f"[{BIG}]", "small": 12}
    with room.pipeline() as p:
        p.get("big")
    assert p.results == [BIG]
    # Writing such an int: a clear EncodeError without pickle (not a ValueError
    # from the middle of the codec); with pickle it is stored and read back.
    with pytest.raises(distri.EncodeError, match="limit"):
        room["n"] = 10 ** 5000
    with pytest.raises(distri.EncodeError):
        room["n"] = [10 ** 5000]
    p = distri.connect(room.url, room_key="k", pickle=True)
    p["n"] = 10 ** 5000
    assert p["n"] == 10 ** 5000
    p.close()


def test_big_numbers_read_as_int_when_the_limit_is_raised():
    import sys
    if not hasattr(sys, "set_int_max_str_digits"):
        pytest.skip("this Python has no int-string limit")
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        assert distri.Codec().decode(BIG.encode()) == int(BIG)
    finally:
        sys.set_int_max_str_digits(old)


def test_reads_of_many_values_survive_undecodable_ones(server):
    writer = distri.connect(server.url, room_key="key", pickle=True, quiet=True)
    writer["p"] = Point(1, 2)
    writer["j"] = {"a": 1}
    writer.set_raw("forged", b"\x01" + b"\x00" * 32 + pickle.dumps(1))
    plain = distri.connect(writer.url)             # no pickle
    wrong = distri.connect(writer.url, room_key="other", pickle=True)
    for reader, p_error in ((plain, distri.DecodeError), (wrong, distri.SignatureError)):
        # One key read by itself raises, as before.
        with pytest.raises(p_error):
            reader["p"]
        # Many at once: an Undecodable in place of each value, the rest decoded.
        got = reader.get_many(["p", "j", "forged", "missing"])
        assert isinstance(got[0], distri.Undecodable) and isinstance(got[0].error, p_error)
        assert got[0].raw == writer.get_raw("p")
        assert got[1] == {"a": 1} and got[3] is None
        assert isinstance(got[2].error, distri.SignatureError if reader is wrong
                          else distri.DecodeError)
        with reader.pipeline() as pl:
            pl.get("p")
            pl.get("j")
        assert isinstance(pl.results[0], distri.Undecodable) and pl.results[1] == {"a": 1}
        reader.wait_until(lambda d: len(d) == 3, timeout=10)
        copy = reader.data.copy()
        assert copy["j"] == {"a": 1} and isinstance(copy["p"], distri.Undecodable)
        assert dict(reader.data) == copy == dict(reader.data.items())
        assert isinstance(reader.data.get("p"), distri.Undecodable)
        assert sorted(reader.data) == ["forged", "j", "p"]
        assert any(isinstance(v, distri.Undecodable) for v in reader.data.values())
    # on_change callbacks get the marker too, and the mirror goes on.
    seen = {}
    done = threading.Event()

    def on_change(c):
        seen[c.key] = c.value
        if c.key == "after":
            done.set()
    plain.on_change(on_change)
    writer["p2"] = Point(0, 0)
    writer["after"] = 1
    assert done.wait(10)
    assert isinstance(seen["p2"], distri.Undecodable) and seen["after"] == 1
    for r in (writer, plain, wrong):
        r.close()
