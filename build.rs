//! Compiles `proto/renkei/v1/*.proto` with protox (pure Rust, no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = [
        "renkei/v1/bulletin.proto",
        "renkei/v1/metrics.proto",
        "renkei/v1/wire.proto",
        "renkei/v1/store.proto",
        "renkei/v1/audit.proto",
    ];
    let fds = protox::compile(files, ["proto"])?;
    prost_build::Config::new().bytes(["."]).compile_fds(fds)?;
    // The commit built, for benchmark reports run outside the checkout.
    let revision = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=RENKEI_REVISION={revision}");
    for git in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(git).exists() {
            println!("cargo:rerun-if-changed={git}");
        }
    }
    Ok(())
}
