//! Codegen variant of tauri-build: the context (config, ui/dist assets, icons) is generated here, so cargo
//! re-embeds the console whenever `trunk build` changes ui/dist (`generate_context!()` would not notice).
fn main() {
    tauri_build::try_build(tauri_build::Attributes::new().codegen(tauri_build::CodegenContext::new())).expect("failed to run tauri-build");
}
