#!/usr/bin/env python3
"""Many slow clients from one thread: silent TLS connections, ClientHellos trickled a byte at a
time, and plain-HTTP heads trickled a byte at a time (slowloris). Each trickler sends one byte
every INTERVAL seconds until the server closes it. Prints one JSON line: per kind, how many were
opened, how many the server closed, and the close times (seconds after connect) min/median/max;
min_from_start is the shortest counted from when the connect began instead: the server's timer
cannot start before that, while with thousands of connects in one loop the coroutine may learn its
connect completed well after the server accepted it (so "min" alone can read short).
  slowloris.py HTTPS_PORT HTTP_PORT N_SILENT N_HELLO N_HEAD [--interval S] [--limit S] [--probe PORT]
--probe PORT: meanwhile, every 20 ms, GET /healthz on PORT; "probe" then lists each check as
[seconds, HTTP status, slow clients open when it was sent, open when it was answered].
"""
import asyncio
import json
import ssl
import sys
import time


def hello_bytes():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="slow.test")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


live = 0


async def probe(port, limit, checks):
    t_end = time.monotonic() + limit
    while time.monotonic() < t_end:
        open_before, t0 = live, time.monotonic()
        status = 0
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), 10)
            status = int(data.split(b" ")[1]) if data.startswith(b"HTTP/1.1 ") else 0
            writer.close()
        except (OSError, asyncio.TimeoutError, ValueError):
            pass
        checks.append([round(time.monotonic() - t0, 4), status, open_before, live])
        await asyncio.sleep(0.02)


async def one(port, payload, interval, limit, results, kind, opened, from_start):
    global live
    t_start = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    opened[kind] += 1
    live += 1
    t0 = time.monotonic()
    i = 0
    closed = False
    while time.monotonic() - t0 < limit:
        if payload and i < len(payload):
            try:
                writer.write(payload[i:i + 1])
                await writer.drain()
            except OSError:
                closed = True
                break
            i += 1
        try:
            data = await asyncio.wait_for(reader.read(4096), interval)
            if not data:
                closed = True
                break
        except asyncio.TimeoutError:
            pass
        except OSError:
            closed = True
            break
    live -= 1
    if closed:
        t = time.monotonic()
        results[kind].append(t - t0)
        from_start[kind].append(t - t_start)
    writer.close()


async def main():
    https, http = int(sys.argv[1]), int(sys.argv[2])
    n_silent, n_hello, n_head = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    interval = float(sys.argv[sys.argv.index("--interval") + 1]) if "--interval" in sys.argv else 0.5
    limit = float(sys.argv[sys.argv.index("--limit") + 1]) if "--limit" in sys.argv else 20
    kinds = {"silent": (https, b"", n_silent), "hello": (https, hello_bytes(), n_hello),
             "head": (http, b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200, n_head)}
    results = {k: [] for k in kinds}
    opened = {k: 0 for k in kinds}
    from_start = {k: [] for k in kinds}
    tasks = []
    checks = []
    if "--probe" in sys.argv:
        tasks.append(asyncio.create_task(probe(int(sys.argv[sys.argv.index("--probe") + 1]), limit, checks)))
    for kind, (port, payload, n) in kinds.items():
        for _ in range(n):
            tasks.append(asyncio.create_task(one(port, payload, interval, limit, results, kind, opened, from_start)))
            if len(tasks) % 100 == 0:
                await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    out = {}
    for k, v in results.items():
        v.sort()
        out[k] = {"opened": opened[k], "closed": len(v),
                  "min": round(v[0], 2) if v else None,
                  "median": round(v[len(v) // 2], 2) if v else None,
                  "max": round(v[-1], 2) if v else None,
                  "min_from_start": round(min(from_start[k]), 2) if v else None}
    if "--probe" in sys.argv:
        out["probe"] = checks
    print(json.dumps(out))


asyncio.run(main())
