//! A search box that applies what was typed once typing pauses (300 ms), so a keystroke does not cost a query
//! (the Enrollments, Groups and Registrations lists search on the server).

use std::time::Duration;

use leptos::prelude::*;

#[derive(Clone, Copy)]
pub struct DebouncedSearch {
    /// What the box shows.
    pub input: RwSignal<String>,
    /// What the list searches for.
    pub applied: RwSignal<String>,
    typing: StoredValue<u32>,
}

impl Default for DebouncedSearch {
    fn default() -> Self {
        Self::new()
    }
}

impl DebouncedSearch {
    pub fn new() -> Self {
        Self { input: RwSignal::new(String::new()), applied: RwSignal::new(String::new()), typing: StoredValue::new(0) }
    }

    /// The box's `input` handler; `on_apply` runs just before the text is applied (say, back to the first page).
    pub fn on_input(self, on_apply: impl Fn() + Copy + 'static) -> impl Fn(leptos::ev::Event) + Copy + 'static {
        move |ev: leptos::ev::Event| {
            let value = event_target_value(&ev);
            self.input.set(value.clone());
            self.typing.update_value(|n| *n += 1);
            let mine = self.typing.get_value();
            set_timeout(
                move || {
                    if self.typing.get_value() == mine {
                        on_apply();
                        self.applied.set(value);
                    }
                },
                Duration::from_millis(300),
            );
        }
    }
}
