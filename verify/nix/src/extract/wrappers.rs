//! Wrapper shapes: what a function call does to the definition it wraps ([`shape`]),
//! and the one step every walker and resolver takes through a transparent wrapper
//! ([`descend`]).
//!
//! A wrapper is transparent when the value inside it lands where the wrapper itself
//! does: `(x)`, `with e; x`, `mkDefault x`, a name bound to `x` by a `let`. Which
//! wrappers a context looks through differs, and that difference is behaviour the
//! results depend on, so each context names its set ([`Wrappers`]):
//!
//! | wrapper                         | value | mounts | mkMerge | item | startAt | name | genAttrs |
//! |---------------------------------|:-----:|:------:|:-------:|:----:|:-------:|:----:|:--------:|
//! | `( x )`                         |   ✓   |   ✓    |    ✓    |  ✓   |    ✓    |  ✓   |    ✓     |
//! | name bound by `let` / `rec`     |   ✓   |   ✓    |    ✓    |  ✓   |    ✓    |  ✓   |    ✓     |
//! | `with e; x`                     |   ✓   |   ✓    |         |      |    ✓    |      |          |
//! | `assert c; x`                   |   ✓   |        |         |      |         |      |          |
//! | `let … in x`                    |   ✓   |   ✓    |         |      |         |  ✓   |          |
//! | `args: x`                       |   ✓   |        |         |      |         |      |          |
//! | `if c then x else y`            |   ✓   |   ✓    |         |      |         |      |          |
//! | `x // y`                        |   ✓   |        |         |      |         |      |          |
//! | `x ++ y`                        |       |   ✓    |    ✓    |      |         |      |          |
//! | `mkIf c x`, `optionalAttrs c x` |   ✓   |   ✓    |         |  ✓   |         |      |          |
//! | `mkDefault x`, `mkForce x`, …   |   ✓   |   ✓    |         |  ✓   |    ✓    |      |          |
//!
//! A unit's `enable` looks through parentheses, bound names and `mkDefault x`, `mkForce x`, …
//! only.
//! | `optionals c xs`                |       |   ✓    |    ✓    |      |         |      |          |
//!
//! Columns: an option's value, the `systemd.mounts` list, `mkMerge`'s list, one mount
//! list item, a `startAt`, a unit's name, the names given to `genAttrs`. What is inside
//! `if`, `mkIf`, `optionalAttrs` and `optionals` is defined under a condition.
//!
//! Everything else a context understands (`mkMerge`, `optional`, `genAttrs`, `if` and
//! `++` in a `startAt`, `+` in a name, attribute sets, lists, strings) is its own
//! business: [`descend`] hands it back as [`Descent::Call`] or [`Descent::Core`].

use rnix::ast::{self, BinOpKind, Expr};

use super::scope::{lookup, push_entries_frame, push_lambda_frame, Scope};

/// The name of the function an application calls: `mkIf`, `lib.mkIf`,
/// `lib.modules.mkIf` all give `mkIf`.
pub(super) fn head_name(head: &Expr) -> Option<String> {
    match head {
        Expr::Ident(id) => Some(id.ident_token()?.text().to_string()),
        Expr::Select(s) => {
            if s.default_expr().is_some() {
                return None;
            }
            match s.attrpath()?.attrs().last()? {
                ast::Attr::Ident(id) => Some(id.ident_token()?.text().to_string()),
                _ => None,
            }
        }
        Expr::Paren(p) => head_name(&p.expr()?),
        _ => None,
    }
}

/// `f a b c` → (`f`, [a, b, c]).
pub(super) fn flatten_apply(app: &ast::Apply) -> Option<(Expr, Vec<Expr>)> {
    let mut args = Vec::new();
    let mut cur = Expr::Apply(app.clone());
    loop {
        match cur {
            Expr::Apply(a) => {
                args.push(a.argument()?);
                cur = a.lambda()?;
            }
            other => {
                args.reverse();
                return Some((other, args));
            }
        }
    }
}

