# Shared by the ops/ scripts: install what a fresh Debian/Ubuntu machine lacks.

# apt_install PKG... — installs the packages with apt-get (as root, or via sudo).
apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    echo "ops: installing $* (apt-get)" >&2
    $sudo apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# need_nats_server — makes sure Debian's nats-server is installed.
need_nats_server() {
    if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
        apt_install nats-server
    fi
    export PATH="$PATH:/usr/sbin"
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
