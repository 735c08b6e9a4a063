"""Error replies -> exception classes; connection loss, reconnects and timeouts."""

import threading
import time

import pytest

import distri
from conftest import free_port
from distri.errors import ERROR_CODES, error_from_reply


def test_error_table():
    expected = {"ERR": distri.RequestError, "WRONGTYPE": distri.WrongType,
                "OOM": distri.OutOfMemory, "IOERR": distri.StorageError,
                "LIMIT": distri.LimitReached,
                "NOAUTH": distri.AuthError,
                "WRONGPASS": distri.AuthError, "NOTFOUND": distri.NotFound,
                "NOPROTO": distri.ProtocolVersionError, "NOWORKER": distri.NoWorker,
                "TIMEOUT": distri.CallTimeout, "SVCERR": distri.ServiceError,
                "TRYAGAIN": distri.TryAgain, "UNKNOWN": distri.UnknownOutcome}
    assert ERROR_CODES == expected
    for code, cls in expected.items():
        e = error_from_reply(f"{code} something went wrong")
        assert type(e) is cls and e.code == code and e.message == "something went wrong"
        assert isinstance(e, distri.ServerError) and isinstance(e, distri.Error)
    # Retryable: the server promises the write was not applied.
    assert {c for c, cls in expected.items() if cls.retryable} == {"OOM", "IOERR", "TRYAGAIN"}
    other = error_from_reply("BUSYKEY whatever")
    assert type(other) is distri.ServerError and other.code == "BUSYKEY"


def test_exception_hierarchy():
    assert issubclass(distri.ConnectionError, ConnectionError)
    assert issubclass(distri.TimeoutError, TimeoutError)
    assert issubclass(distri.CallTimeout, distri.TimeoutError)     # also a server error
    assert issubclass(distri.CallTimeout, distri.ServerError)
    e = error_from_reply("SVCERR ValueError: bad input")
    assert (e.message, e.remote_type) == ("ValueError: bad input", "ValueError")
    assert error_from_reply("SVCERR worker disconnected before replying").remote_type is None
    assert issubclass(distri.SignatureError, distri.DecodeError)
    for cls in (distri.ConnectionError, distri.TimeoutError, distri.DecodeError,
                distri.EncodeError, distri.ServerError, distri.ClosedError):
        assert issubclass(cls, distri.Error)


def test_server_error_raises_mapped_class(room):
    room["s"] = "text"
    with pytest.raises(distri.RequestError) as info:
        room.incr("s")
    assert info.value.code == "ERR" and "not an integer" in str(info.value)
    room.ping()                                   # the connection is still usable


def test_auth(server_factory):
    s = server_factory(extra_args=["--requirepass", "pw"])
    with pytest.raises(distri.AuthError):
        distri.connect(f"distri://127.0.0.1:{s.port}/default")
    with pytest.raises(distri.AuthError):
        distri.connect(f"distri://:wrong@127.0.0.1:{s.port}/default")
    with distri.connect(f"distri://:pw@127.0.0.1:{s.port}/default") as room:
        room["k"] = 1
        assert room.data["k"] == 1                # the mirror authenticates too
    assert distri.stats(f"distri://:pw@127.0.0.1:{s.port}")["keys"] == 1


def test_out_of_memory(server_factory):
    s = server_factory(extra_args=["--max-memory", "200k"])
    room = distri.connect(s.url, quiet=True)
    with pytest.raises(distri.OutOfMemory):
        for i in range(1000):
            room[f"k{i}"] = "x" * 1000
    assert room["k0"] == "x" * 1000               # reads still work
    room.close()


def test_unreachable_fails_fast_or_after_retry_timeout():
    port = free_port()                            # nothing listens here
    t = time.monotonic()
    with pytest.raises(distri.ConnectionError):
        distri.connect(f"127.0.0.1:{port}/default", retry_timeout=0)
    assert time.monotonic() - t < 1
    t = time.monotonic()
    with pytest.raises(distri.ConnectionError):
        distri.connect(f"127.0.0.1:{port}/default", retry_timeout=0.5)
    assert 0.4 < time.monotonic() - t < 3


def test_calls_reconnect_after_kill9_and_restart(server_factory):
    s = server_factory()
    room = distri.connect(s.url, quiet=True)
    room["k"] = 1
    assert room.incr("n") == 1
    s.restart(kill=True)                          # same port, same data dir
    assert room["k"] == 1                         # reconnected, re-joined the room
    assert room.incr("n") == 2                    # sent only on the new connection
    room.close()


def test_calls_wait_for_server_to_come_back(server_factory):
    s = server_factory()
    room = distri.connect(s.url, quiet=True, retry_timeout=20)
    room["k"] = "before"
    s.kill9()
    timer = threading.Timer(0.7, s.start)
    timer.start()
    t = time.monotonic()
    room["k"] = "after"                           # waits while the server is down
    assert time.monotonic() - t > 0.5
    assert room["k"] == "after"
    timer.join()
    room.close()


def test_call_fails_when_server_stays_down(server_factory):
    s = server_factory()
    room = distri.connect(s.url, quiet=True, retry_timeout=0.5)
    s.kill9()
    with pytest.raises(distri.ConnectionError):
        room["k"] = 1
    s.start()
    room["k"] = 1                                 # usable again once it is back
    room.close()


def test_reply_timeout(server_factory):
    s = server_factory()
    room = distri.connect(s.url, quiet=True, timeout=0.5, retry_timeout=0)
    s.proc.send_signal(19)                        # SIGSTOP: connected but silent
    try:
        with pytest.raises(distri.TimeoutError):
            room.get("k")
    finally:
        s.proc.send_signal(18)                    # SIGCONT
    room.close()
