"""`make bench`: throughput and memory of `s3-import convert`, with every baseline measured in
the same run on the same file, each figure the median of several runs.

  (a) floor: the same decompressor + serde_json parsing every line into serde_json::Value
  (b) our convert, output to /dev/null (MB/s of uncompressed input, events/s), one core
Runs of the different measures are interleaved (a round of each, then the next round), so a
burst of load on a shared machine does not land on one measure alone.
  (c) b / a
  (d) the same conversion in Python, written as a user would (bench/baseline.py); b / d
  (e) peak RSS of convert
  (f) the integrity pass: one-core conversion with inflated bytes held back until their gzip
      member's or zstd frame's checksum is checked (as the importer reads), against the same
      conversion handing them on at once, for one gzip stream, gzip members and zstd
  and the two-thread figure (decompression and conversion on separate threads, two cores).

Settings (environment): BENCH_MB (uncompressed size, default 200), BENCH_RUNS (default 5),
BENCH_PY_RUNS (default 3), BENCH_EVENTS (`dense`, the default: ~540-byte events, ~370k in 200 MB,
as event-dense exports have them and as the targets are stated; `wide`: ~700-byte events, ~285k
in 200 MB, with more pass-through properties; see examples/bench_gen.rs).
"""
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.expanduser("~"), ".cache/s3-import/target"))
RELEASE = os.path.join(TARGET, "release")
WORK = os.path.join(TARGET, "bench")
MB = int(os.environ.get("BENCH_MB", "200"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
PY_RUNS = int(os.environ.get("BENCH_PY_RUNS", "3"))
CONVERTER = os.path.join(ROOT, "bench", "converter.json")
EVENTS = os.environ.get("BENCH_EVENTS", "dense")
if EVENTS not in ("dense", "wide"):
    sys.exit(f"bench: BENCH_EVENTS is dense or wide, not {EVENTS!r}")
# The generated files' names: the wide events kept their old names.
STEM = f"events-{MB}MB" + ("-dense" if EVENTS == "dense" else "")


def pinned(cores, argv):
    """Pins a command to cores when taskset exists (this machine is shared and noisy)."""
    if subprocess.call(["which", "taskset"], stdout=subprocess.DEVNULL) == 0:
        return ["taskset", "-c", cores] + argv
    return argv


def run(argv, stdout=subprocess.DEVNULL):
    """Runs once: (wall seconds, peak RSS in KiB, stdout text or None, CPU seconds)."""
    start = time.perf_counter()
    capture = stdout is not subprocess.DEVNULL
    env = dict(os.environ, BENCH_EVENTS=EVENTS)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE if capture else subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    text = proc.stdout.read().decode() if capture else None
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        sys.exit(f"bench: {' '.join(argv)} failed with status {status}")
    return elapsed, usage.ru_maxrss, text, usage.ru_utime + usage.ru_stime


def interleaved(plan):
    """Runs each (name, runs, argv) of `plan` round by round (A B C, A B C, …), so a burst of
    load on this shared machine lands on every measure alike rather than on one of them.
    Returns name -> (median wall seconds, median CPU seconds, peak RSS KiB)."""
    results = {name: [] for name, _, _ in plan}
    for i in range(max(runs for _, runs, _ in plan)):
        for name, runs, argv in plan:
            if i < runs:
                results[name].append(run(argv))
    return {
        name: (statistics.median(r[0] for r in rs), statistics.median(r[3] for r in rs), max(r[1] for r in rs))
        for name, rs in results.items()
    }


def main():
    os.makedirs(WORK, exist_ok=True)
    data = os.path.join(WORK, f"{STEM}.jsonl.gz")
    meta_path = data + ".meta"
    if not (os.path.exists(data) and os.path.exists(meta_path)):
        print(f"generating {MB} MB of events …", flush=True)
        _, _, text, _ = run([os.path.join(RELEASE, "examples", "bench_gen"), data, str(MB * 1_000_000)], stdout=subprocess.PIPE)
        with open(meta_path, "w") as f:
            f.write(text)
    meta = json.load(open(meta_path))
    records, size = meta["records"], meta["bytes"]
    mb = size / 1e6
    print(f"input: {data}\n       {records} events ({size / records:.0f} bytes each, BENCH_EVENTS={EVENTS}), {mb:.1f} MB uncompressed, {os.path.getsize(data) / 1e6:.1f} MB gzip; median of {RUNS} runs\n")

    floor_bin = os.path.join(RELEASE, "examples", "bench_floor")
    convert = [os.path.join(RELEASE, "s3-import"), "convert", "--config", CONVERTER]
    m = interleaved([
        ("inflate", RUNS, pinned("0", [floor_bin, data, "inflate"])),
        ("skip", RUNS, pinned("0", [floor_bin, data, "skip"])),
        ("floor", RUNS, pinned("0", [floor_bin, data, "value"])),
        ("one", RUNS, pinned("0", convert + ["--threads", "1", data])),
        ("two", RUNS, pinned("0,1", convert + ["--threads", "2", data])),
        ("py", PY_RUNS, pinned("0", [sys.executable, os.path.join(ROOT, "bench", "baseline.py"), data])),
    ])
    inflate, skip, floor, one, two, py = (m[k][0] for k in ("inflate", "skip", "floor", "one", "two", "py"))
    rss1, rss2 = m["one"][2], m["two"][2]

    rate = lambda secs: mb / secs
    cpu = {k: m[k][1] for k in m}
    rows = [
        ("inflate only (reference)", inflate, cpu["inflate"]),
        ("validate lines, no tree (reference)", skip, cpu["skip"]),
        ("(a) floor: inflate + serde_json::Value", floor, cpu["floor"]),
        ("(b) s3-import convert, 1 thread", one, cpu["one"]),
        ("    s3-import convert, 2 threads", two, cpu["two"]),
        ("(d) Python baseline", py, cpu["py"]),
    ]
    print(f"{'measure':42} {'seconds':>8} {'CPU s':>8} {'MB/s':>8} {'events/s':>11}")
    for name, secs, cpu_secs in rows:
        print(f"{name:42} {secs:8.2f} {cpu_secs:8.2f} {rate(secs):8.1f} {records / secs:11,.0f}")
    print()
    print(f"(c) b / a (target >= 0.5):                 {floor / one:6.2f}   (by CPU time: {cpu['floor'] / cpu['one']:.2f})")
    print(f"    inflate floor / b, one core, by CPU:   {cpu['inflate'] / cpu['one']:6.2f}"
          f"   (1.00 would be convert at the speed of inflate alone)")
    print(f"    b / d (target >= 10):                  {py / one:6.2f}"
          f"   (by CPU time rather than wall time: {m['py'][1] / m['one'][1]:.2f})")
    print(f"    2 threads / 1 thread (target >= 1.6):  {one / two:6.2f}")
    print(f"(e) peak RSS of convert (target < 64 MB):  {rss1 / 1024:6.1f} MB (1 thread), {rss2 / 1024:.1f} MB (2 threads)")
    integrity()
    delivery(one / records)


def generated(suffix, fmt):
    """The bench data in another container (same events): its path."""
    path = os.path.join(WORK, f"{STEM}{suffix}")
    if not os.path.exists(path):
        run([os.path.join(RELEASE, "examples", "bench_gen"), path, str(MB * 1_000_000), fmt], stdout=subprocess.PIPE)
    return path


def integrity():
    """(f): the importer checks every checksum in the pass that converts (S3I_VERIFY_COMPRESSED):
    bytes are held back (in memory, then a temporary file) until their member or frame checks out."""
    held = os.path.join(RELEASE, "examples", "bench_held")
    # The same converter, its compression sniffed, for the zstd file as well.
    config = json.load(open(CONVERTER))
    config["converterConfig"]["compressionType"] = "auto"
    auto = os.path.join(WORK, "converter-auto.json")
    with open(auto, "w") as f:
        json.dump(config, f)
    files = [("one gzip stream", generated(".jsonl.gz", "gzip")),
             ("gzip members of 4 MB", generated("-members.jsonl.gz", "members")),
             ("zstd (content checksum)", generated(".jsonl.zst", "zstd"))]
    plan = []
    for name, path in files:
        for mode in ("plain", "held"):
            plan.append((f"{name}/{mode}", RUNS, pinned("0", [held, auto, path, mode])))
    m = interleaved(plan)
    print("(f) integrity pass (checksums checked before records are read), one core, by CPU time:")
    for name, _ in files:
        plain, hold = m[f"{name}/plain"], m[f"{name}/held"]
        print(f"    {name:26} {plain[1]:6.2f} s -> {hold[1]:6.2f} s CPU: {(hold[1] / plain[1] - 1) * 100:+5.1f}%"
              f" (wall {(hold[0] / plain[0] - 1) * 100:+5.1f}%), peak RSS {hold[2] / 1024:.1f} MB; one download")


def delivery(convert_cpu_per_event):
    """Delivery to the emulator with 50 ms added per request: 1 vs 8 requests in flight."""
    events = int(os.environ.get("BENCH_DELIVER_EVENTS", "100000"))
    # Batches of 500: the endpoint's 50 ms, not the emulator's own CPU on this shared 2-core
    # machine, should be what limits one request in flight.
    batch = os.environ.get("BENCH_DELIVER_BATCH", "500")
    data_dir = os.path.join(WORK, "emulator")
    emulator = subprocess.Popen(
        [os.path.join(RELEASE, "s3-import"), "emulator", "--listen", "127.0.0.1:0", "--data-dir", data_dir, "--latency-ms", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        line = emulator.stdout.readline().decode()
        base = line.strip().removeprefix("listening on ")
        results = {}
        for in_flight in (1, 8):
            runs = []
            for _ in range(3):
                _, _, text, _ = run([os.path.join(RELEASE, "examples", "bench_deliver"), base, str(events), str(in_flight), batch], stdout=subprocess.PIPE)
                r = json.loads(text)
                if r["sent"] != events:
                    sys.exit(f"bench: delivery sent {r['sent']} of {events}")
                runs.append(r)
            results[in_flight] = (statistics.median(r["seconds"] for r in runs), statistics.median(r["cpu_seconds"] for r in runs))
    finally:
        emulator.terminate()
        emulator.wait()
    print(f"\ndelivery of {events} events in batches of {batch} to the emulator, 50 ms added per request (median of 3):")
    for k, (secs, cpu) in results.items():
        print(f"    {k} in flight: {secs:6.2f} s  {events / secs:10,.0f} events/s  sender CPU {cpu:.2f} s")
    print(f"    8 / 1 in flight (target >= 6):         {results[1][0] / results[8][0]:6.2f}")
    sender = results[8][1] / events
    print(f"    sender CPU / converter CPU per event (target <= 0.20): {sender / convert_cpu_per_event:5.2f}"
          f"  ({sender * 1e6:.2f} µs vs {convert_cpu_per_event * 1e6:.2f} µs)")


if __name__ == "__main__":
    main()
