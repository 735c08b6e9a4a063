"""Redis compatibility: the Redis commands Distri supports, through redis-py (RESP2
and RESP3) and, where the exact bytes or error text matter, through a raw socket.

Every test here must also pass against a real redis-server
(DISTRI_TEST_TARGET=redis), which is how the expectations are validated.
"""

import threading
import time

import pytest
import redis

from conftest import RawError, wait_until

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


@pytest.fixture
def conn(server):
    """A raw connection on an empty keyspace (RESP2 until the test says HELLO 3)."""
    c = server.raw()
    assert c.cmd("FLUSHALL") == b"OK"
    yield c
    c.close()


@pytest.fixture
def r1(server, protocol):
    """A single-connection client, for tests whose state lives on the connection."""
    c = server.client(protocol=protocol, single_connection_client=True)
    c.flushall()
    yield c
    c.close()


def error_of(conn, *args):
    reply = conn.cmd(*args)
    assert isinstance(reply, RawError), f"{args} should fail, got {reply!r}"
    return str(reply)


def pairs_to_dict(reply):
    if isinstance(reply, dict):
        return reply
    assert isinstance(reply, list) and len(reply) % 2 == 0, reply
    return dict(zip(reply[0::2], reply[1::2]))


# ---------------------------------------------------------------------------
# Connection commands
# ---------------------------------------------------------------------------


def test_ping_and_echo(r, conn):
    assert r.ping() is True
    assert conn.cmd("PING", "hello") == b"hello"
    assert r.echo("hi there") == "hi there"
    assert r.echo("") == ""
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'echo'"):
        r.execute_command("ECHO")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'ping'"):
        r.execute_command("PING", "a", "b")


def test_ping_raw_bytes(conn):
    conn.send(b"*1\r\n$4\r\nPING\r\n")
    assert conn.read_exactly(7) == b"+PONG\r\n"
    conn.send(b"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n")
    assert conn.read_exactly(8) == b"$2\r\nhi\r\n"


def test_hello_2_is_flat_array(conn):
    conn.send(b"HELLO 2\r\n")
    reply = conn.read_reply()
    assert isinstance(reply, list), f"RESP2 HELLO reply must be an array, got {reply!r}"
    fields = pairs_to_dict(reply)
    assert fields[b"proto"] == 2
    assert isinstance(fields[b"id"], int)
    for key in (b"server", b"version", b"mode", b"role", b"modules"):
        assert key in fields
    # Still RESP2: a missing key is a null bulk.
    conn.send(b"GET nosuchkey\r\n")
    assert conn.read_exactly(5) == b"$-1\r\n"


def test_hello_3_switches_to_resp3(conn):
    conn.send(b"HELLO 3\r\n")
    fields = conn.read_reply()
    assert isinstance(fields, dict), f"RESP3 HELLO reply must be a map, got {fields!r}"
    assert fields[b"proto"] == 3
    assert isinstance(fields[b"id"], int)
    # RESP3 null and integers.
    conn.send(b"GET nosuchkey\r\n")
    assert conn.read_exactly(3) == b"_\r\n"
    conn.send(b"INCR counter\r\n")
    assert conn.read_exactly(4) == b":1\r\n"
    # Back to RESP2 on the same connection.
    assert pairs_to_dict(conn.cmd("HELLO", "2"))[b"proto"] == 2
    conn.send(b"GET nosuchkey\r\n")
    assert conn.read_exactly(5) == b"$-1\r\n"


def test_hello_errors_and_options(conn):
    assert error_of(conn, "HELLO", "4") == "NOPROTO unsupported protocol version"
    assert error_of(conn, "HELLO", "1") == "NOPROTO unsupported protocol version"
    reply = conn.cmd("HELLO", "3", "SETNAME", "hello-name")
    assert reply[b"proto"] == 3
    assert conn.cmd("CLIENT", "GETNAME") == b"hello-name"
    # AUTH with no password configured: the default user has none, any password works.
    reply = conn.cmd("HELLO", "2", "AUTH", "default", "anything")
    assert pairs_to_dict(reply)[b"proto"] == 2


