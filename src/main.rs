//! The `renkei` binary: see `renkei --help`.

/// jemalloc rather than glibc's malloc: freed memory goes back to the system within a
/// second or two of a flood (glibc kept it), and the hot path spends less in the
/// allocator. Its settings are built in from `.cargo/config.toml`.
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    renkei::run_command_line()
}
