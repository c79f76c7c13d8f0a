//! The `refreshd` binary: everything lives in the library, where tests reach it.

fn main() -> std::process::ExitCode {
    refreshd::cli::main()
}