def test_auth_without_password_configured(conn):
    assert error_of(conn, "AUTH", "secret") == (
        "ERR AUTH <password> called without any password configured for the default user. "
        "Are you sure your configuration is correct?")
    assert conn.cmd("PING") == b"PONG"


def test_requirepass(server_factory, protocol):
    s = server_factory(requirepass="s3cret pass")
    with s.raw() as c:
        assert error_of(c, "GET", "k") == "NOAUTH Authentication required."
        assert error_of(c, "SET", "k", "v") == "NOAUTH Authentication required."
        assert error_of(c, "AUTH", "wrong") == (
            "WRONGPASS invalid username-password pair or user is disabled.")
        assert error_of(c, "GET", "k").startswith("NOAUTH")
        assert c.cmd("AUTH", "s3cret pass") == b"OK"
        assert c.cmd("SET", "k", "v") == b"OK"
    with s.raw() as c:
        assert c.cmd("AUTH", "default", "s3cret pass") == b"OK"
        assert c.cmd("GET", "k") == b"v"
    with s.raw() as c:
        assert error_of(c, "HELLO", "3", "AUTH", "default", "nope").startswith("WRONGPASS")
        reply = c.cmd("HELLO", "3", "AUTH", "default", "s3cret pass")
        assert reply[b"proto"] == 3
        assert c.cmd("GET", "k") == b"v"
    # redis-py authenticates with AUTH (RESP2) or HELLO ... AUTH (RESP3).
    assert s.client(protocol=protocol).get("k") == "v"
    with pytest.raises(redis.AuthenticationError):
        s.client(protocol=protocol, password="wrong").ping()


def test_client_id_name_list(server, protocol):
    a = server.client(protocol=protocol, single_connection_client=True)
    b = server.client(protocol=protocol, single_connection_client=True)
    ida, idb = a.client_id(), b.client_id()
    assert isinstance(ida, int) and isinstance(idb, int) and ida != idb
    assert a.client_getname() is None
    assert a.client_setname("alpha") is True
    assert a.client_getname() == "alpha"
    assert b.client_getname() is None
    listed = {int(c["id"]): c for c in a.client_list()}
    assert ida in listed and idb in listed
    assert listed[ida]["name"] == "alpha"
    assert "addr" in listed[ida]
    with pytest.raises(redis.ResponseError):
        a.client_setname("has space")
    assert a.client_getname() == "alpha"


def test_client_list_raw_format(conn):
    conn.cmd("CLIENT", "SETNAME", "rawconn")
    text = conn.cmd("CLIENT", "LIST")
    assert isinstance(text, bytes)
    lines = [l for l in text.decode().split("\n") if l]
    mine = [l for l in lines if " name=rawconn " in f" {l} "]
    assert len(mine) == 1, lines
    assert mine[0].startswith("id=")


def test_command_count_info_docs(conn):
    count = conn.cmd("COMMAND", "COUNT")
    assert isinstance(count, int) and count >= 40
    info = conn.cmd("COMMAND", "INFO", "get", "set", "nosuchcommand")
    assert len(info) == 3
    assert info[0][0] == b"get" and info[0][1] == 2
    assert info[1][0] == b"set" and info[1][1] == -3
    assert info[2] is None
    mset = conn.cmd("COMMAND", "INFO", "mset")[0]
    assert mset[1] == -3
    assert mset[3:6] == [1, -1, 2], "first key, last key, step"
    docs = pairs_to_dict(conn.cmd("COMMAND", "DOCS", "get"))
    assert list(docs) == [b"get"]
    assert b"summary" in pairs_to_dict(docs[b"get"])


def test_info(r, conn):
    info = r.info()
    assert isinstance(info, dict) and info
    text = conn.cmd("INFO")
    assert isinstance(text, bytes)
    assert b"# Server" in text
    assert b"\r\n" in text
    # Every non-comment line is field:value.
    for line in text.decode().split("\r\n"):
        if line and not line.startswith("#"):
            assert ":" in line, line


