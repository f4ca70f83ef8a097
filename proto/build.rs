//! Compile proto/ha/v1/*.proto with protox (pure Rust, no system protoc) and generate
//! the tonic/prost code from the descriptor set.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/ha/v1/ha.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    // The descriptor set, for the manager's server reflection (`FILE_DESCRIPTOR_SET`).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("ha_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
