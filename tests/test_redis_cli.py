"""Stock Redis tools against the server: redis-cli with commands as arguments, from
stdin, `--pipe` bulk loading, `--scan`, `-x`, `-n`, `-3`, and a short redis-benchmark.
"""

import shutil
import subprocess

import pytest

from conftest import encode_command

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
REDIS_BENCHMARK = shutil.which("redis-benchmark") or "/usr/bin/redis-benchmark"

pytestmark = pytest.mark.skipif(not shutil.which("redis-cli"), reason="redis-cli not installed")


def cli(server, *args, stdin=None, timeout=60, check=True):
    """Runs redis-cli against the server; returns stdout (text)."""
    argv = [REDIS_CLI, "-h", "127.0.0.1", "-p", str(server.port), *map(str, args)]
    p = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout,
                       text=not isinstance(stdin, bytes))
    out = p.stdout if isinstance(p.stdout, str) else p.stdout.decode()
    err = p.stderr if isinstance(p.stderr, str) else p.stderr.decode()
    if check:
        assert p.returncode == 0, f"redis-cli {args} exited {p.returncode}: {out} {err}"
    return out if check else (p.returncode, out, err)


@pytest.fixture
def s(server):
    server.client().flushall()
    return server


def test_commands_as_arguments(s):
    assert cli(s, "PING") == "PONG\n"
    assert cli(s, "SET", "foo", "bar baz") == "OK\n"
    assert cli(s, "GET", "foo") == "bar baz\n"
    assert cli(s, "GET", "missing") == "\n"
    assert cli(s, "INCR", "n") == "1\n"
    assert cli(s, "INCRBY", "n", "41") == "42\n"
    assert cli(s, "MSET", "a", "1", "b", "2") == "OK\n"
    assert cli(s, "MGET", "a", "nope", "b") == "1\n\n2\n"
    assert cli(s, "EXISTS", "a", "b", "nope") == "2\n"
    assert cli(s, "DBSIZE") == "4\n"


def test_formatted_output(s):
    assert cli(s, "--no-raw", "GET", "missing") == "(nil)\n"
    assert cli(s, "--no-raw", "INCR", "n") == "(integer) 1\n"
    assert cli(s, "--no-raw", "SET", "k", "v") == "OK\n"
    assert cli(s, "--no-raw", "GET", "k") == '"v"\n'
    assert cli(s, "--no-raw", "GET") == (
        "(error) ERR wrong number of arguments for 'get' command\n")
    assert cli(s, "--no-raw", "NOSUCH", "x") == (
        "(error) ERR unknown command 'NOSUCH', with args beginning with: 'x' \n")


def test_resp3_mode(s):
    assert cli(s, "-3", "SET", "k", "v") == "OK\n"
    assert cli(s, "-3", "GET", "k") == "v\n"
    assert cli(s, "-3", "--no-raw", "GET", "missing") == "(nil)\n"
    assert cli(s, "-3", "--no-raw", "INCR", "n") == "(integer) 1\n"
    out = cli(s, "-3", "--no-raw", "CONFIG", "GET", "maxmemory")
    assert out.startswith('1# "maxmemory" => "'), f"RESP3 CONFIG GET should be a map: {out!r}"


def test_commands_from_stdin(s):
    script = "SET a 1\nINCR a\nGET nope\nGET a\nSET 'q k' \"x y\"\nGET 'q k'\nPING\n"
    assert cli(s, stdin=script) == "OK\n2\n\n2\nOK\nx y\nPONG\n"


def test_stdin_errors_do_not_stop_the_script(s):
    out = cli(s, stdin="SET a 1\nBOGUS cmd\nGET\nINCR a\n")
    lines = out.split("\n")
    assert lines[0] == "OK"
    assert lines[1].startswith("ERR unknown command 'BOGUS'")
    assert "ERR wrong number of arguments for 'get' command" in out
    assert lines[-2] == "2"


def test_x_reads_last_argument_from_stdin(s):
    payload = "line one\nline two\n\x01binary\x7f"
    assert cli(s, "-x", "SET", "xkey", stdin=payload) == "OK\n"
    assert s.client().get("xkey") == payload


