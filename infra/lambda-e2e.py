"""The release artifact, run as Lambda runs it: the `bootstrap` that `cargo lambda build --release`
makes is started under a Lambda Runtime API on loopback (infra/lambda_runtime.py), with the API
key in Secrets Manager and the local AWS stack (LocalStack) as AWS. This script plays the SQS
trigger: it polls the queue the bucket notifies, hands the batches to the function and deletes
what the answer acknowledges, as Lambda's event source mapping does.

Each event shape goes through the real entry: an SQS batch of S3 notifications (and the same
batch again: acknowledged, nothing sent twice), the scheduled scan event
(infra/events/scheduled-scan.json) that queues an object whose notice was lost, and an
EventBridge "Object Created" event (infra/events/eventbridge-object-created.json, its key
encoded as S3 sends it). Then the process is killed (kill -9) in the middle of an import: the
notice comes back after the queue's visibility timeout, is handed back while the dead
invocation's lease lasts, and a new process takes the object over and completes it; every
event arrives, none is lost.

Usage (the Makefile's `lambda-e2e`, part of `make test`): python infra/lambda-e2e.py BOOTSTRAP S3_IMPORT_BIN
with the local AWS stack running. Exits non-zero on any failure.
"""
import copy
import gzip
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "infra"))
from lambda_runtime import Function, InvocationLost, settle, sqs_records  # noqa: E402

