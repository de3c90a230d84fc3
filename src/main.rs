//! The `renkei` binary: see `renkei --help`.

fn main() -> std::process::ExitCode {
    renkei::run_command_line()
}
