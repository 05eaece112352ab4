//! `ci-docker-prune`: a gated, surgical Docker prune for swarm CI hosts.
//!
//! The local image store is the cache. This crate removes nothing unless the disk is under
//! pressure (`disk`), no CI run stack is live (`runs`) and no swarm service is converging
//! (`converge`); then only stopped containers, images with no tag *and* no repo digest (true
//! build leftovers) and build cache, all older than `until`. Never `all`, never volumes.
//!
//! Modules: [`answers`] (the daemon's answers as plain types: the bottom), [`config`]
//! (flags/TOML, validation, defaults), [`gates`], [`plan`] (selection),
//! [`steps`] (the plan's removal steps and items, one request each), [`actions`] (the run:
//! gates, plan, then the steps, re-gated), [`report`] (JSON + every log line's wording),
//! [`metrics`] (the run as node_exporter textfile metrics),
//! [`docker`] (the only module that talks to the daemon; its API cannot express `all` or
//! volume pruning), [`roots`] and [`usage`] (facts: where the image data is, when each image
//! was used), [`evict`] (the eviction tier's queue), [`stall`] (a gate closed under pressure
//! for too long), [`settle`] (space a filesystem frees after the delete returns), [`statefile`] (atomic, locked state writes).

pub mod actions;
pub mod answers;
pub mod config;
pub mod docker;
pub mod evict;
pub mod gates;
pub mod metrics;
pub mod plan;
pub mod report;
pub mod roots;
pub mod settle;
pub mod stall;
pub mod statefile;
pub mod steps;
pub mod usage;

pub use actions::{run, Hooks, PruneError, Step};
pub use config::{Config, ConfigError, Settings};
pub use gates::{Gate, GateDecision};
pub use report::{Outcome, Report};