def test_config_get(r):
    got = r.config_get("maxmemory")
    assert set(got) == {"maxmemory"}
    assert int(got["maxmemory"]) >= 0
    assert r.config_get("no-such-parameter-xyz") == {}


def test_select_isolates_databases(r1):
    r1.set("k", "zero")
    for db in range(1, 16):
        assert r1.execute_command("SELECT", db) in (True, "OK")
        assert r1.get("k") is None
        r1.set("k", f"db{db}")
    assert r1.execute_command("SELECT", 0) in (True, "OK")
    assert r1.get("k") == "zero"
    assert r1.dbsize() == 1
    r1.execute_command("SELECT", 7)
    assert r1.get("k") == "db7"
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r1.execute_command("SELECT", 16)
    with pytest.raises(redis.ResponseError, match="value is not an integer or out of range"):
        r1.execute_command("SELECT", "abc")
    assert r1.get("k") == "db7", "a failed SELECT keeps the current database"


def test_select_is_per_connection(server):
    a = server.client(single_connection_client=True)
    b = server.client(single_connection_client=True)
    a.flushall()
    a.execute_command("SELECT", 3)
    a.set("k", "in3")
    assert b.get("k") is None
    b.execute_command("SELECT", 3)
    assert b.get("k") == "in3"


def test_quit(conn):
    conn.send(b"QUIT\r\nPING\r\n")
    assert conn.read_until_eof() == b"+OK\r\n"


def test_inline_commands(conn):
    conn.send(b"PING\r\n")
    assert conn.read_exactly(7) == b"+PONG\r\n"
    conn.send(b'SET a "b c"\r\n')
    assert conn.read_exactly(5) == b"+OK\r\n"
    assert conn.cmd("GET", "a") == b"b c"
    conn.send(b"SET   spaced   'x y z'  \r\n")
    assert conn.read_exactly(5) == b"+OK\r\n"
    assert conn.cmd("GET", "spaced") == b"x y z"
    conn.send(b'SET esc "\\x41\\n"\r\n')
    assert conn.read_exactly(5) == b"+OK\r\n"
    assert conn.cmd("GET", "esc") == b"A\n"
    conn.send(b"PING\n")  # a bare LF ends an inline command too
    assert conn.read_exactly(7) == b"+PONG\r\n"
    conn.send(b"\r\n\r\nECHO hi\r\n")  # empty lines are ignored
    assert conn.read_exactly(8) == b"$2\r\nhi\r\n"
    conn.send(b"*0\r\nPING\r\n")  # an empty array is ignored
    assert conn.read_exactly(7) == b"+PONG\r\n"


def test_unknown_command_and_arity_errors(conn):
    assert error_of(conn, "FOO", "a", "b") == (
        "ERR unknown command 'FOO', with args beginning with: 'a' 'b' ")
    assert error_of(conn, "foo") == "ERR unknown command 'foo', with args beginning with: "
    assert error_of(conn, "GET") == "ERR wrong number of arguments for 'get' command"
    assert error_of(conn, "get", "a", "b") == "ERR wrong number of arguments for 'get' command"
    assert error_of(conn, "SET", "a") == "ERR wrong number of arguments for 'set' command"
    assert error_of(conn, "MSET", "a") == "ERR wrong number of arguments for 'mset' command"
    assert error_of(conn, "MSET", "a", "1", "b") == (
        "ERR wrong number of arguments for 'mset' command")
    assert error_of(conn, "DEL") == "ERR wrong number of arguments for 'del' command"
    assert error_of(conn, "MGET") == "ERR wrong number of arguments for 'mget' command"
    assert error_of(conn, "INCRBY", "a") == "ERR wrong number of arguments for 'incrby' command"
    # The connection stays usable after every error.
    assert conn.cmd("PING") == b"PONG"


# ---------------------------------------------------------------------------
# Strings: GET / SET and friends
# ---------------------------------------------------------------------------


