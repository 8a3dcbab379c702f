#!/usr/bin/env python3
"""Fan-out of one iopub status to N idle kernel websockets, with a lean client.

The shared `idle_conns.py` times fan-out with one asyncio `websockets` client that decodes
every message on every connection; above a few hundred connections its own CPU dominates the
figure. This probe keeps N idle connections as raw non-blocking sockets (HTTP upgrade done by
hand, no `kernel_info_request`, frames never decoded: a connection is done when the bytes
`"idle"` arrive on it, which among the broadcast of an idle connection only the final
`status: idle` carries) and waits on them with epoll. One `1+1` execute is then sent on a
separate control connection, `--repeat` times, and for every connection the arrival of the
idle status is timed from the send.

Reported per repeat and as medians: first arrival (≈ the kernel's own send→idle), last
arrival, and spread = last − first (what the server and the client's socket reads add for
N receivers). Same target options as the shared scripts (`--url/--token/--server-pid` or
`--launch-jupyter`). Needs the shared `jbench.py` on PYTHONPATH.
"""
import argparse
import base64
import os
import select
import socket
import statistics
import time
import uuid
from urllib.parse import urlparse

import jbench as jb

V1 = "v1.kernel.websocket.jupyter.org"


def open_raw(rest, kid, protocol):
    u = urlparse(rest.ws_url(kid, uuid.uuid4().hex))
    s = socket.create_connection((u.hostname, u.port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {u.path}?{u.query} HTTP/1.1", f"Host: {u.hostname}:{u.port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if protocol == "v1":
        lines.append(f"Sec-WebSocket-Protocol: {V1}")
    if rest.token:
        lines.append(f"Authorization: token {rest.token}")
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed during handshake")
        buf += chunk
    head = buf.split(b"\r\n", 1)[0]
    if b" 101 " not in head:
        raise ConnectionError(head.decode(errors="replace"))
    s.setblocking(False)
    return s


def drain(socks):
    for s in socks:
        try:
            while s.recv(65536):
                pass
        except (BlockingIOError, InterruptedError):
            pass


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    jb.add_target_args(p)
    p.add_argument("-n", type=int, default=1000, help="idle connections")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--timeout", type=float, default=30)
    args = p.parse_args()

    with jb.Target(args) as t:
        meta = t.meta()
        kid = t.rest.start_kernel(args.kernel_name)["id"]
        ctl = jb.SyncKernelWS(t.rest, kid, protocol=args.protocol, timeout=120)
        ctl.kernel_info(timeout=120)
        socks, errors = [], []
        t_open = time.perf_counter()
        for _ in range(args.n):
            try:
                socks.append(open_raw(t.rest, kid, args.protocol))
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e)[:200])
                if len(errors) >= 25:
                    break
        open_s = time.perf_counter() - t_open
        time.sleep(2)
        drain(socks)
        ep = select.epoll()
        fd2i = {}
        for i, s in enumerate(socks):
            ep.register(s.fileno(), select.EPOLLIN)
            fd2i[s.fileno()] = i
        rounds = []
        content = {"code": "1+1", "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": True}
        for _ in range(args.repeat):
            drain(socks)
            tails = [b""] * len(socks)
            arrived = [None] * len(socks)
            left = len(socks)
            t0 = time.perf_counter()
            mid = ctl.send("execute_request", content)
            deadline = t0 + args.timeout
            while left and time.perf_counter() < deadline:
                for fd, _ev in ep.poll(0.5):
                    i = fd2i[fd]
                    s = socks[i]
                    try:
                        data = s.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    now = time.perf_counter()
                    if not data:
                        ep.unregister(fd)
                        continue
                    if arrived[i] is None:
                        d = tails[i] + data
                        if b'"idle"' in d:
                            arrived[i] = now - t0
                            left -= 1
                        else:
                            tails[i] = d[-8:]
            ctl.wait_for(mid, t0, timeout=args.timeout)
            got = [a for a in arrived if a is not None]
            rec = {"received": len(got), "of": len(socks)}
            if got:
                rec.update({"first_ms": round(min(got) * 1000, 2),
                            "p50_ms": round(jb.percentile(got, 50) * 1000, 2),
                            "p99_ms": round(jb.percentile(got, 99) * 1000, 2),
                            "last_ms": round(max(got) * 1000, 2),
                            "spread_ms": round((max(got) - min(got)) * 1000, 2)})
            rounds.append(rec)
            print(f"# {rec}", flush=True)
            time.sleep(0.3)
        rss = (jb.proc_mem(t.pid) or {}).get("rss") if t.pid else None
        for s in socks:
            s.close()
        ctl.close()
        t.rest.delete_kernel(kid)

    def med(k):
        v = [r[k] for r in rounds if k in r]
        return round(statistics.median(v), 2) if v else None

    R = {"connections_requested": args.n, "connections_open": len(socks), "open_s": round(open_s, 2),
         "errors_sample": errors[:5], "rounds": rounds,
         "all_received": all(r["received"] == r["of"] for r in rounds),
         "first_ms_median": med("first_ms"), "p50_ms_median": med("p50_ms"), "p99_ms_median": med("p99_ms"),
         "last_ms_median": med("last_ms"), "spread_ms_median": med("spread_ms"),
         "server_rss_mb_open": jb.mb(rss)}
    jb.emit({"bench": "fanout_probe", "label": args.label, "meta": meta,
             "params": {"n": args.n, "repeat": args.repeat, "protocol": args.protocol}, "results": R},
            args.out)


if __name__ == "__main__":
    main()
