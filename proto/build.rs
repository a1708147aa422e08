//! Generates the gRPC code from `proto/` with protox (pure Rust), so a fresh machine needs no
//! protoc, and writes the file descriptor set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/sipcapture/v1/record.proto",
        "proto/sipcapture/v1/storer.proto",
        "proto/sipcapture/v1/status.proto",
        "proto/sipcapture/v1/control.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("sipcapture_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
