//! Names in scope: the frames `let`, `rec` and lambda parameters push, and looking a
//! name up through them.

use std::collections::HashMap;
use std::rc::Rc;

use rnix::ast::{self, Expr, HasEntry};

/// A `let` (or `rec`, or lambda-parameter) frame. `None` marks a name bound to
/// something opaque (a lambda parameter, an `inherit`, a dotted binding) that shadows
/// outer bindings.
pub(super) struct Frame {
    vars: HashMap<String, Option<Expr>>,
    parent: Scope,
}

/// The innermost frame, `None` at the file's top level.
pub(super) type Scope = Option<Rc<Frame>>;

/// Look a name up; `Some((expr, frame))` when it is bound to an expression in `frame`
/// (whose scope the expression must be evaluated in: `let` is recursive).
pub(super) fn lookup(scope: &Scope, name: &str) -> Option<(Expr, Rc<Frame>)> {
    let mut cur = scope.clone();
    while let Some(frame) = cur {
        if let Some(v) = frame.vars.get(name) {
            return v.clone().map(|e| (e, frame.clone()));
        }
        cur = frame.parent.clone();
    }
    None
}

/// The frame of a `let … in` or a `rec { … }`: single-name bindings bind their value;
/// dotted bindings and `inherit`s shadow with something opaque.
pub(super) fn push_entries_frame<N: HasEntry>(node: &N, parent: &Scope) -> Scope {
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

/// The scope inside an attribute set: its own bindings when it is `rec`.
pub(super) fn set_scope(set: &ast::AttrSet, parent: &Scope) -> Scope {
    if set.rec_token().is_some() {
        push_entries_frame(set, parent)
    } else {
        parent.clone()
    }
}

/// The frame of a lambda: its parameters shadow with something opaque.
pub(super) fn push_lambda_frame(lambda: &ast::Lambda, parent: &Scope) -> Scope {
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
