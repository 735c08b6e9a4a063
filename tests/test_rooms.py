"""Distri's own commands: ROOM.* (per-room keyspaces), CAS, and the SELECT -> room mapping.

Distri-only: skipped when DISTRI_TEST_TARGET=redis.
"""

import re
import threading
import time

import pytest
import redis

pytestmark = pytest.mark.distri

CODE_RE = re.compile(r"^[A-Za-z0-9_-]{22,}$")  # URL-safe base64, >= 128 bits


def as_dict(reply):
    """A RESP3 map arrives as a dict, a RESP2 one as a flat list of pairs."""
    if isinstance(reply, dict):
        return reply
    assert isinstance(reply, list) and len(reply) % 2 == 0, f"not a map: {reply!r}"
    return dict(zip(reply[0::2], reply[1::2]))


@pytest.fixture
def c(server, protocol):
    """A single-connection client (the room is per connection) on a flushed server."""
    cl = server.client(protocol=protocol, single_connection_client=True)
    cl.flushall()
    yield cl
    cl.close()


def new_client(server, protocol=2):
    return server.client(protocol=protocol, single_connection_client=True)


def room_new(cl, name=None):
    code = cl.execute_command("ROOM.NEW", *([name] if name is not None else []))
    assert isinstance(code, str), f"ROOM.NEW should return a bulk string, got {code!r}"
    return code


def room_info(cl):
    return as_dict(cl.execute_command("ROOM.INFO"))


def room_list(cl):
    reply = cl.execute_command("ROOM.LIST")
    assert isinstance(reply, list)
    return [as_dict(x) for x in reply]


# ---------------------------------------------------------------------------
# ROOM.NEW / ROOM.INFO / ROOM.JOIN
# ---------------------------------------------------------------------------


def test_new_connection_starts_in_default_room(c):
    info = room_info(c)
    assert info["name"] == "default" or info["code"] == "default", info
    for field in ("code", "name", "keys", "created_at_ms"):
        assert field in info, f"ROOM.INFO lacks {field}: {info}"


def test_room_new_returns_random_code_and_switches(c):
    c.set("k", "in-default")
    code = room_new(c)
    assert CODE_RE.match(code), f"room code {code!r} is not URL-safe base64 of >= 22 chars"
    info = room_info(c)
    assert info["code"] == code
    assert int(info["keys"]) == 0
    created = int(info["created_at_ms"])
    assert abs(created - time.time() * 1000) < 60_000, "created_at_ms is wall-clock ms"
    assert c.get("k") is None, "the connection switched into the new, empty room"
    c.set("k", "in-room")
    assert c.get("k") == "in-room"
    assert int(room_info(c)["keys"]) == 1
    codes = {room_new(c) for _ in range(20)}
    assert len(codes) == 20 and code not in codes, "codes must be unique"
    for other in codes:
        assert CODE_RE.match(other)


def test_room_new_with_name(c):
    code = room_new(c, "Team Blue")
    info = room_info(c)
    assert info["name"] == "Team Blue"
    assert info["code"] == code


def test_room_join_shares_keys(server, c):
    code = room_new(c, "shared")
    c.set("x", "1")
    other = new_client(server)
    assert other.get("x") is None, "new connections start in default"
    assert other.execute_command("ROOM.JOIN", code) in (True, "OK")
    assert other.get("x") == "1"
    other.set("y", "2")
    assert c.get("y") == "2"
    assert room_info(other)["code"] == code


