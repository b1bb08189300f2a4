//! Files in and out of the page: a text offered as a download (a blob URL; in the desktop shell its native Save
//! dialog), and the files the user picked in a file input (in the desktop shell its native Open dialog, see
//! [`native_picker`]) or dropped on a drop zone.

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

/// A file the user picked, read.
#[derive(Debug, Clone)]
pub struct Picked {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl Picked {
    /// Its text (UTF-8).
    pub fn text(&self) -> Result<String, String> {
        String::from_utf8(self.bytes.clone()).map_err(|_| format!("{} is not UTF-8 text", self.name))
    }

    /// A certificate as PEM text: PEM as it is, DER (binary) wrapped into a PEM block.
    pub fn certificate_pem(&self) -> Result<String, String> {
        let bytes = &self.bytes;
        let text_like = bytes.iter().take(64).all(|b| b.is_ascii() && (*b >= 0x20 || b.is_ascii_whitespace()));
        if text_like {
            return self.text().map_err(|_| format!("{} is neither PEM nor DER", self.name));
        }
        // btoa takes a "binary string": one character per byte.
        let binary: String = bytes.iter().map(|b| char::from(*b)).collect();
        let b64 = web_sys::window().and_then(|w| w.btoa(&binary).ok()).ok_or_else(|| format!("cannot encode {}", self.name))?;
        let lines: Vec<String> = b64.as_bytes().chunks(64).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        Ok(format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n")))
    }
}

/// Reads the files of an input or a drop.
pub async fn read_all(files: Vec<web_sys::File>) -> Result<Vec<Picked>, String> {
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        out.push(Picked { name: f.name(), bytes: read_bytes(&f).await? });
    }
    Ok(out)
}

/// The `click` handler of an `<input type=file>`: in the desktop shell it opens the shell's native Open dialog
/// (`open_files`) instead of the webview's chooser and hands the picked files to `then`; in a browser it does
/// nothing (the input's own `change` handler reads the files).
pub fn native_picker(
    multiple: bool,
    extensions: &'static [&'static str],
    then: impl Fn(Result<Vec<Picked>, String>) + Clone + 'static,
) -> impl Fn(leptos::ev::MouseEvent) + Clone + 'static {
    move |ev: leptos::ev::MouseEvent| {
        if !crate::desktop::is_desktop() {
            return;
        }
        ev.prevent_default();
        let then = then.clone();
        leptos::task::spawn_local(async move {
            match crate::desktop::open_files(multiple, extensions).await {
                Ok(files) if files.is_empty() => {}
                Ok(files) => then(Ok(files)),
                Err(e) => then(Err(e.to_string())),
            }
        });
    }
}
