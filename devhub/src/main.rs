//! The `devhub` binary: see `devhub --help` and [`edgemodule_devhub::cli`].

fn main() -> std::process::ExitCode {
    edgemodule_devhub::cli::main()
}
