//! The only module that calls the YAML library. serde_yaml is archived upstream: swapping
//! to a maintained fork (serde_yml, serde_norway) is the `use` line below and nothing else.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_yaml as backend;

/// A YAML parse or shape error with the position it was found at (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for YamlError {}

fn convert(e: backend::Error) -> YamlError {
    let loc = e.location();
    // serde_yaml appends " at line L column C" to its messages; we report the position
    // ourselves, so strip it to keep one copy.
    let mut message = e.to_string();
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    YamlError {
        message,
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
    }
}

/// Deeper than this is refused before parsing: cdq's files need five or six levels, and
/// the parser's time grows with the square of the depth (36 s for a 200 KB `cdq.yaml` of
/// nested brackets).
pub const MAX_DEPTH: usize = 32;
/// Larger than this is refused before parsing: a settings or compose file is kilobytes.
pub const MAX_BYTES: usize = 4 << 20;

pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    check_bounds(text)?;
    backend::from_str(text).map_err(convert)
}

/// Refuses a document too large or nested too deep, naming the line where the nesting
/// passes [`MAX_DEPTH`]. Counts block levels (indentation), `- ` sequence entries on one
/// line, and flow brackets (`[`, `{`) outside quotes and comments. A conservative estimate:
/// a document it passes may still be refused by the parser, with the parser's own error.
pub fn check_bounds(text: &str) -> Result<(), YamlError> {
    if text.len() > MAX_BYTES {
        return Err(YamlError {
            message: format!(
                "the file is {} bytes; cdq reads at most {MAX_BYTES}",
                text.len()
            ),
            line: None,
            column: None,
        });
    }
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let too_deep = |line: usize| YamlError {
        message: format!("nesting deeper than {MAX_DEPTH} levels"),
        line: Some(line),
        column: None,
    };
    for (i, raw) in text.lines().enumerate() {
        let body = raw.trim_start_matches(' ');
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let mut depth_here = 0;
        if flow == 0 {
            let indent = raw.len() - body.len();
            while indents.last().is_some_and(|&top| top >= indent) {
                indents.pop();
            }
            indents.push(indent);
            let mut rest = body;
            while let Some(r) = rest.strip_prefix("- ") {
                depth_here += 1;
                rest = r.trim_start_matches(' ');
            }
        }
        let (mut single, mut double) = (false, false);
        let mut prev = ' ';
        for c in body.chars() {
            match c {
                '\'' if !double => single = !single,
                '"' if !single && prev != '\\' => double = !double,
                '#' if !single && !double && prev.is_whitespace() => break,
                '[' | '{' if !single && !double => flow += 1,
                ']' | '}' if !single && !double => flow = flow.saturating_sub(1),
                _ => {}
            }
            if indents.len() + depth_here + flow > MAX_DEPTH {
                return Err(too_deep(i + 1));
            }
            prev = c;
        }
        if indents.len() + depth_here + flow > MAX_DEPTH {
            return Err(too_deep(i + 1));
        }
    }
    Ok(())
}

pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    backend::to_string(value).map_err(convert)
}

/// An untyped YAML document, for code that must look at keys before typing them.
pub type Value = backend::Value;
pub type Mapping = backend::Mapping;

pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, YamlError> {
    backend::from_value(value).map_err(convert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_of_every_kind_is_refused_with_its_line() {
        let flow = format!("a: 1\nb: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let e = check_bounds(&flow).unwrap_err();
        assert_eq!(e.line, Some(2));
        let block: String = (0..40)
            .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
            .collect();
        assert_eq!(check_bounds(&block).unwrap_err().line, Some(MAX_DEPTH + 1));
        let dashes = format!("x:\n  {}a\n", "- ".repeat(40));
        assert_eq!(check_bounds(&dashes).unwrap_err().line, Some(2));
        assert!(check_bounds(&"x".repeat(MAX_BYTES + 1)).is_err());
    }

    #[test]
    fn ordinary_documents_and_brackets_in_strings_pass() {
        let ok = "services:\n  app:\n    command: [\"sh\", \"-c\", \"echo '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['\"]\n    environment:\n      - A=1 # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n";
        check_bounds(ok).unwrap();
        let v: Value = from_str(ok).unwrap();
        assert!(v.get("services").is_some());
    }
}
