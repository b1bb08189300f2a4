//! The console's files (`ui/dist`, built by `make ui`) are embedded into the binary (`https/console.rs`).
//! Cargo tracks the embedded files themselves; this makes it also notice `ui/dist` appearing or changing
//! when it was missing at the last build.
fn main() {
    println!("cargo:rerun-if-changed=../../ui/dist");
}
