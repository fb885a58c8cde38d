#!/usr/bin/python3
# A WebSocket subscriber for the myriad-push tests, on python3-websockets (a strict RFC 6455
# client). usage: ws_subscriber.py URL [COMMAND ...] [--read-none]
# Sends each COMMAND as a text message once connected, then prints one line per event:
#   SUB <topic> <epoch> <last>       the server's "OK SUB" reply
#   MSG <topic> <offset> <hex>       a delivery (binary message "MSG t o len\n" + payload + "\n")
#   CTL <text>                       any other text message (LOST, NO, PONG, ...)
#   CLOSE <code> <reason>            the connection ended (the close frame's code and reason)
#   REFUSED <status>                 the handshake was answered with an HTTP status
import asyncio
import sys

import websockets


def say(line):
    print(line, flush=True)


async def main():
    url = sys.argv[1]
    commands = sys.argv[2:]
    try:
        async with websockets.connect(url, max_size=None, ping_interval=None) as ws:
            for c in commands:
                await ws.send(c)
            try:
                async for m in ws:
                    if isinstance(m, bytes):
                        nl = m.index(b"\n")
                        head = m[:nl].decode().split(" ")
                        if head[0] != "MSG" or len(head) != 4:
                            say("CTL bad delivery " + m[:nl].decode(errors="replace"))
                            continue
                        length = int(head[3])
                        payload = m[nl + 1 : nl + 1 + length]
                        if len(payload) != length or m[nl + 1 + length :] != b"\n":
                            say("CTL bad delivery length")
                            continue
                        say(f"MSG {head[1]} {head[2]} {payload.hex()}")
                    else:
                        w = m.split(" ")
                        if len(w) >= 2 and w[0] == "OK" and w[1] == "SUB":
                            say("SUB " + " ".join(w[2:]))
                        else:
                            say("CTL " + m)
            except websockets.exceptions.ConnectionClosed:
                pass
            say(f"CLOSE {ws.close_code} {ws.close_reason}")
    except websockets.exceptions.InvalidStatusCode as e:
        say(f"REFUSED {e.status_code}")
    except Exception as e:  # noqa: BLE001 (report anything, the test decides)
        say(f"ERROR {type(e).__name__} {e}")


asyncio.run(main())
