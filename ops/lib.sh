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
