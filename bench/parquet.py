"""`make bench` (after bench/run.py): converting a snappy Parquet file of realistic events.

The file holds the JSON bench's events (examples/bench_gen.rs: nested event and user
properties, unicode, ISO times with and without offsets) as pyarrow writes them from those JSON
lines (structs for the nested objects, a list, dictionary-encoded strings, 128 Ki-row groups),
at least 200 MB of uncompressed Parquet pages. From the same run it prints:

  ours:     `s3-import convert` (bench/converter.json as fileType parquet), output to /dev/null,
            one thread: MB/s (uncompressed Parquet bytes; and the JSON lines the file came from),
            events/s, peak RSS
  baseline: the same conversion in Python, written the way a user would: pyarrow reads the file
            batch by batch, a per-row loop maps each row into the event dict and json.dumps it
  ratio:    baseline time / our time, by wall and by CPU time (user + system; target ≥ 12×);
            runs of the two interleaved

pyarrow comes from PyPI, pinned, into a venv under ~/.cache/s3-import/ (created on first use).
Settings (environment): BENCH_PARQUET_MB (minimum uncompressed Parquet MB, default 200),
BENCH_RUNS (ours, default 5), BENCH_PY_RUNS (baseline, default 1).

`python3 bench/parquet.py --import-rss` instead measures peak RSS of `s3-import import` of a
1 GB Parquet object with ~128 MB row groups on the local AWS stack (LocalStack must be up),
against the budget 2 × the largest compressed row group + 64 MB.
"""
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import time

PYARROW = "pyarrow==26.0.1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "s3-import")
VENV = os.path.join(CACHE, "parquet-venv")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(CACHE, "target"))
RELEASE = os.path.join(TARGET, "release")
WORK = os.path.join(TARGET, "bench-parquet")
MB = int(os.environ.get("BENCH_PARQUET_MB", "200"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
PY_RUNS = int(os.environ.get("BENCH_PY_RUNS", "1"))
BIN = os.path.join(RELEASE, "s3-import")
PATH_NUMBER = re.compile(r'"path":\["home","kitchen",(\d+)\]')


def in_venv():
    """Re-runs this script with the venv's python, creating the venv first if needed."""
    python = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    marker = os.path.join(VENV, "pinned.txt")
    if not os.path.exists(marker) or open(marker).read().strip() != PYARROW:
        print(f"bench: installing {PYARROW} into {VENV}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", PYARROW], check=True)
        with open(marker, "w") as f:
            f.write(PYARROW + "\n")
    os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:])


# --- The Python baseline: what a user would write -------------------------------------------

def baseline(path):
    """bench/converter.json in Python over pyarrow rows; payloads of 2000 events to stdout."""
    from datetime import datetime

    import pyarrow.parquet as pq

    def iso_to_ms(text):
        try:
            return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
        except (ValueError, AttributeError):
            return None

    def convert(rec):
        out = {
            "event_type": rec.get("event_type"),
            "user_id": rec.get("user_id"),
            "device_id": None if rec.get("device_id") == "" else rec.get("device_id"),
            "time": iso_to_ms(rec.get("event_time")),
            "session_id": rec.get("session_id"),
            "insert_id": rec.get("insert_id"),
            "platform": rec.get("platform"),
            "os_name": rec.get("os_name"),
            "os_version": rec.get("os_version"),
            "app_version": rec.get("app_version"),
            "country": rec.get("country"),
            "city": rec.get("city"),
            "language": rec.get("language"),
            "ip": rec.get("ip"),
            "event_properties": rec.get("event_properties"),
        }
        up = rec.get("user_properties") or {}
        out["user_properties"] = {"plan": up.get("plan"), "cohort": up.get("cohort"),
                                  "beta": (up.get("flags") or {}).get("beta")}
        if rec.get("event_type") == "Order Completed":
            out["price"] = (rec.get("event_properties") or {}).get("price")
        out["$skip_user_properties_sync"] = True
        return {k: v for k, v in out.items() if v is not None}

    batch, n = [], 0
    write = sys.stdout.write
    for record_batch in pq.ParquetFile(path).iter_batches(batch_size=65536):
        for row in record_batch.to_pylist():
            batch.append(convert(row))
            n += 1
            if len(batch) == 2000:
                write(json.dumps({"api_key": "x", "events": batch}))
                batch = []
    if batch:
        write(json.dumps({"api_key": "x", "events": batch}))
    print(json.dumps({"records": n}), file=sys.stderr)


