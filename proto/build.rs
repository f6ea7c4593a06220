//! Generates the tonic client and server code for `signer.proto`, `raft.proto` and
//! `threshold.proto`.
//!
//! `protoc` comes from `protoc-bin-vendored`, so no system package is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // tonic-prost-build finds protoc through PROTOC; a build script is single-threaded, so setting
    // it here races with nothing.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=signer.proto");
    println!("cargo:rerun-if-changed=raft.proto");
    println!("cargo:rerun-if-changed=threshold.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["signer.proto", "raft.proto", "threshold.proto"], &["."])?;
    Ok(())
}
