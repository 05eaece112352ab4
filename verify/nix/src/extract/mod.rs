//! The unit extractor: the systemd units one NixOS module declares, found by walking
//! its rnix syntax tree the way the module system merges it.
//!
//! Two passes:
//! 1. a structured walk ([`walk`]) from the module's top expression that understands
//!    attribute sets (nested or dotted), `let`, `with`, `rec`, wrappers (`mkIf`,
//!    `mkMerge`, `mkDefault`, `mkForce`, `mkOverride`, `optionalAttrs`, `optional(s)`),
//!    `//`, `++`, `if … then … else …` and references to `let`-bound expressions;
//! 2. a syntactic sweep ([`sweep`]) over every attribute definition in the file that
//!    *looks* like a unit declaration but that the structured walk never reached — e.g.
//!    inside the argument of an unknown function. Those are reported as `unresolved`,
//!    so nothing is dropped.
//!
//! The walk leans on: [`option_tree`] (unit families and the position a value lands
//! at), [`scope`] (`let`/`rec`/lambda bindings), [`resolve`] (names and `startAt`
//! values, statically), [`wrappers`] (wrapper shapes, and the one step through a
//! transparent wrapper that every walker takes) and [`text`] (lines and excerpts).
//! [`normalise`] marks the units [`nixpkgs_units`] lists as overrides.
//!
//! Units go to one list per systemd manager: the host's (`systemd.<kind>`), users'
//! (`systemd.user.<kind>`) and the initrd's (`boot.initrd.systemd.<kind>`). Every
//! `unresolved` entry says why ([`crate::Reason`]).
//!
//! Comments never reach the syntax tree's expressions; string contents are only ever
//! read as names (`"foo-bar"`, `where = "/a/b"`), and definitions inside a string
//! interpolation are not declarations.

mod nixpkgs_units;
mod option_tree;
mod resolve;
mod scope;
mod sweep;
mod text;
mod walk;
mod wrappers;

#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

pub use nixpkgs_units::nixpkgs_defines;

use crate::{FileUnits, NixError, Reason, UnitDecl, Unresolved};
use rowan::ast::AstNode;
use text::LineIndex;
use walk::Walker;

/// Largest file analysed; a Nix module is a few kB, a generated package set a few MB.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;
/// Recursion bound of the walk (nesting of wrappers/attribute sets, `let` indirections).
const MAX_DEPTH: u32 = 128;
/// Recursion bound when resolving a name through `let` bindings and interpolations.
const MAX_RESOLVE_DEPTH: u32 = 32;
/// Longest `unresolved` text kept before it is shortened with `…`.
const MAX_TEXT: usize = 160;
/// Longest unit name the resolver builds (longer is not a real unit name).
const MAX_NAME: usize = 1024;
/// Steps (walk and resolve calls) one file may take: bounds the work on inputs whose
/// `let` bindings reference each other many times over.
const MAX_STEPS: u32 = 200_000;

/// A shared step counter; when it runs out, the analysis stops and says so.
#[derive(Clone)]
struct Budget(Rc<Cell<u32>>);

impl Budget {
    fn new(steps: u32) -> Self {
        Budget(Rc::new(Cell::new(steps)))
    }

    fn spend(&self) -> bool {
        let left = self.0.get();
        if left == 0 {
            false
        } else {
            self.0.set(left - 1);
            true
        }
    }

    fn exhausted(&self) -> bool {
        self.0.get() == 0
    }
}

/// Analyse one Nix file. `file` is the path reported in the results.
///
/// rnix's parser recurses once per operand of a chain such as `a + a + …` or
/// `x // x // …` (~250 bytes of stack per operand in a debug build, measured: a
/// 10 000-operand chain overflows a 2 MiB stack). The parse and the walk therefore run
/// on their own thread whose stack grows with the input (32 MiB plus 256 bytes per
/// input byte; only touched pages are ever backed by memory), so no input can overflow.
pub fn extract_units(file: &str, src: &str) -> Result<FileUnits, NixError> {
    if src.len() > MAX_FILE_BYTES {
        return Err(NixError::TooLarge {
            file: file.to_string(),
            bytes: src.len(),
            limit: MAX_FILE_BYTES,
        });
    }
    let stack = (32 << 20) + src.len().saturating_mul(256);
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("ccci-nix-extract".to_string())
            .stack_size(stack)
            .spawn_scoped(scope, || extract_on_this_thread(file, src))
            .map_err(|e| NixError::Thread(e.to_string()))?;
        match worker.join() {
            Ok(result) => result,
            // A panic here is a bug in the extractor: let it surface as one.
            Err(payload) => std::panic::resume_unwind(payload),
        }
    })
}

