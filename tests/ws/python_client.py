#!/usr/bin/python3
"""Drives a ws-echo server with python3-websockets (Debian's package: a strict RFC 6455 client
written by others), and exits non-zero on the first mismatch.

Usage: python_client.py ws://127.0.0.1:PORT/

Round trips: text and binary, empty, fragmented (the client sends a message as several frames),
large (close to 1 MiB), compressed (permessage-deflate negotiated, as the client offers by
default) and uncompressed, pings with payloads, many messages in flight, and the close handshake
with a code and reason. Prints one line per group and "python-websockets: N checks passed".
"""
import asyncio
import os
import sys

import websockets

URL = sys.argv[1]
checks = 0


def check(cond, what):
    global checks
    if not cond:
        print(f"python-websockets: FAILED: {what}", flush=True)
        sys.exit(1)
    checks += 1


async def round_trip(ws, message, what):
    await ws.send(message)
    echo = await asyncio.wait_for(ws.recv(), 20)
    check(type(echo) is type(message), f"{what}: type {type(echo).__name__}")
    check(echo == message, f"{what}: payload of {len(message)} differs")


async def session(compression):
    name = "deflate" if compression else "plain"
    async with websockets.connect(URL, compression=compression, max_size=None,
                                  open_timeout=20, close_timeout=20) as ws:
        negotiated = [e.name for e in ws.extensions]
        if compression:
            check(negotiated == ["permessage-deflate"], f"negotiated {negotiated}")
            params = ws.response_headers.get("Sec-WebSocket-Extensions", "")
            check("server_no_context_takeover" in params and
                  "client_no_context_takeover" in params, f"response {params!r}")
        else:
            check(negotiated == [], f"nothing offered, got {negotiated}")

        await round_trip(ws, "Hello, myriad", f"{name} text")
        await round_trip(ws, b"\x00\x01\x02\xff", f"{name} binary")
        await round_trip(ws, "", f"{name} empty text")
        await round_trip(ws, b"", f"{name} empty binary")
        await round_trip(ws, "κόσμε \U0001F600 \U0010FFFF", f"{name} non-ASCII text")

        # Fragmented: an iterable is sent as one message in several frames.
        await ws.send(["frag", "men", "ted ", "κό", "σμε"])
        echo = await asyncio.wait_for(ws.recv(), 20)
        check(echo == "fragmented κόσμε", f"{name} fragmented text: {echo!r}")
        parts = [os.urandom(10000) for _ in range(7)]
        await ws.send(parts)
        echo = await asyncio.wait_for(ws.recv(), 20)
        check(echo == b"".join(parts), f"{name} fragmented binary")

        # Large: random (incompressible) and repetitive (compressible).
        await round_trip(ws, os.urandom(1000000), f"{name} 1 MB binary")
        big_text = "".join(f"line {i % 100}: status ok\n" for i in range(40000))
        await round_trip(ws, big_text, f"{name} {len(big_text)} bytes of text")

        # Pings with payloads; the server's pongs carry them back.
        for payload in (b"", b"ping", os.urandom(125)):
            waiter = await ws.ping(payload)
            await asyncio.wait_for(waiter, 20)
            check(True, "pong")

        # Many messages in flight at once.
        for i in range(200):
            await ws.send(f"message {i}")
        for i in range(200):
            echo = await asyncio.wait_for(ws.recv(), 20)
            check(echo == f"message {i}", f"{name} in-flight message {i}: {echo!r}")

        await ws.close(code=4001, reason="done here")
        check(ws.close_code == 4001, f"{name} close code {ws.close_code}")
    print(f"python-websockets: {name} session ok", flush=True)


async def main():
    await session("deflate")
    await session(None)
    print(f"python-websockets: {checks} checks passed", flush=True)


asyncio.run(main())
