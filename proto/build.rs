//! Compiles `slipway/v1/*.proto` with protox (no system protoc), generates the
//! prost messages and tonic service, and pbjson serde impls for proto3 JSON.
use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["slipway/v1/events.proto", "slipway/v1/admin.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_bytes = fds.encode_to_vec();
    std::fs::write(out_dir.join("slipway_descriptor.bin"), &descriptor_bytes)?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Well-known types come from pbjson-types, which carry proto3 JSON impls.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;

    pbjson_build::Builder::new().register_descriptors(&descriptor_bytes)?.build(&[".slipway"])?;
    Ok(())
}
