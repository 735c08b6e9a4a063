"""The asyncio face (distri.aio) against the real server."""

import asyncio

import pytest

import distri
import distri.aio
from conftest import free_port


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_dictionary_calls(server):
    async def main():
        room = await distri.aio.connect(server.url, quiet=True)
        assert len(room.code) == 22
        await room.set("a", {"x": 1})
        assert await room.get("a") == {"x": 1}
        assert await room.get("missing", 7) == 7
        assert await room.exists("a") and not await room.exists("missing")
        assert await room.incr("n", 5) == 5
        assert await room.incr("f", 0.5) == 0.5
        assert await room.cas("n", 5, 6) is True
        assert await room.cas("n", 5, 7) is False
        assert await room.cas("lock", None, "me") is True
        await room.update({"job:1": 1, "job:2": b"\x01raw"})
        assert await room.keys("job:") == ["job:1", "job:2"]
        assert await room.get_many(["job:1", "job:2", "zz"]) == [1, b"\x01raw", None]
        assert await room.expire("job:1", 10) is True
        assert 9 < await room.ttl("job:1") <= 10
        assert await room.expire("job:1", None) is True
        assert await room.ttl("job:1") is None
        await room.set("t", 1, ttl=5)
        assert await room.ttl("t") > 4
        assert await room.delete("t", "zz") == 1
        await room.set_raw("r", b"raw")
        assert await room.get_raw("r") == b"raw"
        assert await room.size() == 7
        assert (await room.info())["keys"] == 7
        assert (await room.stats())["code"] == room.code
        assert "rooms" in await distri.aio.stats(server.url)
        assert await room.execute("ECHO", "x") == b"x"
        await room.ping()
        async with room.pipeline() as p:
            p.set("p", 1).incr("p").get("p")
        assert p.results == [None, 2, 2]
        with pytest.raises(distri.RequestError):
            await room.incr("a")
        await room.clear()
        assert await room.size() == 0
        await room.close()
        with pytest.raises(distri.ClosedError):
            await room.get("a")
    run(main())


def test_errors(server):
    async def main():
        with pytest.raises(distri.NotFound):
            await distri.aio.connect(f"{server.url}/no-such-room")
        with pytest.raises(distri.ConnectionError):
            await distri.aio.connect(f"127.0.0.1:{free_port()}/default", retry_timeout=0.3)
        room = await distri.aio.connect(server.url, quiet=True)
        with pytest.raises(distri.Error):
            room.data                            # not started yet
        with pytest.raises(distri.EncodeError):
            await room.set("k", {1, 2})
        await room.close()
    run(main())


def test_mirror_on_change_and_wait_for(server):
    async def main():
        room = await distri.aio.connect(server.url, quiet=True)
        writer = await distri.aio.connect(room.url)
        await writer.set("a", 1)
        await room.start_mirror()
        assert dict(room.data) == {"a": 1}
        plain, from_coroutine = [], []

        async def async_cb(change):
            await asyncio.sleep(0)
            from_coroutine.append(change.key)
        room.on_change(lambda c: plain.append((c.key, c.kind)))
        room.on_change(async_cb, prefix="b")

        async def later():
            await asyncio.sleep(0.1)
            await writer.set("b", 2)
            await writer.delete("a")
            await writer.incr("n", 3)
        task = asyncio.ensure_future(later())
        assert await room.wait_for("n", lambda v: v >= 3, timeout=10) == 3
        await task
        assert "a" not in room.data and room.data["b"] == 2
        for _ in range(100):
            if from_coroutine and len(plain) == 3:
                break
            await asyncio.sleep(0.02)
        assert plain == [("b", "set"), ("a", "del"), ("n", "set")]
        assert from_coroutine == ["b"]
        with pytest.raises(distri.TimeoutError):
            await room.wait_for("never", timeout=0.1)
        await writer.close()
        await room.close()
    run(main())


class _Obj:
    """Pickles (module level); equal by value."""

    def __init__(self, v):
        self.v = v

    def __eq__(self, other):
        return isinstance(other, _Obj) and other.v == self.v


def test_values_pickles_bound_and_undecodable_in_bulk_reads(server):
    big = "9" * 5000

    async def main():
        writer = await distri.aio.connect(server.url, quiet=True, room_key="k", pickle=True)
        plain = await distri.aio.connect(writer.url)
        await writer.set("p", _Obj(1))
        await writer.set("j", [1])
        await writer.set_raw("big", big.encode())
        assert await writer.get("p") == _Obj(1)
        # A signed pickle copied to another key is refused.
        await writer.set_raw("copy", await writer.get_raw("p"))
        with pytest.raises(distri.SignatureError):
            await writer.get("copy")
        # Without pickle: one key raises, many keys give Undecodable in place.
        with pytest.raises(distri.DecodeError):
            await plain.get("p")
        got = await plain.get_many(["p", "j", "big"])
        assert isinstance(got[0], distri.Undecodable) and got[1:] == [[1], big]
        async with plain.pipeline() as pl:
            pl.get("p")
            pl.get("big")
        assert isinstance(pl.results[0], distri.Undecodable) and pl.results[1] == big
        await plain.start_mirror()
        await plain.wait_until(lambda d: len(d) == 4, timeout=10)
        copy = plain.data.copy()
        assert copy["j"] == [1] and copy["big"] == big
        assert isinstance(copy["p"], distri.Undecodable) and dict(plain.data) == copy
        await writer.close()
        await plain.close()
    run(main())


def test_reconnect_and_mirror_resume_after_kill9(server_factory):
    s = server_factory()

    async def main():
        room = await distri.aio.connect(s.url, quiet=True, mirror=True)
        await room.set("a", 1)
        await room.wait_for("a", timeout=5)
        for _ in range(100):                    # the revision of "a" is confirmed
            if room._state.unconfirmed() is None:
                break
            await asyncio.sleep(0.02)
        await asyncio.get_running_loop().run_in_executor(None, s.restart)
        for _ in range(500):                    # the mirror reconnects by itself
            if room._state.ready:
                break
            await asyncio.sleep(0.02)
        assert room._state.mode == "resume" and room._state.resyncs == 0
        assert await room.incr("n") == 1        # the command link reconnects, re-joins
        assert await room.wait_for("n", timeout=15) == 1
        assert room.data["a"] == 1
        await room.close()
    run(main())
