#!/usr/bin/env python3
"""Turn one bench/run.sh run (a folder of per-step JSON) into the markdown report.

    python bench/report.py RAW_DIR [--out FILE]

Steps are named `cl.*` (Commonlab), `jp.*` (jupyter_server launched by the shared scripts) and
`floor.*` (no server: jupyter_client straight over ZeroMQ). Each `NAME.json` is what the shared
script wrote with --out; `NAME.step` holds the command, exit status, wall time and the
whole-machine CPU busy fraction over the step.
"""
import argparse
import glob
import json
import os
import sys

MIB_50MB = 50_000_000 / 2**20


def load(raw):
    steps = {}
    for f in sorted(glob.glob(os.path.join(raw, "*.step"))):
        name = os.path.basename(f)[:-5]
        with open(f) as fh:
            steps[name] = {"step": json.load(fh)}
    for f in sorted(glob.glob(os.path.join(raw, "*.json"))):
        name = os.path.basename(f)[:-5]
        if name == "run":
            continue
        try:
            with open(f) as fh:
                steps.setdefault(name, {})["data"] = json.load(fh)
        except ValueError:
            pass
    return steps


def get(steps, name, *path):
    d = steps.get(name, {}).get("data")
    for p in path:
        if d is None:
            return None
        if isinstance(d, dict):
            d = d.get(p)
        else:
            return None
    return d


def fmt(x, nd=2):
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{nd}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fr(r):
    return "–" if r is None else f"{r:.2f}×"


