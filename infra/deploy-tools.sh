#!/usr/bin/env bash
# Installs the deploy tools from the package registries, pinned: cargo-lambda (with zig, for the
# arm64 Lambda build), the AWS SAM CLI and cfn-lint, into one venv; and the Rust target for
# arm64 Linux. Idempotent. Prints the venv's bin folder.
# Settings: S3_IMPORT_TOOLS (default ~/.cache/s3-import/tools).
set -euo pipefail
tools="${S3_IMPORT_TOOLS:-$HOME/.cache/s3-import/tools}"
venv="$tools/deploy-venv"
pins="cargo-lambda==1.9.2 aws-sam-cli==1.170.0 cfn-lint==1.58.0"
stamp="$venv/.installed-$(echo "$pins" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf "$venv"
  mkdir -p "$tools"
  python3 -m venv "$venv" >&2
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check $pins >&2
  touch "$stamp"
fi
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -q '^aarch64-unknown-linux-gnu$'; then
  rustup target add aarch64-unknown-linux-gnu >&2
fi
echo "$venv/bin"
