//! `${VAR}` substitution in string values.

/// Why a substitution failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubstError {
    /// `${NAME}` where NAME is not set.
    Missing(String),
    /// `${` without a closing `}` or with an invalid name.
    Malformed(String),
}

/// Replaces every `${NAME}` in `s` with `lookup(NAME)`; `$${` yields a
/// literal `${`. A `$` not followed by `{` is kept as is.
pub(crate) fn substitute(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, SubstError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(idx) = rest.find('$') {
        out.push_str(&rest[..idx]);
        let after = &rest[idx + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(end) = tail.find('}') else {
                return Err(SubstError::Malformed(rest[idx..].to_string()));
            };
            let name = &tail[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(SubstError::Malformed(format!("${{{name}}}")));
            }
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => return Err(SubstError::Missing(name.to_string())),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/u".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_and_escapes() {
        assert_eq!(substitute("${HOME}/x", &env).as_deref(), Ok("/home/u/x"));
        assert_eq!(substitute("a${EMPTY}b", &env).as_deref(), Ok("ab"));
        assert_eq!(substitute("$${HOME}", &env).as_deref(), Ok("${HOME}"));
        assert_eq!(substitute("cost $5 $", &env).as_deref(), Ok("cost $5 $"));
        assert_eq!(
            substitute("${HOME}${HOME}", &env).as_deref(),
            Ok("/home/u/home/u")
        );
    }

    #[test]
    fn reports_missing_and_malformed() {
        assert_eq!(
            substitute("x${NOPE}", &env),
            Err(SubstError::Missing("NOPE".into()))
        );
        assert!(matches!(
            substitute("${HOME", &env),
            Err(SubstError::Malformed(_))
        ));
        assert!(matches!(
            substitute("${A-B}", &env),
            Err(SubstError::Malformed(_))
        ));
        assert!(matches!(
            substitute("${}", &env),
            Err(SubstError::Malformed(_))
        ));
    }
}
