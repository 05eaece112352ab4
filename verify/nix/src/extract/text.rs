//! Source positions and source text as the results show them: 1-based lines of syntax
//! nodes, and excerpts with whitespace collapsed.

use rnix::{SyntaxKind, SyntaxNode};

use super::MAX_TEXT;

/// Byte offsets of line starts, for turning offsets into lines and columns.
pub(super) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(super) fn new(src: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    /// 1-based line and column (in bytes) of a byte offset.
    pub(super) fn line_col(&self, offset: usize) -> (u32, u32) {
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

    /// 1-based line of a node's first token that is not whitespace or a comment.
    pub(super) fn line_of(&self, node: &SyntaxNode) -> u32 {
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
        self.line_col(usize::from(start)).0
    }
}

/// Collapse whitespace and shorten long source text.
pub(super) fn excerpt(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() > MAX_TEXT {
        let mut s: String = collapsed.chars().take(MAX_TEXT).collect();
        s.push('…');
        s
    } else {
        collapsed
    }
}
