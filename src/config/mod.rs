//! Configuration files of the hub and the agent (TOML).
//!
//! Loading parses with `deny_unknown_fields` everywhere, resolves relative paths
//! against the file's folder, then validates and reports every problem at once.

pub mod agent;
pub mod hub;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {error}")]
    Parse {
        path: PathBuf,
        error: Box<toml::de::Error>,
    },
    #[error("{path} has {} problem(s):\n  - {}", .problems.len(), .problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// A config type that can check itself and resolve its relative paths.
pub trait Validate {
    /// Makes relative paths relative to `base` (the config file's folder).
    fn resolve_paths(&mut self, base: &Path);
    /// Every problem found, in a form an administrator can act on.
    fn problems(&self) -> Vec<String>;
}

pub fn load<T: DeserializeOwned + Validate>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.into(),
        error,
    })?;
    let mut cfg = parse::<T>(&text).map_err(|error| ConfigError::Parse {
        path: path.into(),
        error: Box::new(error),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    cfg.resolve_paths(base);
    check(cfg, path)
}

pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, toml::de::Error> {
    toml::from_str(text)
}

pub fn check<T: Validate>(cfg: T, path: &Path) -> Result<T, ConfigError> {
    let problems = cfg.problems();
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError::Invalid {
            path: path.into(),
            problems,
        })
    }
}

pub(crate) fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

pub(crate) fn check_file(problems: &mut Vec<String>, what: &str, p: &Path) {
    if !p.is_file() {
        problems.push(format!(
            "{what}: file {} does not exist or is not readable",
            p.display()
        ));
    }
}

/// Where an audit trail (hub or agent) is written, and how much of the SQL it keeps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// A file one JSON object per request is appended to.
    pub path: PathBuf,
    /// `text` (default) records each statement; `hash` only its SHA-256.
    #[serde(default)]
    pub sql: AuditSql,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditSql {
    #[default]
    Text,
    Hash,
}