ENDPOINT = "http://127.0.0.1:4566"
STACK = dict(AWS_ENDPOINT_URL=ENDPOINT, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1")
VISIBILITY_S = 5  # the queue's visibility timeout here, so that a lost invocation's notice soon comes back


def lines(tag, n):
    return "".join(json.dumps({"$insert_id": f"{tag}-{i}", "event_type": "Played", "device_id": f"device-{i % 9}",
                               "event_time": "2024-03-01T09:15:02Z"}) + "\n" for i in range(n)).encode()


class E2E:
    def __init__(self, bootstrap, cli):
        self.bootstrap, self.cli = bootstrap, cli
        self.run = f"lambda-e2e-{int(time.time())}"
        self.tmp = tempfile.mkdtemp(prefix="s3i-lambda-e2e-")
        kw = dict(endpoint_url=ENDPOINT, region_name="us-east-1", aws_access_key_id="test",
                  aws_secret_access_key="test")
        self.s3, self.sqs, self.sm = (boto3.client(s, **kw) for s in ("s3", "sqs", "secretsmanager"))
        self.fns = []

    def setup(self):
        env = dict(os.environ, **STACK, S3I_CLAIMS_TABLE="s3-import-claims", S3I_DEDUPE_TABLE="s3-import-dedupe")
        run = self.run
        self.queue = subprocess.run([self.cli, "setup", "--bucket", run, "--queue", run, "--prefix", "events/"],
                                    env=env, check=True, capture_output=True, text=True).stdout.strip()
        self.sqs.set_queue_attributes(QueueUrl=self.queue, Attributes={"VisibilityTimeout": str(VISIBILITY_S)})
        self.queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        converter = json.load(open(f"{ROOT}/infra/examples/converters/events.json"))
        converter["keyValidatorConfig"]["filterPattern"] = "events/.*"
        converter["converterConfig"]["compressionType"] = "auto"
        self.s3.put_object(Bucket=run, Key="config/events.json", Body=json.dumps(converter).encode())
        secret = self.sm.create_secret(Name=f"{run}/api-key", SecretString=json.dumps({"api_key": "e2e-key"}))
        self.received = os.path.join(self.tmp, "received")
        self.emu = subprocess.Popen([self.cli, "emulator", "--listen", "127.0.0.1:0", "--data-dir", self.received,
                                     "--api-key", "e2e-key", "--latency-ms", "100"], stdout=subprocess.PIPE, text=True)
        self.api = self.emu.stdout.readline().strip().removeprefix("listening on ")
        threading.Thread(target=self.emu.stdout.read, daemon=True).start()
        # The function's variables, as template.yaml sets them (the key from the secret).
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3I_", "AMPLITUDE_"))}
        self.env.update(STACK, S3I_SOURCE=f"{run}/events/", S3I_PREFIX="events/",
                        S3I_CONVERTER=f"s3://{run}/config/events.json", S3I_REPORTS=f"s3://{run}/reports/",
                        S3I_CLAIMS_TABLE="s3-import-claims", S3I_DEDUPE_TABLE="s3-import-dedupe",
                        S3I_QUEUE_URL=self.queue, S3I_API_KEY_SECRET=secret["ARN"], S3I_ENDPOINT=self.api,
                        S3I_BATCH_EVENTS="50", S3I_MAX_IN_FLIGHT="1", S3I_STOP_MARGIN_SECS="2",
                        S3I_LEASE_MARGIN_SECS="2")

    def start(self):
        fn = Function(self.bootstrap, self.env, open(os.path.join(self.tmp, "function.log"), "ab")).start()
        self.fns.append(fn)
        return fn

    def received_ids(self):
        try:
            with open(os.path.join(self.received, "events.jsonl")) as f:
                return [json.loads(line)["insert_id"] for line in f]
        except FileNotFoundError:
            return []

    def put(self, key, body):
        self.s3.put_object(Bucket=self.run, Key=key, Body=body)

    def poll(self, fn, until, timeout_s=60, deadline_s=60):
        """The SQS trigger: batches to the function until `until()` holds; the answers."""
        answers, end = [], time.time() + timeout_s
        while time.time() < end:
            if until():
                return answers
            records = sqs_records(self.sqs, self.queue, self.queue_arn, wait_s=1)
            if not records:
                continue
            try:
                answer = fn.invoke({"Records": records}, deadline_s)
            except InvocationLost:
                answer = ("lost", None)
            settle(self.sqs, self.queue, records, answer)
            answers.append((records, answer))
        raise AssertionError(f"not done after {timeout_s} s; answers: {answers}")

    def paths(self):
        fn = self.start()
        # 1. An SQS batch: the bucket's notifications of two objects (and S3's test event).
        self.put("events/2024/03/01/export part 1.json.gz", gzip.compress(lines("a", 30)))
        self.put("events/2024/03/01/b.json", lines("b", 20))
        answers = self.poll(fn, lambda: len(set(self.received_ids())) >= 50)
        assert all(a == ("response", {"batchItemFailures": []}) for _, a in answers), answers
        batch = answers[-1][0]
        # The same batch again (SQS is at least once): acknowledged, nothing sent twice.
        again = fn.invoke({"Records": batch}, 60)
        assert again == ("response", {"batchItemFailures": []}), again
        assert len(self.received_ids()) == 50, "a redelivered notice sent events again"

        # 2. The scheduled scan: an object whose notice was lost is queued, then imported.
        self.put("events/2024/03/02/lost.json", lines("lost", 10))
        lost = sqs_records(self.sqs, self.queue, self.queue_arn, wait_s=5)
        assert lost, "no notice for the lost object"
        settle(self.sqs, self.queue, lost, ("response", {}))  # deleted: the notice is lost
        scan = json.load(open(f"{ROOT}/infra/events/scheduled-scan.json"))
        scan["s3import-scan"].update(bucket=self.run, prefix="events/")
        kind, summary = fn.invoke(scan, 60)
        assert kind == "response" and "queued 1" in summary["scan"], (kind, summary)
        self.poll(fn, lambda: len(set(self.received_ids())) >= 60)

        # 3. An EventBridge "Object Created" event, its key encoded as S3 sends it.
        key = "events/2024/03/03/from eventbridge+1.json"
        self.put(key, lines("eb", 5))
        drop = sqs_records(self.sqs, self.queue, self.queue_arn, wait_s=5)  # this bucket's own notice
        settle(self.sqs, self.queue, drop, ("response", {}))
        event = copy.deepcopy(json.load(open(f"{ROOT}/infra/events/eventbridge-object-created.json")))
        event["resources"] = [f"arn:aws:s3:::{self.run}"]
        event["detail"]["bucket"]["name"] = self.run
        event["detail"]["object"].update(key=urllib.parse.quote_plus(key, safe="/"), size=len(lines("eb", 5)))
        kind, value = fn.invoke(event, 60)
        assert kind == "response" and value["objects"] == [
            {"bucket": self.run, "key": key, "outcome": "completed"}], (kind, value)
        assert len(set(self.received_ids())) == 65

        # 4. kill -9 in the middle of an import: nothing lost.
        self.put("events/2024/03/04/big.json", lines("big", 2000))
        records = []
        while not records:
            records = sqs_records(self.sqs, self.queue, self.queue_arn, wait_s=5)
        fn.api.submit({"Records": records}, 12)
        end = time.time() + 30
        while len(self.received_ids()) < 65 + 200 and time.time() < end:
            time.sleep(0.05)
        fn.kill9()
        sent_before = len(set(self.received_ids())) - 65
        assert 0 < sent_before < 2000, f"not killed midway: {sent_before} of 2000 sent"
        # Lambda: the invocation failed, nothing deleted; the notice comes back after the
        # visibility timeout, to a new process (a cold start).
        fn = self.start()
        answers = self.poll(fn, lambda: len(set(self.received_ids())) >= 2065, timeout_s=90, deadline_s=60)
        handed_back = [a for _, a in answers if a[0] == "response" and a[1]["batchItemFailures"]]
        assert handed_back, f"the notice was not handed back while the dead invocation's lease lasted: {answers}"
        ids = self.received_ids()
        assert len(set(ids)) == 2065 and {f"big-{i}" for i in range(2000)} <= set(ids), "events lost"
        status = subprocess.run([self.cli, "status"], env=self.env, check=True, capture_output=True,
                                text=True).stdout
        assert status.count("COMPLETED") == 5, status
        return sent_before, len(ids) - len(set(ids))

    def main(self):
        started = time.time()
        self.setup()
        try:
            sent_before, resent = self.paths()
        except (AssertionError, InvocationLost) as e:
            sys.exit(f"lambda e2e: FAILED: {e} (function log: {self.tmp}/function.log)")
        finally:
            for f in self.fns:
                f.stop()
            self.emu.terminate()
            self.emu.wait()
        print(f"lambda e2e: the release bootstrap under a Lambda Runtime API ({time.time() - started:.0f} s): "
              f"SQS batch and its redelivery, scheduled scan, EventBridge event; killed after {sent_before} of "
              f"2000 events, handed back, taken over, completed ({resent} events re-sent, none lost)")


if __name__ == "__main__":
    E2E(sys.argv[1], sys.argv[2]).main()
