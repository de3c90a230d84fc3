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
    Ok(())
}
