"""`make bench-pipeline`, in three parts.

1. Our code, not the local stack (examples/bench_pipeline.rs): the whole pipeline over the
   in-memory claims and dedupe stores with a DynamoDB-like latency added to every call
   (BENCH_STORE_MS, default 5) and the emulator with BENCH_ENDPOINT_MS (default 50) per request:
   events/s for one large object with dedupe on (target >= 50,000), and objects/s for
   BENCH_SMALL_OBJECTS (default 2,000) small ones handled as SQS batches of 10, against
   S3I_OBJECT_CONCURRENCY=1 in the same run (target: >= 5x faster).
2. One large object end to end through the local AWS stack (LocalStack S3 + DynamoDB) and the
   emulator, with `s3-import import`, against `s3-import convert` of the same file from local
   disk in the same run (the baseline: what the stack and the network add). Prints events/s and
   MB/s end to end, DynamoDB requests per 1000 events (fresh; then every event a duplicate), and
   peak RSS of the importer.
3. A scan at scale on the local stack: BENCH_SCAN_OBJECTS (default 20,000; 0 skips) small objects
   in a bucket without notifications; `s3-import scan --enqueue --json` queues each once (a
   second scan right after queues none: their copies are in flight), then `s3-import worker`
   imports each once. Prints the DynamoDB and SQS requests per object of the scan's own checks,
   marks and sends (target <= 0.2; listing aside), and how long each step took.

Settings (environment): BENCH_PIPELINE_MB (uncompressed size, default 100), and those above.
Run with the LocalStack venv's python (it has boto3); the Makefile does.
"""
import concurrent.futures
import json
import os
import subprocess
import sys
import time

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.expanduser("~"), ".cache/s3-import/target"))
RELEASE = os.path.join(TARGET, "release")
WORK = os.path.join(TARGET, "bench-pipeline")
MB = int(os.environ.get("BENCH_PIPELINE_MB", "100"))
CONVERTER = os.path.join(ROOT, "bench", "converter.json")
ENDPOINT = "http://127.0.0.1:4566"
BIN = os.path.join(RELEASE, "s3-import")


def run_measured(cmd, env):
    """Runs cmd; returns (seconds, peak RSS in MB of that command, stdout)."""
    rss_file = os.path.join(WORK, "rss")
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file] + cmd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    secs = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    with open(rss_file) as f:
        kb = int(f.read().split()[-1])
    return secs, kb / 1024, p.stdout


