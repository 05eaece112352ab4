//! The check engine of `ccci-verify`: what a check is, what it returns, how a gate spec
//! selects and parameterises checks, how the runner executes them, and the report they make.
//!
//! Evidence is data: checks return structured [`Evidence`]; the renderers in [`render`]
//! format it late, for a terminal, for scripts (JSON), for CI (JUnit) or for a status file
//! (Markdown).

pub mod check;
pub mod redact;
pub mod render;
pub mod report;
pub mod runner;
pub mod spec;
pub mod trail;

pub use check::{Check, Evidence, Outcome, Verdict};
pub use report::{CheckResult, Report, Summary};
pub use runner::{run_checks, Planned, Progress};
pub use spec::{CheckSpec, GateSpec, SpecError};
pub use trail::{short, Decided, Halt, Trail};
