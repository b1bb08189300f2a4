//! Form fields over a form binding: a form's state in one signal ([`FormBinding`]), one field of it ([`Bound`],
//! made with [`FormBinding::field`] and [`lens!`](crate::lens)), and the inputs that show and edit a field with
//! its error line ([`TextField`], [`SelectField`], [`CheckField`]).
//!
//! A field's error (the console model's [`FieldError`] for its name) is shown once the field has been left, and
//! for every field after a submit ([`FormBinding::show_all`]).

use dps_console_model::enrollment_form::{error_for, FieldError};
use leptos::prelude::*;

/// `lens!(field)`: the pair of accessors [`FormBinding::field`] takes, reading and writing `form.field`.
#[macro_export]
macro_rules! lens {
    ($field:ident) => {
        (|f| &f.$field, |f| &mut f.$field)
    };
}

/// Which field errors are on screen: a field's once it has been left, every field's after a submit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shown {
    all: bool,
    touched: Vec<&'static str>,
}

impl Shown {
    pub fn shows(&self, field: &str) -> bool {
        self.all || self.touched.contains(&field)
    }

    fn touch(&mut self, field: &'static str) {
        if !self.touched.contains(&field) {
            self.touched.push(field);
        }
    }
}

/// A form's state, its errors and which of them are shown.
pub struct FormBinding<F: Send + Sync + 'static> {
    pub form: RwSignal<F>,
    pub errors: Signal<Vec<FieldError>>,
    pub shown: RwSignal<Shown>,
}

impl<F: Send + Sync + 'static> Clone for FormBinding<F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F: Send + Sync + 'static> Copy for FormBinding<F> {}

impl<F: Send + Sync + 'static> FormBinding<F> {
    /// A form whose errors follow its state (`errors` of the console model's form).
    pub fn new(form: F, errors: fn(&F) -> Vec<FieldError>) -> Self {
        let form = RwSignal::new(form);
        let errors = Memo::new(move |_| form.with(errors));
        Self { form, errors: errors.into(), shown: RwSignal::new(Shown::default()) }
    }

    /// A form whose errors are the ones given (for instance those found at the last submit).
    pub fn with_errors(form: F, errors: Signal<Vec<FieldError>>) -> Self {
        Self { form: RwSignal::new(form), errors, shown: RwSignal::new(Shown::default()) }
    }

    /// Shows every field's error (after a submit).
    pub fn show_all(&self) {
        self.shown.update(|s| s.all = true);
    }

    /// Whether a submit has shown the errors and there are some.
    pub fn refused(&self) -> bool {
        self.shown.with(|s| s.all) && !self.errors.with(Vec::is_empty)
    }

    /// One field of the form, named as its errors name it: `form.field(field::ID, lens!(id))`.
    pub fn field<T>(self, name: &'static str, (get, set): (fn(&F) -> &T, fn(&mut F) -> &mut T)) -> Bound<T>
    where
        T: Clone + Send + Sync + 'static,
    {
        let form = self.form;
        Bound {
            name,
            value: Signal::derive(move || form.with(|f| get(f).clone())),
            set: Callback::new(move |v| form.update(|f| *set(f) = v)),
            errors: self.errors,
            shown: self.shown,
        }
    }
}

/// One field of a form: its name (in the errors), its value, how to change it, and the form's errors.
pub struct Bound<T: Send + Sync + 'static> {
    name: &'static str,
    value: Signal<T>,
    set: Callback<T>,
    errors: Signal<Vec<FieldError>>,
    shown: RwSignal<Shown>,
}

impl<T: Send + Sync + 'static> Clone for Bound<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Send + Sync + 'static> Copy for Bound<T> {}

impl<T: Clone + Send + Sync + 'static> Bound<T> {
    fn touch(&self) {
        let name = self.name;
        self.shown.update(|s| s.touch(name));
    }
}

/// The error line of a field: its first error, when shown.
pub fn error_line<T: Send + Sync + 'static>(bind: Bound<T>) -> impl IntoView {
    let name = bind.name;
    move || {
        bind.shown
            .with(|s| s.shows(name))
            .then(|| bind.errors.with(|e| error_for(e, name).map(str::to_string)))
            .flatten()
            .map(|m| field_error(name, m))
    }
}

/// An error line under the field `name`.
pub fn field_error(name: &'static str, message: String) -> impl IntoView {
    view! { <span class="field-error" data-testid="field-error" data-field=name>{message}</span> }
}

/// A text input (a textarea when `rows` is given) with its label and error line; `children` go under the input.
#[component]
pub fn TextField(
    bind: Bound<String>,
    label: &'static str,
    testid: &'static str,
    #[prop(optional, into)] placeholder: MaybeProp<String>,
    #[prop(optional)] rows: Option<u32>,
    /// The input's type (`text` when not given): `number`, `password`.
    #[prop(optional)]
    kind: Option<&'static str>,
    #[prop(optional)] readonly: bool,
    #[prop(optional)] disabled: bool,
    #[prop(optional)] autocomplete: Option<&'static str>,
    /// The bounds of a `number` input.
    #[prop(optional)]
    min: Option<&'static str>,
    #[prop(optional)] max: Option<&'static str>,
    #[prop(optional)] children: Option<Children>,
) -> impl IntoView {
    let value = move || bind.value.get();
    let on_input = move |ev: leptos::ev::Event| bind.set.run(event_target_value(&ev));
    let input = match rows {
        Some(rows) => view! {
            <textarea data-testid=testid rows=rows.to_string() placeholder=move || placeholder.get() prop:value=value on:input=on_input
                on:blur=move |_| bind.touch()></textarea>
        }
        .into_any(),
        None => view! {
            <input type=kind.unwrap_or("text") data-testid=testid placeholder=move || placeholder.get() prop:value=value
                readonly=readonly disabled=disabled autocomplete=autocomplete min=min max=max on:input=on_input on:blur=move |_| bind.touch() />
        }
        .into_any(),
    };
    view! {
        <label class="field">
            <span>{label}</span>
            {input}
            {children.map(|c| c())}
            {error_line(bind)}
        </label>
    }
}

/// A drop-down of `(value, text)` options with its label and error line.
#[component]
pub fn SelectField(
    bind: Bound<String>,
    label: &'static str,
    testid: &'static str,
    options: Vec<(&'static str, &'static str)>,
) -> impl IntoView {
    view! {
        <label class="field">
            <span>{label}</span>
            <select data-testid=testid prop:value=move || bind.value.get() on:change=move |ev| bind.set.run(event_target_value(&ev))>
                {options
                    .into_iter()
                    .map(|(value, text)| {
                        view! { <option value=value selected=move || bind.value.with(|v| v == value)>{text}</option> }
                    })
                    .collect_view()}
            </select>
            {error_line(bind)}
        </label>
    }
}

/// A checkbox with its label.
#[component]
pub fn CheckField(
    bind: Bound<bool>,
    label: &'static str,
    testid: &'static str,
    #[prop(optional)] id: Option<&'static str>,
) -> impl IntoView {
    view! {
        <label class="check">
            <input type="checkbox" id=id data-testid=testid prop:checked=move || bind.value.get()
                on:change=move |ev| bind.set.run(event_target_checked(&ev)) />
            <span>{label}</span>
        </label>
    }
}