def test_room_join_unknown_code(c, server):
    c.set("k", "v")
    with pytest.raises(redis.ResponseError) as e:
        c.execute_command("ROOM.JOIN", "AAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    # redis-py strips a leading "ERR "; a NOTFOUND code stays in the message.
    assert str(e.value).startswith("NOTFOUND") or "NOTFOUND" in repr(e.value)
    with server.raw() as raw:
        reply = raw.cmd("ROOM.JOIN", "nosuchroom")
        assert str(reply).startswith("NOTFOUND"), reply
    assert c.get("k") == "v", "a failed JOIN keeps the current room"


def test_room_join_arity(server):
    with server.raw() as raw:
        assert str(raw.cmd("ROOM.JOIN")).startswith("ERR wrong number of arguments")
        assert raw.cmd("PING") == b"PONG"


def test_keys_are_per_room(server, c):
    c.mset({"a": "default-a", "b": "default-b"})
    code1 = room_new(c, "one")
    c.mset({"a": "one-a", "z": "one-z", "q": "one-q"})
    code2 = room_new(c, "two")
    c.set("a", "two-a")

    def in_room(code):
        cl = new_client(server)
        if code is not None:
            cl.execute_command("ROOM.JOIN", code)
        return cl

    d, r1, r2 = in_room(None), in_room(code1), in_room(code2)
    assert d.get("a") == "default-a" and r1.get("a") == "one-a" and r2.get("a") == "two-a"
    assert (d.dbsize(), r1.dbsize(), r2.dbsize()) == (2, 3, 1)
    assert sorted(r1.keys("*")) == ["a", "q", "z"]
    assert sorted(k for k in r1.scan_iter()) == ["a", "q", "z"]
    assert r2.exists("z") == 0
    # FLUSHDB clears only the current room.
    assert r1.flushdb() is True
    assert (d.dbsize(), r1.dbsize(), r2.dbsize()) == (2, 0, 1)
    # DEL in one room does not touch a key of the same name elsewhere.
    assert r2.delete("a") == 1
    assert d.get("a") == "default-a"
    # FLUSHALL clears every room.
    r1.set("again", "1")
    assert d.flushall() is True
    assert (d.dbsize(), r1.dbsize(), r2.dbsize()) == (0, 0, 0)


def test_room_list(server, c):
    c.set("k", "v")
    code_a = room_new(c, "list-a")
    c.mset({"1": "1", "2": "2", "3": "3"})
    code_b = room_new(c, "list-b")
    rooms = room_list(c)
    for room in rooms:
        for field in ("code", "name", "keys"):
            assert field in room, f"ROOM.LIST entry lacks {field}: {room}"
    by_code = {room["code"]: room for room in rooms}
    assert by_code[code_a]["name"] == "list-a"
    assert int(by_code[code_a]["keys"]) == 3
    assert by_code[code_b]["name"] == "list-b"
    assert int(by_code[code_b]["keys"]) == 0


def test_room_drop(server, c):
    code = room_new(c, "doomed")
    c.mset({"a": "1", "b": "2"})
    watcher = new_client(server)
    watcher.set("a", "default")
    assert watcher.execute_command("ROOM.DROP", code) in (True, "OK")
    assert code not in {room["code"] for room in room_list(watcher)}
    with pytest.raises(redis.ResponseError):
        watcher.execute_command("ROOM.JOIN", code)
    assert watcher.get("a") == "default"
    fresh = new_client(server)
    with pytest.raises(redis.ResponseError):
        fresh.execute_command("ROOM.JOIN", code)
    # A new room with the same name is a different, empty room.
    code2 = room_new(fresh, "doomed")
    assert code2 != code
    assert fresh.dbsize() == 0


def test_room_drop_default_is_an_error(c):
    c.set("k", "v")
    with pytest.raises(redis.ResponseError):
        c.execute_command("ROOM.DROP", "default")
    assert c.get("k") == "v"
    with pytest.raises(redis.ResponseError):
        c.execute_command("ROOM.DROP", "no-such-room-code-xxxxxxxxx")


def test_room_commands_in_resp3_raw(server):
    with server.raw() as raw:
        assert isinstance(raw.cmd("HELLO", "3"), dict)
        code = raw.cmd("ROOM.NEW", "r3")
        assert isinstance(code, bytes) and CODE_RE.match(code.decode())
        info = raw.cmd("ROOM.INFO")
        assert isinstance(info, dict), "RESP3 ROOM.INFO should be a map"
        assert info[b"code"] == code
        listing = raw.cmd("ROOM.LIST")
        assert isinstance(listing, list) and all(isinstance(x, dict) for x in listing)


# ---------------------------------------------------------------------------
# SELECT -> rooms "1".."15"
# ---------------------------------------------------------------------------


def test_select_maps_to_named_rooms(server, c):
    c.set("k", "zero")
    assert room_info(c)["name"] == "default" or room_info(c)["code"] == "default"
    c.execute_command("SELECT", 3)
    info = room_info(c)
    assert "3" in (info["name"], info["code"]), f"SELECT 3 should be room '3': {info}"
    c.set("k", "three")
    # Another connection reaches the same room through ROOM.JOIN with its code.
    other = new_client(server)
    other.execute_command("ROOM.JOIN", info["code"])
    assert other.get("k") == "three"
    # ...and through SELECT 3.
    third = new_client(server)
    third.execute_command("SELECT", 3)
    assert third.get("k") == "three"
    c.execute_command("SELECT", 0)
    assert c.get("k") == "zero"
    names = {room["name"] for room in room_list(c)} | {room["code"] for room in room_list(c)}
    assert "3" in names


def test_select_after_room_new_leaves_the_room(c):
    room_new(c, "r")
    c.set("k", "room")
    c.execute_command("SELECT", 0)
    assert c.get("k") is None
    assert room_info(c)["name"] == "default" or room_info(c)["code"] == "default"


# ---------------------------------------------------------------------------
# CAS
# ---------------------------------------------------------------------------


def test_cas_three_args(c):
    c.set("k", "old")
    assert c.execute_command("CAS", "k", "wrong", "new") == 0
    assert c.get("k") == "old"
    assert c.execute_command("CAS", "k", "old", "new") == 1
    assert c.get("k") == "new"
    assert c.execute_command("CAS", "k", "old", "newer") == 0
    assert c.get("k") == "new"
    assert c.execute_command("CAS", "missing", "x", "y") == 0
    assert c.exists("missing") == 0
    assert c.execute_command("CAS", "k", "new", "") == 1
    assert c.get("k") == ""


def test_cas_two_args_sets_if_absent(c):
    assert c.execute_command("CAS", "k", "first") == 1
    assert c.get("k") == "first"
    assert c.execute_command("CAS", "k", "second") == 0
    assert c.get("k") == "first"


def test_cas_binary_values(server):
    cl = server.client(decode=False)
    cl.set(b"b", b"\x00\xff\r\n")
    assert cl.execute_command("CAS", b"b", b"\x00\xff\r", b"x") == 0
    assert cl.execute_command("CAS", b"b", b"\x00\xff\r\n", b"\x01\r\n") == 1
    assert cl.get(b"b") == b"\x01\r\n"


def test_cas_errors(server):
    with server.raw() as raw:
        assert str(raw.cmd("CAS", "k")).startswith("ERR wrong number of arguments")
        assert str(raw.cmd("CAS")).startswith("ERR wrong number of arguments")
        assert str(raw.cmd("CAS", "k", "a", "b", "c")).startswith("ERR")
        assert raw.cmd("PING") == b"PONG"


def test_cas_is_per_room(server, c):
    c.set("k", "v")
    room_new(c)
    assert c.execute_command("CAS", "k", "v", "w") == 0
    assert c.execute_command("CAS", "k", "mine") == 1
    assert new_client(server).get("k") == "v"


def test_cas_counter_is_linearizable(server):
    """Many connections increment one counter by CAS retry loops: no update is lost."""
    setup = server.client()
    setup.flushall()
    setup.set("counter", "0")
    threads, per_thread = 6, 40
    errors = []

    def work():
        cl = server.client()
        try:
            done = 0
            while done < per_thread:
                cur = cl.get("counter")
                if cl.execute_command("CAS", "counter", cur, str(int(cur) + 1)) == 1:
                    done += 1
        except Exception as e:
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(80)
    assert not errors, errors
    assert setup.get("counter") == str(threads * per_thread)