/// What a wrapper function does to the definition it wraps.
pub(super) enum Shape {
    /// `mkIf c x`, `optionalAttrs c x`, `optionalString c x`: x, conditionally.
    Cond(Expr),
    /// `mkMerge [ … ]`: each element.
    Merge(Expr),
    /// `mkDefault x`, `mkForce x`, `mkOverride n x`, `mkBefore x` …: x.
    Pass(Expr),
    /// `optional c x`: the list `[ x ]`, conditionally.
    Optional(Expr),
    /// `optionals c xs`: the list xs, conditionally.
    Optionals(Expr),
    /// `genAttrs names f`: an attribute set with one attribute per name.
    GenAttrs(Expr, Expr),
    /// Any other function.
    Unknown,
}

pub(super) fn shape(app: &ast::Apply) -> Shape {
    let Some((head, mut args)) = flatten_apply(app) else {
        return Shape::Unknown;
    };
    let Some(name) = head_name(&head) else {
        return Shape::Unknown;
    };
    let n = args.len();
    match (name.as_str(), n) {
        ("mkIf" | "optionalAttrs" | "optionalString", 2) => Shape::Cond(args.remove(1)),
        ("mkMerge", 1) => Shape::Merge(args.remove(0)),
        (
            "mkDefault"
            | "mkForce"
            | "mkBefore"
            | "mkAfter"
            | "mkOptionDefault"
            | "mkVMOverride"
            | "mkImageMediaOverride"
            | "mkFixStrictness"
            | "mkOverride"
            | "mkOrder",
            _,
        ) if n >= 1 => match args.pop() {
            Some(last)
                if (n == 1) || matches!(name.as_str(), "mkOverride" | "mkOrder") && n == 2 =>
            {
                Shape::Pass(last)
            }
            _ => Shape::Unknown,
        },
        ("optional", 2) => Shape::Optional(args.remove(1)),
        ("optionals", 2) => Shape::Optionals(args.remove(1)),
        ("genAttrs", 2) => {
            let f = args.remove(1);
            Shape::GenAttrs(args.remove(0), f)
        }
        _ => Shape::Unknown,
    }
}

/// The transparent wrappers one context looks through, beyond the parentheses and
/// bound names every context looks through (see the table in the module's docs).
#[derive(Debug, Clone, Copy)]
pub(super) struct Wrappers {
    /// `with e; x` → x.
    with: bool,
    /// `assert c; x` → x.
    assert: bool,
    /// `let … in x` → x, with the bindings in scope.
    let_in: bool,
    /// `args: x` → x, with the parameters shadowing outer names.
    lambda: bool,
    /// `if c then x else y` → x and y, conditionally.
    if_else: bool,
    /// `x // y` → x and y.
    update: bool,
    /// `x ++ y` → x and y.
    concat: bool,
    /// `mkIf c x`, `optionalAttrs c x`, `optionalString c x` → x, conditionally.
    cond: bool,
    /// `mkDefault x`, `mkForce x`, `mkOverride n x`, … → x.
    pass: bool,
    /// `optionals c xs` → xs, conditionally.
    optionals: bool,
}

impl Wrappers {
    const NONE: Wrappers = Wrappers {
        with: false,
        assert: false,
        let_in: false,
        lambda: false,
        if_else: false,
        update: false,
        concat: false,
        cond: false,
        pass: false,
        optionals: false,
    };

    /// An option's value: the module, `systemd`, `systemd.<kind>` (not a list), a unit.
    pub(super) const VALUE: Wrappers = Wrappers {
        with: true,
        assert: true,
        let_in: true,
        lambda: true,
        if_else: true,
        update: true,
        cond: true,
        pass: true,
        ..Wrappers::NONE
    };

    /// The list of `systemd.mounts` / `systemd.automounts`.
    pub(super) const MOUNT_LIST: Wrappers = Wrappers {
        with: true,
        let_in: true,
        if_else: true,
        concat: true,
        cond: true,
        pass: true,
        optionals: true,
        ..Wrappers::NONE
    };

