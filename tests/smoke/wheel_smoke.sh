#!/usr/bin/env bash
# The package as users get it: build the sdist and the wheel from it (python -m build),
# check their metadata (twine check --strict), install the wheel into a clean virtualenv
# outside the repository and run installed_project.py there with that virtualenv's
# Python (a startproject project: migrate, check, one conversion sent to the emulator,
# the admin's pages). Run by .ci/run; on its own: tests/smoke/wheel_smoke.sh
# PYTHON: an interpreter with build and twine (default: .venv/bin/python, the dev extra).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
work="$(mktemp -d "${TMPDIR:-/tmp}/xconversions-wheel.XXXXXX")"
trap 'rm -rf "$work"' EXIT
started=$SECONDS

echo "wheel smoke: building in $work"
if ! "$python" -m build --outdir "$work/dist" "$repo" >"$work/build.log" 2>&1; then
    cat "$work/build.log"
    exit 1
fi
"$python" -m twine check --strict "$work"/dist/*
echo "wheel smoke: built and checked in $((SECONDS - started)) s: $(cd "$work/dist" && echo *)"

"$python" -m venv "$work/venv"
if ! "$work/venv/bin/python" -m pip install --no-compile "$work"/dist/*.whl >"$work/install.log" 2>&1; then
    cat "$work/install.log"
    exit 1
fi
echo "wheel smoke: installed into a clean virtualenv in $((SECONDS - started)) s"

mkdir "$work/run"
cd "$work/run"
timeout 300 "$work/venv/bin/python" -I "$repo/tests/smoke/installed_project.py" \
    --repo "$repo" --work "$work/run"
rm -rf "$work"
echo "wheel smoke: done in $((SECONDS - started)) s (clean-up included)"
