#!/usr/bin/env python3
"""Watch streams at scale, raft-nginx against etcd, on this machine, in one run.

Each system runs 3 nodes. On one follower, --watchers streams (raft-nginx: GET /watch; etcd: its
JSON gateway's POST /v3/watch) each follow a prefix of their own, w<i>/. Then:
  1. writes to the leader without watchers, as fast as 64 connections go (wrk), keys w<i>/x;
  2. the watchers connect; the follower's resident memory before and after gives the memory
     per watcher;
  3. --rate writes/s for --seconds, each value the time it was sent: every watcher's events give
     the delivery latency (sent by the writer -> read by the watcher, through the leader and the
     follower);
  4. the writes of step 1 again with the watchers attached, to keys none of them follows (what
     having watchers costs the writes), then to theirs (every write delivered to one watcher);
  5. the writes of step 1 once more, the watchers gone: step 1 and 5 give the baseline.
Prints a Markdown table for docs/benchmarks.md.

  bench/watchers.py --binary build-release/src/raft-nginx [--watchers 10000] [--rate 1000]

The watchers and the paced writer are processes of this script of their own (--role), so that
neither slows the other. Every process it starts is killed by PID when it ends; it talks only to
127.0.0.1.
"""
import argparse
import asyncio
import base64
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from compare import Etcd, RaftNginx, cpu_seconds, log, status_mib, wrk  # noqa: E402

KEY_FORMAT = "w%d/x"


def b64(s):
    return base64.b64encode(s.encode()).decode()


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def raise_file_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---------------------------------------------------------------------------------------------
# The client roles: plain HTTP/1.1 on asyncio streams, the same code for both systems.


async def send(reader, writer, method, path, body=b""):
    """One request on a kept-alive connection; returns (status, headers, body or None if
    chunked: the caller reads the chunks)."""
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return status, headers, None
    return status, headers, await reader.readexactly(int(headers.get("content-length", "0")))


async def body_lines(reader):
    """The lines of a chunked body, as they arrive."""
    pending = b""
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            return
        pending += (await reader.readexactly(size + 2))[:-2]
        *whole, pending = pending.split(b"\n")
        for line in whole:
            if line.strip():
                yield line


def watch_request(system, i):
    prefix = f"w{i}/"
    if system == "raft-nginx":
        return "GET", f"/watch?prefix={prefix}", b""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return "POST", "/v3/watch", json.dumps(
        {"create_request": {"key": b64(prefix), "range_end": b64(end)}}).encode()


def event_values(system, message):
    """The values in one streamed message: raft-nginx sends one change per line, etcd a list."""
    if system == "raft-nginx":
        if "error" in message:
            raise RuntimeError(f"watch ended: {message}")
        return [message["value"]] if "value" in message else []
    result = message.get("result", {})
    if result.get("canceled"):
        raise RuntimeError(f"watch canceled: {message}")
    return [base64.b64decode(e["kv"].get("value", "")).decode() for e in result.get("events", [])]


