"""The deployed wiring, locally: S3 (LocalStack) notifies the SQS queue (LocalStack); the queue's
messages go, as the SQS trigger hands them over, to the real Lambda binary `s3-import-lambda`
running under `cargo lambda watch` (the Lambda runtime API emulator); it imports into the
endpoint emulator. Checks the partial batch response, what the endpoint received, the claims,
and that a redelivered message is acknowledged without a second import.

Usage (the Makefile's `lambda-e2e`, part of `make test`): python infra/lambda-e2e.py S3_IMPORT_BIN
with `cargo lambda` on PATH and the local AWS stack running. Exits non-zero on any failure.
"""
import gzip
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENDPOINT = "http://127.0.0.1:4566"
PORT = 9107


def main():
    cli = sys.argv[1]
    run = f"lambda-e2e-{int(time.time())}"
    env = dict(os.environ, AWS_ENDPOINT_URL=ENDPOINT, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_REGION="us-east-1", S3I_CLAIMS_TABLE="s3-import-claims", S3I_DEDUPE_TABLE="s3-import-dedupe")
    queue = subprocess.run([cli, "setup", "--bucket", run, "--queue", run, "--prefix", "events/"], env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    s3 = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test")
    sqs = boto3.client("sqs", endpoint_url=ENDPOINT, region_name="us-east-1", aws_access_key_id="test",
                       aws_secret_access_key="test")
    s3.put_object(Bucket=run, Key="config/events.json",
                  Body=open(f"{ROOT}/infra/examples/converters/events.json", "rb").read())

    received = f"/tmp/{run}-received"
    emu = subprocess.Popen([cli, "emulator", "--listen", "127.0.0.1:0", "--data-dir", received],
                           stdout=subprocess.PIPE, text=True)
    api = emu.stdout.readline().strip().removeprefix("listening on ")
    env.update({"S3I_SOURCE": run, "S3I_CONVERTER": f"s3://{run}/config/events.json",
                "S3I_REPORTS": f"s3://{run}/reports/", "S3I_PREFIX": "events/", "AMPLITUDE_API_KEY": "k",
                "S3I_ENDPOINT": api, "S3I_QUEUE_URL": queue})
    watch = subprocess.Popen(["cargo", "lambda", "watch", "--invoke-port", str(PORT), "--bin", "s3-import-lambda"],
                             env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        data = open(f"{ROOT}/infra/examples/data/events-2024-03-01.jsonl", "rb").read()
        s3.put_object(Bucket=run, Key="events/2024/03/01/export part 1.json.gz", Body=gzip.compress(data))

        # The messages the bucket's notification put on the queue, as the SQS trigger passes them.
        records, deadline = [], time.time() + 30
        while time.time() < deadline and not any("ObjectCreated" in r["body"] for r in records):
            out = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=2,
                                      AttributeNames=["All"])
            for m in out.get("Messages", []):
                records.append({"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                                "attributes": m.get("Attributes", {}), "messageAttributes": {},
                                "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
                                "eventSourceARN": f"arn:aws:sqs:us-east-1:000000000000:{run}",
                                "awsRegion": "us-east-1"})
        assert any("ObjectCreated" in r["body"] for r in records), "no notification arrived on the queue"
        event = json.dumps({"Records": records}).encode()

        def invoke():
            url = f"http://127.0.0.1:{PORT}/2015-03-31/functions/s3-import-lambda/invocations"
            for _ in range(600):  # the first call waits for the build
                try:
                    req = urllib.request.Request(url, data=event, method="POST")
                    return json.loads(urllib.request.urlopen(req, timeout=300).read())
                except OSError:
                    time.sleep(0.5)
            sys.exit("cargo lambda watch did not answer")

        first = invoke()
        assert first == {"batchItemFailures": []}, first
        stats = json.load(urllib.request.urlopen(api + "/stats"))
        assert stats["events"] == 5, stats
        status = subprocess.run([cli, "status"], env=env, check=True, capture_output=True, text=True).stdout
        assert "COMPLETED" in status and "export part 1.json.gz" in status, status
        # The same message again (SQS is at least once): acknowledged, nothing sent twice.
        again = invoke()
        assert again == {"batchItemFailures": []}, again
        assert json.load(urllib.request.urlopen(api + "/stats"))["events"] == 5
        print(f"lambda e2e: S3 → SQS → s3-import-lambda (cargo lambda watch) → endpoint: "
              f"{stats['events']} events, {len(records)} messages acknowledged, redelivery absorbed")
    finally:
        os.killpg(watch.pid, signal.SIGTERM)
        emu.terminate()
        watch.wait()
        emu.wait()


if __name__ == "__main__":
    main()
