//! The unit extractor: walks the rnix syntax tree of one NixOS module the way the module
//! system merges it, tracking the option path (`systemd.services.<name>` …), whether the
//! definition sits under a condition, and the `let` bindings in scope.
//!
//! Two passes:
//! 1. a structured walk from the module's top expression that understands attribute
//!    sets (nested or dotted), `let`, `with`, `rec`, wrappers (`mkIf`, `mkMerge`,
//!    `mkDefault`, `mkForce`, `mkOverride`, `optionalAttrs`, `optional(s)`), `//`, `++`,
//!    `if … then … else …` and references to `let`-bound expressions;
//! 2. a syntactic sweep over every attribute definition in the file that *looks* like a
//!    unit declaration (`systemd.<kind>…`, or `<kind>…` directly inside `systemd = { }`)
//!    but that the structured walk never reached — e.g. inside the argument of an
//!    unknown function. Those are reported as `unresolved`, so nothing is dropped.
//!
//! Comments never reach the syntax tree's expressions; string contents are only ever
//! read as names (`"foo-bar"`, `where = "/a/b"`), and definitions inside a string
//! interpolation are not declarations.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use rnix::ast::{self, BinOpKind, Expr, HasEntry, InterpolPart};
use rnix::{SyntaxKind, SyntaxNode, TextRange};
use rowan::ast::AstNode;

use crate::escape::escape_path;
use crate::{FileUnits, NixError, UnitDecl, Unresolved};

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

/// Largest file analysed; a Nix module is a few kB, a generated package set a few MB.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

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
    let mut w = Walker {
        file,
        lines: &lines,
        out: FileUnits::default(),
        visited: HashSet::new(),
        covered: HashSet::new(),
        budget: Budget::new(MAX_STEPS),
    };
    if let Some(expr) = root.expr() {
        w.walk(expr, &Pos::Root, false, &None, 0);
    }
    if w.budget.exhausted() {
        w.out.unresolved.push(Unresolved {
            file: file.to_string(),
            line: 1,
            text: format!(
                "analysis stopped after {MAX_STEPS} steps (bindings too self-referential); units of this file may be missing"
            ),
        });
    } else {
        w.sweep(root.syntax());
    }
    Ok(normalise(w.out))
}

/// Sort, and merge duplicate declarations of one unit in one file: the first line wins,
/// and the unit is conditional only if every declaration is.
pub(crate) fn normalise(mut fu: FileUnits) -> FileUnits {
    let mut merged: HashMap<(String, String), UnitDecl> = HashMap::new();
    for u in fu.units.drain(..) {
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
    let mut unresolved = fu.unresolved;
    unresolved.sort();
    unresolved.dedup();
    FileUnits { units, unresolved }
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

struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(src: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    /// 1-based line and column (in bytes) of a byte offset.
    fn line_col(&self, offset: usize) -> (u32, u32) {
        let idx = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let col = offset - self.starts.get(idx).copied().unwrap_or(0);
        (
            u32::try_from(idx + 1).unwrap_or(u32::MAX),
            u32::try_from(col + 1).unwrap_or(u32::MAX),
        )
    }
}

/// Unit families under `systemd.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Service,
    Timer,
    Socket,
    Path,
    Target,
    Slice,
    Mount,
    Automount,
}

impl Kind {
    fn from_option(name: &str) -> Option<Kind> {
        Some(match name {
            "services" => Kind::Service,
            "timers" => Kind::Timer,
            "sockets" => Kind::Socket,
            "paths" => Kind::Path,
            "targets" => Kind::Target,
            "slices" => Kind::Slice,
            "mounts" => Kind::Mount,
            "automounts" => Kind::Automount,
            _ => return None,
        })
    }

    fn option(self) -> &'static str {
        match self {
            Kind::Service => "services",
            Kind::Timer => "timers",
            Kind::Socket => "sockets",
            Kind::Path => "paths",
            Kind::Target => "targets",
            Kind::Slice => "slices",
            Kind::Mount => "mounts",
            Kind::Automount => "automounts",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Timer => "timer",
            Kind::Socket => "socket",
            Kind::Path => "path",
            Kind::Target => "target",
            Kind::Slice => "slice",
            Kind::Mount => "mount",
            Kind::Automount => "automount",
        }
    }

    /// `systemd.mounts` and `systemd.automounts` are lists keyed by `where`.
    fn is_list(self) -> bool {
        matches!(self, Kind::Mount | Kind::Automount)
    }
}

#[derive(Debug, Clone)]
struct UnitRef {
    kind: Kind,
    /// Full unit name, `None` when the name could not be resolved.
    name: Option<String>,
    /// Source text of the option path, for `unresolved` entries.
    path_text: String,
    line: u32,
}