def test_set_get_basic(r):
    assert r.get("missing") is None
    assert r.set("k", "v") is True
    assert r.get("k") == "v"
    assert r.set("k", "w") is True
    assert r.get("k") == "w"
    assert r.set("empty", "") is True
    assert r.get("empty") == ""
    assert r.exists("empty") == 1
    assert r.set("üñí key", "välue ✓") is True
    assert r.get("üñí key") == "välue ✓"


def test_binary_safe(rb):
    value = bytes(range(256)) * 4 + b"\r\n\x00$-1\r\n*3\r\n"
    key = b"bin\x00key\r\n"
    assert rb.set(key, value) is True
    assert rb.get(key) == value
    assert rb.strlen(key) == len(value)
    assert rb.mget([key, b"bin"]) == [value, None]


def test_large_value(rb):
    value = (b"0123456789abcdef" * 65536)[:1_000_003]
    assert rb.set(b"big", value) is True
    assert rb.get(b"big") == value
    assert rb.strlen(b"big") == len(value)


def test_set_nx_xx(r):
    assert r.set("k", "1", xx=True) is None
    assert r.get("k") is None
    assert r.set("k", "1", nx=True) is True
    assert r.set("k", "2", nx=True) is None
    assert r.get("k") == "1"
    assert r.set("k", "3", xx=True) is True
    assert r.get("k") == "3"


def test_set_expiry_options(r):
    now = time.time()
    assert r.set("ex", "v", ex=100) is True
    assert 98 <= r.ttl("ex") <= 100
    assert r.set("px", "v", px=100_000) is True
    assert 98_000 <= r.pttl("px") <= 100_000
    assert r.set("exat", "v", exat=int(now) + 200) is True
    assert 197 <= r.ttl("exat") <= 200
    assert r.set("pxat", "v", pxat=int(now * 1000) + 300_000) is True
    assert 297_000 <= r.pttl("pxat") <= 300_000
    # A plain SET clears the TTL; KEEPTTL keeps it.
    r.set("ex", "v2")
    assert r.ttl("ex") == -1
    r.set("px", "v2", keepttl=True)
    assert 90_000 <= r.pttl("px") <= 100_000
    assert r.get("px") == "v2"
    # SET ... EXAT in the past stores nothing that is visible.
    r.set("past", "v", exat=int(now) - 10)
    assert r.get("past") is None


def test_set_get_option(r):
    assert r.set("k", "v1", get=True) is None
    assert r.set("k", "v2", get=True) == "v1"
    assert r.get("k") == "v2"
    assert r.set("k", "v3", nx=True, get=True) == "v2"
    assert r.get("k") == "v2"
    assert r.set("new", "x", xx=True, get=True) is None
    assert r.get("new") is None


def test_set_option_errors(conn):
    assert error_of(conn, "SET", "k", "v", "NX", "XX") == "ERR syntax error"
    assert error_of(conn, "SET", "k", "v", "EX", "10", "PX", "5") == "ERR syntax error"
    assert error_of(conn, "SET", "k", "v", "KEEPTTL", "EX", "5") == "ERR syntax error"
    assert error_of(conn, "SET", "k", "v", "BOGUS") == "ERR syntax error"
    assert error_of(conn, "SET", "k", "v", "EX") == "ERR syntax error"
    assert error_of(conn, "SET", "k", "v", "EX", "abc") == (
        "ERR value is not an integer or out of range")
    assert error_of(conn, "SET", "k", "v", "EX", "0") == "ERR invalid expire time in 'set' command"
    assert error_of(conn, "SET", "k", "v", "PX", "-5") == (
        "ERR invalid expire time in 'set' command")
    assert conn.cmd("EXISTS", "k") == 0, "a rejected SET must not write"


def test_setnx_getdel(r):
    assert r.setnx("k", "1") is True
    assert r.setnx("k", "2") is False
    assert r.get("k") == "1"
    assert r.getdel("k") == "1"
    assert r.getdel("k") is None
    assert r.exists("k") == 0


