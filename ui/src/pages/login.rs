//! Sign-in (browser only): the admin password → a console session (`POST /console/login`), kept in
//! `sessionStorage`. The password was printed when the service first started (`dps admin set-password` changes it).

use leptos::prelude::*;

use crate::api::{ApiClient, ApiError};
use crate::app::save_session;

fn message(e: &ApiError) -> String {
    match e {
        ApiError::Service { status: 401, .. } => "Wrong password.".into(),
        ApiError::Service { status: 429, .. } => "Too many failed attempts: wait a minute, then try again.".into(),
        ApiError::Service { details, .. } => details.message.clone(),
        other => other.to_string(),
    }
}

#[component]
pub fn Login() -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let sign_in = Action::new_local(move |p: &String| {
        let p = p.clone();
        async move {
            match ApiClient::browser("").login(&p).await {
                Ok(session) => {
                    save_session(&session);
                    client.set(ApiClient::browser(session.token));
                }
                Err(e) => error.set(Some(message(&e))),
            }
        }
    });
    let busy = sign_in.pending();

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let p = password.get_untracked();
        if p.is_empty() {
            error.set(Some("Enter the admin password.".into()));
            return;
        }
        error.set(None);
        sign_in.dispatch_local(p);
    };

    view! {
        <main class="login">
            <form class="card login-card" on:submit=submit>
                <h1>"DPS Console"</h1>
                <p class="muted">"Sign in with the admin password. It was printed when the service first started; "
                    <code>"dps admin set-password"</code> " sets a new one."</p>
                // The account is always `admin`; browsers want a user name field next to a password.
                <input type="text" name="username" autocomplete="username" value="admin" readonly hidden />
                <label for="login-password">"Admin password"</label>
                <input id="login-password" type="password" autocomplete="current-password" data-testid="login-password" autofocus
                    prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev)) />
                <button type="submit" class="btn primary" data-testid="login-submit" disabled=move || busy.get()>
                    {move || if busy.get() { "Signing in…" } else { "Sign in" }}
                </button>
                {move || error.get().map(|e| view! { <p class="form-error" role="alert" data-testid="login-error">{e}</p> })}
            </form>
        </main>
    }
}
