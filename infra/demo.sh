#!/usr/bin/env bash
# The demo: the whole pipeline on a local emulated stack. Starts LocalStack (S3, SQS,
# DynamoDB) and the Amplitude-compatible emulator, creates two sources (events: gzip JSON
# lines; users: a CSV of user properties), uploads the converters and a few files, lets the
# bucket notifications drive the importer (the `worker`, which runs the Lambda handler), and
# prints what happened to every file. Ends by itself; stops what it started.
# Usage: infra/demo.sh PATH/TO/s3-import
set -euo pipefail
bin="${1:?usage: infra/demo.sh PATH/TO/s3-import}"
here="$(cd "$(dirname "$0")" && pwd)"
tools="${S3_IMPORT_TOOLS:-$HOME/.cache/s3-import/tools}"
work="$(mktemp -d)"
emulator_pid=""
started_stack=""
cleanup() {
  [ -n "$emulator_pid" ] && kill "$emulator_pid" 2>/dev/null || true
  [ -n "$started_stack" ] && "$here/localstack/stack.sh" down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
conv="$here/examples/converters"
data="$here/examples/data"
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

say "1. Validate the converter files"
for c in "$conv"/*.json; do printf '  %-14s ' "$(basename "$c")"; "$bin" validate --config "$c"; done

say "2. Start the local AWS stack (LocalStack, no Docker) and the endpoint emulator"
if ! "$here/localstack/stack.sh" status >/dev/null 2>&1; then
  "$here/localstack/stack.sh" up | sed 's/^/  /'
  started_stack=1
else
  echo "  local AWS stack already running"
fi
export AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
"$bin" emulator --listen 127.0.0.1:0 --data-dir "$work/received" --api-key demo-key > "$work/emulator.out" &
emulator_pid=$!
for _ in $(seq 50); do grep -q listening "$work/emulator.out" 2>/dev/null && break; sleep 0.1; done
endpoint="$(sed -n 's/^listening on //p' "$work/emulator.out")"
[ -n "$endpoint" ] || { echo "the emulator did not start" >&2; exit 1; }
echo "  emulator: $endpoint"

run="demo-$(date +%s)"
say "3. Create two sources: bucket → notification → queue, tables with TTL, converters in S3"
export S3I_CLAIMS_TABLE=s3-import-claims S3I_DEDUPE_TABLE=s3-import-dedupe
events_q="$("$bin" setup --bucket "$run-events" --queue "$run-events" --prefix events/)"
users_q="$("$bin" setup --bucket "$run-users" --queue "$run-users" --prefix users/)"
echo "  s3://$run-events/events/  → $events_q"
echo "  s3://$run-users/users/    → $users_q"

say "4. Drop files into the buckets (the notifications go to the queues)"
"$tools/localstack-venv/bin/python" - "$run" "$conv" "$data" <<'PY'
import boto3, gzip, json, sys
run, conv, data = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:4566")
def put(bucket, key, body):
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    print(f"  s3://{bucket}/{key} ({len(body)} bytes)")
put(f"{run}-events", "config/events.json", open(f"{conv}/events.json", "rb").read())
put(f"{run}-users", "config/users.json", open(f"{conv}/users.json", "rb").read())
export = open(f"{data}/events-2024-03-01.jsonl", "rb").read()
put(f"{run}-events", "events/2024/03/01/export part 1.json.gz", gzip.compress(export))
# A second file: 2000 new events, plus three that repeat insert_ids of the first file.
lines = []
for i in range(2000):
    lines.append(json.dumps({"$insert_id": f"b2c9-{i:05d}", "event_type": ["Product Viewed", "Cart Updated", "Order Completed"][i % 3],
        "user_id": f"user-{i % 97:03d}@example.com", "device_id": f"D-{i % 89:08x}", "event_time": f"2024-03-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "session_id": 1709287200000 + i // 50, "platform": "iOS", "country": "France", "city": "Lyon",
        "event_properties": {"sku": f"SKU-{i % 40}", "price": round(5 + i % 40 * 1.25, 2)}, "user_properties": {"plan": "free"}}))
for line in export.decode().splitlines()[:3]:
    lines.append(line)
put(f"{run}-events", "events/2024/03/01/export part 2.json.gz", gzip.compress(("\n".join(lines) + "\n").encode()))
put(f"{run}-users", "users/2024-03.csv", open(f"{data}/users-2024-03.csv", "rb").read())
PY

say "5. The importer works the queues (the same handler as the Lambda function)"
export AMPLITUDE_API_KEY=demo-key S3I_ENDPOINT="$endpoint"
for src in events users; do
  echo "  [$src]"
  q="$events_q"; [ "$src" = users ] && q="$users_q"
  S3I_SOURCE="$src" S3I_CONVERTER="s3://$run-$src/config/$src.json" S3I_PREFIX="$src/" \
    S3I_REPORTS="s3://$run-$src/s3-import-reports/" S3I_QUEUE_URL="$q" \
    "$bin" worker --idle-exit 3 2>/dev/null | sed 's/^/  /'
done

say "6. Claims (s3-import status)"
for src in events users; do
  S3I_SOURCE="$src" S3I_CONVERTER="s3://$run-$src/config/$src.json" S3I_PREFIX="$src/" \
    S3I_REPORTS="s3://$run-$src/s3-import-reports/" "$bin" status | sed 's/^/  /'
done

say "7. What the endpoint received"
"$tools/localstack-venv/bin/python" - "$endpoint" "$work/received" "$run" <<'PY'
import json, sys, urllib.request, os, boto3
endpoint, received, run = sys.argv[1:]
stats = json.load(urllib.request.urlopen(endpoint + "/stats"))
print(f"  events ingested {stats['events']} (repeats dropped by the endpoint: {stats['duplicates']}), "
      f"identifies {stats['identifies']}")
print("  requests: " + ", ".join(f"{route} {codes}" for route, codes in stats["requests"].items()))
with open(os.path.join(received, "events.jsonl")) as f:
    first = json.loads(f.readline())
print("  one event as the endpoint stored it:")
print("    " + json.dumps(first, ensure_ascii=False))
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:4566")
print("  reports:")
for src in ("events", "users"):
    for o in s3.list_objects_v2(Bucket=f"{run}-{src}", Prefix="s3-import-reports/").get("Contents", []):
        print(f"    s3://{run}-{src}/{o['Key']}")
PY

say "Done."
echo "  Every record ended in exactly one counted outcome: records = converted + skipped + invalid,"
echo "  payloads = sent + duplicates + rejected. Part 2 repeats three records of part 1: one is a"
echo "  skipped Heartbeat, the other two are the duplicates dropped by the 7-day dedupe (DynamoDB)."