def test_mget_mset_msetnx(r):
    assert r.mset({"a": "1", "b": "2", "c": "3"}) is True
    assert r.mget("a", "b", "nope", "c") == ["1", "2", None, "3"]
    r.execute_command("MSET", "a", "x", "a", "y")  # last one wins
    assert r.get("a") == "y"
    assert r.msetnx({"n1": "1", "b": "new"}) is False
    assert r.exists("n1") == 0, "MSETNX is all or nothing"
    assert r.get("b") == "2"
    assert r.msetnx({"n1": "1", "n2": "2"}) is True
    assert r.mget("n1", "n2") == ["1", "2"]


def test_del_unlink_exists(r):
    r.mset({"a": "1", "b": "2", "c": "3", "d": "4"})
    assert r.exists("a", "a", "nope", "b") == 3, "EXISTS counts repeats"
    assert r.delete("a", "b", "nope") == 2
    assert r.delete("a") == 0
    assert r.unlink("c", "nope") == 1
    assert r.exists("a", "b", "c") == 0
    assert r.exists("d") == 1
    assert r.dbsize() == 1


def test_incr_decr(r):
    assert r.incr("n") == 1
    assert r.incr("n") == 2
    assert r.incrby("n", 40) == 42
    assert r.decr("n") == 41
    assert r.decrby("n", 50) == -9
    assert r.incrby("n", -1) == -10
    assert r.get("n") == "-10"
    r.set("s", "100")
    assert r.incr("s") == 101
    assert r.decrby("fresh", 5) == -5


def test_incr_errors(conn):
    conn.cmd("SET", "word", "abc")
    conn.cmd("SET", "float", "1.5")
    conn.cmd("SET", "empty", "")
    conn.cmd("SET", "space", " 1")
    for key in ("word", "float", "empty", "space"):
        assert error_of(conn, "INCR", key) == "ERR value is not an integer or out of range"
    assert conn.cmd("GET", "word") == b"abc"
    assert error_of(conn, "INCRBY", "n", "1.5") == "ERR value is not an integer or out of range"
    assert error_of(conn, "INCRBY", "n", "abc") == "ERR value is not an integer or out of range"
    assert error_of(conn, "DECRBY", "n", "9223372036854775808") == (
        "ERR value is not an integer or out of range")
    assert conn.cmd("EXISTS", "n") == 0


def test_incr_overflow(conn):
    assert conn.cmd("SET", "max", "9223372036854775807") == b"OK"
    assert error_of(conn, "INCR", "max") == "ERR increment or decrement would overflow"
    assert error_of(conn, "INCRBY", "max", "1") == "ERR increment or decrement would overflow"
    assert conn.cmd("GET", "max") == b"9223372036854775807"
    assert conn.cmd("INCRBY", "max", "-1") == 9223372036854775806
    assert conn.cmd("SET", "min", "-9223372036854775808") == b"OK"
    assert error_of(conn, "DECR", "min") == "ERR increment or decrement would overflow"
    assert error_of(conn, "DECRBY", "min", "9223372036854775807") == (
        "ERR increment or decrement would overflow")
    assert conn.cmd("GET", "min") == b"-9223372036854775808"
    assert conn.cmd("SET", "big", "9223372036854775808") == b"OK"
    assert error_of(conn, "INCR", "big") == "ERR value is not an integer or out of range"


def test_incrbyfloat(r, conn):
    r.set("f", "10.50")
    assert float(r.incrbyfloat("f", 0.1)) == pytest.approx(10.6)
    assert r.get("f") == "10.6"
    assert r.incrbyfloat("f", -5) == pytest.approx(5.6)
    assert r.get("f") == "5.6"
    r.set("e", "5.0e3")
    r.incrbyfloat("e", 2.0e2)
    assert r.get("e") == "5200"
    r.incrbyfloat("new", 3)
    assert r.get("new") == "3"
    assert conn.cmd("SET", "w", "abc") == b"OK"
    assert error_of(conn, "INCRBYFLOAT", "w", "1") == "ERR value is not a valid float"
    assert error_of(conn, "INCRBYFLOAT", "new", "abc") == "ERR value is not a valid float"
    assert error_of(conn, "INCRBYFLOAT", "new", "nan") == "ERR value is not a valid float"
    assert conn.cmd("GET", "new") == b"3"


