//! Files in and out of the page: a text offered as a download (a blob URL), and the text of files the user picked
//! in a file input or dropped on a drop zone.

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// A `blob:` URL holding `text` (revoke it with [`revoke_url`] when it is no longer shown).
pub fn object_url(text: &str, mime: &str) -> Option<String> {
    let parts = js_sys::Array::of1(&JsValue::from_str(text));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options).ok()?;
    web_sys::Url::create_object_url_with_blob(&blob).ok()
}

pub fn revoke_url(url: &str) {
    let _ = web_sys::Url::revoke_object_url(url);
}

/// Offers `text` as a file named `filename`: the browser's download, or the desktop shell's save dialog.
pub fn download_text(filename: &str, mime: &str, text: &str) {
    if crate::desktop::is_desktop() {
        let (name, text) = (filename.to_string(), text.to_string());
        let notices = crate::components::notice::use_notices();
        leptos::task::spawn_local(async move {
            match crate::desktop::save_file(&name, &text).await {
                Ok(Some(path)) => notices.info(format!("Saved {path}.")),
                Ok(None) => {}
                Err(e) => notices.error(format!("Not saved: {e}")),
            }
        });
        return;
    }
    let Some(url) = object_url(text, mime) else { return };
    let link = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.create_element("a").ok())
        .and_then(|a| a.dyn_into::<web_sys::HtmlElement>().ok());
    if let Some(a) = link {
        let _ = a.set_attribute("href", &url);
        let _ = a.set_attribute("download", filename);
        a.click();
    }
    // The click has started the download; the URL can go once the event loop has run.
    leptos::prelude::set_timeout(move || revoke_url(&url), std::time::Duration::from_secs(5));
}

/// The text of a file (UTF-8).
pub async fn read_text(file: &web_sys::File) -> Result<String, String> {
    let text = JsFuture::from(file.text()).await.map_err(|e| format!("cannot read {}: {e:?}", file.name()))?;
    text.as_string().ok_or_else(|| format!("{} is not text", file.name()))
}

fn list(files: Option<web_sys::FileList>) -> Vec<web_sys::File> {
    let Some(files) = files else { return Vec::new() };
    (0..files.length()).filter_map(|i| files.get(i)).collect()
}

/// The files chosen in the `<input type=file>` an event came from.
pub fn files_of_input(ev: &web_sys::Event) -> Vec<web_sys::File> {
    let input = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok());
    list(input.and_then(|i| i.files()))
}

/// The files dropped on an element.
pub fn files_of_drop(ev: &web_sys::DragEvent) -> Vec<web_sys::File> {
    list(ev.data_transfer().and_then(|d| d.files()))
}

/// Clears a file input, so choosing the same file again fires `change`.
pub fn clear_input(ev: &web_sys::Event) {
    if let Some(i) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) {
        i.set_value("");
    }
}

/// The bytes of a file.
pub async fn read_bytes(file: &web_sys::File) -> Result<Vec<u8>, String> {
    let buffer = JsFuture::from(file.array_buffer()).await.map_err(|e| format!("cannot read {}: {e:?}", file.name()))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// A certificate file as PEM text: PEM as it is, DER (binary) wrapped into a PEM block.
pub async fn read_certificate(file: &web_sys::File) -> Result<String, String> {
    let bytes = read_bytes(file).await?;
    let text_like = bytes.iter().take(64).all(|b| b.is_ascii() && (*b >= 0x20 || b.is_ascii_whitespace()));
    if text_like {
        return String::from_utf8(bytes).map_err(|_| format!("{} is neither PEM nor DER", file.name()));
    }
    // btoa takes a "binary string": one character per byte.
    let binary: String = bytes.iter().map(|b| char::from(*b)).collect();
    let b64 = web_sys::window().and_then(|w| w.btoa(&binary).ok()).ok_or_else(|| format!("cannot encode {}", file.name()))?;
    let lines: Vec<String> = b64.as_bytes().chunks(64).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    Ok(format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n")))
}
