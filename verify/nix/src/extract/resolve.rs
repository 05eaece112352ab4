//! Static values the walk needs from an expression without evaluating it: the string
//! that names a unit (literals, interpolations and `+` of `let`-bound strings), and
//! whether a `startAt` value yields a timer.

use rnix::ast::{self, BinOpKind, Expr, InterpolPart};

use super::scope::Scope;
use super::wrappers::{descend, Descent, Shape, Wrappers};
use super::{Budget, MAX_NAME, MAX_RESOLVE_DEPTH};

/// Resolve an expression to a constant string: string literals, interpolations of
/// names bound to such strings, `+` of those.
pub(super) fn resolve_str(expr: &Expr, scope: &Scope, depth: u32, b: &Budget) -> Option<String> {
    if depth > MAX_RESOLVE_DEPTH || !b.spend() {
        return None;
    }
    match descend(expr.clone(), scope, false, Wrappers::NAME) {
        Descent::Into {
            inner: [Some(inner), None],
            scope,
            ..
        } => resolve_str(&inner, &scope, depth + 1, b),
        Descent::Core(Expr::Str(s)) => resolve_str_node(&s, scope, depth, b),
        Descent::Core(Expr::BinOp(op)) if op.operator() == Some(BinOpKind::Add) => {
            let l = resolve_str(&op.lhs()?, scope, depth + 1, b)?;
            let r = resolve_str(&op.rhs()?, scope, depth + 1, b)?;
            if l.len() + r.len() > MAX_NAME {
                return None;
            }
            Some(l + &r)
        }
        _ => None,
    }
}

/// The constant text of a string, its interpolations resolved with [`resolve_str`].
pub(super) fn resolve_str_node(
    s: &ast::Str,
    scope: &Scope,
    depth: u32,
    b: &Budget,
) -> Option<String> {
    let mut out = String::new();
    for part in s.normalized_parts() {
        match part {
            InterpolPart::Literal(lit) => out.push_str(&lit),
            InterpolPart::Interpolation(i) => {
                out.push_str(&resolve_str(&i.expr()?, scope, depth + 1, b)?);
                if out.len() > MAX_NAME {
                    return None;
                }
            }
        }
    }
    Some(out)
}

/// The name one attribute path segment spells: `a`, `"a-${x}"`, `${x}`.
pub(super) fn attr_name(attr: &ast::Attr, scope: &Scope, b: &Budget) -> Option<String> {
    match attr {
        ast::Attr::Ident(id) => Some(id.ident_token()?.text().to_string()),
        ast::Attr::Str(s) => resolve_str_node(s, scope, 0, b),
        ast::Attr::Dynamic(d) => resolve_str(&d.expr()?, scope, 0, b),
    }
}

/// The name a segment spells without any bindings in scope (`${…}` spells none).
pub(super) fn plain_name(attr: &ast::Attr, b: &Budget) -> Option<String> {
    match attr {
        ast::Attr::Ident(id) => Some(id.ident_token()?.text().to_string()),
        ast::Attr::Str(s) => resolve_str_node(s, &None, 0, b),
        ast::Attr::Dynamic(_) => None,
    }
}

/// Whether a `startAt` value yields a timer: `None` when provably empty (`[]`),
/// `Some(true)` when only under a condition, `Some(false)` otherwise.
pub(super) fn classify_start_at(
    expr: &Expr,
    scope: &Scope,
    depth: u32,
    b: &Budget,
) -> Option<bool> {
    if depth > MAX_RESOLVE_DEPTH || !b.spend() {
        return Some(false);
    }
    match descend(expr.clone(), scope, false, Wrappers::START_AT) {
        Descent::Into {
            inner: [Some(inner), None],
            scope,
            ..
        } => classify_start_at(&inner, &scope, depth + 1, b),
        Descent::Into { .. } => Some(false),
        Descent::Call(_, Shape::Cond(_) | Shape::Optional(_) | Shape::Optionals(_)) => Some(true),
        Descent::Call(..) => Some(false),
        Descent::Core(Expr::List(l)) => {
            if l.items().next().is_none() {
                None
            } else {
                Some(false)
            }
        }
        Descent::Core(Expr::IfElse(i)) => {
            let then_ = i
                .body()
                .and_then(|e| classify_start_at(&e, scope, depth + 1, b));
            let else_ = i
                .else_body()
                .and_then(|e| classify_start_at(&e, scope, depth + 1, b));
            match (then_, else_) {
                (None, None) => None,
                (Some(_), None) | (None, Some(_)) => Some(true),
                (Some(x), Some(y)) => Some(x || y),
            }
        }
        Descent::Core(Expr::BinOp(op)) if op.operator() == Some(BinOpKind::Concat) => {
            let l = op
                .lhs()
                .and_then(|e| classify_start_at(&e, scope, depth + 1, b));
            let r = op
                .rhs()
                .and_then(|e| classify_start_at(&e, scope, depth + 1, b));
            match (l, r) {
                (None, None) => None,
                (Some(false), _) | (_, Some(false)) => Some(false),
                _ => Some(true),
            }
        }
        Descent::Core(_) => Some(false),
    }
}

/// What an `enable = …` of a unit says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Enable {
    /// `true` (through parentheses, `mkDefault`/`mkForce`/…, `let`-bound names).
    True,
    /// `false`, the same way: the unit is masked.
    False,
    /// Anything else (an option, `mkIf c false`, an expression): known only by evaluation.
    Unknown,
}

/// Read an `enable` value without evaluating it.
pub(super) fn classify_enable(expr: &Expr, scope: &Scope, depth: u32, b: &Budget) -> Enable {
    if depth > MAX_RESOLVE_DEPTH || !b.spend() {
        return Enable::Unknown;
    }
    match descend(expr.clone(), scope, false, Wrappers::ENABLE) {
        Descent::Into {
            inner: [Some(inner), None],
            scope,
            ..
        } => classify_enable(&inner, &scope, depth + 1, b),
        Descent::Core(Expr::Ident(id)) => match id.ident_token().as_ref().map(|t| t.text()) {
            Some("true") => Enable::True,
            Some("false") => Enable::False,
            _ => Enable::Unknown,
        },
        _ => Enable::Unknown,
    }
}
