//! `vigil-lazyfs BACKING MOUNT`: mounts BACKING at MOUNT through a file system that loses
//! every unsynced write on `echo clear-cache > MOUNT/.lazyfs-control`, and serves until
//! MOUNT is unmounted (`umount MOUNT` or `fusermount3 -u MOUNT`). See the library docs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "vigil-lazyfs",
    about = "A FUSE passthrough that keeps writes in memory until fsync and drops them on `clear-cache` (power loss on command)"
)]
struct Cli {
    /// The directory that holds the files: after any clear-cache, exactly their fsync'd state.
    backing: PathBuf,
    /// Where to mount it (an existing, empty directory).
    mountpoint: PathBuf,
    /// Also fsync the backing file when a file is fsync'd (only matters if the host itself
    /// may lose power).
    #[arg(long)]
    fsync_backing: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    eprintln!(
        "vigil-lazyfs: {} mounted at {}; commands go to {}",
        cli.backing.display(),
        cli.mountpoint.display(),
        cli.mountpoint.join(vigil_lazyfs::CONTROL_NAME).display()
    );
    match vigil_lazyfs::run(&cli.backing, &cli.mountpoint, cli.fsync_backing) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "vigil-lazyfs: mounting {} at {}: {e}",
                cli.backing.display(),
                cli.mountpoint.display()
            );
            ExitCode::FAILURE
        }
    }
}
