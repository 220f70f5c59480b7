//! The engine's events, rendered on standard error.

use bunker_engine::events::{Event, EventSink, FallbackEvent};

/// How fallback steps are worded: for policy repositories (by name) or for
/// `backup --fallback-repo` (by location).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wording {
    /// Repositories named in the policy.
    Policy,
    /// Repositories given by location on the command line.
    Location,
}

/// Prints warnings and notices; registers opened repositories for the
/// interrupt handler.
pub struct StderrSink {
    pub wording: Wording,
}

impl StderrSink {
    /// The sink of commands over the policy's repositories.
    pub const POLICY: StderrSink = StderrSink {
        wording: Wording::Policy,
    };
}

impl EventSink for StderrSink {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::RepositoryOpened(r) => crate::interrupt::register(r),
            Event::RepositoryCreated { name, location } => {
                eprintln!("created new repository {name:?} at {location}");
            }
            Event::Fallback(f) => fallback(self.wording, f),
            Event::Warning(w) => eprintln!("warning: {w}"),
            Event::ItemStarted { .. } | Event::TargetFinished(_) | Event::PgRestore(_) => {}
        }
    }
}

fn fallback(wording: Wording, f: &FallbackEvent<'_>) {
    match (wording, *f) {
        (Wording::Policy, FallbackEvent::PrimaryUnreachable { primary, error }) => {
            eprintln!("WARNING: repository {primary:?} is unreachable: {error}")
        }
        (Wording::Policy, FallbackEvent::UsingFallback { fallback, primary }) => {
            eprintln!("WARNING: using fallback repository {fallback:?} instead of {primary:?}")
        }
        (Wording::Policy, FallbackEvent::FallbackUnusable { fallback, error }) => {
            eprintln!("WARNING: fallback repository {fallback:?} is unreachable too: {error}")
        }
        (Wording::Location, FallbackEvent::PrimaryUnreachable { primary, error }) => {
            eprintln!("bunker: WARNING: primary repository {primary} is unreachable: {error}")
        }
        (Wording::Location, FallbackEvent::UsingFallback { fallback, primary }) => eprintln!(
            "bunker: WARNING: USING FALLBACK REPOSITORY {fallback} instead of {primary}; run \
             `bunker copy --from-repo {fallback}` against {primary} once it is reachable again"
        ),
        (Wording::Location, FallbackEvent::FallbackUnusable { fallback, error }) => {
            eprintln!("bunker: WARNING: fallback repository {fallback} cannot be used: {error}")
        }
    }
}
