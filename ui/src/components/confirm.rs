//! A modal question before a destructive action (delete, renew keys).

use leptos::prelude::*;

#[component]
pub fn ConfirmDialog(
    open: RwSignal<bool>,
    #[prop(into)] title: String,
    #[prop(into)] message: Signal<String>,
    #[prop(optional, into)] confirm_label: Option<String>,
    on_confirm: Callback<()>,
) -> impl IntoView {
    let confirm_label = confirm_label.unwrap_or_else(|| "Delete".into());
    view! {
        <Show when=move || open.get()>
            <div class="modal-backdrop" on:click=move |_| open.set(false)>
                <div class="modal" role="dialog" aria-modal="true" data-testid="confirm-dialog"
                    on:click=|ev| ev.stop_propagation()>
                    <h3>{title.clone()}</h3>
                    <p>{move || message.get()}</p>
                    <div class="actions">
                        <button type="button" class="btn" data-testid="confirm-cancel" on:click=move |_| open.set(false)>
                            "Cancel"
                        </button>
                        <button type="button" class="btn danger" data-testid="confirm-ok"
                            on:click=move |_| { open.set(false); on_confirm.run(()); }>
                            {confirm_label.clone()}
                        </button>
                    </div>
                </div>
            </div>
        </Show>
    }
}
