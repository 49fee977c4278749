//! Compiles `proto/ferromq/v1/ferromq.proto` into Rust types in `OUT_DIR`.
//!
//! The .proto is parsed by `protox` (a protobuf compiler written in Rust), so a
//! fresh machine needs no `protoc` install; `prost-build` then generates the code.
//! Every `bytes` field becomes `bytes::Bytes`, so decoding a frame slices message
//! bodies out of the frame buffer instead of copying them.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/ferromq/v1/ferromq.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