def test_append_strlen(r):
    assert r.append("a", "Hello") == 5
    assert r.append("a", " World") == 11
    assert r.get("a") == "Hello World"
    assert r.strlen("a") == 11
    assert r.strlen("missing") == 0
    assert r.append("a", "") == 11
    r.set("t", "v", ex=100)
    r.append("t", "w")
    assert r.ttl("t") > 0, "APPEND keeps the TTL"


# ---------------------------------------------------------------------------
# Expiry
# ---------------------------------------------------------------------------


def test_expire_ttl_persist(r):
    assert r.ttl("missing") == -2
    assert r.pttl("missing") == -2
    assert r.expire("missing", 10) is False
    r.set("k", "v")
    assert r.ttl("k") == -1
    assert r.pttl("k") == -1
    assert r.expire("k", 100) is True
    assert 98 <= r.ttl("k") <= 100
    assert r.pexpire("k", 50_000) is True
    assert 48_000 <= r.pttl("k") <= 50_000
    assert r.persist("k") is True
    assert r.persist("k") is False
    assert r.ttl("k") == -1
    assert r.expireat("k", int(time.time()) + 1000) is True
    assert 990 <= r.ttl("k") <= 1000
    assert r.persist("missing") is False


def test_expire_in_past_deletes(r):
    r.mset({"a": "1", "b": "2", "c": "3"})
    assert r.expire("a", -1) is True
    assert r.exists("a") == 0
    assert r.expireat("b", 1) is True
    assert r.exists("b") == 0
    assert r.pexpire("c", 0) is True
    assert r.get("c") is None
    assert r.dbsize() == 0


def test_expire_errors(conn):
    conn.cmd("SET", "k", "v")
    assert error_of(conn, "EXPIRE", "k", "abc") == "ERR value is not an integer or out of range"
    assert error_of(conn, "EXPIRE", "k") == "ERR wrong number of arguments for 'expire' command"
    assert error_of(conn, "PEXPIRE", "k", "1.5") == "ERR value is not an integer or out of range"
    assert conn.cmd("TTL", "k") == -1


def test_expire_time_overflow_is_an_error(conn):
    huge = "9223372036854775807"
    assert conn.cmd("SET", "k", "v") == b"OK"
    for opt in ("EX", "PX", "EXAT"):
        assert error_of(conn, "SET", "k2", "v", opt, huge) == (
            "ERR invalid expire time in 'set' command")
    assert error_of(conn, "SET", "k2", "v", "PXAT", "0") == (
        "ERR invalid expire time in 'set' command")
    for cmd in ("EXPIRE", "PEXPIRE", "EXPIREAT"):
        assert error_of(conn, cmd, "k", huge) == (
            f"ERR invalid expire time in '{cmd.lower()}' command")
    # Seconds that overflow once turned into absolute milliseconds.
    assert error_of(conn, "EXPIRE", "k", "9223372036854775") == (
        "ERR invalid expire time in 'expire' command")
    assert conn.cmd("TTL", "k") == -1, "a rejected EXPIRE leaves the key alone"
    assert conn.cmd("EXISTS", "k2") == 0
    assert conn.cmd("SET", "far", "v", "EX", "9999999999") == b"OK"
    assert conn.cmd("TTL", "far") in (9999999999, 9999999998)


def test_many_keys_expire_without_being_read(r):
    pipe = r.pipeline(transaction=False)
    for i in range(500):
        pipe.set(f"exp:{i}", "v", px=100 + i % 50)
    for i in range(20):
        pipe.set(f"keep:{i}", "v")
    pipe.execute()
    wait_until(lambda: r.dbsize() == 20, timeout=15, interval=0.05,
               what="500 keys with 100-150 ms TTLs to be expired actively")
    assert sorted(r.keys("*")) == sorted(f"keep:{i}" for i in range(20))


