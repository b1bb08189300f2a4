//! One module per page; [`Page`] names them and maps the location's hash (`#/hubs`) to one.

pub mod certificates;
pub mod credentials;
pub mod enrollments;
pub mod groups;
pub mod hubs;
pub mod login;
pub mod logs;
pub mod overview;
pub mod registrations;
pub mod settings;
pub mod simulate;

use leptos::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Overview,
    Enrollments,
    Groups,
    Registrations,
    Hubs,
    Certificates,
    Simulate,
    Logs,
    Settings,
}

impl Page {
    pub const ALL: [Page; 9] = [
        Page::Overview,
        Page::Enrollments,
        Page::Groups,
        Page::Registrations,
        Page::Hubs,
        Page::Certificates,
        Page::Simulate,
        Page::Logs,
        Page::Settings,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Page::Overview => "Overview",
            Page::Enrollments => "Enrollments",
            Page::Groups => "Groups",
            Page::Registrations => "Registrations",
            Page::Hubs => "Hubs",
            Page::Certificates => "Certificates",
            Page::Simulate => "Simulate",
            Page::Logs => "Logs",
            Page::Settings => "Settings",
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            Page::Overview => "overview",
            Page::Enrollments => "enrollments",
            Page::Groups => "groups",
            Page::Registrations => "registrations",
            Page::Hubs => "hubs",
            Page::Certificates => "certificates",
            Page::Simulate => "simulate",
            Page::Logs => "logs",
            Page::Settings => "settings",
        }
    }

    pub fn href(self) -> String {
        format!("#/{}", self.slug())
    }

    /// `#/hubs` → Hubs; anything unknown (or empty) → Overview. A trailing part (`#/enrollments/dev-1`) is ignored.
    pub fn from_hash(hash: &str) -> Page {
        let path = hash.trim_start_matches('#').trim_start_matches('/');
        let slug = path.split(['/', '?']).next().unwrap_or("");
        Page::ALL.into_iter().find(|p| p.slug() == slug).unwrap_or(Page::Overview)
    }

    pub fn view(self) -> AnyView {
        match self {
            Page::Overview => view! { <overview::Overview /> }.into_any(),
            Page::Enrollments => view! { <enrollments::Enrollments /> }.into_any(),
            Page::Groups => view! { <groups::Groups /> }.into_any(),
            Page::Registrations => view! { <registrations::Registrations /> }.into_any(),
            Page::Hubs => view! { <hubs::Hubs /> }.into_any(),
            Page::Certificates => view! { <certificates::Certificates /> }.into_any(),
            Page::Simulate => view! { <simulate::Simulate /> }.into_any(),
            Page::Logs => view! { <logs::Logs /> }.into_any(),
            Page::Settings => view! { <settings::Settings /> }.into_any(),
        }
    }
}

/// The page's heading (`data-testid="page-title"`, text = the page's name) with optional actions on the right.
#[component]
pub fn PageHeader(page: Page, #[prop(optional)] children: Option<Children>) -> impl IntoView {
    view! {
        <div class="page-header">
            <h2 data-testid="page-title">{page.title()}</h2>
            <div class="page-actions">{children.map(|c| c())}</div>
        </div>
    }
}
