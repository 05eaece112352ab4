//! The first pass: a structured walk from the module's top expression, the way the
//! module system merges it. It tracks the option path ([`Pos`]), whether the definition
//! sits under a condition, and the bindings in scope; it records declared units, and
//! `unresolved` entries for what it reaches but cannot name.
//!
//! Four walkers, one per kind of place a value can land: an option's value ([`walk`]:
//! attribute sets, nested or dotted), the argument of `mkMerge` ([`walk_merge`]), the
//! list of `systemd.mounts` ([`walk_list`]) and one of its items ([`walk_item`]). Each
//! takes its transparent wrappers through [`descend`], with the set its context looks
//! through.
//!
//! [`walk`]: Walker::walk
//! [`walk_merge`]: Walker::walk_merge
//! [`walk_list`]: Walker::walk_list
//! [`walk_item`]: Walker::walk_item

use std::collections::HashSet;

use rnix::ast::{self, Expr, HasEntry};
use rnix::{SyntaxNode, TextRange};
use rowan::ast::AstNode;

use super::option_tree::{Kind, Manager, Pos, UnitRef};
use super::resolve::{attr_name, classify_enable, classify_start_at, resolve_str, Enable};
use super::scope::{lookup, push_lambda_frame, set_scope, Scope};
use super::text::{excerpt, LineIndex};
use super::wrappers::{descend, flatten_apply, Descent, Shape, Wrappers};
use super::{Budget, MAX_DEPTH, MAX_RESOLVE_DEPTH};
use crate::escape::escape_path;
use crate::{FileUnits, Reason, UnitDecl, Unresolved};

/// `f a b` where `f` is a name bound by a `let` (or `rec`) in scope to a function
/// literal: that function, and the scope it is defined in.
fn local_function(app: &ast::Apply, scope: &Scope) -> Option<(Expr, Scope)> {
    let (mut head, _) = flatten_apply(app)?;
    while let Expr::Paren(p) = &head {
        head = p.expr()?;
    }
    let Expr::Ident(id) = head else { return None };
    let (mut bound, frame) = lookup(scope, id.ident_token()?.text())?;
    while let Expr::Paren(p) = &bound {
        bound = p.expr()?;
    }
    match bound {
        Expr::Lambda(_) => Some((bound, Some(frame))),
        _ => None,
    }
}

/// What the structured walk accounted for; the sweep reports what lies outside it.
#[derive(Default)]
pub(super) struct Reached {
    /// Attribute definitions the structured walk interpreted.
    pub(super) visited: HashSet<TextRange>,
    /// Subtrees fully accounted for (irrelevant to units, or a unit's body).
    pub(super) covered: HashSet<TextRange>,
}

pub(super) struct Walker<'a> {
    file: &'a str,
    lines: &'a LineIndex,
    out: FileUnits,
    reached: Reached,
    budget: Budget,
    /// The manager of the units below the definition being walked.
    manager: Manager,
    /// Units whose `enable` is neither `true` nor `false` as written: they exist only
    /// when it evaluates to true, so every declaration of them in the file is conditional.
    gated: HashSet<(String, Manager)>,
}

impl<'a> Walker<'a> {
    pub(super) fn new(file: &'a str, lines: &'a LineIndex, budget: Budget) -> Self {
        Walker {
            file,
            lines,
            out: FileUnits::default(),
            reached: Reached::default(),
            budget,
            manager: Manager::System,
            gated: HashSet::new(),
        }
    }

    /// Walk a file's top expression as a module.
    pub(super) fn walk_module(&mut self, expr: Expr) {
        self.walk(expr, &Pos::Root, false, &None, 0);
    }

    /// What was found, and what the walk accounted for.
    pub(super) fn finish(mut self) -> (FileUnits, Reached) {
        let gated = &self.gated;
        for (list, manager) in [
            (&mut self.out.units, Manager::System),
            (&mut self.out.user_units, Manager::User),
            (&mut self.out.initrd_units, Manager::Initrd),
        ] {
            for u in list.iter_mut() {
                if gated.contains(&(u.name.clone(), manager)) {
                    u.conditional = true;
                }
            }
        }
        (self.out, self.reached)
    }
}