def test_keys_actually_expire(r):
    r.set("short", "v", px=150)
    r.set("long", "v", ex=100)
    r.set("plain", "v")
    assert r.get("short") == "v"
    wait_until(lambda: r.get("short") is None, timeout=5, what="key with PX 150 to expire")
    assert r.exists("short") == 0
    assert r.ttl("short") == -2
    # Without reading it, an expired key also leaves DBSIZE/KEYS eventually.
    r.set("short2", "v", px=100)
    wait_until(lambda: r.dbsize() == 2, timeout=5, what="DBSIZE to drop the expired key")
    assert sorted(r.keys("*")) == ["long", "plain"]


def test_set_and_getdel_clear_ttl(r):
    r.set("k", "v", ex=100)
    r.set("k", "w")
    assert r.ttl("k") == -1
    r.set("k", "v", ex=100)
    r.getdel("k")
    r.set("k", "x")
    assert r.ttl("k") == -1
    r.set("n", "1", ex=100)
    r.incr("n")
    assert r.ttl("n") > 0, "INCR keeps the TTL"


# ---------------------------------------------------------------------------
# Keyspace
# ---------------------------------------------------------------------------


def test_keys_patterns(r):
    r.mset({k: "1" for k in ("hello", "hallo", "hxllo", "hllo", "heeeello", "other", "h*llo")})
    assert sorted(r.keys("*")) == sorted(
        ["hello", "hallo", "hxllo", "hllo", "heeeello", "other", "h*llo"])
    assert sorted(r.keys("h?llo")) == ["h*llo", "hallo", "hello", "hxllo"]
    assert sorted(r.keys("h*llo")) == ["h*llo", "hallo", "heeeello", "hello", "hllo", "hxllo"]
    assert sorted(r.keys("h[ae]llo")) == ["hallo", "hello"]
    assert sorted(r.keys("h[^e]llo")) == ["h*llo", "hallo", "hxllo"]
    assert sorted(r.keys("h[a-b]llo")) == ["hallo"]
    assert r.keys("h\\*llo") == ["h*llo"]
    assert r.keys("nomatch*") == []


def test_scan_visits_every_key(r):
    expected = {f"user:{i}" for i in range(600)} | {f"other:{i}" for i in range(100)}
    pipe = r.pipeline(transaction=False)
    for k in expected:
        pipe.set(k, "1")
    pipe.execute()
    seen, cursor, rounds = [], 0, 0
    while True:
        cursor, keys = r.scan(cursor, match="user:*", count=50)
        seen += keys
        rounds += 1
        assert rounds < 1000, "SCAN never returned cursor 0"
        if int(cursor) == 0:
            break
    assert set(seen) == {k for k in expected if k.startswith("user:")}
    assert rounds > 1, "COUNT 50 over 700 keys should take several calls"
    everything = set(r.scan_iter(count=1000))
    assert everything == expected


def test_scan_guarantees_under_concurrent_writes(r, server):
    """Keys present for the whole scan are returned, while other keys come and go."""
    stable = {f"stable:{i}" for i in range(400)}
    r.mset({k: "1" for k in stable})
    writer = server.client()
    seen, cursor, step = set(), 0, 0
    while True:
        cursor, keys = r.scan(cursor, count=25)
        seen.update(keys)
        # Churn between calls: add and remove other keys, overwrite stable ones.
        pipe = writer.pipeline(transaction=False)
        for j in range(20):
            pipe.set(f"churn:{step}:{j}", "x")
            pipe.delete(f"churn:{step - 1}:{j}")
        pipe.set(f"stable:{step % 400}", "2")
        pipe.execute()
        step += 1
        assert step < 2000, "SCAN did not finish"
        if int(cursor) == 0:
            break
    missing = stable - seen
    assert not missing, f"SCAN missed {len(missing)} keys that existed throughout"


def test_scan_errors(conn):
    assert error_of(conn, "SCAN", "abc") == "ERR invalid cursor"
    assert error_of(conn, "SCAN", "0", "COUNT", "abc") == (
        "ERR value is not an integer or out of range")
    assert error_of(conn, "SCAN", "0", "BOGUS") == "ERR syntax error"
    reply = conn.cmd("SCAN", "0")
    assert reply == [b"0", []]


def test_type(r):
    r.set("s", "v")
    assert r.type("s") == "string"
    assert r.type("missing") == "none"