async def watchers_role(args):
    """Holds --watchers streams to --address; on stdin, "report" prints what they received since
    the last "reset" (events, delivery latency), "stop" ends."""
    raise_file_limit()
    host, port = args.address.rsplit(":", 1)
    stats = {"events": 0, "latency_ms": [], "failed": 0}
    ready, failure = asyncio.Event(), asyncio.Event()
    connected = [0]
    opening = asyncio.Semaphore(256)  # at most this many connections being opened at once

    async def one(i):
        await opening.acquire()
        held = True
        try:
            reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
            method, path, body = watch_request(args.system, i)
            status, _, _ = await send(reader, writer, method, path, body)
            if status != 200:
                raise RuntimeError(f"watch answered {status}")
            async for line in body_lines(reader):
                now = time.time_ns()
                if held:
                    held = False
                    opening.release()
                    connected[0] += 1
                    if connected[0] == args.watchers:
                        ready.set()
                for value in event_values(args.system, json.loads(line)):
                    stats["events"] += 1
                    if value.isdigit():
                        stats["latency_ms"].append((now - int(value)) / 1e6)
        except (OSError, RuntimeError, asyncio.IncompleteReadError, ValueError) as e:
            stats["failed"] += 1
            failure.set()
            print(json.dumps({"failed": f"watcher {i}: {e}"}), flush=True)
        finally:
            if held:
                opening.release()

    tasks = [asyncio.create_task(one(i)) for i in range(args.watchers)]
    waits = [asyncio.create_task(e.wait()) for e in (ready, failure)]
    await asyncio.wait(waits, timeout=300, return_when=asyncio.FIRST_COMPLETED)
    if not ready.is_set():
        sys.exit(f"watchers: {connected[0]} of {args.watchers} connected")
    print(json.dumps({"ready": connected[0]}), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if command == "report":
            lat = stats["latency_ms"]
            print(json.dumps({"events": stats["events"], "failed": stats["failed"],
                              "timed": len(lat), "p50": percentile(lat, 50),
                              "p99": percentile(lat, 99), "max": max(lat, default=float("nan"))}),
                  flush=True)
        elif command == "reset":
            stats["events"], stats["latency_ms"] = 0, []
        else:
            break
    for t in tasks:
        t.cancel()


async def writer_role(args):
    """--rate writes/s for --seconds to --address over 16 connections, each value the time it
    was sent; prints how many succeeded."""
    host, port = args.address.rsplit(":", 1)
    conns = 16
    result = {"writes": 0, "errors": 0, "latency_ms": []}
    start = time.monotonic() + 0.1
    total = int(args.rate * args.seconds)

    async def one(c):
        reader, writer = await asyncio.open_connection(host, int(port))
        for n in range(c, total, conns):
            delay = start + n / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            key, sent = KEY_FORMAT % (n % args.watchers), str(time.time_ns())
            if args.system == "raft-nginx":
                request = ("PUT", f"/key/{key}", sent.encode())
            else:
                request = ("POST", "/v3/kv/put",
                           json.dumps({"key": b64(key), "value": b64(sent)}).encode())
            began = time.monotonic()
            status, _, _ = await send(reader, writer, *request)
            result["latency_ms"].append((time.monotonic() - began) * 1000)
            result["writes" if status == 200 else "errors"] += 1

    await asyncio.gather(*(one(c) for c in range(conns)))
    lat = result.pop("latency_ms")
    result.update(seconds=time.monotonic() - start, p50=percentile(lat, 50),
                  p99=percentile(lat, 99))
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------
# The run


def role(name, system, address, args):
    return [sys.executable, os.path.abspath(__file__), "--role", name, "--system", system.label,
            "--address", address, "--watchers", str(args.watchers), "--rate", str(args.rate),
            "--seconds", str(args.seconds)]


def read_json(proc, key):
    """The next line of `proc` that carries `key` (the role bounds its own waits); the failures
    it prints go to the log."""
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{proc.args[3]} ended: {proc.wait()}")
        message = json.loads(line)
        if key in message:
            return message
        log(f"  {message}")


def ask(proc, command, key=None):
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    return read_json(proc, key) if key else None


def writes(system, target, args, key_format, busy):
    """wrk's writes to the leader at 64 connections, with the CPU seconds each of `busy` (name ->
    pid) spent meanwhile."""
    op = "rn_put" if isinstance(system, RaftNginx) else "etcd_put"
    before = {name: cpu_seconds([pid]) for name, pid in busy.items()}
    out = wrk(target, op, 64, args.seconds, keys=args.watchers, key_format=key_format)
    out["cpu"] = {name: cpu_seconds([pid]) - before[name] for name, pid in busy.items()}
    return out


def measure(system, args):
    out = {}
    target = system.client_address(system.leader())
    follower = system.followers()[0]
    servers = dict(zip(["node1", "node2", "node3"], system.pids()))
    log(f"{system.label}: writes without watchers, 64 connections")
    out["alone"] = writes(system, target, args, "k%d", servers)
    pid = follower.proc.pid
    before = status_mib(pid, "VmRSS")
    log(f"{system.label}: {args.watchers} watchers on a follower")
    watchers = subprocess.Popen(role("watchers", system, system.client_address(follower), args),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        began = time.monotonic()
        read_json(watchers, "ready")
        out["attach_s"] = time.monotonic() - began
        log(f"{system.label}: {args.rate} writes/s for {args.seconds} s, each to one watcher")
        writer = subprocess.run(role("writer", system, target, args), capture_output=True,
                                text=True, timeout=args.seconds * 10 + 60)
        out["paced"] = json.loads(writer.stdout.splitlines()[-1])
        # Every write is delivered once: wait until the watchers have them all.
        deadline = time.monotonic() + 60
        while True:
            out["delivered"] = ask(watchers, "report", "events")
            if out["delivered"]["events"] >= out["paced"]["writes"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        out["rss_per_watcher_kib"] = (status_mib(pid, "VmRSS") - before) * 1024 / args.watchers
        busy = dict(servers, watchers=watchers.pid)
        log(f"{system.label}: writes to keys no watcher follows, the watchers attached")
        out["idle"] = writes(system, target, args, "k%d", busy)
        ask(watchers, "reset")
        log(f"{system.label}: writes each to one watcher, 64 connections")
        out["watched"] = writes(system, target, args, KEY_FORMAT, busy)
        ask(watchers, "stop")
        watchers.wait(timeout=60)
    finally:
        if watchers.poll() is None:
            watchers.kill()
            watchers.wait()
    # Once more without: the baseline is the mean of before and after, so that the machine's
    # drift over the run does not pass for the watchers' cost.
    log(f"{system.label}: writes without watchers again")
    after = writes(system, target, args, "k%d", servers)
    out["alone"]["rate"] = (out["alone"]["rate"] + after["rate"]) / 2
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build-release/src/raft-nginx")
    ap.add_argument("--watchers", type=int, default=10_000)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--role", choices=["watchers", "writer"], help=argparse.SUPPRESS)
    ap.add_argument("--system", help=argparse.SUPPRESS)
    ap.add_argument("--address", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "watchers":
        return asyncio.run(watchers_role(args))
    if args.role == "writer":
        return asyncio.run(writer_role(args))
    binary = os.path.abspath(args.binary)
    for tool in ("wrk", "etcd", binary):
        if not shutil.which(tool):
            sys.exit(f"watchers: {tool} not found (make bench installs what is missing)")
    limit = raise_file_limit()
    if limit < args.watchers + 1000:
        sys.exit(f"watchers: {args.watchers} watchers need {args.watchers + 1000} open files; "
                 f"the hard limit is {limit}")
    root = tempfile.mkdtemp(prefix="raftnginx-watchers-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    results = {}
    try:
        rn_flags = ["--kv-max-watchers", str(args.watchers + 100),
                    "--max-connections", str(args.watchers + 500)]
        for system in (RaftNginx(os.path.join(root, "raft-nginx"), binary, rn_flags, nginx=False),
                       Etcd(os.path.join(root, "etcd"))):
            os.makedirs(system.root)
            system.start()
            try:
                results[system.label] = measure(system, args)
            finally:
                system.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(results), file=sys.stderr)
    rn, etcd = results["raft-nginx"], results["etcd"]
    rn50, rn99 = rn["delivered"]["p50"], rn["delivered"]["p99"]
    etcd50, etcd99 = etcd["delivered"]["p50"], etcd["delivered"]["p99"]
    rn_kib, etcd_kib = rn["rss_per_watcher_kib"], etcd["rss_per_watcher_kib"]

    def rate(r, phase):
        w = r[phase]
        return f"{w['rate']:,.0f}/s ({100 * (w['rate'] / r['alone']['rate'] - 1):+.0f}%)"

    def cpu(r, phase):
        """CPU seconds per 1,000 writes: the servers', and the watchers' client's."""
        w = r[phase]
        per = 1000 / w["requests"]
        servers = sum(v for k, v in w["cpu"].items() if k != "watchers")
        return f"{servers * per:.2f} s servers, {w['cpu'].get('watchers', 0) * per:.2f} s watchers"

    n = args.watchers
    print("| measure | raft-nginx | etcd 3.4 | ratio |")
    print("| --- | --- | --- | --- |")
    print(f"| delivery of {args.rate:,} writes/s, each to one of {n:,} watchers on a follower, "
          f"sent -> read | p50 {rn50:.1f} ms, p99 {rn99:.1f} ms | p50 {etcd50:.1f} ms, "
          f"p99 {etcd99:.1f} ms | p99 {etcd99 / rn99:.2f}x lower |")
    print(f"| follower memory per watcher | {rn_kib:.1f} KiB ({2**20 / rn_kib:,.0f} per GiB) | "
          f"{etcd_kib:.1f} KiB ({2**20 / etcd_kib:,.0f} per GiB) | "
          f"{etcd_kib / rn_kib:.2f}x more per GiB |")
    print(f"| writes to the leader, 64 connections, no watchers (before and after) | {rate(rn, 'alone')} | "
          f"{rate(etcd, 'alone')} | {rn['alone']['rate'] / etcd['alone']['rate']:.2f}x |")
    print(f"| the same, {n:,} watchers attached (following other keys) | {rate(rn, 'idle')} | "
          f"{rate(etcd, 'idle')} | {rn['idle']['rate'] / etcd['idle']['rate']:.2f}x |")
    print(f"| the same, each write delivered to one watcher | {rate(rn, 'watched')} | "
          f"{rate(etcd, 'watched')} | {rn['watched']['rate'] / etcd['watched']['rate']:.2f}x |")
    print(f"| CPU per 1,000 writes: alone; delivered | {cpu(rn, 'alone')}; {cpu(rn, 'watched')} | "
          f"{cpu(etcd, 'alone')}; {cpu(etcd, 'watched')} | |")
    print(f"| {n:,} watchers connected in | {rn['attach_s']:.1f} s | {etcd['attach_s']:.1f} s | |")


if __name__ == "__main__":
    sys.exit(main())