def main():
    os.makedirs(WORK, exist_ok=True)
    data = os.path.join(WORK, f"events-{MB}mb.jsonl.gz")
    if not os.path.exists(data):
        subprocess.run([os.path.join(RELEASE, "examples", "bench_gen"), data, str(MB << 20)], check=True,
                       stdout=subprocess.DEVNULL)
    raw = int(subprocess.run(f"gzip -dc '{data}' | wc -c", shell=True, check=True, capture_output=True,
                             text=True).stdout)
    env = dict(os.environ, AWS_ENDPOINT_URL=ENDPOINT, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_REGION="us-east-1")

    in_memory(data)

    # Baseline in the same run: convert the same file from local disk, output discarded.
    base_secs, base_rss, _ = run_measured(
        ["sh", "-c", f"exec '{BIN}' convert --config '{CONVERTER}' --key in/events.json.gz '{data}' > /dev/null 2>&1"],
        env)

    received = os.path.join(WORK, "received")
    subprocess.run(["rm", "-rf", received])
    emu = subprocess.Popen([BIN, "emulator", "--listen", "127.0.0.1:0", "--data-dir", received],
                           stdout=subprocess.PIPE, text=True)
    try:
        line = emu.stdout.readline()
        api = line.strip().removeprefix("listening on ")
        run = f"bench-{int(time.time())}"
        tables = {"S3I_CLAIMS_TABLE": "bench-claims", "S3I_DEDUPE_TABLE": "bench-dedupe"}
        env.update(tables)
        subprocess.run([BIN, "setup", "--bucket", run, "--queue", run, "--prefix", "in/"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        s3 = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
        s3.upload_file(CONVERTER, run, "config/converter.json")
        s3.upload_file(data, run, "in/events.json.gz")
        for copy in ("again", "nodedupe"):
            s3.copy_object(Bucket=run, Key=f"in/{copy}.json.gz", CopySource={"Bucket": run, "Key": "in/events.json.gz"})
        env.update({"S3I_SOURCE": run, "S3I_CONVERTER": f"s3://{run}/config/converter.json",
                    "S3I_REPORTS": f"s3://{run}/reports/", "S3I_PREFIX": "in/", "AMPLITUDE_API_KEY": "bench",
                    "S3I_ENDPOINT": api, "S3I_THREADS": "2"})

        secs, rss, out = run_measured([BIN, "import", f"s3://{run}/in/events.json.gz"], env)
        report = json.loads(s3.get_object(Bucket=run, Key=f"reports/{run}/in/events.json.gz.report.json")["Body"].read())
        again_secs, again_rss, _ = run_measured([BIN, "import", f"s3://{run}/in/again.json.gz"], env)
        again = json.loads(s3.get_object(Bucket=run, Key=f"reports/{run}/in/again.json.gz.report.json")["Body"].read())
        # Without the dedupe table: what S3 streaming, conversion and delivery reach on their own
        # (the local DynamoDB, behind LocalStack's Python gateway, is far slower than AWS's).
        plain_secs, plain_rss, _ = run_measured([BIN, "import", f"s3://{run}/in/nodedupe.json.gz"],
                                                dict(env, S3I_DEDUPE_TABLE="off"))
        print_large(raw, data, report, again, base_secs, secs, again_secs, plain_secs, base_rss, rss, again_rss,
                    plain_rss)
        scan_at_scale(env, api, s3)
    finally:
        emu.terminate()
        emu.wait()


def in_memory(data):
    """Part 1: the pipeline's own figures (examples/bench_pipeline.rs)."""
    print("== the pipeline in memory (store and endpoint latencies injected) ==", flush=True)
    p = subprocess.run([os.path.join(RELEASE, "examples", "bench_pipeline"), data, CONVERTER], stdout=subprocess.PIPE,
                       text=True)
    if p.returncode != 0:
        sys.exit(f"bench_pipeline failed ({p.returncode}):\n{p.stdout}")
    lines = p.stdout.strip().splitlines()
    print("\n".join(lines[:-1]))
    f = json.loads(lines[-1])
    ok = lambda b: "met" if b else "NOT met"
    print(f"targets: one large object {f['large_events_per_sec']:.0f} events/s >= 50,000: "
          f"{ok(f['large_events_per_sec'] >= 50_000)}; small objects {f['speedup']:.1f}x one at a time >= 5x: "
          f"{ok(f['speedup'] >= 5)}", flush=True)


def scan_at_scale(env, api, s3):
    """Part 3: a scan of many objects on the local stack, then their imports."""
    n = int(os.environ.get("BENCH_SCAN_OBJECTS", "20000"))
    if n <= 0:
        return
    print(f"== a scan of {n} objects on the local stack ==", flush=True)
    run = f"scan-{int(time.time())}"
    # A bucket without notifications (only the scan finds these objects) and a plain queue; the
    # tables are those `setup` made above.
    s3.create_bucket(Bucket=run)
    sqs = boto3.client("sqs", endpoint_url=ENDPOINT, region_name="us-east-1", aws_access_key_id="test",
                       aws_secret_access_key="test")
    queue = sqs.create_queue(QueueName=run, Attributes={"VisibilityTimeout": "900"})["QueueUrl"]
    with open(CONVERTER) as f:
        conv = json.load(f)
    conv["converterConfig"]["compressionType"] = "auto"
    s3.put_object(Bucket=run, Key="config/converter.json", Body=json.dumps(conv).encode())
    line = ('{"insert_id": "%s-%d", "event_type": "Backfill", "user_id": "user-%05d", '
            '"event_time": "2024-05-01T10:00:00Z"}\n')

    def put(i):
        body = "".join(line % (run, i * 2 + j, i % 1000) for j in range(2))
        s3.put_object(Bucket=run, Key=f"in/{i // 1000:03}/{i:06}.json", Body=body.encode())

    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        list(pool.map(put, range(n)))
    print(f"uploaded {n} objects in {time.perf_counter() - t:.0f} s", flush=True)
    senv = dict(env, S3I_SOURCE=run, S3I_CONVERTER=f"s3://{run}/config/converter.json",
                S3I_REPORTS=f"s3://{run}/reports/", S3I_QUEUE_URL=queue, S3I_ENDPOINT=api)

    def scan():
        t = time.perf_counter()
        p = subprocess.run([BIN, "scan", "--bucket", run, "--enqueue", "--json"], env=senv, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        if p.returncode != 0:
            sys.exit(f"scan failed ({p.returncode}): {p.stdout}")
        return json.loads(p.stdout.strip().splitlines()[-1]), time.perf_counter() - t

    first, first_secs = scan()
    second, second_secs = scan()
    per = (first["claims_requests"] + first["queue_requests"]) / max(first["listed"], 1)
    print(f"scan: listed {first['listed']} in {first['pages']} pages, queued {first['enqueued']} in {first_secs:.1f} s "
          f"({first['listed'] / first_secs:.0f} objects/s); DynamoDB requests {first['claims_requests']} "
          f"({first['claims_requests'] / max(first['listed'], 1):.3f} per object), SQS requests "
          f"{first['queue_requests']} ({first['queue_requests'] / max(first['listed'], 1):.3f} per object): "
          f"{per:.3f} per object (target <= 0.2: {'met' if per <= 0.2 else 'NOT met'})")
    print(f"second scan right after: queued {second['enqueued']}, in flight {second['in_flight']} "
          f"({second_secs:.1f} s)", flush=True)
    import urllib.request
    stats = lambda: json.loads(urllib.request.urlopen(f"{api}/stats").read())
    before = stats()
    t = time.perf_counter()
    p = subprocess.run([BIN, "worker", "--queue-url", queue, "--idle-exit", "10"], env=senv,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    secs = time.perf_counter() - t
    handled = [l for l in p.stderr.splitlines() if l.startswith("worker:")]
    status = subprocess.run([BIN, "status", "--json"], env=senv, stdout=subprocess.PIPE, text=True).stdout
    completed = sum(1 for l in status.splitlines() if '"COMPLETED"' in l)
    after = stats()
    events, dups = after["events"] - before["events"], after["duplicates"] - before["duplicates"]
    print(f"worker: {handled[-1] if handled else p.stderr[-500:]} in {secs:.0f} s ({n / secs:.0f} objects/s "
          f"through LocalStack); {completed} claims COMPLETED; endpoint accepted {events} events, "
          f"{dups} duplicates (each object imported once: "
          f"{'yes' if completed == n and events == 2 * n and dups == 0 else 'NO'})", flush=True)


def print_large(raw, data, report, again, base_secs, secs, again_secs, plain_secs, base_rss, rss, again_rss,
                plain_rss):
    print("== one large object through the local stack ==")
    c = report["counts"]
    events = c["payloads"]
    print(f"object: {raw / 1e6:.0f} MB of JSON lines ({os.path.getsize(data) / 1e6:.0f} MB gzip), "
          f"{c['records']} records, {events} events")
    print(f"counts: sent {c['sent']}, duplicates {c['duplicates']}, skipped {c['skipped']}, invalid {c['invalid']}")
    print(f"local convert (baseline):   {base_secs:6.1f} s  {raw / base_secs / 1e6:6.1f} MB/s  "
          f"{c['records'] / base_secs:9.0f} records/s")
    print(f"end to end (S3→DynamoDB→HTTP): {secs:6.1f} s  {raw / secs / 1e6:6.1f} MB/s  "
          f"{events / secs:9.0f} events/s  ({secs / base_secs:.1f}× the local convert's time)")
    print(f"DynamoDB dedupe requests per 1000 events: {report['dedupe_requests'] * 1000 / max(events, 1):.1f} "
          f"(fresh), {again['dedupe_requests'] * 1000 / max(again['counts']['payloads'], 1):.1f} "
          f"(same events again: {again['counts']['duplicates']} duplicates, {again['counts']['sent']} sent, "
          f"{again_secs:.1f} s)")
    print(f"end to end, dedupe off:     {plain_secs:6.1f} s  {raw / plain_secs / 1e6:6.1f} MB/s  "
          f"{events / plain_secs:9.0f} events/s  ({plain_secs / base_secs:.1f}× the local convert's time)")
    print(f"HTTP requests: {report['http_requests']} ({report['http_retries']} retries)")
    print(f"peak RSS of the importer: {max(rss, again_rss, plain_rss):.1f} MB (local convert: {base_rss:.1f} MB)")


if __name__ == "__main__":
    main()
