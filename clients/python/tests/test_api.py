"""Every call of the blocking API against the real server."""

import threading
import time

import pytest

import distri


def test_connect_without_room_creates_one(server, capsys):
    room = distri.connect(server.url)
    try:
        assert len(room.code) == 22
        assert room.url == f"{server.url}/{room.code}"
        assert room.code in capsys.readouterr().err      # the new code is printed
        other = distri.connect(room.url)
        room["k"] = "v"
        assert other["k"] == "v"                          # same room
        other.close()
    finally:
        room.close()


def test_rooms_are_separate(server):
    a = distri.connect(server.url, quiet=True)
    b = distri.connect(server.url, quiet=True)
    a["k"] = 1
    assert "k" not in b and b.get("k") is None
    assert a.code != b.code
    a.close()
    b.close()


def test_default_room_and_url_forms(server):
    with distri.connect(f"127.0.0.1:{server.port}/default") as room:
        assert room.code == "default"
    with distri.connect(f"distri://127.0.0.1:{server.port}/7") as room:   # SELECT 7's room
        room["x"] = 1
        assert room.code == "7"


def test_connect_defaults_to_env_url(server, monkeypatch):
    monkeypatch.setenv("DISTRI_URL", f"{server.url}/default")
    with distri.connect() as room:
        assert room.code == "default"


def test_unknown_room_raises_not_found(server):
    with pytest.raises(distri.NotFound):
        distri.connect(f"{server.url}/no-such-room-code")


def test_item_access(room):
    room["a"] = {"x": [1, 2.5, None, True]}
    assert room["a"] == {"x": [1, 2.5, None, True]}
    assert "a" in room and "b" not in room
    with pytest.raises(KeyError):
        room["b"]
    del room["a"]
    assert "a" not in room
    with pytest.raises(KeyError):
        del room["a"]


def test_get_set_default_ttl(room):
    assert room.get("missing") is None
    assert room.get("missing", 42) == 42
    room.set("plain", "text")
    assert room.get("plain") == "text"
    assert room.ttl("plain") is None
    room.set("short", 1, ttl=0.3)
    remaining = room.ttl("short")
    assert 0 < remaining <= 0.3
    time.sleep(0.45)
    assert room.get("short") is None
    with pytest.raises(ValueError):
        room.set("bad", 1, ttl=0)
    with pytest.raises(KeyError):
        room.ttl("short")


def test_incr(room):
    assert room.incr("n") == 1
    assert room.incr("n", 500) == 501
    assert room.incr("n", -1) == 500
    assert room["n"] == 500                  # INCR's text reads back as a number
    assert room.incr("f", 1.5) == 1.5
    assert room.incr("f", 0.25) == pytest.approx(1.75)
    room["s"] = "text"
    with pytest.raises(distri.RequestError):
        room.incr("s")
    with pytest.raises(TypeError):
        room.incr("n", "1")


def test_incr_is_atomic_across_threads(room):
    def work():
        for _ in range(200):
            room.incr("hits")
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert room["hits"] == 800


def test_cas(room):
    assert room.cas("lock", None, "me") is True        # only if absent
    assert room.cas("lock", None, "you") is False
    assert room.cas("lock", "you", "x") is False
    assert room.cas("lock", "me", "you") is True
    assert room["lock"] == "you"
    room["doc"] = {"v": 1, "tags": ["a"]}
    assert room.cas("doc", {"v": 1, "tags": ["a"]}, {"v": 2}) is True
    assert room["doc"] == {"v": 2}


def test_keys_with_prefix(room):
    room.update({"job:1": 1, "job:2": 2, "jobs": 3, "other": 4, "we*ird[1]": 5, "we*x": 6})
    assert room.keys() == ["job:1", "job:2", "jobs", "other", "we*ird[1]", "we*x"]
    assert room.keys("job:") == ["job:1", "job:2"]
    assert room.keys("we*i") == ["we*ird[1]"]            # glob characters are literal
    assert room.keys("nothing") == []


def test_expire_and_persist(room):
    room["k"] = 1
    assert room.expire("k", 10) is True
    assert 9 < room.ttl("k") <= 10
    assert room.expire("k", None) is True                # persist
    assert room.ttl("k") is None
    assert room.expire("missing", 5) is False
    assert room.expire("k", 0.2) is True
    time.sleep(0.35)
    assert "k" not in room


def test_delete_update_get_many_len_clear(room):
    room.update({"a": 1, "b": [2], "c": "three"})
    assert len(room) == 3
    assert room.get_many(["a", "b", "x", "c"]) == [1, [2], None, "three"]
    assert room.get_many(["x"], default=0) == [0]
    assert room.get_many([]) == []
    assert room.delete("a", "x") == 1
    assert room.delete() == 0
    room.clear()
    assert len(room) == 0


def test_raw_values(room, redis_client):
    room.set_raw("r", b"plain bytes")
    assert room.get_raw("r") == b"plain bytes"
    assert room.get_raw("missing") is None
    with pytest.raises(TypeError):
        room.set_raw("r", "not bytes")


def test_pipeline(room):
    with room.pipeline() as p:
        p.set("a", 1).incr("a", 2).get("a").cas("a", 3, 4).get("a").delete("a").expire("a", 1)
        assert len(p) == 7
    assert p.results == [None, 3, 3, True, 4, 1, False]
    p = room.pipeline()
    assert p.execute() == []
    p.set("s", "x").incr("s")
    with pytest.raises(distri.RequestError):
        p.execute()


def test_stats_and_info(room, server):
    room["a"] = 1
    room.get("a")
    info = room.info()
    assert info["code"] == room.code and info["keys"] == 1 and info["revision"] > 0
    st = room.stats()
    for field in ("code", "name", "clients", "mirrors", "keys", "memory_bytes", "reads",
                  "writes", "reads_per_sec_1s", "writes_per_sec_1s", "reads_per_sec_1m",
                  "writes_per_sec_1m", "created_at_ms", "last_write_ms", "revision"):
        assert field in st, field
    assert st["code"] == room.code and st["keys"] == 1 and st["writes"] >= 1
    site = distri.stats(server.url)
    for field in ("version", "node_id", "uptime_s", "rooms", "clients", "mirrors", "keys",
                  "memory_bytes", "ops_per_sec_1s", "ops_per_sec_1m", "commands_total",
                  "reads_total", "writes_total", "revision", "connections_total",
                  "slow_consumer_disconnects"):
        assert field in site, field
    assert site["keys"] >= 1


def test_execute_and_ping(room):
    room.ping()
    assert room.execute("ECHO", "hi") == b"hi"
    assert room.execute("DBSIZE") == 0


def test_closed_room_refuses_calls(server):
    room = distri.connect(server.url, quiet=True)
    room.close()
    with pytest.raises(distri.ClosedError):
        room["k"] = 1


def test_non_string_keys_rejected(room):
    with pytest.raises(TypeError):
        room[True] = 1
