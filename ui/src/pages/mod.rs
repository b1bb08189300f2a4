//! One module per page; [`Page`] names them and maps the location's hash to one.

pub mod overview;
pub mod planned;
pub mod settings;

use leptos::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Overview,
    Enrollments,
    Registrations,
    Hubs,
    Certificates,
    Logs,
    Settings,
}

impl Page {
    pub const ALL: [Page; 7] =
        [Page::Overview, Page::Enrollments, Page::Registrations, Page::Hubs, Page::Certificates, Page::Logs, Page::Settings];

    pub fn title(self) -> &'static str {
        match self {
            Page::Overview => "Overview",
            Page::Enrollments => "Enrollments",
            Page::Registrations => "Registrations",
            Page::Hubs => "Hubs",
            Page::Certificates => "Certificates",
            Page::Logs => "Logs",
            Page::Settings => "Settings",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Page::Overview => "overview",
            Page::Enrollments => "enrollments",
            Page::Registrations => "registrations",
            Page::Hubs => "hubs",
            Page::Certificates => "certificates",
            Page::Logs => "logs",
            Page::Settings => "settings",
        }
    }

    pub fn href(self) -> String {
        format!("#/{}", self.slug())
    }

    /// `#/hubs` → Hubs; anything unknown (or empty) → Overview.
    pub fn from_hash(hash: &str) -> Page {
        let slug = hash.trim_start_matches('#').trim_start_matches('/');
        Page::ALL.into_iter().find(|p| p.slug() == slug).unwrap_or(Page::Overview)
    }

    pub fn view(self) -> AnyView {
        match self {
            Page::Overview => view! { <overview::Overview /> }.into_any(),
            Page::Settings => view! { <settings::Settings /> }.into_any(),
            other => view! { <planned::Planned page=other /> }.into_any(),
        }
    }
}
