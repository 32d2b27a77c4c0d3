"""Lambda's side of a function, locally: the Runtime API (the HTTP interface a `bootstrap` polls
for events and answers on) served on loopback, the process started as Lambda starts it, and the
SQS trigger (event source mapping) that polls a queue, hands batches to the function and deletes
what it acknowledged. Used by infra/lambda-e2e.py and infra/grants/grants.py.

Runtime API: GET /2018-06-01/runtime/invocation/next answers the next event with the headers
Lambda-Runtime-Aws-Request-Id, Lambda-Runtime-Deadline-Ms (epoch ms) and
Lambda-Runtime-Invoked-Function-Arn; the function POSTs .../invocation/{id}/response or
.../invocation/{id}/error, or /runtime/init/error when it cannot start.
"""
import json
import os
import queue
import signal
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"


class InvocationLost(Exception):
    """The function did not answer: its process ended (crash, kill) or the deadline passed."""


class RuntimeApi:
    """A Lambda Runtime API on 127.0.0.1 (a free port); `invoke` hands one event to whichever
    process polls and waits for its answer."""

    def __init__(self):
        self.events = queue.Queue()
        self.answers = {}
        self.cond = threading.Condition()
        self.init_error = None
        self.in_flight = set()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def reply(self, code, payload=b"", headers=()):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                if self.path != f"{PREFIX}/invocation/next":
                    return self.reply(404)
                event = api.events.get()  # long poll, as Lambda does
                request_id, payload, deadline_ms = event
                with api.cond:
                    api.in_flight.add(request_id)
                try:
                    self.send_ok(request_id, payload, deadline_ms)
                except OSError:  # the poller is gone (stopped): the next one gets the event
                    api.events.put(event)

            def send_ok(self, request_id, payload, deadline_ms):
                self.reply(200, payload, [
                    ("Content-Type", "application/json"),
                    ("Lambda-Runtime-Aws-Request-Id", request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
                    ("Lambda-Runtime-Invoked-Function-Arn",
                     "arn:aws:lambda:us-east-1:000000000000:function:s3-import"),
                    ("Lambda-Runtime-Trace-Id", f"Root=1-{request_id[:8]}-{request_id[9:]}"),
                ])

            def do_POST(self):
                body = self.body()
                if self.path == f"{PREFIX}/init/error":
                    with api.cond:
                        api.init_error = body.decode(errors="replace")
                        api.cond.notify_all()
                    return self.reply(202, b'{"status":"OK"}')
                parts = self.path.removeprefix(f"{PREFIX}/invocation/").split("/")
                if len(parts) != 2 or parts[1] not in ("response", "error"):
                    return self.reply(404)
                with api.cond:
                    api.answers[parts[0]] = (parts[1], body)
                    api.in_flight.discard(parts[0])
                    api.cond.notify_all()
                self.reply(202, b'{"status":"OK"}')

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a killed function's connection: nothing to report

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def submit(self, event, timeout_s):
        """Queues `event` (a dict); its request id."""
        request_id = str(uuid.uuid4())
        deadline_ms = int((time.time() + timeout_s) * 1000)
        self.events.put((request_id, json.dumps(event).encode(), deadline_ms))
        return request_id

    def wait(self, request_id, timeout_s, alive=lambda: True):
        """The answer to `request_id`: ("response", value) or ("error", value). Raises
        InvocationLost when `alive()` turns false first or the time runs out."""
        end = time.time() + timeout_s
        with self.cond:
            while request_id not in self.answers:
                if self.init_error is not None:
                    raise InvocationLost(f"init error: {self.init_error}")
                if not alive() or time.time() > end:
                    raise InvocationLost(f"no answer to {request_id}")
                self.cond.wait(0.2)
            kind, body = self.answers.pop(request_id)
        return kind, json.loads(body) if body else None

    def invoke(self, event, timeout_s=120, alive=lambda: True):
        return self.wait(self.submit(event, timeout_s), timeout_s + 30, alive)

    def close(self):
        self.server.shutdown()


class Function:
    """A `bootstrap` process run as Lambda runs it, with a Runtime API of its own: its address
    and the function's variables in the environment, its own process group (kill -9 takes
    all)."""

    def __init__(self, bootstrap, env, log):
        self.api = RuntimeApi()
        self.bootstrap = bootstrap
        self.env = dict(env, AWS_LAMBDA_RUNTIME_API=self.api.address, AWS_LAMBDA_FUNCTION_NAME="s3-import",
                        AWS_LAMBDA_FUNCTION_VERSION="$LATEST", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1769",
                        AWS_LAMBDA_LOG_GROUP_NAME="/aws/lambda/s3-import",
                        AWS_LAMBDA_LOG_STREAM_NAME="local", LAMBDA_TASK_ROOT=os.path.dirname(bootstrap))
        self.log = log
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([self.bootstrap], env=self.env, stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def invoke(self, event, timeout_s=120):
        return self.api.invoke(event, timeout_s, self.alive)

    def kill9(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.api.close()

    def stop(self):
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.api.close()


def sqs_records(sqs, queue_url, queue_arn, max_messages=10, wait_s=2):
    """One ReceiveMessage, its messages as the SQS trigger passes them to the function."""
    out = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=wait_s,
                              AttributeNames=["All"], MessageAttributeNames=["All"])
    region = queue_arn.split(":")[3]
    return [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
             "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
             "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region}
            for m in out.get("Messages", [])]


def settle(sqs, queue_url, records, answer):
    """What Lambda's SQS trigger does with a batch's answer (ReportBatchItemFailures): deletes the
    messages not named in batchItemFailures; a failed invocation deletes nothing. The ids kept."""
    kind, value = answer
    if kind != "response":
        return {r["messageId"] for r in records}
    failed = {f["itemIdentifier"] for f in (value or {}).get("batchItemFailures", [])}
    done = [r for r in records if r["messageId"] not in failed]
    for i in range(0, len(done), 10):
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(n), "ReceiptHandle": r["receiptHandle"]} for n, r in enumerate(done[i:i + 10])])
    return failed