/// Where in the option tree an expression's value lands.
#[derive(Debug, Clone)]
enum Pos {
    /// The module's top level (also under `config`).
    Root,
    /// `systemd`.
    Systemd,
    /// `systemd.<kind>`: an attribute set of units (or a list, for mounts).
    Kind(Kind),
    /// `systemd.<kind>.<name>`: one unit's definition.
    Unit(UnitRef),
    /// `systemd.services.<name>.startAt`.
    StartAt(UnitRef),
    /// One element of `systemd.mounts` / `systemd.automounts`.
    MountItem(Kind),
    /// A flake's `nixosModules`: each attribute is a module.
    Modules,
}

impl Pos {
    fn describe(&self) -> String {
        match self {
            Pos::Root => "<module>".to_string(),
            Pos::Systemd => "systemd".to_string(),
            Pos::Kind(k) => format!("systemd.{}", k.option()),
            Pos::Unit(u) => u.path_text.clone(),
            Pos::StartAt(u) => format!("{}.startAt", u.path_text),
            Pos::MountItem(k) => format!("systemd.{} item", k.option()),
            Pos::Modules => "nixosModules".to_string(),
        }
    }
}

/// A `let` (or `rec`, or lambda-parameter) frame. `None` marks a name bound to
/// something opaque (a lambda parameter, an `inherit`, a dotted binding) that shadows
/// outer bindings.
struct Frame {
    vars: HashMap<String, Option<Expr>>,
    parent: Scope,
}

type Scope = Option<Rc<Frame>>;

/// Look a name up; `Some((expr, frame))` when it is bound to an expression in `frame`
/// (whose scope the expression must be evaluated in: `let` is recursive).
fn lookup(scope: &Scope, name: &str) -> Option<(Expr, Rc<Frame>)> {
    let mut cur = scope.clone();
    while let Some(frame) = cur {
        if let Some(v) = frame.vars.get(name) {
            return v.clone().map(|e| (e, frame.clone()));
        }
        cur = frame.parent.clone();
    }
    None
}

fn push_entries_frame<N: HasEntry>(node: &N, parent: &Scope) -> Scope {
    let mut vars = HashMap::new();
    for entry in node.entries() {
        match entry {
            ast::Entry::AttrpathValue(apv) => {
                let Some(path) = apv.attrpath() else { continue };
                let attrs: Vec<ast::Attr> = path.attrs().collect();
                if let [ast::Attr::Ident(id)] = attrs.as_slice() {
                    if let Some(tok) = id.ident_token() {
                        vars.insert(tok.text().to_string(), apv.value());
                    }
                } else if let Some(ast::Attr::Ident(id)) = attrs.first() {
                    if let Some(tok) = id.ident_token() {
                        vars.insert(tok.text().to_string(), None);
                    }
                }
            }
            ast::Entry::Inherit(inh) => {
                for a in inh.attrs() {
                    if let ast::Attr::Ident(id) = a {
                        if let Some(tok) = id.ident_token() {
                            vars.insert(tok.text().to_string(), None);
                        }
                    }
                }
            }
        }
    }
    Some(Rc::new(Frame {
        vars,
        parent: parent.clone(),
    }))
}

fn push_lambda_frame(lambda: &ast::Lambda, parent: &Scope) -> Scope {
    let mut vars = HashMap::new();
    let mut bind = |id: Option<ast::Ident>| {
        if let Some(tok) = id.and_then(|i| i.ident_token()) {
            vars.insert(tok.text().to_string(), None);
        }
    };
    match lambda.param() {
        Some(ast::Param::IdentParam(p)) => bind(p.ident()),
        Some(ast::Param::Pattern(p)) => {
            for e in p.pat_entries() {
                bind(e.ident());
            }
            if let Some(b) = p.pat_bind() {
                bind(b.ident());
            }
        }
        None => {}
    }
    Some(Rc::new(Frame {
        vars,
        parent: parent.clone(),
    }))
}

