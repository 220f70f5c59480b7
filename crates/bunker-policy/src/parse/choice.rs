//! A value that must be one of a few names (`kind`, `priority`, `role`,
//! `tls`, `mode`, ...), with one error wording for all of them.

use super::Ctx;
use crate::locate::Seg;
use crate::model::Priority;
use serde_yaml::Value;

/// The spellings of [`Priority`] (an item's `priority`, a notification
/// filter's `priorities`).
pub(crate) const PRIORITIES: [(&str, Priority); 3] = [
    ("critical", Priority::Critical),
    ("important", Priority::Important),
    ("low", Priority::Low),
];

impl Ctx<'_> {
    /// The string at `path` as one of `choices` (name, value); an unknown
    /// name is an error listing the names.
    pub(crate) fn choice<T: Copy>(
        &mut self,
        v: &Value,
        path: &[Seg],
        field: &str,
        wher: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let s = self.string(v, path, field, wher)?;
        self.one_of(&s, path, field, wher, choices)
    }

    /// `s` (the text of `field` at `path`) as one of `choices`, else the
    /// error `invalid FIELD "S" WHERE` with the hint `expected "a", "b" or
    /// "c"`.
    pub(crate) fn one_of<T: Copy>(
        &mut self,
        s: &str,
        path: &[Seg],
        field: &str,
        wher: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        if let Some((_, t)) = choices.iter().find(|(name, _)| *name == s) {
            return Some(*t);
        }
        self.err(
            path,
            format!("invalid {field} \"{s}\" {wher}"),
            Some(format!("expected {}", expected(choices))),
        );
        None
    }
}

/// `"a", "b" or "c"`.
fn expected<T>(choices: &[(&str, T)]) -> String {
    let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_expected_names_are_listed_with_or_before_the_last() {
        assert_eq!(super::expected(&[("a", 1)]), "\"a\"");
        assert_eq!(super::expected(&[("a", 1), ("b", 2)]), "\"a\" or \"b\"");
        assert_eq!(
            super::expected(&[("a", 1), ("b", 2), ("c", 3)]),
            "\"a\", \"b\" or \"c\""
        );
    }
}
