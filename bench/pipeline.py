"""`make bench-pipeline`: one large object end to end through the local AWS stack (LocalStack
S3 + DynamoDB) and the emulator, with `s3-import import`, against `s3-import convert` of the
same file from local disk in the same run (the baseline: what the stack and the network add).

Prints: events/s and MB/s end to end, the ratio to the local convert, DynamoDB requests per 1000
events (fresh events; then the same object again under another key, every event a duplicate),
and peak RSS of the importer.

Settings (environment): BENCH_PIPELINE_MB (uncompressed size, default 100).
Run with the LocalStack venv's python (it has boto3); the Makefile does.
"""
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
    finally:
        emu.terminate()
        emu.wait()

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