# --- The data --------------------------------------------------------------------------------

def schema():
    import pyarrow as pa

    s = pa.string()
    return pa.schema([
        ("event_type", s), ("user_id", s), ("device_id", s), ("event_time", s), ("session_id", pa.int64()),
        ("insert_id", s), ("platform", s), ("os_name", s), ("os_version", s), ("app_version", s),
        ("country", s), ("city", s), ("language", s), ("ip", s),
        ("event_properties", pa.struct([
            ("product_id", s), ("price", pa.float64()), ("currency", s),
            ("category", pa.struct([("name", s), ("path", pa.list_(pa.string()))])),
            ("query", s), ("position", pa.int64())])),
        ("user_properties", pa.struct([("plan", s), ("cohort", s), ("flags", pa.struct([("beta", pa.bool_())]))])),
        ("library", pa.struct([("name", s), ("version", s)])),
        ("is_test", pa.bool_()),
    ])


def uncompressed(meta):
    return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))


def make_parquet(path, min_bytes, rows_per_group, json_bytes_per_step=200 << 20):
    """Writes the bench events as Parquet until the pages hold `min_bytes` uncompressed.
    Returns the JSON lines bytes the events came from."""
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    os.makedirs(WORK, exist_ok=True)
    step = json_bytes_per_step
    while True:
        js = os.path.join(WORK, "events.jsonl.gz")
        out = subprocess.run([os.path.join(RELEASE, "examples", "bench_gen"), js, str(step)], check=True,
                             capture_output=True, text=True).stdout
        gen = json.loads(out)
        # A Parquet list has one element type: the category path's number becomes a string.
        fixed = js[: -len(".gz")]
        with gzip.open(js, "rt", encoding="utf-8") as src, open(fixed, "w", encoding="utf-8") as dst:
            for line in src:
                dst.write(PATH_NUMBER.sub(r'"path":["home","kitchen","\1"]', line))
        os.remove(js)
        js = fixed
        table = pj.read_json(js, parse_options=pj.ParseOptions(explicit_schema=schema(),
                                                               unexpected_field_behavior="error"))
        tmp = path + ".tmp"
        pq.write_table(table, tmp, compression="snappy", row_group_size=rows_per_group)
        del table
        have = uncompressed(pq.ParquetFile(tmp).metadata)
        if have >= min_bytes:
            os.replace(tmp, path)
            os.remove(js)
            return gen["bytes"]
        step = int(step * min_bytes / have * 1.05) + 1


def parquet_converter():
    with open(os.path.join(ROOT, "bench", "converter.json")) as f:
        conv = json.load(f)
    conv["converterConfig"]["fileType"] = "parquet"
    conv["converterConfig"]["compressionType"] = "none"
    path = os.path.join(WORK, "converter-parquet.json")
    with open(path, "w") as f:
        json.dump(conv, f)
    return path


def run(argv, stdout=subprocess.DEVNULL):
    """Runs once: (wall seconds, peak RSS KiB, stderr, CPU seconds: user + system). RSS and CPU
    are GNU time's: a child's own rusage would count this (pyarrow-holding) process's pages
    from before the exec."""
    rss_file = os.path.join(WORK, "rss")
    start = time.perf_counter()
    proc = subprocess.Popen(["/usr/bin/time", "-f", "%M %U %S", "-o", rss_file] + argv, stdout=stdout,
                            stderr=subprocess.PIPE)
    err = proc.stderr.read().decode()
    status = proc.wait()
    elapsed = time.perf_counter() - start
    if status != 0:
        sys.exit(f"bench: {' '.join(argv)} failed with status {status}:\n{err}")
    with open(rss_file) as f:
        rss, user, system = f.read().split()[-3:]
    return elapsed, int(rss), err, float(user) + float(system)


