//! Compose's variable interpolation, as the Compose specification writes
//! it: `$VAR`, `${VAR}`, `${VAR:-default}` / `${VAR-default}` (when unset
//! or empty / when unset), `${VAR:?err}` / `${VAR?err}` (an error),
//! `${VAR:+alt}` / `${VAR+alt}` (when set), `$$` for a dollar, defaults
//! themselves interpolated. An unset variable with no default is blank,
//! and said (Compose warns the same).

/// Where a value's variables come from: the environment first, then the
/// project's `.env` (Compose's precedence).
pub trait Vars {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Vars for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// An interpolation that cannot be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The `${…}` expression as written.
    pub expr: String,
    /// Why: the message of `:?`, or what is malformed.
    pub why: String,
}

/// `text` with its variables replaced; the names of unset variables that
/// went blank are added to `blank`.
pub fn interpolate(
    text: &str,
    vars: &dyn Vars,
    blank: &mut Vec<String>,
) -> Result<String, Failure> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = closing(body).ok_or_else(|| Failure {
                // The rest of the value may hold a secret: a few characters.
                expr: format!("${{{}…", body.chars().take(12).collect::<String>()),
                why: "no closing `}`".into(),
            })?;
            out.push_str(&braced(&body[..end], vars, blank)?);
            rest = &body[end + 1..];
        } else {
            let n = name_len(after);
            if n == 0 {
                out.push('$');
                rest = after;
            } else {
                out.push_str(&plain(&after[..n], vars, blank));
                rest = &after[n..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` that closes a `${`, nested ones skipped.
fn closing(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = body.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'{' if i > 0 && bytes[i - 1] == b'$' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn name_len(s: &str) -> usize {
    s.char_indices()
        .take_while(|(i, c)| c.is_ascii_alphabetic() || *c == '_' || (*i > 0 && c.is_ascii_digit()))
        .count()
}

fn plain(name: &str, vars: &dyn Vars, blank: &mut Vec<String>) -> String {
    vars.get(name).unwrap_or_else(|| {
        blank.push(name.to_string());
        String::new()
    })
}

/// One `${…}` body.
fn braced(body: &str, vars: &dyn Vars, blank: &mut Vec<String>) -> Result<String, Failure> {
    let fail = |why: &str| Failure {
        expr: format!("${{{body}}}"),
        why: why.to_string(),
    };
    let n = name_len(body);
    if n == 0 {
        return Err(fail("not a variable name"));
    }
    let (name, op) = body.split_at(n);
    let value = vars.get(name);
    if op.is_empty() {
        return Ok(plain(name, vars, blank));
    }
    let (colon, op) = match op.strip_prefix(':') {
        Some(o) => (true, o),
        None => (false, op),
    };
    let Some(sigil) = op.chars().next() else {
        return Err(fail("`:` with no operator"));
    };
    let arg = &op[sigil.len_utf8()..];
    // `:` makes an empty value count as unset.
    let set = value.as_deref().is_some_and(|v| !colon || !v.is_empty());
    match sigil {
        '-' if set => Ok(value.unwrap_or_default()),
        '-' => interpolate(arg, vars, blank),
        '+' if set => interpolate(arg, vars, blank),
        '+' => Ok(String::new()),
        '?' if set => Ok(value.unwrap_or_default()),
        '?' => {
            let why = if arg.is_empty() {
                format!("{name} is required but not set")
            } else {
                format!("{name}: {arg}")
            };
            Err(fail(&why))
        }
        _ => Err(fail(&format!("unknown operator `{sigil}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8000".into()),
            "EMPTY" => Some(String::new()),
            "TAG" => Some("v2".into()),
            _ => None,
        }
    }

    fn run(s: &str) -> Result<String, Failure> {
        interpolate(s, &env, &mut Vec::new())
    }

    #[test]
    fn compose_forms() {
        assert_eq!(run("${PORT}:8000").unwrap(), "8000:8000");
        assert_eq!(run("$PORT/x").unwrap(), "8000/x");
        assert_eq!(run("${NOPE:-9090}").unwrap(), "9090");
        assert_eq!(run("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(run("${EMPTY-d}").unwrap(), "");
        assert_eq!(run("${NOPE-d}").unwrap(), "d");
        assert_eq!(run("${PORT:+yes}").unwrap(), "yes");
        assert_eq!(run("${NOPE:+yes}").unwrap(), "");
        assert_eq!(run("cost $$5").unwrap(), "cost $5");
        assert_eq!(run("img:${NOPE:-${TAG}}").unwrap(), "img:v2");
        assert_eq!(run("a $ b").unwrap(), "a $ b");
    }

    #[test]
    fn required_and_unset() {
        let e = run("${DB_URL:?set it in .env}").unwrap_err();
        assert_eq!(e.expr, "${DB_URL:?set it in .env}");
        assert_eq!(e.why, "DB_URL: set it in .env");
        assert!(run("${EMPTY?x}").is_ok());
        assert!(run("${EMPTY:?x}").is_err());
        assert!(run("${PORT").is_err());
        assert!(run("${1X}").is_err());
        // Not ASCII after the name: an error, not a panic.
        assert!(run("${PORT–x}").is_err());
        assert!(run("${PORTé}").is_err());
        let e = run("${PORT and then a long secret value").unwrap_err();
        assert!(!e.expr.contains("secret"), "{}", e.expr);
        let mut blank = Vec::new();
        assert_eq!(interpolate("x${NOPE}y", &env, &mut blank).unwrap(), "xy");
        assert_eq!(blank, ["NOPE"]);
    }
}