impl Walker<'_> {
    fn line_of(&self, node: &SyntaxNode) -> u32 {
        self.lines.line_of(node)
    }

    /// An `unresolved` entry; below `systemd.user` or `boot.initrd.systemd` its reason is
    /// that manager (what is there is no unit of the host's system manager).
    fn unresolved(&mut self, node: &SyntaxNode, text: String, reason: Reason) {
        let line = self.line_of(node);
        self.out.unresolved.push(Unresolved {
            file: self.file.to_string(),
            line,
            text,
            reason: self.reason(reason),
        });
    }

    fn reason(&self, reason: Reason) -> Reason {
        match self.manager {
            Manager::System => reason,
            Manager::User => Reason::User,
            Manager::Initrd => Reason::Initrd,
        }
    }

    /// Where units of the current manager go.
    fn sink(&mut self) -> &mut Vec<UnitDecl> {
        match self.manager {
            Manager::System => &mut self.out.units,
            Manager::User => &mut self.out.user_units,
            Manager::Initrd => &mut self.out.initrd_units,
        }
    }

    fn too_deep(&mut self, expr: &Expr, pos: &Pos) {
        self.unresolved(
            expr.syntax(),
            format!(
                "{} = {} (nested too deeply to analyse)",
                pos.describe(),
                excerpt(&expr.syntax().text().to_string())
            ),
            Reason::AnalysisLimit,
        );
    }

    fn record(&mut self, unit: &UnitRef, cond: bool) {
        if let Some(name) = &unit.name {
            let decl = UnitDecl {
                name: name.clone(),
                file: self.file.to_string(),
                line: unit.line,
                conditional: cond,
                overrides: false,
            };
            self.sink().push(decl);
        }
    }

    /// Walk an expression whose value is defined at `pos`.
    fn walk(&mut self, expr: Expr, pos: &Pos, cond: bool, scope: &Scope, depth: u32) {
        if !self.budget.spend() {
            return;
        }
        if depth > MAX_DEPTH {
            return self.too_deep(&expr, pos);
        }
        match pos {
            Pos::StartAt(u) => {
                let u = u.clone();
                self.reached.covered.insert(expr.syntax().text_range());
                self.start_at(&u, &expr, cond, scope);
                return;
            }
            Pos::Kind(k) if k.is_list() => {
                self.walk_list(expr, *k, cond, scope, depth);
                return;
            }
            _ => {}
        }
        let set_of_units = matches!(pos, Pos::Kind(k) if !k.is_list());
        match descend(expr, scope, cond, Wrappers::VALUE) {
            Descent::Into { inner, scope, cond } => {
                for e in inner.into_iter().flatten() {
                    self.walk(e, pos, cond, &scope, depth + 1);
                }
            }
            Descent::Call(_, Shape::Merge(list)) => {
                self.walk_merge(list, pos, cond, scope, depth + 1)
            }
            Descent::Call(app, Shape::GenAttrs(names, f)) if set_of_units => {
                self.gen_attrs(&app, names, f, pos, cond, scope, depth + 1)
            }
            Descent::Call(app, Shape::Unknown) => match local_function(&app, scope) {
                // A function defined in this file (`let mkFetcher = name: { … };`): its
                // body defines here, its parameters unknown.
                Some((f, fscope)) => {
                    // The unit exists whatever its body turns out to be.
                    if let Pos::Unit(u) = pos {
                        self.record(u, cond);
                    }
                    self.reached.covered.insert(app.syntax().text_range());
                    self.walk(f, pos, cond, &fscope, depth + 1)
                }
                None => self.opaque(&Expr::Apply(app), pos, cond),
            },
            Descent::Call(app, _) => self.opaque(&Expr::Apply(app), pos, cond),
            Descent::Core(Expr::AttrSet(set)) => {
                if let Pos::Unit(u) = pos {
                    self.record(u, cond);
                }
                let inner = set_scope(&set, scope);
                for entry in set.entries() {
                    match entry {
                        ast::Entry::AttrpathValue(apv) => {
                            self.entry(&apv, pos, cond, &inner, depth + 1)
                        }
                        ast::Entry::Inherit(inh) => self.inherit(&inh, pos, cond, &inner),
                    }
                }
            }
            Descent::Core(other) => self.opaque(&other, pos, cond),
        }
    }

    /// An expression the walk cannot see into, defined at `pos`.
    fn opaque(&mut self, expr: &Expr, pos: &Pos, cond: bool) {
        match pos {
            // Not a module-shaped top level (e.g. a package expression): nothing is
            // declared here; the sweep still reports unit-like definitions inside.
            Pos::Root | Pos::Modules | Pos::Boot | Pos::Initrd => {}
            Pos::Unit(u) => {
                self.record(u, cond);
                self.reached.covered.insert(expr.syntax().text_range());
                // What a function returns may set `startAt` (a timer), `enable`, …: the
                // unit is recorded, and what the function adds is listed, not guessed.
                if let Expr::Apply(_) = expr {
                    let text = format!(
                        "{} = {} (the result of a function: a startAt, an enable or another setting it returns is not seen)",
                        pos.describe(),
                        excerpt(&expr.syntax().text().to_string())
                    );
                    self.unresolved(expr.syntax(), text, Reason::FunctionResult);
                }
            }
            Pos::Systemd | Pos::Kind(_) | Pos::MountItem(_) | Pos::StartAt(_) => {
                self.reached.covered.insert(expr.syntax().text_range());
                let text = format!(
                    "{} = {}",
                    pos.describe(),
                    excerpt(&expr.syntax().text().to_string())
                );
                // A set (or list) of units whose names only evaluation gives.
                self.unresolved(expr.syntax(), text, Reason::ComputedName);
            }
        }
    }

    /// `systemd.<kind> = genAttrs [ "a" "b" ] (name: { … })`: one unit per literal name
    /// (the function's body is each unit's definition); names that are not literals make
    /// the whole expression unresolved.
    #[allow(clippy::too_many_arguments)]
    fn gen_attrs(
        &mut self,
        app: &ast::Apply,
        names: Expr,
        f: Expr,
        pos: &Pos,
        cond: bool,
        scope: &Scope,
        depth: u32,
    ) {
        let Pos::Kind(kind) = pos else { return };
        let b = &self.budget.clone();
        let mut list = names;
        let mut list_scope = scope.clone();
        // Follow parens and `let`-bound names to the list literal.
        for _ in 0..MAX_RESOLVE_DEPTH {
            match descend(list.clone(), &list_scope, cond, Wrappers::NAME_LIST) {
                Descent::Into {
                    inner: [Some(e), None],
                    scope,
                    ..
                } => {
                    list = e;
                    list_scope = scope;
                }
                _ => break,
            }
        }
        let items: Option<Vec<(String, SyntaxNode)>> = match &list {
            Expr::List(l) => l
                .items()
                .map(|i| resolve_str(&i, &list_scope, 0, b).map(|n| (n, i.syntax().clone())))
                .collect(),
            _ => None,
        };
        let Some(items) = items else {
            return self.opaque(&Expr::Apply(app.clone()), pos, cond);
        };
        self.reached.covered.insert(app.syntax().text_range());
        // Only parentheses around the function: a name bound to one is not followed.
        let mut f = f;
        while let Expr::Paren(p) = &f {
            match p.expr() {
                Some(e) => f = e,
                None => break,
            }
        }
        for (name, node) in items {
            let unit = UnitRef {
                kind: *kind,
                name: Some(format!("{name}.{}", kind.suffix())),
                path_text: format!("{}.{name}", pos.describe()),
                line: self.line_of(&node),
            };
            match &f {
                Expr::Lambda(l) => {
                    let inner = push_lambda_frame(l, scope);
                    match l.body() {
                        Some(body) => self.walk(body, &Pos::Unit(unit), cond, &inner, depth + 1),
                        None => self.record(&unit, cond),
                    }
                }
                _ => self.record(&unit, cond),
            }
        }
    }

    /// `mkMerge <list>`: every element defines at `pos`.
    fn walk_merge(&mut self, list: Expr, pos: &Pos, cond: bool, scope: &Scope, depth: u32) {
        if !self.budget.spend() {
            return;
        }
        if depth > MAX_DEPTH {
            return self.walk(list, pos, cond, scope, depth);
        }
        match descend(list, scope, cond, Wrappers::MERGE_LIST) {
            Descent::Into { inner, scope, cond } => {
                for e in inner.into_iter().flatten() {
                    self.walk_merge(e, pos, cond, &scope, depth + 1);
                }
            }
            Descent::Call(_, Shape::Optional(item)) => self.walk(item, pos, true, scope, depth + 1),
            Descent::Call(app, _) => self.opaque(&Expr::Apply(app), pos, cond),
            Descent::Core(Expr::List(l)) => {
                for item in l.items() {
                    self.walk(item, pos, cond, scope, depth + 1);
                }
            }
            Descent::Core(other) => self.opaque(&other, pos, cond),
        }
    }

    /// `systemd.mounts = <list>`.
    fn walk_list(&mut self, expr: Expr, kind: Kind, cond: bool, scope: &Scope, depth: u32) {
        if !self.budget.spend() {
            return;
        }
        let pos = Pos::Kind(kind);
        if depth > MAX_DEPTH {
            return self.too_deep(&expr, &pos);
        }
        match descend(expr, scope, cond, Wrappers::MOUNT_LIST) {
            Descent::Into { inner, scope, cond } => {
                for e in inner.into_iter().flatten() {
                    self.walk_list(e, kind, cond, &scope, depth + 1);
                }
            }
            Descent::Call(_, Shape::Optional(item)) => {
                self.walk_item(item, kind, true, scope, depth + 1)
            }
            // mkMerge of lists: each element is itself a list of mounts.
            Descent::Call(_, Shape::Merge(list)) => match list {
                Expr::List(l) => {
                    for e in l.items() {
                        self.walk_list(e, kind, cond, scope, depth + 1);
                    }
                }
                other => self.opaque(&other, &pos, cond),
            },
            Descent::Call(app, _) => self.opaque(&Expr::Apply(app), &pos, cond),
            Descent::Core(Expr::List(l)) => {
                for item in l.items() {
                    self.walk_item(item, kind, cond, scope, depth + 1);
                }
            }
            Descent::Core(other) => self.opaque(&other, &pos, cond),
        }
    }

    /// One element of `systemd.mounts`: `{ where = "/a/b"; … }`.
    fn walk_item(&mut self, expr: Expr, kind: Kind, cond: bool, scope: &Scope, depth: u32) {
        if !self.budget.spend() {
            return;
        }
        let pos = Pos::MountItem(kind);
        if depth > MAX_DEPTH {
            return self.opaque(&expr, &pos, cond);
        }
        match descend(expr, scope, cond, Wrappers::MOUNT_ITEM) {
            Descent::Into { inner, scope, cond } => {
                for e in inner.into_iter().flatten() {
                    self.walk_item(e, kind, cond, &scope, depth + 1);
                }
            }
            Descent::Call(app, _) => self.opaque(&Expr::Apply(app), &pos, cond),
            Descent::Core(Expr::AttrSet(set)) => self.mount(&set, kind, cond, scope),
            Descent::Core(other) => self.opaque(&other, &pos, cond),
        }
    }

    /// A mount list item's attribute set: the unit is named by its literal `where`.
    fn mount(&mut self, set: &ast::AttrSet, kind: Kind, cond: bool, scope: &Scope) {
        let b = &self.budget.clone();
        self.reached.covered.insert(set.syntax().text_range());
        let inner = set_scope(set, scope);
        let where_def = set.attrpath_values().find(|apv| {
            let attrs: Vec<ast::Attr> = apv
                .attrpath()
                .map(|p| p.attrs().collect())
                .unwrap_or_default();
            matches!(attrs.as_slice(), [a] if attr_name(a, &inner, b).as_deref() == Some("where"))
        });
        match where_def {
            Some(apv) => {
                let path = apv.value().and_then(|v| resolve_str(&v, &inner, 0, b));
                match path {
                    Some(p) => {
                        let line = self.line_of(apv.syntax());
                        let decl = UnitDecl {
                            name: format!("{}.{}", escape_path(&p), kind.suffix()),
                            file: self.file.to_string(),
                            line,
                            conditional: cond,
                            overrides: false,
                        };
                        self.sink().push(decl);
                    }
                    None => {
                        let text = format!(
                            "systemd.{} item: {}",
                            kind.option(),
                            excerpt(&apv.syntax().text().to_string())
                        );
                        self.unresolved(apv.syntax(), text, Reason::ComputedName);
                    }
                }
            }
            None => {
                let text = format!(
                    "systemd.{} item without a literal `where`: {}",
                    kind.option(),
                    excerpt(&set.syntax().text().to_string())
                );
                self.unresolved(set.syntax(), text, Reason::ComputedName);
            }
        }
    }

    /// `inherit a b;` / `inherit (x) a b;` inside an attribute set at `pos`.
    fn inherit(&mut self, inh: &ast::Inherit, pos: &Pos, cond: bool, scope: &Scope) {
        let b = &self.budget.clone();
        self.reached.covered.insert(inh.syntax().text_range());
        for attr in inh.attrs() {
            let name = attr_name(&attr, scope, b);
            let next = match (pos, name) {
                (Pos::Root, Some(n)) if n == "systemd" => Some(Pos::Systemd),
                (Pos::Initrd, Some(n)) if n == "systemd" => Some(Pos::Systemd),
                (Pos::Systemd, Some(n)) => Kind::from_option(&n).map(Pos::Kind),
                (Pos::Kind(k), Some(n)) if !k.is_list() => {
                    let unit = UnitRef {
                        kind: *k,
                        name: Some(format!("{n}.{}", k.suffix())),
                        path_text: format!("{}.{n}", pos.describe()),
                        line: self.line_of(attr.syntax()),
                    };
                    self.record(&unit, cond);
                    None
                }
                (Pos::Unit(u), Some(n)) if n == "startAt" && u.kind == Kind::Service => {
                    Some(Pos::StartAt(u.clone()))
                }
                _ => None,
            };
            if let Some(p) = next {
                // The inherited value lives elsewhere; we cannot see what it holds.
                let text = format!(
                    "{} (inherited: {})",
                    p.describe(),
                    excerpt(&inh.syntax().text().to_string())
                );
                self.unresolved(attr.syntax(), text, Reason::Inherited);
            }
        }
    }

    /// One `path = value;` definition inside an attribute set at `pos`. The manager its
    /// path leads to (`systemd.user`, `boot.initrd.systemd`) holds for its value only.
    fn entry(
        &mut self,
        apv: &ast::AttrpathValue,
        pos: &Pos,
        cond: bool,
        scope: &Scope,
        depth: u32,
    ) {
        let saved = self.manager;
        self.entry_in_manager(apv, pos, cond, scope, depth);
        self.manager = saved;
    }

    fn entry_in_manager(
        &mut self,
        apv: &ast::AttrpathValue,
        pos: &Pos,
        cond: bool,
        scope: &Scope,
        depth: u32,
    ) {
        let b = &self.budget.clone();
        self.reached.visited.insert(apv.syntax().text_range());
        let Some(path) = apv.attrpath() else { return };
        let attrs: Vec<ast::Attr> = path.attrs().collect();
        let mut cur = pos.clone();
        let mut text_path = match pos {
            Pos::Root => String::new(),
            p => p.describe(),
        };
        for (i, attr) in attrs.iter().enumerate() {
            let seg = attr.syntax().text().to_string();
            text_path = if text_path.is_empty() {
                seg
            } else {
                format!("{text_path}.{seg}")
            };
            if let Pos::Unit(u) = &cur {
                // Passing through a unit on the way to one of its settings.
                let u = u.clone();
                self.record(&u, cond);
            }
            let next = match &cur {
                Pos::Root => match attr_name(attr, scope, b).as_deref() {
                    // A flake's `outputs`, and its `nixosModule` / `nixosModules.<name>`
                    // (modules defined inline) are walked like a module's top level.
                    Some("config" | "outputs" | "nixosModule") => Some(Pos::Root),
                    Some("nixosModules") => Some(Pos::Modules),
                    Some("systemd") => Some(Pos::Systemd),
                    Some("boot") => Some(Pos::Boot),
                    // Option declarations and module plumbing declare no unit.
                    Some(
                        "options" | "imports" | "disabledModules" | "meta" | "_file" | "key"
                        | "assertions" | "warnings",
                    ) => None,
                    // Other option paths (`services.x`, `containers.x.config`, a VM
                    // test's `nodes.x`): not walked, and left to the sweep, which reports
                    // any unit-like definition inside as unresolved.
                    _ => {
                        self.reached.visited.remove(&apv.syntax().text_range());
                        return;
                    }
                },
                Pos::Modules => Some(Pos::Root),
                Pos::Boot => match attr_name(attr, scope, b).as_deref() {
                    Some("initrd") => Some(Pos::Initrd),
                    _ => None,
                },
                Pos::Initrd => match attr_name(attr, scope, b).as_deref() {
                    Some("systemd") => {
                        self.manager = Manager::Initrd;
                        Some(Pos::Systemd)
                    }
                    _ => None,
                },
                Pos::Systemd => match attr_name(attr, scope, b).as_deref() {
                    Some("user") if self.manager == Manager::System => {
                        self.manager = Manager::User;
                        Some(Pos::Systemd)
                    }
                    name => name.and_then(Kind::from_option).map(Pos::Kind),
                },
                Pos::Kind(k) if !k.is_list() => {
                    let name = attr_name(attr, scope, b);
                    let base = text_path.clone();
                    let line = self.line_of(attr.syntax());
                    if name.is_none() {
                        self.unresolved(attr.syntax(), excerpt(&base), Reason::ComputedName);
                    }
                    Some(Pos::Unit(UnitRef {
                        kind: *k,
                        name: name.map(|n| format!("{n}.{}", k.suffix())),
                        path_text: excerpt(&base),
                        line,
                    }))
                }
                // `enable = false`: NixOS masks the unit (a link to /dev/null), it is not
                // a unit present on the host. `enable = <anything but a literal>`: the unit
                // exists only when that is true.
                Pos::Unit(u)
                    if i + 1 == attrs.len()
                        && attr_name(attr, scope, b).as_deref() == Some("enable") =>
                {
                    let how = apv
                        .value()
                        .map(|v| classify_enable(&v, scope, 0, b))
                        .unwrap_or(Enable::Unknown);
                    if let Some(name) = &u.name {
                        match how {
                            Enable::True => {}
                            Enable::False if self.manager == Manager::System => {
                                self.out.masked.push(UnitDecl {
                                    name: name.clone(),
                                    file: self.file.to_string(),
                                    line: u.line,
                                    conditional: cond,
                                    overrides: false,
                                });
                            }
                            Enable::False | Enable::Unknown => {
                                self.gated.insert((name.clone(), self.manager));
                            }
                        }
                    }
                    None
                }
                Pos::Unit(u) if u.kind == Kind::Service => {
                    match attr_name(attr, scope, b).as_deref() {
                        Some("startAt") => Some(Pos::StartAt(u.clone())),
                        _ => None,
                    }
                }
                _ => None,
            };
            match next {
                Some(p) => cur = p,
                None => {
                    self.reached.covered.insert(apv.syntax().text_range());
                    return;
                }
            }
        }
        if let Some(value) = apv.value() {
            self.walk(value, &cur, cond, scope, depth + 1);
        }
    }

    /// `startAt = …` of a service: it implies `<service>.timer` unless provably empty.
    fn start_at(&mut self, unit: &UnitRef, value: &Expr, cond: bool, scope: &Scope) {
        let b = &self.budget.clone();
        let Some(timer_cond) = classify_start_at(value, scope, 0, b) else {
            return;
        };
        let line = self.line_of(value.syntax().parent().as_ref().unwrap_or(value.syntax()));
        match &unit.name {
            Some(name) => {
                let stem = name.strip_suffix(".service").unwrap_or(name);
                let decl = UnitDecl {
                    name: format!("{stem}.timer"),
                    file: self.file.to_string(),
                    line,
                    conditional: cond || timer_cond,
                    overrides: false,
                };
                self.sink().push(decl);
            }
            None => {
                let text = format!(
                    "{}.startAt (implies a .timer of an unresolved service)",
                    unit.path_text
                );
                let reason = self.reason(Reason::ComputedName);
                self.out.unresolved.push(Unresolved {
                    file: self.file.to_string(),
                    line,
                    text,
                    reason,
                });
            }
        }
    }
}
