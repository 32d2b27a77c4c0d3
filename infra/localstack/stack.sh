#!/usr/bin/env bash
# usage: infra/localstack/stack.sh up|down|status
# LocalStack (S3, SQS, DynamoDB, and STS, IAM, Secrets Manager, EventBridge, which the template
# also uses) on 127.0.0.1:4566, host mode, fresh state each start.
# Clients need only: AWS_ENDPOINT_URL=http://127.0.0.1:4566, dummy credentials, a region.
set -euo pipefail
tools="${S3_IMPORT_TOOLS:-$HOME/.cache/s3-import/tools}"
pidfile="$tools/localstack.pid"
log="$tools/localstack.log"
health="http://127.0.0.1:4566/_localstack/health"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${1:-}" in
up)
  if running; then echo "local AWS stack already running (pid $(cat "$pidfile"))"; exit 0; fi
  [ -x "$tools/localstack-venv/bin/python" ] || "$(dirname "$0")/install.sh"
  rm -rf "$tools/localstack-fs/tmp" "$tools/localstack-fs/var"
  # OVERRIDE_IN_DOCKER=0: this sandbox looks like a container, which would make LocalStack use
  # system folders and download Java. hypercorn honours the 127.0.0.1 bind (twisted does not).
  env OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$tools/localstack-fs" \
    GATEWAY_LISTEN=127.0.0.1:4566 GATEWAY_SERVER=hypercorn LOCALSTACK_HOST=127.0.0.1:4566 \
    SQS_ENDPOINT_STRATEGY=path SERVICES=s3,sqs,dynamodb,sts,iam,secretsmanager,events EAGER_SERVICE_LOADING=1 \
    DYNAMODB_IN_MEMORY=1 DYNAMODB_SHARE_DB=1 DNS_ADDRESS=0 DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 \
    setsid "$tools/localstack-venv/bin/python" -m localstack.runtime.main > "$log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  for _ in $(seq 1 600); do
    if curl -sf "$health" 2>/dev/null | grep -q '"dynamodb": "running"'; then
      echo "local AWS stack ready on http://127.0.0.1:4566 (S3, SQS, DynamoDB, STS, IAM, Secrets Manager, EventBridge)"
      exit 0
    fi
    running || { echo "error: LocalStack exited; last lines of $log:" >&2; tail -30 "$log" >&2; exit 1; }
    sleep 0.2
  done
  echo "error: LocalStack not ready after 120 s; last lines of $log:" >&2
  tail -30 "$log" >&2
  exit 1 ;;
down)
  running || { rm -f "$pidfile"; echo "local AWS stack not running"; exit 0; }
  pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true   # SIGTERM also stops the DynamoDB Local child
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -9 -- "-$pid" 2>/dev/null || true   # setsid: pid is the group
  rm -f "$pidfile"
  echo "local AWS stack stopped" ;;
status)
  if running; then curl -sf "$health" || true; echo; else echo "not running"; exit 1; fi ;;
*)
  echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
