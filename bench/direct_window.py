#!/usr/bin/env python3
"""Pipelined execute floor: K requests in flight, straight over ZeroMQ, no server.

The shared `direct_floor.py exec` measures only the sequential floor; this is the
counterpart of `exec_latency.py --window K`. A kernel is started with jupyter_client's
KernelManager (fresh temporary IPYTHONDIR, like the launcher of the shared scripts), then
for each `--code`: `--warmup` untimed cells and `-n` timed cells with `--window` requests
kept in flight. Per cell: send -> execute_reply and send -> iopub `status: idle`, arrival
times taken by polling the shell and iopub sockets together. The JSON has the same fields
as `exec_latency.py` (reply_us, idle_us, cells_per_s, kernel CPU per cell,
machine_cpu_busy_frac).

The kernel's channels are `ipc` sockets in a temporary directory by default, as Commonlab
connects to its kernels; `--transport tcp` gives jupyter_client's default (loopback tcp), which
the shared `direct_floor.py` steps use.

Needs the shared `jbench.py` on PYTHONPATH.
"""
import argparse
import atexit
import os
import shutil
import tempfile
import time

import jbench as jb


def run(kc, code, n, window, timeout):
    import zmq

    shell, iopub = kc.shell_channel, kc.iopub_channel
    poller = zmq.Poller()
    poller.register(shell.socket, zmq.POLLIN)
    poller.register(iopub.socket, zmq.POLLIN)
    pending = {}
    reply, idle = [], []
    sent = 0
    t_start = time.perf_counter()
    deadline = t_start + timeout + n * 0.5
    while len(idle) < n:
        while sent < n and len(pending) < window:
            t0 = time.perf_counter()
            mid = kc.execute(code, silent=False, store_history=True, allow_stdin=False)
            pending[mid] = [t0, None, None]
            sent += 1
        left = deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError("pipelined direct run exceeded its deadline")
        ev = dict(poller.poll(int(left * 1000) + 1))
        now = time.perf_counter()
        done = []
        if shell.socket in ev:
            while shell.msg_ready():
                m = shell.get_msg(timeout=0)
                p = pending.get(m["parent_header"].get("msg_id"))
                if p is not None and m["msg_type"] == "execute_reply":
                    p[1] = now - p[0]
                    done.append(m["parent_header"]["msg_id"])
        if iopub.socket in ev:
            while iopub.msg_ready():
                m = iopub.get_msg(timeout=0)
                mid = m["parent_header"].get("msg_id")
                p = pending.get(mid)
                if (p is not None and m["msg_type"] == "status"
                        and m["content"].get("execution_state") == "idle"):
                    p[2] = now - p[0]
                    done.append(mid)
        for mid in done:
            p = pending.get(mid)
            if p is not None and p[1] is not None and p[2] is not None:
                reply.append(p[1])
                idle.append(p[2])
                del pending[mid]
    return reply, idle, time.perf_counter() - t_start


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--code", action="append", default=None)
    p.add_argument("-n", "--cells", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--kernel-name", default="python3")
    p.add_argument("--transport", choices=["ipc", "tcp"], default="ipc",
                   help="the kernel's channels: ipc sockets (as Commonlab) or loopback tcp")
    p.add_argument("--label", default="")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    codes = args.code or ["1+1", "pass"]

    d = tempfile.mkdtemp(prefix="bench-ipy-")
    atexit.register(shutil.rmtree, d, True)
    os.environ["IPYTHONDIR"] = d
    from jupyter_client.manager import KernelManager

    if args.transport == "ipc":
        km = KernelManager(kernel_name=args.kernel_name, transport="ipc", ip=os.path.join(d, "kernel"))
    else:
        km = KernelManager(kernel_name=args.kernel_name)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    try:
        kc.execute("", user_expressions={"pid": "__import__('os').getpid()"}, allow_stdin=False)
        r = kc.get_shell_msg(timeout=30)
        try:
            kpid = int(r["content"]["user_expressions"]["pid"]["data"]["text/plain"])
        except Exception:  # noqa: BLE001
            kpid = None
        time.sleep(0.2)
        while kc.iopub_channel.msg_ready():
            kc.iopub_channel.get_msg(timeout=0)
        results = {}
        for code in codes:
            run(kc, code, args.warmup, args.window, args.timeout)
            cpu = jb.CpuMeter([kpid]).start()
            mach = jb.MachineCpu().start()
            c0 = time.process_time()
            reply, idle, wall = run(kc, code, args.cells, args.window, args.timeout)
            client_cpu = time.process_time() - c0
            _, used = cpu.stop()
            res = {"reply_us": jb.summarize(reply, 1e6, 1), "idle_us": jb.summarize(idle, 1e6, 1),
                   "cells_per_s": round(len(idle) / wall, 1), "wall_s": round(wall, 3),
                   "client_cpu_us_per_cell": round(client_cpu / len(idle) * 1e6, 1)}
            if kpid in used:
                res["kernel_cpu_us_per_cell"] = round(used[kpid] / len(idle) * 1e6, 1)
                res["kernel_cpu_util"] = round(used[kpid] / wall, 3)
            res.update(mach.stop())
            results[code] = res
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    jb.emit({"bench": "direct_window", "label": args.label,
             "meta": {"client_versions": jb.local_versions(), "host": jb.host_info(),
                      "time": jb.now_iso()},
             "params": {"cells": args.cells, "warmup": args.warmup, "window": args.window,
                        "codes": codes, "transport": ("zmq ipc (as Commonlab)" if args.transport == "ipc"
                                      else "zmq tcp 127.0.0.1 (jupyter_client default)")},
             "results": results}, args.out)


if __name__ == "__main__":
    main()
