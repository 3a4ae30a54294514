//! `cargo xtask`: code generation and packaging.
//!
//! - `cargo xtask codegen [--check]`: writes include/edgemodule.h from ffi-c (cbindgen); with
//!   `--check`, compares instead and fails when the committed header is stale.
//! - `cargo xtask dist c [--prefix DIR] [--debug]`: builds libedgemodule and lays out an
//!   install prefix (lib/, include/, lib/cmake/edgemodule/, lib/pkgconfig/edgemodule.pc).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod dist;

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("codegen") => codegen(&args[1..]),
        Some("dist") => dist::run(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage:
  cargo xtask codegen [--check]                 regenerate include/edgemodule.h (or check it is fresh)
  cargo xtask dist c [--prefix DIR] [--debug]   build libedgemodule and install it under DIR (default target/dist/c)";

pub(crate) fn root() -> PathBuf {
    // xtask/ is one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

pub(crate) const HEADER: &str = "include/edgemodule.h";

/// The header text cbindgen makes from ffi-c's sources.
pub(crate) fn generate_header() -> Result<String> {
    let crate_dir = root().join("ffi-c");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .map_err(|e| format!("ffi-c/cbindgen.toml: {e}"))?;
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .map_err(|e| format!("cbindgen failed: {e}"))?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).map_err(|e| format!("cbindgen wrote non-UTF-8: {e}"))
}

fn codegen(args: &[String]) -> Result<()> {
    let check = match args {
        [] => false,
        [a] if a == "--check" => true,
        _ => return Err(USAGE.to_string()),
    };
    let fresh = generate_header()?;
    let path = root().join(HEADER);
    if check {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != fresh {
            let diff = first_difference(&committed, &fresh);
            return Err(format!(
                "{HEADER} is stale ({diff}); run `cargo xtask codegen` and commit the result"
            ));
        }
        println!("{HEADER} is up to date");
        return Ok(());
    }
    std::fs::create_dir_all(path.parent().expect("header has a parent"))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let changed = std::fs::read_to_string(&path).ok().as_deref() != Some(fresh.as_str());
    if changed {
        std::fs::write(&path, &fresh).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {HEADER}");
    } else {
        println!("{HEADER} unchanged");
    }
    Ok(())
}

fn first_difference(old: &str, new: &str) -> String {
    for (i, (a, b)) in old.lines().zip(new.lines()).enumerate() {
        if a != b {
            return format!(
                "first difference at line {}: {a:?} vs generated {b:?}",
                i + 1
            );
        }
    }
    format!(
        "{} lines committed, {} generated",
        old.lines().count(),
        new.lines().count()
    )
}

/// Runs a command, failing with its name when it fails.
pub(crate) fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}
