//! The second pass: a syntactic sweep over every attribute definition in the file that
//! *looks* like a unit declaration (`systemd.<kind>…`, or `<kind>…` directly inside
//! `systemd = { }`) but that the structured walk never reached — e.g. inside the
//! argument of an unknown function. Each is reported as `unresolved`, so nothing is
//! dropped.

use std::collections::HashSet;

use rnix::ast::{self, Expr};
use rnix::{SyntaxKind, SyntaxNode, TextRange};
use rowan::ast::AstNode;

use super::option_tree::Kind;
use super::resolve::plain_name;
use super::text::{excerpt, LineIndex};
use super::walk::Reached;
use super::wrappers::{flatten_apply, head_name};
use super::Budget;
use crate::{Reason, Unresolved};

/// Unit-like definitions under `root` that the walk neither interpreted nor covered,
/// outside strings, one entry per outermost such definition.
pub(super) fn sweep(
    root: &SyntaxNode,
    reached: &Reached,
    b: &Budget,
    file: &str,
    lines: &LineIndex,
) -> Vec<Unresolved> {
    let mut out = Vec::new();
    let candidates: Vec<SyntaxNode> = root
        .descendants()
        .filter(|n| n.kind() == SyntaxKind::NODE_ATTRPATH_VALUE)
        .collect();
    let mut flagged: HashSet<TextRange> = HashSet::new();
    for node in candidates {
        if reached.visited.contains(&node.text_range()) {
            continue;
        }
        let Some(apv) = ast::AttrpathValue::cast(node.clone()) else {
            continue;
        };
        if !looks_like_unit_definition(&apv, b) {
            continue;
        }
        let mut inside_covered = false;
        let mut inside_string = false;
        for anc in node.ancestors().skip(1) {
            if anc.kind() == SyntaxKind::NODE_STRING {
                inside_string = true;
                break;
            }
            if reached.covered.contains(&anc.text_range()) {
                inside_covered = true;
                break;
            }
        }
        if inside_covered || inside_string {
            continue;
        }
        // Inside a definition already reported: one entry says it.
        if node
            .ancestors()
            .skip(1)
            .any(|a| flagged.contains(&a.text_range()))
        {
            continue;
        }
        flagged.insert(node.text_range());
        let text = format!(
            "{} (not reached by the analysis)",
            excerpt(&apv.syntax().text().to_string())
        );
        out.push(Unresolved {
            file: file.to_string(),
            line: lines.line_of(apv.syntax()),
            text,
            reason: reason_of(&node, b),
        });
    }
    out
}

/// Why the definition at `node` was not reached: the option path around it (outermost
/// first) names a container's configuration, a test's node, the initrd or a user's
/// manager; else it sits in the argument of a function call; else the walk does not go
/// there.
fn reason_of(node: &SyntaxNode, b: &Budget) -> Reason {
    let mut path: Vec<Option<String>> = Vec::new();
    let mut in_argument = false;
    let mut child = node.clone();
    for anc in node.ancestors() {
        if let Some(apv) = ast::AttrpathValue::cast(anc.clone()) {
            if let Some(p) = apv.attrpath() {
                let names: Vec<Option<String>> = p.attrs().map(|a| plain_name(&a, b)).collect();
                path.splice(0..0, names);
            }
        }
        if let Some(app) = ast::Apply::cast(anc.clone()) {
            if app
                .argument()
                .is_some_and(|a| a.syntax().text_range() == child.text_range())
            {
                in_argument = true;
            }
        }
        child = anc;
    }
    let seg = |i: usize| path.get(i).and_then(|s| s.as_deref());
    for i in 0..path.len() {
        match seg(i) {
            Some("containers") if seg(i + 2) == Some("config") => return Reason::ContainerConfig,
            Some("nodes") => return Reason::TestNode,
            Some("boot") if seg(i + 1) == Some("initrd") => return Reason::Initrd,
            Some("systemd") if seg(i + 1) == Some("user") => return Reason::User,
            _ => {}
        }
    }
    if in_argument {
        Reason::FunctionResult
    } else {
        Reason::NotReached
    }
}

/// `systemd.services.x = …`, `foo.systemd.timers = …`, or `services.x = …` directly
/// inside `systemd = { … }`.
fn looks_like_unit_definition(apv: &ast::AttrpathValue, b: &Budget) -> bool {
    let Some(path) = apv.attrpath() else {
        return false;
    };
    if let Some(Expr::Apply(app)) = apv.value() {
        if let Some((head, _)) = flatten_apply(&app) {
            if matches!(
                head_name(&head).as_deref(),
                Some("mkOption" | "mkEnableOption" | "mkPackageOption" | "mkSinkUndeclaredOptions")
            ) {
                return false;
            }
        }
    }
    let names: Vec<Option<String>> = path.attrs().map(|a| plain_name(&a, b)).collect();
    let is_kind = |n: Option<&Option<String>>| {
        n.and_then(|n| n.as_deref())
            .and_then(Kind::from_option)
            .is_some()
    };
    // `systemd.<kind>` or `systemd.user.<kind>`.
    let adjacent = (0..names.len()).any(|i| {
        names[i].as_deref() == Some("systemd")
            && (is_kind(names.get(i + 1))
                || names.get(i + 1).and_then(|n| n.as_deref()) == Some("user")
                    && is_kind(names.get(i + 2)))
    });
    if adjacent {
        return true;
    }
    if !starts_with_kind(&names) {
        // `systemd = <something defining units>`, or `systemd.user = …`.
        return ends_in_manager(&names)
            && apv
                .value()
                .map(|v| {
                    v.syntax().descendants().any(|d| {
                        ast::AttrpathValue::cast(d).is_some_and(|inner| {
                            let first: Vec<Option<String>> = inner
                                .attrpath()
                                .map(|p| p.attrs().take(2).map(|a| plain_name(&a, b)).collect())
                                .unwrap_or_default();
                            starts_with_kind(&first)
                        })
                    })
                })
                .unwrap_or(false);
    }
    // `services.x = …` (or `user.services.x = …`) whose enclosing definition is
    // `… systemd = { … }` (or `… systemd.user = { … }`).
    let parent_def = apv
        .syntax()
        .parent()
        .filter(|p| p.kind() == SyntaxKind::NODE_ATTR_SET)
        .and_then(|set| set.parent())
        .and_then(ast::AttrpathValue::cast);
    parent_def.and_then(|d| d.attrpath()).is_some_and(|p| {
        let outer: Vec<Option<String>> = p.attrs().map(|a| plain_name(&a, b)).collect();
        ends_in_manager(&outer)
    })
}

/// `<kind>…` or `user.<kind>…`.
fn starts_with_kind(names: &[Option<String>]) -> bool {
    let kind = |i: usize| {
        names
            .get(i)
            .and_then(|n| n.as_deref())
            .and_then(Kind::from_option)
            .is_some()
    };
    kind(0) || names.first().and_then(|n| n.as_deref()) == Some("user") && kind(1)
}

/// `…systemd` or `…systemd.user`.
fn ends_in_manager(names: &[Option<String>]) -> bool {
    let at = |i: usize| names.get(i).and_then(|n| n.as_deref());
    let n = names.len();
    n >= 1 && at(n - 1) == Some("systemd")
        || n >= 2 && at(n - 2) == Some("systemd") && at(n - 1) == Some("user")
}
