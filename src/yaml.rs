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

pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    backend::from_str(text).map_err(convert)
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
