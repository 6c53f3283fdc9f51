#!/usr/bin/env bash
# Installs everything fashionbot and its tests need on a fresh Debian machine:
# Debian packages (Fashion-MNIST, Chromium for the browser tests, PostgreSQL for the
# database tests, which start a throwaway cluster of their own) and a virtualenv
# in .venv with the project and its dev extras. Safe to run again.
# One line per step; the tools' own output goes to .venv-install.log (shown on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
log=.venv-install.log
: >"$log"

step() {  # step "what" command...: one line, the command's output in the log
  local what=$1
  shift
  printf '%s … ' "$what"
  if "$@" >>"$log" 2>&1; then
    echo ok
  else
    echo "failed; the last lines of $log:"
    tail -n 25 "$log" >&2
    exit 1
  fi
}

# fonts-noto-color-emoji: 👍/👎 in scripts/screenshots.py; opencv-doc: its sample photos of people
# (basketball1.png, messi5.jpg), which the garment tests and bench/bench_garments.py use.
apt_packages=(dataset-fashion-mnist chromium chromium-driver postgresql fonts-noto-color-emoji opencv-doc)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    step "Debian package lists" apt-get update -qq
    step "Debian packages (${missing[*]})" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "Please install these Debian packages first: ${missing[*]}" >&2
  fi
else
  echo "Debian packages … already there"
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || step "virtualenv .venv" "$python" -m venv .venv
step "pip itself" .venv/bin/pip install -q --upgrade pip
step "fashionbot and its dev tools (torch takes a minute)" .venv/bin/pip install -q -e '.[dev]'
echo "fashionbot $(.venv/bin/python -c 'from importlib.metadata import version; print(version("fashionbot"))') installed in .venv"
