#!/usr/bin/env bash
# Try the README's two commands as a new user would, on a clean Debian root: ./scripts/try_debian.sh SUITE
#
#   SUITE: bookworm (QGIS 3.22, Python 3.11), trixie (QGIS 3.40, Python 3.13) or sid (QGIS 3.44, Python 3.14).
#
# Builds a minimal Debian root with debootstrap in a scratch folder (RSREFSEG2_SCRATCH, default
# /var/tmp/rsrefseg2-debian), copies this machine's pip configuration and CA certificates into it, clones this
# repository's committed HEAD there and runs, inside it with chroot and as root, the README's first command
# (./scripts/setup.sh && ./scripts/demo.sh) and then its second (.venv/bin/python -m pytest). Prints each command's
# time and the test summary; the full logs stay in the scratch folder. The root has no C compiler (minbase), so a
# setup that needed one would fail there. Not part of CI: it downloads a few GB. Needs root and debootstrap.
#
# The debootstrapped base (before any project step) is kept as SUITE-base.tar and each run starts from a fresh copy
# of it; RSREFSEG2_FRESH=1 debootstraps again. RSREFSEG2_REF=<commit, branch or tag of this repository> tries that
# commit instead of HEAD (e.g. main after a merge). One run per suite at a time (a lock in the scratch folder); the
# mounts a run that was cut off left in its root are unmounted before the root is wiped, never deleted through.
set -euo pipefail

SUITE=${1:-}
case "$SUITE" in
  bookworm|trixie|sid) ;;
  *) echo "error: usage: $0 bookworm|trixie|sid" >&2; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
  echo "error: debootstrap and chroot need root; hint: sudo $0 $SUITE" >&2
  exit 1
