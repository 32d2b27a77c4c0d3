#!/usr/bin/env bash
# Installs what `make grants` needs from PyPI, pinned (infra/grants/requirements.txt: moto's
# server and PyYAML), into its own venv. Idempotent. Prints the venv's python.
# Settings: S3_IMPORT_TOOLS (default ~/.cache/s3-import/tools).
set -euo pipefail
tools="${S3_IMPORT_TOOLS:-$HOME/.cache/s3-import/tools}"
here="$(cd "$(dirname "$0")" && pwd)"
venv="$tools/grants-venv"
pins="$here/requirements.txt"
stamp="$venv/.installed-$(sha256sum "$pins" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf "$venv"
  mkdir -p "$tools"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$pins" >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