/// Resolve an expression to a constant string: string literals, interpolations of
/// names bound to such strings, `+` of those.
fn resolve_str(expr: &Expr, scope: &Scope, depth: u32, b: &Budget) -> Option<String> {
    if depth > MAX_RESOLVE_DEPTH || !b.spend() {
        return None;
    }
    match expr {
        Expr::Str(s) => resolve_str_node(s, scope, depth, b),
        Expr::Paren(p) => resolve_str(&p.expr()?, scope, depth + 1, b),
        Expr::LetIn(l) => {
            let inner = push_entries_frame(l, scope);
            resolve_str(&l.body()?, &inner, depth + 1, b)
        }
        Expr::Ident(id) => {
            let name = id.ident_token()?.text().to_string();
            let (bound, frame) = lookup(scope, &name)?;
            resolve_str(&bound, &Some(frame), depth + 1, b)
        }
        Expr::BinOp(op) if op.operator() == Some(BinOpKind::Add) => {
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

fn resolve_str_node(s: &ast::Str, scope: &Scope, depth: u32, b: &Budget) -> Option<String> {
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

fn attr_name(attr: &ast::Attr, scope: &Scope, b: &Budget) -> Option<String> {
    match attr {
        ast::Attr::Ident(id) => Some(id.ident_token()?.text().to_string()),
        ast::Attr::Str(s) => resolve_str_node(s, scope, 0, b),
        ast::Attr::Dynamic(d) => resolve_str(&d.expr()?, scope, 0, b),
    }
}

/// The name of the function an application calls: `mkIf`, `lib.mkIf`,
/// `lib.modules.mkIf` all give `mkIf`.
fn head_name(head: &Expr) -> Option<String> {
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
fn flatten_apply(app: &ast::Apply) -> Option<(Expr, Vec<Expr>)> {
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
enum Shape {
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

fn shape(app: &ast::Apply) -> Shape {
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

/// Collapse whitespace and shorten long source text.
fn excerpt(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() > MAX_TEXT {
        let mut s: String = collapsed.chars().take(MAX_TEXT).collect();
        s.push('…');
        s
    } else {
        collapsed
    }
}

struct Walker<'a> {
    file: &'a str,
    lines: &'a LineIndex,
    out: FileUnits,
    /// Attribute definitions the structured walk interpreted.
    visited: HashSet<TextRange>,
    /// Subtrees fully accounted for (irrelevant to units, or a unit's body).
    covered: HashSet<TextRange>,
    budget: Budget,
}

impl Walker<'_> {
    fn line_of(&self, node: &SyntaxNode) -> u32 {
        // Skip leading trivia: a node's range starts at its first token.
        let start = node
            .first_token()
            .map(|t| {
                let mut t = t;
                while matches!(
                    t.kind(),
                    SyntaxKind::TOKEN_WHITESPACE | SyntaxKind::TOKEN_COMMENT
                ) {
                    match t.next_token() {
                        Some(n) => t = n,
                        None => break,
                    }
                }
                t.text_range().start()
            })
            .unwrap_or_else(|| node.text_range().start());
        self.lines.line_col(usize::from(start)).0
    }

    fn unresolved(&mut self, node: &SyntaxNode, text: String) {
        let line = self.line_of(node);
        self.out.unresolved.push(Unresolved {
            file: self.file.to_string(),
            line,
            text,
        });
    }

    fn record(&mut self, unit: &UnitRef, cond: bool) {
        if let Some(name) = &unit.name {
            self.out.units.push(UnitDecl {
                name: name.clone(),
                file: self.file.to_string(),
                line: unit.line,
                conditional: cond,
            });
        }
    }

    /// Walk an expression whose value is defined at `pos`.
    fn walk(&mut self, expr: Expr, pos: &Pos, cond: bool, scope: &Scope, depth: u32) {
        if !self.budget.spend() {
            return;
        }
        if depth > MAX_DEPTH {
            self.unresolved(
                expr.syntax(),
                format!(
                    "{} = {} (nested too deeply to analyse)",
                    pos.describe(),
                    excerpt(&expr.syntax().text().to_string())
                ),
            );
            return;
        }
        match pos {
            Pos::StartAt(u) => {
                let u = u.clone();
                self.covered.insert(expr.syntax().text_range());
                self.start_at(&u, &expr, cond, scope);
                return;
            }
            Pos::Kind(k) if k.is_list() => {
                self.walk_list(expr, *k, cond, scope, depth);
                return;
            }
            _ => {}
        }
        match expr {
            Expr::Paren(p) => {
                if let Some(e) = p.expr() {
                    self.walk(e, pos, cond, scope, depth + 1);
                }
            }
            Expr::With(w) => {
                if let Some(e) = w.body() {
                    self.walk(e, pos, cond, scope, depth + 1);
                }
            }
            Expr::Assert(a) => {
                if let Some(e) = a.body() {
                    self.walk(e, pos, cond, scope, depth + 1);
                }
            }
            Expr::LetIn(l) => {
                let inner = push_entries_frame(&l, scope);
                if let Some(e) = l.body() {
                    self.walk(e, pos, cond, &inner, depth + 1);
                }
            }
            Expr::Lambda(l) => {
                let inner = push_lambda_frame(&l, scope);
                if let Some(e) = l.body() {
                    self.walk(e, pos, cond, &inner, depth + 1);
                }
            }
            Expr::IfElse(i) => {
                for e in [i.body(), i.else_body()].into_iter().flatten() {
                    self.walk(e, pos, true, scope, depth + 1);
                }
            }
            Expr::BinOp(b) if b.operator() == Some(BinOpKind::Update) => {
                for e in [b.lhs(), b.rhs()].into_iter().flatten() {
                    self.walk(e, pos, cond, scope, depth + 1);
                }
            }
            Expr::AttrSet(set) => {
                if let Pos::Unit(u) = pos {
                    self.record(u, cond);
                }
                let inner = if set.rec_token().is_some() {
                    push_entries_frame(&set, scope)
                } else {
                    scope.clone()
                };
                for entry in set.entries() {
                    match entry {
                        ast::Entry::AttrpathValue(apv) => {
                            self.entry(&apv, pos, cond, &inner, depth + 1)
                        }
                        ast::Entry::Inherit(inh) => self.inherit(&inh, pos, cond, &inner),
                    }
                }
            }
            Expr::Apply(app) => match shape(&app) {
                Shape::Cond(body) => self.walk(body, pos, true, scope, depth + 1),
                Shape::Pass(body) => self.walk(body, pos, cond, scope, depth + 1),
                Shape::Merge(list) => self.walk_merge(list, pos, cond, scope, depth + 1),
                Shape::GenAttrs(names, f) if matches!(pos, Pos::Kind(k) if !k.is_list()) => {
                    self.gen_attrs(&app, names, f, pos, cond, scope, depth + 1)
                }
                Shape::Optional(_) | Shape::Optionals(_) | Shape::GenAttrs(..) | Shape::Unknown => {
                    self.opaque(&Expr::Apply(app), pos, cond)
                }
            },
            Expr::Ident(id) => {
                let bound = id.ident_token().and_then(|t| lookup(scope, t.text()));
                match bound {
                    Some((e, frame)) => self.walk(e, pos, cond, &Some(frame), depth + 1),
                    None => self.opaque(&Expr::Ident(id), pos, cond),
                }
            }
            other => self.opaque(&other, pos, cond),
        }
    }

    /// An expression the walk cannot see into, defined at `pos`.
    fn opaque(&mut self, expr: &Expr, pos: &Pos, cond: bool) {
        match pos {
            // Not a module-shaped top level (e.g. a package expression): nothing is
            // declared here; the sweep still reports unit-like definitions inside.
            Pos::Root | Pos::Modules => {}
            Pos::Unit(u) => {
                self.record(u, cond);
                self.covered.insert(expr.syntax().text_range());
            }
            Pos::Systemd | Pos::Kind(_) | Pos::MountItem(_) | Pos::StartAt(_) => {
                self.covered.insert(expr.syntax().text_range());
                let text = format!(
                    "{} = {}",
                    pos.describe(),
                    excerpt(&expr.syntax().text().to_string())
                );
                self.unresolved(expr.syntax(), text);
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
            let next = match &list {
                Expr::Paren(p) => p.expr().map(|e| (e, list_scope.clone())),
                Expr::Ident(id) => id
                    .ident_token()
                    .and_then(|t| lookup(&list_scope, t.text()))
                    .map(|(e, frame)| (e, Some(frame))),
                _ => None,
            };
            match next {
                Some((e, sc)) => {
                    list = e;
                    list_scope = sc;
                }
                None => break,
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
        self.covered.insert(app.syntax().text_range());
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
        match list {
            Expr::List(l) => {
                for item in l.items() {
                    self.walk(item, pos, cond, scope, depth + 1);
                }
            }
            Expr::Paren(p) => {
                if let Some(e) = p.expr() {
                    self.walk_merge(e, pos, cond, scope, depth + 1);
                }
            }
            Expr::BinOp(b) if b.operator() == Some(BinOpKind::Concat) => {
                for e in [b.lhs(), b.rhs()].into_iter().flatten() {
                    self.walk_merge(e, pos, cond, scope, depth + 1);
                }
            }
            Expr::Apply(app) => match shape(&app) {
                Shape::Optional(item) => self.walk(item, pos, true, scope, depth + 1),
                Shape::Optionals(items) => self.walk_merge(items, pos, true, scope, depth + 1),
                _ => self.opaque(&Expr::Apply(app), pos, cond),
            },
            Expr::Ident(id) => {
                let bound = id.ident_token().and_then(|t| lookup(scope, t.text()));
                match bound {
                    Some((e, frame)) => self.walk_merge(e, pos, cond, &Some(frame), depth + 1),
                    None => self.opaque(&Expr::Ident(id), pos, cond),
                }
            }
            other => self.opaque(&other, pos, cond),
        }
    }

    /// `systemd.mounts = <list>`.
    fn walk_list(&mut self, expr: Expr, kind: Kind, cond: bool, scope: &Scope, depth: u32) {
        if !self.budget.spend() {
            return;
        }
        let pos = Pos::Kind(kind);
        if depth > MAX_DEPTH {
            self.unresolved(
                expr.syntax(),
                format!(
                    "{} = {} (nested too deeply to analyse)",
                    pos.describe(),
                    excerpt(&expr.syntax().text().to_string())
                ),
            );
            return;
        }
        match expr {
            Expr::List(l) => {
                for item in l.items() {
                    self.walk_item(item, kind, cond, scope, depth + 1);
                }
            }
            Expr::Paren(p) => {
                if let Some(e) = p.expr() {
                    self.walk_list(e, kind, cond, scope, depth + 1);
                }
            }
            Expr::With(w) => {
                if let Some(e) = w.body() {
                    self.walk_list(e, kind, cond, scope, depth + 1);
                }
            }
            Expr::LetIn(l) => {
                let inner = push_entries_frame(&l, scope);
                if let Some(e) = l.body() {
                    self.walk_list(e, kind, cond, &inner, depth + 1);
                }
            }
            Expr::IfElse(i) => {
                for e in [i.body(), i.else_body()].into_iter().flatten() {
                    self.walk_list(e, kind, true, scope, depth + 1);
                }
            }
            Expr::BinOp(b) if b.operator() == Some(BinOpKind::Concat) => {
                for e in [b.lhs(), b.rhs()].into_iter().flatten() {
                    self.walk_list(e, kind, cond, scope, depth + 1);
                }
            }
            Expr::Apply(app) => match shape(&app) {
                Shape::Cond(body) | Shape::Optionals(body) => {
                    self.walk_list(body, kind, true, scope, depth + 1)
                }
                Shape::Pass(body) => self.walk_list(body, kind, cond, scope, depth + 1),
                Shape::Optional(item) => self.walk_item(item, kind, true, scope, depth + 1),
                Shape::Merge(list) => {
                    // mkMerge of lists: each element is itself a list of mounts.
                    match list {
                        Expr::List(l) => {
                            for e in l.items() {
                                self.walk_list(e, kind, cond, scope, depth + 1);
                            }
                        }
                        other => self.opaque(&other, &pos, cond),
                    }
                }
                Shape::GenAttrs(..) | Shape::Unknown => self.opaque(&Expr::Apply(app), &pos, cond),
            },
            Expr::Ident(id) => {
                let bound = id.ident_token().and_then(|t| lookup(scope, t.text()));
                match bound {
                    Some((e, frame)) => self.walk_list(e, kind, cond, &Some(frame), depth + 1),
                    None => self.opaque(&Expr::Ident(id), &pos, cond),
                }
            }
            other => self.opaque(&other, &pos, cond),
        }
    }

    /// One element of `systemd.mounts`: `{ where = "/a/b"; … }`.
    fn walk_item(&mut self, expr: Expr, kind: Kind, cond: bool, scope: &Scope, depth: u32) {
        if !self.budget.spend() {
            return;
        }
        let b = &self.budget.clone();
        let pos = Pos::MountItem(kind);
        if depth > MAX_DEPTH {
            return self.opaque(&expr, &pos, cond);
        }
        match expr {
            Expr::Paren(p) => {
                if let Some(e) = p.expr() {
                    self.walk_item(e, kind, cond, scope, depth + 1);
                }
            }
            Expr::Apply(app) => match shape(&app) {
                Shape::Cond(body) => self.walk_item(body, kind, true, scope, depth + 1),
                Shape::Pass(body) => self.walk_item(body, kind, cond, scope, depth + 1),
                _ => self.opaque(&Expr::Apply(app), &pos, cond),
            },
            Expr::Ident(id) => {
                let bound = id.ident_token().and_then(|t| lookup(scope, t.text()));
                match bound {
                    Some((e, frame)) => self.walk_item(e, kind, cond, &Some(frame), depth + 1),
                    None => self.opaque(&Expr::Ident(id), &pos, cond),
                }
            }
            Expr::AttrSet(set) => {
                self.covered.insert(set.syntax().text_range());
                let inner = if set.rec_token().is_some() {
                    push_entries_frame(&set, scope)
                } else {
                    scope.clone()
                };
                let where_def = set.attrpath_values().find(|apv| {
                    let attrs: Vec<ast::Attr> = apv.attrpath().map(|p| p.attrs().collect()).unwrap_or_default();
                    matches!(attrs.as_slice(), [a] if attr_name(a, &inner, b).as_deref() == Some("where"))
                });
                match where_def {
                    Some(apv) => {
                        let path = apv.value().and_then(|v| resolve_str(&v, &inner, 0, b));
                        match path {
                            Some(p) => {
                                let line = self.line_of(apv.syntax());
                                self.out.units.push(UnitDecl {
                                    name: format!("{}.{}", escape_path(&p), kind.suffix()),
                                    file: self.file.to_string(),
                                    line,
                                    conditional: cond,
                                });
                            }
                            None => {
                                let text = format!(
                                    "systemd.{} item: {}",
                                    kind.option(),
                                    excerpt(&apv.syntax().text().to_string())
                                );
                                self.unresolved(apv.syntax(), text);
                            }
                        }
                    }
                    None => {
                        let text = format!(
                            "systemd.{} item without a literal `where`: {}",
                            kind.option(),
                            excerpt(&set.syntax().text().to_string())
                        );
                        self.unresolved(set.syntax(), text);
                    }
                }
            }
            other => self.opaque(&other, &pos, cond),
        }
    }

    /// `inherit a b;` / `inherit (x) a b;` inside an attribute set at `pos`.
    fn inherit(&mut self, inh: &ast::Inherit, pos: &Pos, cond: bool, scope: &Scope) {
        let b = &self.budget.clone();
        self.covered.insert(inh.syntax().text_range());
        for attr in inh.attrs() {
            let name = attr_name(&attr, scope, b);
            let next = match (pos, name) {
                (Pos::Root, Some(n)) if n == "systemd" => Some(Pos::Systemd),
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
                self.unresolved(attr.syntax(), text);
            }
        }
    }

    /// One `path = value;` definition inside an attribute set at `pos`.
    fn entry(
        &mut self,
        apv: &ast::AttrpathValue,
        pos: &Pos,
        cond: bool,
        scope: &Scope,
        depth: u32,
    ) {
        let b = &self.budget.clone();
        self.visited.insert(apv.syntax().text_range());
        let Some(path) = apv.attrpath() else { return };
        let attrs: Vec<ast::Attr> = path.attrs().collect();
        let mut cur = pos.clone();
        let mut text_path = match pos {
            Pos::Root => String::new(),
            p => p.describe(),
        };
        for attr in attrs.iter() {
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
                    // Option declarations and module plumbing declare no unit.
                    Some(
                        "options" | "imports" | "disabledModules" | "meta" | "_file" | "key"
                        | "assertions" | "warnings",
                    ) => None,
                    // Other option paths (`services.x`, `containers.x.config`, a VM
                    // test's `nodes.x`): not walked, and left to the sweep, which reports
                    // any unit-like definition inside as unresolved.
                    _ => {
                        self.visited.remove(&apv.syntax().text_range());
                        return;
                    }
                },
                Pos::Modules => Some(Pos::Root),
                Pos::Systemd => attr_name(attr, scope, b)
                    .as_deref()
                    .and_then(Kind::from_option)
                    .map(Pos::Kind),
                Pos::Kind(k) if !k.is_list() => {
                    let name = attr_name(attr, scope, b);
                    let base = text_path.clone();
                    let line = self.line_of(attr.syntax());
                    if name.is_none() {
                        self.unresolved(attr.syntax(), excerpt(&base));
                    }
                    Some(Pos::Unit(UnitRef {
                        kind: *k,
                        name: name.map(|n| format!("{n}.{}", k.suffix())),
                        path_text: excerpt(&base),
                        line,
                    }))
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
                    self.covered.insert(apv.syntax().text_range());
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
                self.out.units.push(UnitDecl {
                    name: format!("{stem}.timer"),
                    file: self.file.to_string(),
                    line,
                    conditional: cond || timer_cond,
                });
            }
            None => {
                let text = format!(
                    "{}.startAt (implies a .timer of an unresolved service)",
                    unit.path_text
                );
                self.out.unresolved.push(Unresolved {
                    file: self.file.to_string(),
                    line,
                    text,
                });
            }
        }
    }

    /// Report unit-like definitions the structured walk did not reach.
    fn sweep(&mut self, root: &SyntaxNode) {
        let b = &self.budget.clone();
        let candidates: Vec<SyntaxNode> = root
            .descendants()
            .filter(|n| n.kind() == SyntaxKind::NODE_ATTRPATH_VALUE)
            .collect();
        let mut flagged: HashSet<TextRange> = HashSet::new();
        for node in candidates {
            if self.visited.contains(&node.text_range()) {
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
                if self.covered.contains(&anc.text_range()) {
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
            self.unresolved(apv.syntax(), text);
        }
    }
}

fn plain_name(attr: &ast::Attr, b: &Budget) -> Option<String> {
    match attr {
        ast::Attr::Ident(id) => Some(id.ident_token()?.text().to_string()),
        ast::Attr::Str(s) => resolve_str_node(s, &None, 0, b),
        ast::Attr::Dynamic(_) => None,
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
    let adjacent = names.windows(2).any(|w| {
        w[0].as_deref() == Some("systemd") && w[1].as_deref().and_then(Kind::from_option).is_some()
    });
    if adjacent {
        return true;
    }
    if names
        .first()
        .and_then(|n| n.as_deref())
        .and_then(Kind::from_option)
        .is_none()
    {
        // `systemd = <something defining units>`.
        return names.last().and_then(|n| n.as_deref()) == Some("systemd")
            && apv
                .value()
                .map(|v| {
                    v.syntax().descendants().any(|d| {
                        ast::AttrpathValue::cast(d).is_some_and(|inner| {
                            inner
                                .attrpath()
                                .and_then(|p| p.attrs().next())
                                .and_then(|a| plain_name(&a, b))
                                .as_deref()
                                .and_then(Kind::from_option)
                                .is_some()
                        })
                    })
                })
                .unwrap_or(false);
    }
    // `services.x = …` whose enclosing definition is `… systemd = { … }`.
    let parent_def = apv
        .syntax()
        .parent()
        .filter(|p| p.kind() == SyntaxKind::NODE_ATTR_SET)
        .and_then(|set| set.parent())
        .and_then(ast::AttrpathValue::cast);
    parent_def
        .and_then(|d| d.attrpath())
        .and_then(|p| p.attrs().last())
        .and_then(|a| plain_name(&a, b))
        .as_deref()
        == Some("systemd")
}

/// Whether a `startAt` value yields a timer: `None` when provably empty (`[]`),
/// `Some(true)` when only under a condition, `Some(false)` otherwise.
fn classify_start_at(expr: &Expr, scope: &Scope, depth: u32, b: &Budget) -> Option<bool> {
    if depth > MAX_RESOLVE_DEPTH || !b.spend() {
        return Some(false);
    }
    match expr {
        Expr::List(l) => {
            if l.items().next().is_none() {
                None
            } else {
                Some(false)
            }
        }
        Expr::Paren(p) => match p.expr() {
            Some(e) => classify_start_at(&e, scope, depth + 1, b),
            None => Some(false),
        },
        Expr::IfElse(i) => {
            let a = i
                .body()
                .and_then(|e| classify_start_at(&e, scope, depth + 1, b));
            let b = i
                .else_body()
                .and_then(|e| classify_start_at(&e, scope, depth + 1, b));
            match (a, b) {
                (None, None) => None,
                (Some(_), None) | (None, Some(_)) => Some(true),
                (Some(x), Some(y)) => Some(x || y),
            }
        }
        Expr::BinOp(op) if op.operator() == Some(BinOpKind::Concat) => {
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
        Expr::Apply(app) => match shape(app) {
            Shape::Cond(_) | Shape::Optional(_) | Shape::Optionals(_) => Some(true),
            Shape::Pass(e) => classify_start_at(&e, scope, depth + 1, b),
            Shape::Merge(_) | Shape::GenAttrs(..) | Shape::Unknown => Some(false),
        },
        Expr::Ident(id) => {
            let bound = id.ident_token().and_then(|t| lookup(scope, t.text()));
            match bound {
                Some((e, frame)) => classify_start_at(&e, &Some(frame), depth + 1, b),
                None => Some(false),
            }
        }
        Expr::With(w) => match w.body() {
            Some(e) => classify_start_at(&e, scope, depth + 1, b),
            None => Some(false),
        },
        _ => Some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(src: &str) -> Vec<(String, bool)> {
        extract_units("m.nix", src)
            .map(|fu| {
                fu.units
                    .into_iter()
                    .map(|u| (u.name, u.conditional))
                    .collect()
            })
            .unwrap_or_else(|e| panic!("extract failed: {e}"))
    }

    fn unresolved(src: &str) -> Vec<String> {
        extract_units("m.nix", src)
            .map(|fu| fu.unresolved.into_iter().map(|u| u.text).collect())
            .unwrap_or_else(|e| panic!("extract failed: {e}"))
    }

    #[test]
    fn dotted_service_and_timer() {
        let src = "{ ... }: { systemd.services.a = {}; systemd.timers.a = { }; }";
        assert_eq!(
            names(src),
            vec![("a.service".into(), false), ("a.timer".into(), false)]
        );
    }

    #[test]
    fn nested_sets_and_config_mkif() {
        let src = r#"{ config, lib, ... }: with lib; {
          options.services.x.enable = mkEnableOption "x";
          config = mkIf config.services.x.enable {
            systemd = { timers.t = {}; services = { s = {}; "q-r" = {}; }; };
          };
        }"#;
        assert_eq!(
            names(src),
            vec![
                ("q-r.service".into(), true),
                ("s.service".into(), true),
                ("t.timer".into(), true)
            ]
        );
    }

    #[test]
    fn let_bound_names_and_interpolation() {
        let src = r#"{ lib, ... }: let name = "ci-prune"; other = "${name}-x"; in {
          systemd.services.${name} = {};
          systemd.services."${name}-b" = {};
          systemd.timers.${other} = {};
        }"#;
        assert_eq!(
            names(src),
            vec![
                ("ci-prune-b.service".into(), false),
                ("ci-prune-x.timer".into(), false),
                ("ci-prune.service".into(), false)
            ]
        );
    }

    #[test]
    fn unresolvable_names_are_listed() {
        let src = r#"{ config, ... }: let cfg = config.x; in {
          systemd.services.${cfg.name} = { startAt = "daily"; };
          systemd.timers = lib.mapAttrs' (n: v: v) cfg.timers;
        }"#;
        assert!(names(src).is_empty());
        let u = unresolved(src);
        assert_eq!(u.len(), 3, "{u:?}");
        assert!(u[0].contains("${cfg.name}"), "{u:?}");
    }

    #[test]
    fn start_at_implies_timer_and_conditionals() {
        let src = r#"{ lib, cfg, ... }: with lib; {
          systemd.services.a = { startAt = "daily"; };
          systemd.services.b.startAt = optional cfg.on "weekly";
          systemd.services.c = { startAt = [ ]; };
          systemd.services.d.startAt = if cfg.on then "daily" else [];
          systemd.services.e.startAt = mkDefault "hourly";
          systemd.services.f = mkIf cfg.on { startAt = "daily"; };
        }"#;
        assert_eq!(
            names(src),
            vec![
                ("a.service".into(), false),
                ("a.timer".into(), false),
                ("b.service".into(), false),
                ("b.timer".into(), true),
                ("c.service".into(), false),
                ("d.service".into(), false),
                ("d.timer".into(), true),
                ("e.service".into(), false),
                ("e.timer".into(), false),
                ("f.service".into(), true),
                ("f.timer".into(), true),
            ]
        );
    }

    #[test]
    fn mounts_by_where() {
        let src = r#"{ lib, c, ... }: {
          systemd.mounts = [ { where = "/var/lib/docker"; what = "/dev/x"; } ]
            ++ lib.optional c { where = "/mnt/a-b"; };
          systemd.automounts = [ { where = c.path; } ];
        }"#;
        assert_eq!(
            names(src),
            vec![
                ("mnt-a\\x2db.mount".into(), true),
                ("var-lib-docker.mount".into(), false)
            ]
        );
        assert_eq!(unresolved(src).len(), 1);
    }

    #[test]
    fn comments_and_strings_never_yield_units() {
        let src = r#"{ pkgs, ... }: {
          # systemd.services.commented = {};
          /* systemd.timers.block = {}; */
          environment.etc.x.text = "systemd.services.instring = {};";
          environment.etc.y.text = ''
            systemd.sockets.multi = {};
          '';
        }"#;
        assert!(names(src).is_empty());
        assert!(unresolved(src).is_empty());
    }

    #[test]
    fn unknown_function_arguments_are_swept() {
        let src = r#"{ lib, ... }: lib.something { systemd.services.hidden = {}; }"#;
        assert!(names(src).is_empty());
        let u = unresolved(src);
        assert_eq!(u.len(), 1);
        assert!(u[0].contains("systemd.services.hidden"), "{u:?}");
    }

    #[test]
    fn parse_error_has_position() {
        let err = extract_units("bad.nix", "{\n  a = ;\n}").err();
        match err {
            Some(NixError::Parse { file, line, .. }) => {
                assert_eq!(file, "bad.nix");
                assert_eq!(line, 2);
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn lines_are_one_based() {
        let src = "{ ... }:\n{\n  systemd.services.a = {};\n\n  systemd.timers.b = {};\n}\n";
        let fu = extract_units("m.nix", src).unwrap_or_default();
        let lines: Vec<u32> = fu.units.iter().map(|u| u.line).collect();
        assert_eq!(lines, vec![3, 5]);
    }
}
