//! Diagnostics and the policy error type.

use std::fmt;

/// One problem found in a policy file, with its position.
///
/// Displayed as `bunker.yaml:12:5: message (hint)`. A `line` of 0 means the
/// position is unknown (e.g. for a policy built in code); then only the file
/// name is printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given to [`crate::Policy::load`] or `from_str`.
    pub file: String,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column (in characters), 0 when unknown.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// An optional suggestion, printed in parentheses after the message.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )?;
        } else {
            write!(f, "{}: {}", self.file, self.message)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// Errors from loading or validating a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("cannot read policy file {path}: {source}")]
    Io {
        /// The path that was read.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The policy has one or more problems; every problem found is listed.
    #[error("{}", render(.0))]
    Invalid(Vec<Diagnostic>),
}

fn render(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in diags.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&d.to_string());
    }
    out
}

impl PolicyError {
    /// The individual problems (empty for I/O errors).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            PolicyError::Io { .. } => &[],
            PolicyError::Invalid(d) => d,
        }
    }

    /// Whether retrying the same operation could succeed (only I/O errors
    /// that look transient).
    pub fn is_retryable(&self) -> bool {
        match self {
            PolicyError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
            ),
            PolicyError::Invalid(_) => false,
        }
    }
}

/// Returns the candidate closest to `word` if it is plausibly a typo of it.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        let d = edit_distance(&word.to_lowercase(), &c.to_lowercase());
        let limit = (c.chars().count().max(3) / 3).clamp(1, 3);
        if d <= limit && d < word.chars().count() && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_position() {
        let mut d = Diagnostic {
            file: "bunker.yaml".into(),
            line: 12,
            column: 5,
            message: "unknown key \"shedule\" in item \"app\"".into(),
            hint: Some("did you mean \"schedule\"?".into()),
        };
        assert_eq!(
            d.to_string(),
            "bunker.yaml:12:5: unknown key \"shedule\" in item \"app\" (did you mean \"schedule\"?)"
        );
        d.line = 0;
        d.hint = None;
        assert_eq!(
            d.to_string(),
            "bunker.yaml: unknown key \"shedule\" in item \"app\""
        );
    }

    #[test]
    fn suggestions() {
        let keys = ["schedule", "retention", "paths", "priority"];
        assert_eq!(did_you_mean("shedule", &keys), Some("schedule"));
        assert_eq!(did_you_mean("retension", &keys), Some("retention"));
        assert_eq!(did_you_mean("path", &keys), Some("paths"));
        assert_eq!(did_you_mean("zzzzzz", &keys), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