fi
command -v debootstrap >/dev/null || { echo "error: no debootstrap; hint: apt-get install debootstrap" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
REF=${RSREFSEG2_REF:-HEAD}
COMMIT=$(git -C "$REPO" rev-parse --verify --quiet "$REF^{commit}") || {
  echo "error: RSREFSEG2_REF=$REF is no commit of $REPO; hint: a commit id, branch or tag that git log shows" >&2
  exit 2
}
SCRATCH=${RSREFSEG2_SCRATCH:-/var/tmp/rsrefseg2-debian}
MIRROR=${RSREFSEG2_MIRROR:-http://deb.debian.org/debian}
ROOT=$SCRATCH/$SUITE
BASE=$SCRATCH/$SUITE-base.tar
LOG=$SCRATCH/$SUITE.log
mkdir -p "$SCRATCH"
exec 9>"$SCRATCH/$SUITE.lock"
flock -n 9 || { echo "error: another try_debian.sh $SUITE is running (lock: $SCRATCH/$SUITE.lock)" >&2; exit 1; }

mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
mounts_under() {  # mounts_under DIR: the mount points inside DIR, deepest first
  awk -v dir="$1/" 'index($2, dir) == 1 { print $2 }' /proc/self/mounts | sort -r
}
unmount_stale() {  # unmount_stale DIR: a cut-off run's proc, sys and /dev bind mounts, so rm -rf cannot reach the host
  local point
  for point in $(mounts_under "$1"); do umount -l "$point"; done
  if [ -n "$(mounts_under "$1")" ]; then
    echo "error: $1 still has mounts: $(mounts_under "$1" | tr '\n' ' '); hint: umount them, then run again" >&2
    exit 1
  fi
}
mount_into() {  # mount_into ARGS... TARGET: mount and remember it for the exit trap
  mount "$@"
  mounted+=("${*: -1}")
}

if [ ! -f "$BASE" ] || [ "${RSREFSEG2_FRESH:-0}" = 1 ]; then
  echo "==> debootstrap $SUITE (minbase) from $MIRROR"
  unmount_stale "$ROOT"
  rm -rf --one-file-system "$ROOT"
  t0=$(date +%s)
  debootstrap --variant=minbase --include=ca-certificates,git,python3 "$SUITE" "$ROOT" "$MIRROR" >"$LOG" 2>&1 \
    || { tail -20 "$LOG"; echo "error: debootstrap failed (log: $LOG)" >&2; exit 1; }
  tar -C "$ROOT" -cf "$BASE" .
  echo "    took $(($(date +%s) - t0)) s"
fi
unmount_stale "$ROOT"
rm -rf --one-file-system "$ROOT"
mkdir -p "$ROOT"
tar -C "$ROOT" -xf "$BASE"

# This machine's network and pip settings: resolver, CA bundle, pip.conf and its constraints, PIP_* variables.
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$ROOT/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
fi
for file in /etc/pip.conf /etc/xdg/pip/pip.conf /etc/xdg/pip/constraints.txt; do
  if [ -f "$file" ]; then mkdir -p "$ROOT$(dirname "$file")" && cp "$file" "$ROOT$file"; fi
done
# sid's Release file is valid for a week only; a mirror snapshot older than that (as on the machine this was
# first run on) makes apt refuse it. The date check goes for this scratch root only, never for the host.
echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/99try-debian-snapshot"
env_file=$ROOT/root/try-env
{
  env | grep -E '^(PIP_[A-Z_]+|https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY|SSL_CERT_FILE|REQUESTS_CA_BUNDLE)=' \
    | sed 's/^/export /; s/=\(.*\)$/="\1"/' || true
  echo 'export DEBIAN_FRONTEND=noninteractive PIP_PROGRESS_BAR=off LANG=C.UTF-8 HOME=/root'
  echo 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
} >"$env_file"

git clone -q --no-checkout "$REPO" "$ROOT/root/rsrefseg2"
git -C "$ROOT/root/rsrefseg2" checkout -q --detach "$COMMIT"
echo "==> $SUITE root ready: $ROOT (repo at ${COMMIT:0:7}, $REF)"

mount_into -t proc proc "$ROOT/proc"
mount_into -t sysfs sys "$ROOT/sys"
mount_into --bind /dev "$ROOT/dev"
mount_into -t devpts devpts "$ROOT/dev/pts"
mount_into -t tmpfs tmpfs "$ROOT/dev/shm"

in_root() {  # in_root LOGFILE COMMAND: run COMMAND in the repo inside the root, output to LOGFILE
  chroot "$ROOT" /bin/bash -c ". /root/try-env; cd /root/rsrefseg2 && $2" >"$1" 2>&1
}
compilers() { chroot "$ROOT" /bin/sh -c 'for c in cc gcc c++ g++ clang; do command -v $c; done' || true; }

echo "==> compilers in the root before setup: $(compilers | tr '\n' ' ')"
setup_log=$SCRATCH/$SUITE-setup.log
t0=$(date +%s)
status=0
in_root "$setup_log" "./scripts/setup.sh && ./scripts/demo.sh" || status=$?
setup_s=$(($(date +%s) - t0))
grep -E "^(==>|present|installing|created|installed|removed|numpy |QGIS |Setup done)" "$setup_log" | sed 's/^/    /' || true
echo "==> README command 1 (./scripts/setup.sh && ./scripts/demo.sh): exit $status in ${setup_s} s (log: $setup_log)"
echo "    compilers in the root after setup: $(compilers | tr '\n' ' ')"
chroot "$ROOT" /bin/bash -c ". /root/try-env; cd /root/rsrefseg2 && QT_QPA_PLATFORM=offscreen .venv/bin/python -c \
'import numpy, torch; from qgis.core import Qgis; print(\"    numpy\", numpy.__version__, \"from\", numpy.__file__); \
print(\"    torch\", torch.__version__, \"from\", torch.__file__, \"; QGIS\", Qgis.QGIS_VERSION)'" || true
if [ "$status" -ne 0 ]; then
  tail -30 "$setup_log"
  exit "$status"
fi

test_log=$SCRATCH/$SUITE-tests.log
t0=$(date +%s)
status=0
in_root "$test_log" ".venv/bin/python -m pytest" || status=$?
echo "==> README command 2 (.venv/bin/python -m pytest): exit $status in $(($(date +%s) - t0)) s (log: $test_log)"
grep -E "^(FAILED|ERROR) " "$test_log" | head -40 || true
tail -1 "$test_log"
exit "$status"