def test_repeat_and_database(s):
    assert cli(s, "-r", "5", "INCR", "rep") == "1\n2\n3\n4\n5\n"
    assert cli(s, "-n", "3", "SET", "dbkey", "three") == "OK\n"
    assert cli(s, "-n", "3", "GET", "dbkey") == "three\n"
    assert cli(s, "-n", "0", "GET", "dbkey") == "\n"
    assert cli(s, "-n", "3", "DBSIZE") == "1\n"


def test_scan_option(s):
    c = s.client()
    c.mset({f"sc:{i}": "1" for i in range(300)})
    c.mset({f"other:{i}": "1" for i in range(50)})
    out = cli(s, "--scan", "--pattern", "sc:*")
    keys = out.split()
    assert sorted(set(keys)) == sorted(f"sc:{i}" for i in range(300))


def test_pipe_loads_10k_keys(s, tmp_path):
    resp = b"".join(encode_command("SET", f"pipe:{i}", f"value-{i}-" + "v" * (i % 50))
                    for i in range(10_000))
    out = cli(s, "--pipe", stdin=resp, timeout=120)
    assert "errors: 0, replies: 10000" in out, out
    c = s.client()
    assert c.dbsize() == 10_000
    for i in (0, 1, 4999, 9999):
        assert c.get(f"pipe:{i}") == f"value-{i}-" + "v" * (i % 50)
    assert c.mget([f"pipe:{i}" for i in range(0, 10_000, 97)]) == [
        f"value-{i}-" + "v" * (i % 50) for i in range(0, 10_000, 97)]


def test_pipe_counts_errors(s):
    resp = (encode_command("SET", "a", "1") + encode_command("NOSUCHCMD")
            + encode_command("INCR", "a") + encode_command("GET"))
    code, out, err = cli(s, "--pipe", stdin=resp, check=False)
    assert "errors: 2, replies: 4" in out, (out, err)
    assert code != 0
    assert s.client().get("a") == "2"


def test_auth_with_password(server_factory):
    srv = server_factory(requirepass="pw1")
    code, out, _ = cli(srv, "GET", "k", check=False)
    assert "NOAUTH Authentication required." in out
    assert cli(srv, "-a", "pw1", "--no-auth-warning", "SET", "k", "v") == "OK\n"
    assert cli(srv, "-a", "pw1", "--no-auth-warning", "GET", "k") == "v\n"
    code, out, err = cli(srv, "-a", "nope", "--no-auth-warning", "GET", "k", check=False)
    assert "WRONGPASS" in out + err or "NOAUTH" in out + err


@pytest.mark.skipif(not shutil.which("redis-benchmark"), reason="redis-benchmark missing")
def test_redis_benchmark_smoke(s):
    p = subprocess.run([REDIS_BENCHMARK, "-h", "127.0.0.1", "-p", str(s.port), "-n", "3000",
                        "-c", "10", "-P", "4", "-t", "set,get,incr,mset", "--csv"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = [l.split(",") for l in p.stdout.strip().splitlines()[1:]]
    tests = {r[0].strip('"').split(" ")[0]: float(r[1].strip('"')) for r in rows}
    for name in ("SET", "GET", "INCR", "MSET"):
        assert tests.get(name, 0) > 0, f"{name} missing or 0 rps in {p.stdout}"
    assert "ERR" not in p.stderr and "error" not in p.stderr.lower(), p.stderr
    c = s.client()
    assert c.exists("key:__rand_int__") == 1
    assert int(c.get("counter:__rand_int__")) == 3000


@pytest.mark.distri
def test_room_commands_from_cli(s):
    code = cli(s, "ROOM.NEW", "cli-room").strip()
    assert len(code) >= 22
    out = cli(s, "--no-raw", "ROOM.LIST")
    assert code in out
    assert cli(s, "CAS", "ck", "first") == "1\n"
    assert cli(s, "CAS", "ck", "first", "second") == "1\n"
    assert cli(s, "CAS", "ck", "first", "third") == "0\n"
    assert cli(s, "GET", "ck") == "second\n"
    script = f"ROOM.JOIN {code}\nSET inroom yes\nGET inroom\n"
    assert cli(s, stdin=script) == "OK\nOK\nyes\n"
    assert cli(s, "GET", "inroom") == "\n", "a fresh redis-cli starts in default"
