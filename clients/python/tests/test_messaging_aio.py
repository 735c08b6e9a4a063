"""Messaging through the asyncio face (distri.aio), against the real server."""

import asyncio
import os
import time

import pytest

import distri
import distri.aio


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def connect(url, **kw):
    return await distri.aio.connect(url, quiet=True, **kw)


async def eventually(check, timeout=10.0):
    """Awaits check() until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.01)


def test_pubsub_async_iterator_and_patterns(server):
    async def main():
        room = await connect(server.url)
        other = await connect(room.url)
        sub = await other.subscribe("news", patterns=["jobs.*"])
        assert sub.topics == {"news"} and sub.patterns == {"jobs.*"}
        assert await room.subscribers("news") == 1
        assert await room.publish("news", {"n": 1}) == 1
        assert await room.publish("jobs.7", b"\x00raw") == 1
        m1, m2 = await sub.get(5), await sub.get(5)
        assert (m1.topic, m1.pattern, m1.value) == ("news", None, {"n": 1})
        assert (m2.topic, m2.pattern, m2.value) == ("jobs.7", "jobs.*", b"\x00raw")
        assert await sub.get(0.05) is None

        # async for, from the first iteration; many messages, none lost, in order.
        got = []

        async def consume():
            async for msg in other.subscribe("stream"):
                got.append(msg.value)
                if msg.value == 499:
                    break
        task = asyncio.ensure_future(consume())
        assert await eventually(lambda: room.subscribers("stream"))
        for i in range(500):
            await room.publish("stream", i)
        await task
        assert got == list(range(500))

        # More topics, unsubscribe (effective at once), close ends an iteration.
        await sub.subscribe("more")
        await room.publish("news", "dropped")
        await sub.unsubscribe("news")
        await room.publish("more", "kept")
        assert (await sub.get(5)).value == "kept"
        seen = []

        async def iterate():
            async for msg in sub:
                seen.append(msg.value)
        task = asyncio.ensure_future(iterate())
        await room.publish("more", 1)
        for _ in range(500):
            if seen:
                break
            await asyncio.sleep(0.01)
        await sub.close()
        await asyncio.wait_for(task, 5)
        assert seen == [1]

        async def no_subscriber():
            return await room.subscribers("more") == 0
        assert await eventually(no_subscriber)

        async with other.subscribe("ctx") as s2:
            await room.publish("ctx", [1, 2])
            assert (await s2.get(5)).value == [1, 2]
        assert s2.closed
        await other.close()
        await room.close()
    run(main())


def test_services_calls_errors_timeouts(server):
    async def main():
        room = await connect(server.url)
        other = await connect(room.url)
        release = asyncio.Event()

        @other.service("add")
        async def add(a, b=0):
            await asyncio.sleep(0.01)
            return a + b

        @other.service("blocking")
        def blocking(data):                     # a plain function: runs in the executor
            time.sleep(0.01)
            return data[::-1]

        @other.service("fail")
        async def fail(msg):
            raise KeyError(msg)

        @other.service("slow")
        async def slow():
            await release.wait()
            return "late"

        w1 = await other.serve(background=True, name="a1")
        w2 = await other.serve(background=True, name="a2", concurrency=4)
        assert await room.call("add", 1, b=2) == 3
        assert await room.call("blocking", b"abc") == b"cba"
        assert await asyncio.gather(*[room.call("add", i, 1) for i in range(20)]) == \
            list(range(1, 21))                  # 20 calls in flight at once
        assert w1.handled > 0 and w2.handled > 0 and w1.handled + w2.handled == 22
        with pytest.raises(distri.ServiceError) as info:
            await room.call("fail", "missing")
        assert info.value.remote_type == "KeyError" and "missing" in info.value.message
        with pytest.raises(distri.CallTimeout):
            await room.call("slow", timeout=0.2)
        with pytest.raises(distri.NoWorker):
            await room.call("nobody", timeout=0.2)
        replies = await room.call_all("add", 5, timeout=5)
        assert replies == {"a1": 5, "a2": 5}
        release.set()
        await w1.stop()
        assert not w1.running
        assert await room.call_all("add", 1) == {"a2": 1}
        assert (await room.service_stats("add"))["workers"] == ["a2"]
        await other.close()
        assert not w2.running

        async def no_service():
            return await room.services() == {}
        assert await eventually(no_service)
        await room.close()
        with pytest.raises(distri.ClosedError):
            await room.call("add", 1)
    run(main())


def test_function_decorator_and_blocking_serve(server):
    async def main():
        room = await connect(server.url)
        other = await connect(room.url)

        @other.function
        async def scale(x, factor=2):
            return x * factor

        @other.function(name="shout")
        def shout(s):
            return s.upper()

        assert scale.name == "test_messaging_aio.test_function_decorator_and_blocking_serve" \
                             ".<locals>.main.<locals>.scale"
        assert await scale(3) == 6               # a local call stays a coroutine call
        serving = asyncio.ensure_future(other.serve(name="fw"))   # blocks until stopped

        async def served():
            return (await room.services()).get("shout")
        assert await eventually(served)
        assert await scale.call(4, factor=3) == 12
        assert await scale.call_all(1) == {"fw": 2}
        assert await room.call("shout", "hi") == "HI"
        worker = other._workers[0]
        await worker.stop()
        assert await asyncio.wait_for(serving, 5) is worker
        await other.close()
        await room.close()
    run(main())


def test_pickle_opt_in_signed(server):
    async def main():
        key = os.urandom(16)
        room = await connect(server.url, room_key=key, pickle=True)
        worker_room = await connect(room.url, room_key=key, pickle=True)
        plain = await connect(room.url)

        @worker_room.service("union")
        async def union(a, b):
            return a | b

        await worker_room.serve(background=True)
        assert await room.call("union", {1}, {2}) == {1, 2}
        with pytest.raises(distri.EncodeError):
            await plain.call("union", {1}, {2})
        sub = await plain.subscribe("t")
        await room.publish("t", frozenset({1}))
        msg = await sub.get(5)
        with pytest.raises(distri.DecodeError):
            msg.value
        for r in (room, worker_room, plain):
            await r.close()
    run(main())


def test_subscription_and_worker_survive_server_restart(server_factory):
    s = server_factory()

    async def main():
        room = await connect(s.url)
        await room.set("keep", 1)
        worker_room = await connect(room.url)

        @worker_room.service("double")
        async def double(x):
            return 2 * x
        await worker_room.serve(background=True, name="phoenix")
        sub = await room.subscribe("t")
        assert await room.call("double", 2) == 4
        await asyncio.get_running_loop().run_in_executor(None, s.restart)
        assert await room.call("double", 3, timeout=20) == 6
        got = None
        deadline = time.monotonic() + 20
        while got is None and time.monotonic() < deadline:
            await room.publish("t", "again")           # lost until it has re-subscribed
            got = await sub.get(0.1)
        assert got is not None and got.value == "again"
        await worker_room.close()
        await room.close()
    run(main())
