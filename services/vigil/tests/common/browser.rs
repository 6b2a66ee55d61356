//! Headless Chromium for the page tests ([`testkit::browser`]) and where screenshots go.

use std::path::{Path, PathBuf};

pub use testkit::browser::{browser, js, wait_js};

/// Where the screenshot goes: `$CARGO_TARGET_DIR`, else the target directory the binary
/// under test was built into.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_vigil"));
    // <target>/<profile>/vigil
    bin.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}