def test_rename(r, conn):
    r.set("a", "1", ex=100)
    r.set("b", "2")
    assert r.rename("a", "c") is True
    assert r.get("a") is None
    assert r.get("c") == "1"
    assert 90 <= r.ttl("c") <= 100, "RENAME carries the TTL"
    assert r.rename("b", "c") is True, "RENAME overwrites the destination"
    assert r.get("c") == "2"
    assert r.ttl("c") == -1
    assert r.rename("c", "c") is True
    assert r.get("c") == "2"
    assert error_of(conn, "RENAME", "nosuch", "x") == "ERR no such key"


def test_dbsize_flushdb_flushall(r1):
    r1.mset({"a": "1", "b": "2"})
    r1.execute_command("SELECT", 2)
    r1.mset({"x": "1", "y": "2", "z": "3"})
    assert r1.dbsize() == 3
    assert r1.flushdb() is True
    assert r1.dbsize() == 0
    r1.set("x", "again")
    r1.execute_command("SELECT", 0)
    assert r1.dbsize() == 2, "FLUSHDB only clears the current database"
    assert r1.flushall() is True
    assert r1.dbsize() == 0
    r1.execute_command("SELECT", 2)
    assert r1.dbsize() == 0, "FLUSHALL clears every database"


# ---------------------------------------------------------------------------
# Pipelining and concurrency
# ---------------------------------------------------------------------------


def test_pipeline_1000_commands(r):
    pipe = r.pipeline(transaction=False)
    for i in range(250):
        pipe.set(f"p:{i}", f"v{i}")
        pipe.incr("p:counter")
        pipe.get(f"p:{i}")
        pipe.append(f"p:{i}", "!")
    results = pipe.execute()
    assert len(results) == 1000
    for i in range(250):
        s, n, g, a = results[4 * i: 4 * i + 4]
        assert s is True
        assert n == i + 1
        assert g == f"v{i}"
        assert a == len(f"v{i}!")
    assert r.get("p:counter") == "250"
    assert r.mget([f"p:{i}" for i in range(0, 250, 50)]) == [
        f"v{i}!" for i in range(0, 250, 50)]


def test_commands_with_many_arguments(r):
    n = 50_000
    mapping = {f"many:{i}": str(i) for i in range(n)}
    assert r.mset(mapping) is True
    got = r.mget(list(mapping))
    assert got == list(mapping.values())
    assert r.exists(*mapping) == n
    assert r.delete(*mapping) == n
    assert r.dbsize() == 0


def test_long_key_names(rb):
    key = b"k" * 100_000 + b"\x00end"
    assert rb.set(key, b"v") is True
    assert rb.get(key) == b"v"
    assert rb.keys(b"k*end") == [key]
    assert rb.delete(key) == 1


def test_pipeline_with_errors_keeps_order(r):
    r.set("word", "abc")
    pipe = r.pipeline(transaction=False)
    pipe.incr("word")
    pipe.set("after", "1")
    pipe.execute_command("NOSUCHCOMMAND")
    pipe.get("after")
    results = pipe.execute(raise_on_error=False)
    assert isinstance(results[0], redis.ResponseError)
    assert results[1] is True
    assert isinstance(results[2], redis.ResponseError)
    assert results[3] == "1"


def test_many_simultaneous_connections(server):
    conns = [server.raw() for _ in range(200)]
    try:
        for i, c in enumerate(conns):
            c.send(b"SET conn:%d %d\r\n" % (i, i))
        for c in conns:
            assert c.read_line() == b"+OK"
        for i, c in enumerate(reversed(conns)):
            assert c.cmd("GET", f"conn:{199 - i}") == str(199 - i).encode()
    finally:
        for c in conns:
            c.close()


def test_concurrent_incr_from_many_connections(server):
    server.client().delete("shared")
    threads, per_thread = 8, 150
    errors = []

    def work():
        c = server.client()
        try:
            for _ in range(per_thread):
                c.incr("shared")
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            c.close()

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
    assert server.client().get("shared") == str(threads * per_thread)
