//! `${VAR}` interpolation as docker compose does it, for the subset cdq renders and
//! accepts: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`,
//! `${VAR?message}`. Unlike compose, an unset variable without a default is an error: a
//! blank password is never what the user meant. Pure.

use std::collections::BTreeMap;

/// Variables: process environment over `.env` (compose's precedence).
#[derive(Debug, Clone, Default)]
pub struct Vars(pub BTreeMap<String, String>);

impl Vars {
    /// `.env` text (KEY=VALUE lines, `#` comments, optional quotes) overlaid by `env`.
    pub fn from_dotenv(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Vars {
        let mut m = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                    .unwrap_or(v);
                m.insert(k.trim().to_string(), v.to_string());
            }
        }
        m.extend(env);
        Vars(m)
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
}

pub fn interpolate(s: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek().map(|(_, c)| *c) {
            Some('$') => {
                chars.next();
                out.push('$');
            }
            Some('{') => {
                chars.next();
                let start = i + 2;
                let mut depth = 1;
                let mut end = None;
                for (j, c) in chars.by_ref() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let end = end.ok_or_else(|| format!("unclosed `${{` in `{s}`"))?;
                out.push_str(&expand(&s[start..end], vars)?);
            }
            Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                let mut name = String::new();
                while let Some((_, c)) = chars.peek() {
                    if *c == '_' || c.is_ascii_alphanumeric() {
                        name.push(*c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push_str(vars.get(&name).ok_or_else(|| unset(&name))?);
            }
            _ => out.push('$'),
        }
    }
    Ok(out)
}

fn unset(name: &str) -> String {
    format!("variable `{name}` is not set (in the environment or `.env`)")
}

fn expand(body: &str, vars: &Vars) -> Result<String, String> {
    let name_end = body
        .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
        .unwrap_or(body.len());
    let (name, op) = body.split_at(name_end);
    if name.is_empty() {
        return Err(format!("`${{{body}}}` has no variable name"));
    }
    let val = vars.get(name);
    let (colon, rest) = match op.strip_prefix(':') {
        Some(r) => (true, r),
        None => (false, op),
    };
    let missing = match val {
        None => true,
        Some(v) => colon && v.is_empty(),
    };
    match rest.chars().next() {
        None if !colon => val.map(str::to_string).ok_or_else(|| unset(name)),
        Some('-') => {
            if missing {
                interpolate(&rest[1..], vars)
            } else {
                Ok(val.unwrap_or_default().to_string())
            }
        }
        Some('?') => {
            if missing {
                Err(format!("variable `{name}`: {}", &rest[1..]))
            } else {
                Ok(val.unwrap_or_default().to_string())
            }
        }
        _ => Err(format!(
            "`${{{body}}}` uses an operator cdq does not support (use `:-`, `-`, `:?` or `?`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars::from_dotenv(
            "A=1\n# c\nEMPTY=\nQ=\"quoted\"\n",
            [("A".to_string(), "env".to_string())],
        )
    }

    #[test]
    fn forms() {
        let v = vars();
        assert_eq!(interpolate("x${A}y", &v).unwrap(), "xenvy");
        assert_eq!(interpolate("$A/$$A", &v).unwrap(), "env/$A");
        assert_eq!(interpolate("${B:-def}", &v).unwrap(), "def");
        assert_eq!(interpolate("${EMPTY:-def}", &v).unwrap(), "def");
        assert_eq!(interpolate("${EMPTY-def}", &v).unwrap(), "");
        assert_eq!(interpolate("${Q}", &v).unwrap(), "quoted");
        assert_eq!(interpolate("${B:-${A}}", &v).unwrap(), "env");
        assert_eq!(interpolate("100$", &v).unwrap(), "100$");
    }

    #[test]
    fn errors_name_the_variable() {
        let v = vars();
        assert!(interpolate("${NOPE}", &v).unwrap_err().contains("`NOPE`"));
        assert!(interpolate("$NOPE", &v).unwrap_err().contains("`NOPE`"));
        assert_eq!(
            interpolate("${B:?set B}", &v).unwrap_err(),
            "variable `B`: set B"
        );
        assert!(interpolate("${A", &v).is_err());
        assert!(interpolate("${A/x/y}", &v).is_err());
    }
}