    /// The list argument of `mkMerge`.
    pub(super) const MERGE_LIST: Wrappers = Wrappers {
        concat: true,
        optionals: true,
        ..Wrappers::NONE
    };

    /// One element of `systemd.mounts` / `systemd.automounts`.
    pub(super) const MOUNT_ITEM: Wrappers = Wrappers {
        cond: true,
        pass: true,
        ..Wrappers::NONE
    };

    /// A service's `startAt` (whose `if` and `++` decide whether a timer exists, so
    /// they are not transparent there).
    pub(super) const START_AT: Wrappers = Wrappers {
        with: true,
        pass: true,
        ..Wrappers::NONE
    };

    /// A string that names a unit or a mount point.
    pub(super) const NAME: Wrappers = Wrappers {
        let_in: true,
        ..Wrappers::NONE
    };

    /// The list of names `genAttrs` is given.
    pub(super) const NAME_LIST: Wrappers = Wrappers::NONE;

    /// A unit's `enable` (a condition there leaves it undecided, so `mkIf` is not
    /// transparent).
    pub(super) const ENABLE: Wrappers = Wrappers {
        pass: true,
        ..Wrappers::NONE
    };
}

/// One step through a wrapper, or the expression the context must handle itself.
pub(super) enum Descent {
    /// A transparent wrapper: its inner expressions (one, or both branches or operands,
    /// in source order; `None` where the syntax tree has none) define where the wrapper
    /// does, evaluated in `scope`, under a condition when `cond`.
    Into {
        inner: [Option<Expr>; 2],
        scope: Scope,
        cond: bool,
    },
    /// A function call that is not transparent in this context, with its shape.
    Call(ast::Apply, Shape),
    /// Anything else, including a name bound to nothing the analysis can see.
    Core(Expr),
}

/// Take one step through `expr` if it is a wrapper `context` looks through. `cond` is
/// whether the wrapper itself sits under a condition; the step keeps it, or sets it for
/// conditional wrappers. One step only: the caller recurses, so its depth bound and
/// step budget count every wrapper.
pub(super) fn descend(expr: Expr, scope: &Scope, cond: bool, context: Wrappers) -> Descent {
    let into =
        |inner: [Option<Expr>; 2], scope: Scope, cond: bool| Descent::Into { inner, scope, cond };
    match expr {
        Expr::Paren(p) => into([p.expr(), None], scope.clone(), cond),
        Expr::Ident(id) => match id.ident_token().and_then(|t| lookup(scope, t.text())) {
            Some((bound, frame)) => into([Some(bound), None], Some(frame), cond),
            None => Descent::Core(Expr::Ident(id)),
        },
        Expr::With(w) if context.with => into([w.body(), None], scope.clone(), cond),
        Expr::Assert(a) if context.assert => into([a.body(), None], scope.clone(), cond),
        Expr::LetIn(l) if context.let_in => {
            into([l.body(), None], push_entries_frame(&l, scope), cond)
        }
        Expr::Lambda(l) if context.lambda => {
            into([l.body(), None], push_lambda_frame(&l, scope), cond)
        }
        Expr::IfElse(i) if context.if_else => into([i.body(), i.else_body()], scope.clone(), true),
        Expr::BinOp(b)
            if context.update && b.operator() == Some(BinOpKind::Update)
                || context.concat && b.operator() == Some(BinOpKind::Concat) =>
        {
            into([b.lhs(), b.rhs()], scope.clone(), cond)
        }
        Expr::Apply(app) => match shape(&app) {
            Shape::Cond(body) if context.cond => into([Some(body), None], scope.clone(), true),
            Shape::Pass(body) if context.pass => into([Some(body), None], scope.clone(), cond),
            Shape::Optionals(items) if context.optionals => {
                into([Some(items), None], scope.clone(), true)
            }
            other => Descent::Call(app, other),
        },
        other => Descent::Core(other),
    }
}