def bench():
    import pyarrow.parquet as pq

    path = os.path.join(WORK, f"events-{MB}mb.snappy.parquet")
    info = path + ".json"
    if not os.path.exists(path) or not os.path.exists(info):
        # In a process of its own: a child's peak RSS counts its parent's memory before exec,
        # and pyarrow keeps what the table held.
        subprocess.run([sys.executable, os.path.abspath(__file__), "--make", path, info], check=True)
    json_bytes = json.load(open(info))["json_bytes"]
    meta = pq.ParquetFile(path).metadata
    raw, rows, size = uncompressed(meta), meta.num_rows, os.path.getsize(path)
    conv = parquet_converter()

    # Interleaved, so that a burst of load on a shared machine does not land on one side alone.
    ours, py = [], []
    for i in range(max(RUNS, PY_RUNS)):
        if i < RUNS:
            ours.append(run([BIN, "convert", "--config", conv, "--threads", "1", "--key", "in/events.parquet", path]))
        if i < PY_RUNS:
            py.append(run([sys.executable, os.path.abspath(__file__), "--baseline", path]))
    secs = statistics.median(t for t, _, _, _ in ours)
    cpu = statistics.median(c for _, _, _, c in ours)
    rss = max(r for _, r, _, _ in ours) / 1024
    py_secs = statistics.median(t for t, _, _, _ in py)
    py_cpu = statistics.median(c for _, _, _, c in py)
    py_rows = json.loads(py[0][2].strip().splitlines()[-1])["records"]
    if py_rows != rows:
        sys.exit(f"bench: the baseline read {py_rows} rows of {rows}")

    print(f"Parquet bench: {size / 1e6:.0f} MB snappy file, {raw / 1e6:.0f} MB uncompressed pages, "
          f"{meta.num_row_groups} row groups, {rows} events (from {json_bytes / 1e6:.0f} MB of JSON lines; pyarrow)")
    print(f"  s3-import convert, 1 thread: {secs:6.2f} s  {raw / secs / 1e6:7.1f} MB/s uncompressed "
          f"({json_bytes / secs / 1e6:.1f} MB/s as JSON)  {rows / secs:9.0f} events/s  {cpu:.2f} s CPU  (median of {RUNS})")
    print(f"  Python (pyarrow + per-row dict + json.dumps): {py_secs:6.2f} s  {raw / py_secs / 1e6:7.1f} MB/s  "
          f"{rows / py_secs:9.0f} events/s  {py_cpu:.2f} s CPU  (median of {PY_RUNS})")
    print(f"  ratio: {py_secs / secs:.1f}× the Python baseline by wall time, {py_cpu / cpu:.1f}× by CPU time "
          f"(target ≥ 12×)")
    print(f"  peak RSS of convert: {rss:.1f} MB")


# --- Peak RSS of `import` on a 1 GB object ---------------------------------------------------

