//! Redaction of secrets before anything reaches a report. Checks register the secrets they
//! came across (a decoded registry credential, a token); the runner scrubs every detail and
//! evidence string of the run with the whole set, so a secret a check did not expect to print
//! is still not printed.

use std::sync::{Arc, Mutex};

/// What replaces a secret in output.
pub const MASK: &str = "[REDACTED]";

/// A shared set of secrets to scrub. Cheap to clone (one set behind an `Arc`).
#[derive(Clone, Default, Debug)]
pub struct Redactor {
    secrets: Arc<Mutex<Vec<String>>>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a secret. Values shorter than 4 characters are ignored (they would mask
    /// ordinary text and are no secret worth the name).
    pub fn add(&self, secret: &str) {
        if secret.len() < 4 {
            return;
        }
        if let Ok(mut s) = self.secrets.lock() {
            if !s.iter().any(|x| x == secret) {
                s.push(secret.to_string());
                // longest first, so a secret containing another is masked whole
                s.sort_by_key(|x| std::cmp::Reverse(x.len()));
            }
        }
    }

    /// The text with every registered secret replaced by [`MASK`].
    pub fn scrub(&self, text: &str) -> String {
        let Ok(s) = self.secrets.lock() else {
            return text.to_string();
        };
        let mut out = text.to_string();
        for secret in s.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_every_occurrence_longest_first() {
        let r = Redactor::new();
        r.add("hunter2-canary");
        r.add("hunter2");
        r.add("ab"); // too short, ignored
        assert_eq!(
            r.scrub("a hunter2-canary b hunter2 ab"),
            format!("a {MASK} b {MASK} ab")
        );
    }
}