def verdict(ok):
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**missed**"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    S = load(a.raw)
    run = {}
    try:
        with open(os.path.join(a.raw, "run.json")) as fh:
            run = json.load(fh)
    except (OSError, ValueError):
        pass

    L = []
    w = L.append
    targets = []  # (target, measured, floor, jupyter, ratio floor, ratio jupyter, verdict)

    # ---------------------------------------------------------------- execute, sequential
    def ex(name, code, key="idle_us", stat="p50"):
        v = get(S, name, "results", code, key, stat)
        return None if v is None else v / 1000.0

    for code in ("1+1", "pass"):
        for stat in ("p50", "p99"):
            cl = ex("cl.exec_v1", code, stat=stat)
            fl = ex("floor.exec", code, stat=stat)
            jp = ex("jp.exec_v1", code, stat=stat)
            r = ratio(cl, fl)
            targets.append((f"execute `{code}` send→idle {stat}, sequential, v1 (ms); ≤ 1.10× floor",
                            cl, fl, jp, r, ratio(cl, jp), None if r is None else r <= 1.10))
    for code in ("1+1", "pass"):
        for stat in ("p50", "p99"):
            cl = ex("cl.exec_json", code, stat=stat)
            fl = ex("floor.exec", code, stat=stat)
            jp = ex("jp.exec_nodelay_json", code, stat=stat)
            r = ratio(cl, fl)
            targets.append((f"execute `{code}` send→idle {stat}, sequential, legacy JSON (ms); ≤ 1.10× floor "
                            "(jupyter column: nodelay variant)",
                            cl, fl, jp, r, ratio(cl, jp), None if r is None else r <= 1.10))
    for code in ("1+1", "pass"):
        for stat in ("p50", "p99"):
            cl = ex("cl.exec_w8", code, stat=stat)
            fl = ex("floor.exec_w8", code, stat=stat)
            jp = ex("jp.exec_w8_nodelay", code, stat=stat)
            r = ratio(cl, fl)
            targets.append((f"execute `{code}` send→idle {stat}, 8 in flight (ms); ≤ 1.10× floor "
                            "(jupyter column: nodelay variant)",
                            cl, fl, jp, r, ratio(cl, jp), None if r is None else r <= 1.10))

    # ---------------------------------------------------------------- server CPU per cell
    for name, label in (("cl.exec_v1", "sequential v1"), ("cl.exec_json", "sequential JSON"),
                        ("cl.exec_w8", "8 in flight")):
        for code in ("1+1", "pass"):
            cl = get(S, name, "results", code, "server_cpu_us_per_cell")
            jpn = {"cl.exec_v1": "jp.exec_v1", "cl.exec_json": "jp.exec_nodelay_json",
                   "cl.exec_w8": "jp.exec_w8_nodelay"}[name]
            jp = get(S, jpn, "results", code, "server_cpu_us_per_cell")
            targets.append((f"server CPU per `{code}` cell, {label} (µs); ≤ 100", cl, None, jp, None,
                            ratio(cl, jp), None if cl is None else cl <= 100))
    cl = get(S, "cl.concurrency", "results", "server_cpu_us_per_cell")
    jp = get(S, "jp.concurrency", "results", "server_cpu_us_per_cell")
    targets.append(("server CPU per `1+1` cell, 20 kernels at once (µs); ≤ 100", cl, None, jp, None,
                    ratio(cl, jp), None if cl is None else cl <= 100))

    # ---------------------------------------------------------------- idle websockets
    big_open = get(S, "cl.idle_big", "results", "connections_open")
    big_req = get(S, "cl.idle_big", "results", "connections_requested")
    jp_open = get(S, "jp.idle", "results", "connections_open")
    targets.append((f"idle websockets held on one kernel (of {fmt(big_req)} tried); ≥ 10,000",
                    big_open, None, jp_open, None, ratio(big_open, jp_open),
                    None if big_open is None else big_open >= 10000))
    for name, n in (("cl.idle_big", big_open), ("cl.idle_1000", get(S, "cl.idle_1000", "results", "connections_open"))):
        kb = get(S, name, "results", "server_rss_per_conn_kb")
        jp = get(S, "jp.idle", "results", "server_rss_per_conn_kb")
        targets.append((f"server RSS per idle websocket with {fmt(n)} open (KB); ≤ 20", kb, None, jp, None,
                        ratio(kb, jp), None if kb is None else kb <= 20))
    pr = get(S, "cl.fanout_1000", "results") or {}
    jpr = get(S, "jp.fanout_250", "results") or {}
    targets.append((f"one status fanned out to {fmt(pr.get('connections_open'))} idle websockets, send→last arrival, "
                    f"median of {len(pr.get('rounds') or [])} (ms); ≤ 10 (lean raw-socket client; jupyter: "
                    f"{fmt(jpr.get('connections_open'))} receivers)",
                    pr.get("last_ms_median"), None, jpr.get("last_ms_median"), None,
                    ratio(pr.get("last_ms_median"), jpr.get("last_ms_median")),
                    None if pr.get("last_ms_median") is None else
                    (pr["last_ms_median"] <= 10 and bool(pr.get("all_received")))))
    targets.append(("same, first→last arrival spread (ms) (server fan-out plus client reads, kernel time excluded)",
                    pr.get("spread_ms_median"), None, jpr.get("spread_ms_median"), None,
                    ratio(pr.get("spread_ms_median"), jpr.get("spread_ms_median")), None))
    fan = get(S, "cl.idle_1000", "results", "broadcast") or {}
    fmax = (fan.get("fanout_ms") or {}).get("max")
    jfan = get(S, "jp.idle", "results", "broadcast") or {}
    jmax = (jfan.get("fanout_ms") or {}).get("max")
    targets.append((f"same with the shared idle_conns.py client (asyncio, decodes every message), "
                    f"{fmt(fan.get('receivers'))} receivers (jupyter: {fmt(jfan.get('receivers'))}) (ms)",
                    fmax, None, jmax, None, ratio(fmax, jmax), None))
    pb = get(S, "cl.fanout_10000", "results") or {}
    targets.append((f"one status fanned out to {fmt(pb.get('connections_open'))} idle websockets, send→last arrival, "
                    "lean client (ms)", pb.get("last_ms_median"), None, None, None, None, None))

    # ---------------------------------------------------------------- kernel start
    for stat, lim in (("p50", 1.05), ("p90", 1.2)):
        cl = get(S, "cl.kernel_start", "results", "t_exec_ms", stat)
        fl = get(S, "floor.start", "results", "t_exec_ms", stat)
        jp = get(S, "jp.kernel_start", "results", "t_exec_ms", stat)
        r = ratio(cl, fl)
        targets.append((f"kernel start → first `execute_reply`, {stat} (ms); ≤ {lim}× floor", cl, fl, jp, r,
                        ratio(cl, jp), None if r is None else r <= lim))

    # ---------------------------------------------------------------- 50 MB write
    def out(name, case, key):
        return get(S, name, "results", case, key)

    def peak_over(name, case):
        before = out(name, case, "server_rss_before_mb")
        peak = out(name, case, "server_vmhwm_mb") or out(name, case, "server_rss_peak_sampled_mb")
        s = out(name, case, "server_rss_peak_sampled_mb")
        if s is not None and (peak is None or s > peak):
            peak = s
        return None if before is None or peak is None else peak - before

    cl = out("cl.output_v1", "block50mb", "t_idle_s")
    fl = out("floor.output", "block50mb", "t_idle_s")
    jp = out("jp.output_norate", "block50mb", "t_idle_s")
    comp = out("cl.output_v1", "block50mb", "complete")
    r = ratio(cl, fl)
    targets.append(("50 MB single write, send→idle, v1 (s); ≤ 1.1× floor, delivered whole "
                    f"(Commonlab complete: {fmt(comp)}; jupyter: limit_rate=False)",
                    cl, fl, jp, r, ratio(cl, jp), None if r is None else (r <= 1.1 and bool(comp))))
    cl = out("cl.output_json", "block50mb", "t_idle_s")
    comp = out("cl.output_json", "block50mb", "complete")
    r = ratio(cl, fl)
    targets.append(("50 MB single write, send→idle, legacy JSON (s); ≤ 1.1× floor "
                    f"(Commonlab complete: {fmt(comp)})",
                    cl, fl, None, r, None, None if r is None else (r <= 1.1 and bool(comp))))
    for name, label in (("cl.output_v1", "v1"), ("cl.output_json", "legacy JSON")):
        cl = peak_over(name, "block50mb")
        jp = peak_over("jp.output_norate" if label == "v1" else "__none__", "block50mb")
        targets.append((f"server memory peak over idle during the 50 MB write, {label} (MiB); "
                        f"≤ 1.5× message = {1.5 * MIB_50MB:.1f}",
                        cl, None, jp, None, ratio(cl, jp), None if cl is None else cl <= 1.5 * MIB_50MB))

    # ---------------------------------------------------------------- idle RSS
    fresh = get(S, "cl.idle_rss", "results", "fresh", "rss_mb")
    cl_ks = get(S, "cl.kernel_start", "results", "server_idle_mem_before", "rss")
    jp_ks = get(S, "jp.kernel_start", "results", "server_idle_mem_before", "rss")
    cl_ks = None if cl_ks is None else cl_ks / 2**20
    jp_ks = None if jp_ks is None else jp_ks / 2**20
    targets.append(("idle server RSS, fresh server, no kernel (MiB); ≤ 18", fresh, None, jp_ks, None,
                    ratio(fresh, jp_ks), None if fresh is None else fresh <= 18))
    targets.append(("idle server RSS after the first API calls, before the first kernel (MiB); ≤ 18",
                    cl_ks, None, jp_ks, None, ratio(cl_ks, jp_ks), None if cl_ks is None else cl_ks <= 18))

    # ---------------------------------------------------------------- write
    w(f"# Commonlab vs jupyter_server vs the ZeroMQ floor — {run.get('started', '')[:10]}, {run.get('kind', '')}")
    w("")
    w(f"Mode: **{run.get('mode', '?')}**; Commonlab binary built {run.get('binary_built', '?')[:16]} from commit "
      f"`{run.get('commit', '?')}`{' with uncommitted changes in crates/' if run.get('dirty') else ''}; machine: "
      f"{run.get('cpus', '?')} CPUs, {run.get('mem_gb', '?')} GiB, shared with other work; "
      f"`ulimit -n` {run.get('ulimit_n', '?')}.")
    w("")
    w("Columns: **Commonlab** = release build behind its REST API and kernel websocket; "
      "**floor** = jupyter_client straight over ZeroMQ, no server; **jupyter_server** = stock "
      "jupyter_server unless the row says otherwise; ratios are Commonlab ÷ floor and "
      "Commonlab ÷ jupyter_server. A lower ratio is better everywhere except the connection count. "
      "MiB = 2^20 bytes. Every figure is from one run (no repeats); see the per-step machine load below.")
    w("")
    w("## Targets")
    w("")
    w("| target | Commonlab | floor | jupyter_server | ÷ floor | ÷ jupyter | verdict |")
    w("| --- | --- | --- | --- | --- | --- | --- |")
    for t, c, f, j, rf, rj, ok in targets:
        w(f"| {t} | {fmt(c)} | {fmt(f)} | {fmt(j)} | {fr(rf)} | {fr(rj)} | {verdict(ok)} |")
    w("")

    # -------- detail tables
    w("## Execute round trips (ms unless noted)")
    w("")
    w("| run | code | reply p50 | idle p50 | idle p90 | idle p99 | idle max | cells/s | server µs/cell | "
      "kernel µs/cell | client µs/cell | machine busy |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in ("floor.exec", "cl.exec_v1", "cl.exec_json", "jp.exec_v1", "jp.exec_nodelay",
                 "jp.exec_nodelay_json", "floor.exec_w8", "cl.exec_w8", "jp.exec_w8_nodelay"):
        res = get(S, name, "results") or {}
        for code, r in res.items():
            def us(k, s):
                v = (r.get(k) or {}).get(s)
                return None if v is None else v / 1000
            w(f"| {name} | `{code}` | {fmt(us('reply_us', 'p50'))} | {fmt(us('idle_us', 'p50'))} | "
              f"{fmt(us('idle_us', 'p90'))} | {fmt(us('idle_us', 'p99'))} | {fmt(us('idle_us', 'max'))} | "
              f"{fmt(r.get('cells_per_s'))} | {fmt(r.get('server_cpu_us_per_cell'))} | "
              f"{fmt(r.get('kernel_cpu_us_per_cell'))} | {fmt(r.get('client_cpu_us_per_cell'))} | "
              f"{fmt(r.get('machine_cpu_busy_frac'))} |")
    w("")

    w("## Kernel start (ms)")
    w("")
    w("| run | starts | POST reply p50 | ws open p50 | first kernel_info p50 | first execute_reply p50 / p90 / max "
      "| DELETE p50 | server RSS before → after (MiB) |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in ("floor.start", "cl.kernel_start", "jp.kernel_start", "jp.kernel_start_nodelay"):
        R = get(S, name, "results")
        if not R:
            continue
        def st(k, s="p50"):
            return (R.get(k) or {}).get(s)
        b = (R.get("server_idle_mem_before") or {}).get("rss")
        e = (R.get("server_idle_mem_after") or {}).get("rss")
        mem = "–" if b is None else f"{b / 2**20:.1f} → {e / 2**20:.1f}"
        n = get(S, name, "params", "n") or get(S, name, "params", "starts")
        w(f"| {name} | {fmt(n)} | {fmt(st('t_post_ms'))} | {fmt(st('t_ws_ms'))} | {fmt(st('t_info_ms'))} | "
          f"{fmt(st('t_exec_ms'))} / {fmt(st('t_exec_ms', 'p90'))} / {fmt(st('t_exec_ms', 'max'))} | "
          f"{fmt(st('t_delete_ms'))} | {mem} |")
    w("")

    w("## Large outputs")
    w("")
    w("| run | case | send→idle (s) | MB/s | complete | rate-limit notice | ws msgs | server RSS before / peak (MiB) "
      "| server CPU (s) | kernel CPU (s) |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in ("floor.output", "cl.output_v1", "cl.output_json", "jp.output_norate", "jp.output_stock"):
        res = get(S, name, "results") or {}
        for case, r in res.items():
            pk = r.get("server_vmhwm_mb")
            sp = r.get("server_rss_peak_sampled_mb")
            if sp is not None and (pk is None or sp > pk):
                pk = sp
            mem = "–" if r.get("server_rss_before_mb") is None else f"{fmt(r['server_rss_before_mb'])} / {fmt(pk)}"
            mbps = r.get("mb_per_s")
            if mbps is None and r.get("t_idle_s"):
                mbps = r.get("stream_bytes", 0) / r["t_idle_s"] / 1e6
            w(f"| {name} | {case} | {fmt(r.get('t_idle_s'), 3)} | {fmt(mbps)} | {fmt(r.get('complete'))} | "
              f"{fmt(r.get('rate_limit_notice'))} | {fmt(r.get('ws_msgs'))} | {mem} | {fmt(r.get('server_cpu_s'), 3)} | "
              f"{fmt(r.get('kernel_cpu_s'), 3)} |")
        if name.startswith("cl.") or name.startswith("jp."):
            if get(S, name, "client_maxrss_mb") is not None:
                pass
    w("")

    w("## Idle websockets on one kernel")
    w("")
    w("| run | tried | held | stopped because | ramp (s) | ready p50 / p99 (ms) | server RSS base → held (MiB) | "
      "RSS / USS per conn (KB) | fds per conn | kernel RSS per conn (KB) | idle CPU (cores) | fan-out receivers "
      "(received) | fan-out min / p50 / p99 / max (ms) | RSS after close (MiB) |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in ("cl.idle_1000", "cl.idle_big", "jp.idle"):
        R = get(S, name, "results")
        if not R:
            continue
        b = R.get("baseline") or {}
        h = R.get("after_hold") or {}
        c = R.get("after_close") or {}
        bc = R.get("broadcast") or {}
        f = bc.get("fanout_ms") or {}
        rd = R.get("ready_ms") or {}
        w(f"| {name} | {fmt(R.get('connections_requested'))} | {fmt(R.get('connections_open'))} | "
          f"{R.get('stopped_reason') or '–'} | {fmt(R.get('ramp_s'))} | {fmt(rd.get('p50'))} / {fmt(rd.get('p99'))} | "
          f"{fmt(b.get('server_rss_mb'))} → {fmt(h.get('server_rss_mb'))} | "
          f"{fmt(R.get('server_rss_per_conn_kb'))} / {fmt(R.get('server_uss_per_conn_kb'))} | "
          f"{fmt(R.get('server_fds_per_conn'))} | {fmt(R.get('kernel_rss_per_conn_kb'))} | "
          f"{fmt(R.get('server_cpu_util_idle_hold'), 4)} | {fmt(bc.get('receivers'))} ({fmt(bc.get('received'))}) | "
          f"{fmt(f.get('min'))} / {fmt(f.get('p50'))} / {fmt(f.get('p99'))} / {fmt(f.get('max'))} | "
          f"{fmt(c.get('server_rss_mb'))} |")
    w("")
    w("Fan-out is timed from the send of one `1+1` execute on a separate control connection to the arrival of its "
      "`status: idle` on each idle connection, so it includes the kernel's own execution time (the sequential "
      "floor above) and the Python client reading every connection in one event loop.")
    w("")

    w("## Fan-out, lean client (bench/fanout_probe.py)")
    w("")
    w("| run | connections | all received | first / p50 / p99 / last arrival (ms, median of rounds) | spread (ms) | "
      "server RSS open (MiB) | rounds (last ms) |")
    w("| --- | --- | --- | --- | --- | --- | --- |")
    for name in ("cl.fanout_1000", "cl.fanout_10000", "jp.fanout_250"):
        R = get(S, name, "results")
        if not R:
            continue
        lasts = ", ".join(fmt(r.get("last_ms")) for r in R.get("rounds") or [])
        w(f"| {name} | {fmt(R.get('connections_open'))} | {fmt(R.get('all_received'))} | "
          f"{fmt(R.get('first_ms_median'))} / {fmt(R.get('p50_ms_median'))} / {fmt(R.get('p99_ms_median'))} / "
          f"{fmt(R.get('last_ms_median'))} | {fmt(R.get('spread_ms_median'))} | {fmt(R.get('server_rss_mb_open'))} | "
          f"{lasts} |")
    w("")
    w("Each round is one `1+1` execute on a control connection; every idle connection receives that cell's "
      "whole iopub broadcast (busy, execute_input, execute_result, idle), so the idle status is the fourth "
      "message fanned out. The first arrival includes the kernel's own time.")
    w("")

    w("## 20 kernels at once")
    w("")
    w("| run | all ready (s) | cells/s | idle p50 / p99 (ms) | server cores (µs/cell) | kernels cores (µs/cell) | "
      "client cores | server RSS with 20 kernels (MiB) | DELETE all (s) | machine busy |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in ("cl.concurrency", "jp.concurrency", "jp.concurrency_nodelay"):
        R = get(S, name, "results")
        if not R:
            continue
        il = R.get("idle_ms") or {}
        w(f"| {name} | {fmt(R.get('burst_start_all_ready_s'))} | {fmt(R.get('aggregate_cells_per_s'))} | "
          f"{fmt(il.get('p50'))} / {fmt(il.get('p99'))} | {fmt(R.get('server_cpu_util'), 3)} "
          f"({fmt(R.get('server_cpu_us_per_cell'))}) | {fmt(R.get('kernels_cpu_util_sum'))} "
          f"({fmt(R.get('kernel_cpu_us_per_cell'))}) | {fmt(R.get('client_cpu_util'), 3)} | "
          f"{fmt(R.get('server_rss_with_kernels_mb'))} | {fmt(R.get('burst_delete_all_s'))} | "
          f"{fmt(R.get('machine_cpu_busy_frac'))} |")
    w("")

    tf = get(S, "floor.transport", "results")
    if tf:
        w("## Loopback transport floor (Python at both ends)")
        w("")
        w("```")
        w(json.dumps(tf, indent=1)[:1500])
        w("```")
        w("")

    w("## Steps, machine load and commands")
    w("")
    w("Machine busy = whole-machine CPU busy fraction over the step (all cores, from /proc/stat), "
      "including the processes under test; on this 2-core box a sequential execute run by itself keeps it "
      "around 0.5–0.7, so clearly higher values mean foreign load.")
    w("")
    w("| step | exit | wall (s) | machine busy | busy just before | command |")
    w("| --- | --- | --- | --- | --- | --- |")
    for name, d in sorted(S.items(), key=lambda kv: kv[0]):
        s = d.get("step")
        if not s:
            continue
        cmd = s.get("cmd", "").replace("|", "\\|")
        w(f"| {name} | {s.get('rc')} | {fmt(s.get('wall_s'))} | {fmt(s.get('machine_busy_frac'))} | "
          f"{fmt(s.get('busy_before'))} | `{cmd}` |")
    w("")
    w("`$URL`, `$TOKEN`, `$PID`: a Commonlab started fresh for that step by `bench/run.sh` "
      "(`commonlab serve --ip 127.0.0.1 --port 0 --token $TOKEN --data-dir D --root-dir R --python .venv/bin/python`, "
      "fresh temporary data dir, root dir and IPYTHONDIR). `--launch-jupyter`: the shared scripts start and stop "
      "a private jupyter_server. `$RAW`: the raw folder (`bench/results/raw/`, not committed).")
    w("")
    text = "\n".join(L) + "\n"
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as fh:
            fh.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