def rss_file():
    """The 1 GB object (BENCH_RSS_GB): rows of BENCH_RSS_ROW_BYTES (default 1000) of
    incompressible text, as many per row group as make ~128 MiB compressed (snappy). Written
    once, by pyarrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    gb = float(os.environ.get("BENCH_RSS_GB", "1"))
    row_bytes = int(os.environ.get("BENCH_RSS_ROW_BYTES", "1000"))
    os.makedirs(WORK, exist_ok=True)
    path = os.path.join(WORK, f"rss-{gb:g}gb-{row_bytes}.parquet")
    rows_per_group = (128 << 20) // (row_bytes + 40)
    if not os.path.exists(path):
        total = int(gb * (1 << 30) / (row_bytes + 40))
        writer = None
        for start in range(0, total, rows_per_group):
            n = min(rows_per_group, total - start)
            t = pa.table({
                "id": [f"rss-{i}" for i in range(start, start + n)],
                "type": pa.array(["Played"] * n),
                "device": [f"device-{i % 1000}" for i in range(start, start + n)],
                "ts": pa.array(range(1_790_000_000_000 + start, 1_790_000_000_000 + start + n), pa.int64()),
                "blob": [os.urandom(row_bytes // 2).hex() for _ in range(n)],
            })
            if writer is None:
                writer = pq.ParquetWriter(path + ".tmp", t.schema, compression="snappy")
            writer.write_table(t, row_group_size=rows_per_group)
        writer.close()
        os.replace(path + ".tmp", path)
    return path


def import_rss():
    """1 GB Parquet object, ~128 MB row groups, imported from LocalStack with dedupe off."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    endpoint = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_REGION="us-east-1")
    path = rss_file()
    meta = pq.ParquetFile(path).metadata
    largest = max(sum(meta.row_group(g).column(c).total_compressed_size for c in range(meta.num_columns))
                  for g in range(meta.num_row_groups))
    size = os.path.getsize(path)

    run_id = f"pq-rss-{int(time.time())}"
    subprocess.run([BIN, "setup", "--bucket", run_id, "--queue", run_id, "--prefix", "in/"],
                   env=dict(env, S3I_CLAIMS_TABLE="bench-claims", S3I_DEDUPE_TABLE="off"), check=True,
                   stdout=subprocess.DEVNULL)
    s3 = pafs.S3FileSystem(endpoint_override=endpoint, access_key="test", secret_key="test", region="us-east-1",
                           scheme="http")
    pafs.copy_files(path, f"{run_id}/in/big.parquet", destination_filesystem=s3)
    conv = {"converterConfig": {"fileType": "parquet", "compressionType": "none", "convertToAmplitudeFunc": {
        "insert_id": "id", "event_type": "type", "device_id": "device", "time": "ts",
        "event_properties": {"blob": "blob"}}}}
    with s3.open_output_stream(f"{run_id}/config/converter.json") as f:
        f.write(json.dumps(conv).encode())

    received = os.path.join(WORK, "rss-received")
    subprocess.run(["rm", "-rf", received])
    emu = subprocess.Popen([BIN, "emulator", "--listen", "127.0.0.1:0", "--data-dir", received],
                           stdout=subprocess.PIPE, text=True)
    try:
        api = emu.stdout.readline().strip().removeprefix("listening on ")
        env.update({"S3I_SOURCE": run_id, "S3I_CONVERTER": f"s3://{run_id}/config/converter.json",
                    "S3I_REPORTS": f"s3://{run_id}/reports/", "S3I_PREFIX": "in/", "AMPLITUDE_API_KEY": "bench",
                    "S3I_ENDPOINT": api, "S3I_CLAIMS_TABLE": "bench-claims", "S3I_DEDUPE_TABLE": "off",
                    "S3I_MAX_RUN_SECS": "3600"})
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-v", BIN, "import", f"s3://{run_id}/in/big.parquet"], env=env,
                           capture_output=True, text=True)
        secs = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit(f"import failed:\n{p.stdout}\n{p.stderr}")
        rss_kb = int(next(l for l in p.stderr.splitlines() if "Maximum resident set size" in l).split()[-1])
    finally:
        emu.terminate()
        emu.wait()
        subprocess.run(["rm", "-rf", received])
    with s3.open_input_stream(f"{run_id}/reports/{run_id}/in/big.parquet.report.json") as f:
        report = json.loads(f.read())
    rss = rss_kb * 1024
    budget = 2 * largest + (64 << 20)
    print(f"import of a {size / 1e6:.0f} MB Parquet object ({meta.num_row_groups} row groups, the largest "
          f"{largest / 1e6:.0f} MB compressed; {meta.num_rows} rows) from LocalStack: {secs:.1f} s, "
          f"{report['outcome']}, {report['counts']['sent']} events sent, bytes read {report['bytes_read']}")
    print(f"peak RSS {rss / 1e6:.0f} MB; budget 2 × {largest / 1e6:.0f} MB + 64 MiB = {budget / 1e6:.0f} MB: "
          f"{'within' if rss < budget else 'OVER'}")


if __name__ == "__main__":
    in_venv()
    if sys.argv[1:2] == ["--baseline"]:
        baseline(sys.argv[2])
    elif sys.argv[1:2] == ["--make"]:
        # The folder first: the info file is opened before the Parquet file is made (a fresh
        # machine has neither).
        os.makedirs(os.path.dirname(sys.argv[3]), exist_ok=True)
        json_bytes = make_parquet(sys.argv[2], MB << 20, 128 * 1024)
        with open(sys.argv[3], "w") as f:
            json.dump({"json_bytes": json_bytes}, f)
    elif sys.argv[1:2] == ["--import-rss"]:
        import_rss()
    else:
        bench()
