//! The `agentca` command.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    agentca_ca::cli::main()
}