fn extract_on_this_thread(file: &str, src: &str) -> Result<FileUnits, NixError> {
    let parse = rnix::Root::parse(src);
    let lines = LineIndex::new(src);
    if let Some(err) = parse.errors().first() {
        let (offset, message) = describe_parse_error(err, src.len());
        let (line, column) = lines.line_col(offset);
        return Err(NixError::Parse {
            file: file.to_string(),
            line,
            column,
            message,
        });
    }
    let root = parse.tree();
    let budget = Budget::new(MAX_STEPS);
    let mut walker = Walker::new(file, &lines, budget.clone());
    if let Some(expr) = root.expr() {
        walker.walk_module(expr);
    }
    let (mut out, reached) = walker.finish();
    if budget.exhausted() {
        out.unresolved.push(Unresolved {
            file: file.to_string(),
            line: 1,
            text: format!(
                "analysis stopped after {MAX_STEPS} steps (bindings too self-referential); units of this file may be missing"
            ),
            reason: Reason::AnalysisLimit,
        });
    } else {
        let missed = sweep::sweep(root.syntax(), &reached, &budget, file, &lines);
        out.unresolved.extend(missed);
    }
    Ok(normalise(out))
}

/// Sort, and merge duplicate declarations of one unit in one file: the first line wins,
/// and the unit is conditional only if every declaration is. A unit masked by an
/// unconditional `enable = false` (NixOS links it to `/dev/null`) is not declared: it moves
/// to `masked`. A system unit nixpkgs defines itself is marked as an override.
pub(crate) fn normalise(mut fu: FileUnits) -> FileUnits {
    let mut masked: Vec<UnitDecl> = fu.masked.drain(..).filter(|m| !m.conditional).collect();
    masked.sort_by(|a, b| (&a.name, &a.file, a.line).cmp(&(&b.name, &b.file, b.line)));
    masked.dedup_by(|a, b| a.name == b.name && a.file == b.file);
    for m in &mut masked {
        m.overrides = nixpkgs_defines(&m.name);
    }
    fu.units
        .retain(|u| !masked.iter().any(|m| m.name == u.name && m.file == u.file));
    let mut units = merge(fu.units);
    for u in &mut units {
        u.overrides = nixpkgs_defines(&u.name);
    }
    let mut unresolved = fu.unresolved;
    unresolved.sort();
    unresolved.dedup();
    FileUnits {
        units,
        unresolved,
        masked,
        user_units: merge(fu.user_units),
        initrd_units: merge(fu.initrd_units),
    }
}

/// One declaration per unit and file, sorted by name, file and line.
fn merge(mut list: Vec<UnitDecl>) -> Vec<UnitDecl> {
    let mut merged: HashMap<(String, String), UnitDecl> = HashMap::new();
    for u in list.drain(..) {
        merged
            .entry((u.name.clone(), u.file.clone()))
            .and_modify(|m| {
                m.line = m.line.min(u.line);
                m.conditional = m.conditional && u.conditional;
            })
            .or_insert(u);
    }
    let mut units: Vec<UnitDecl> = merged.into_values().collect();
    units.sort_by(|a, b| (&a.name, &a.file, a.line).cmp(&(&b.name, &b.file, b.line)));
    units
}

fn describe_parse_error(err: &rnix::ParseError, len: usize) -> (usize, String) {
    use rnix::ParseError as P;
    let offset = match err {
        P::Unexpected(r) | P::UnexpectedExtra(r) | P::UnexpectedDoubleBind(r) => r.start().into(),
        P::UnexpectedWanted(_, r, _) | P::DuplicatedArgs(r, _) => r.start().into(),
        P::UnexpectedEOF | P::UnexpectedEOFWanted(_) | P::RecursionLimitExceeded => len,
        _ => 0,
    };
    (offset, err.to_string())
}
