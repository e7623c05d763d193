//! The secrets file: strong random passwords generated on first render and never rewritten.
//! MySQL reads its passwords only when it initialises an empty data directory, so rotating
//! them silently would lock the user out of their own data. A key added by a newer cdq is
//! appended; existing lines are never touched.
//!
//! A key whose service's data already exists is never generated (the data holds the old
//! password), duplicate keys are refused, and the file is only ever replaced atomically
//! (`fsio::write_atomic`), never written through a symlink.
//!
//! Secrets are never printed: [`Secrets`] has a redacting `Debug` and no `Display`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::error::CdqError;
use crate::fsio;

pub const FILE: &str = "secrets.env";

/// Every secret cdq generates, with what it is for (written as a comment in the file).
pub const KEYS: [(&str, &str); 5] = [
    ("MYSQL_ROOT_PASSWORD", "mysql root"),
    ("SERVER_DB_PASSWORD", "mysql user `cd_server` (CD server)"),
    ("UCENTER_DB_PASSWORD", "mysql user `ucenter`"),
    ("REDIS_PASSWORD", "redis requirepass"),
    ("GRAFANA_ADMIN_PASSWORD", "grafana user `admin`"),
];

const LEN: usize = 32;

#[derive(Clone, PartialEq, Eq)]
pub struct Secrets(BTreeMap<String, String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.0.keys().map(|k| format!("{k}=<redacted>")))
            .finish()
    }
}

impl Secrets {
    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or_default()
    }

    pub fn map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// Values, for code that must keep them out of output (tests, log scrubbing).
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.0.values().map(String::as_str)
    }

    /// Stand-in values for renders that must not create the secrets file (preflight,
    /// `--dry-run`); never written to disk.
    pub fn placeholders() -> Secrets {
        Secrets(
            KEYS.iter()
                .map(|(k, _)| (k.to_string(), "<generated-on-first-render>".to_string()))
                .collect(),
        )
    }

    /// These secrets, with a placeholder for each key they lack.
    pub fn or_placeholders(mut self) -> Secrets {
        for (k, v) in Secrets::placeholders().0 {
            self.0.entry(k).or_insert(v);
        }
        self
    }

    /// Fixed secrets for tests and snapshots.
    pub fn fixed() -> Secrets {
        Secrets(
            KEYS.iter()
                .map(|(k, _)| (k.to_string(), format!("{}-secret", k.to_lowercase())))
                .collect(),
        )
    }
}

/// What `ensure` did, for the render report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    Created,
    Kept,
    /// Keys a newer cdq needs were appended.
    Appended(Vec<String>),
}

/// Masks the stack's passwords in text cdq prints: container logs, probe output, failure
/// reports. One scrubber for every path that shows what a container said.
#[derive(Clone, Default)]
pub struct Scrubber(Vec<String>);

impl Scrubber {
    pub const MASK: &str = "<redacted>";

    /// Masks every value of `secrets` (short values too would mask ordinary words; generated
    /// ones are 32 characters, so a floor of 8 loses nothing).
    pub fn new(secrets: &Secrets) -> Scrubber {
        let mut v: Vec<String> = secrets
            .values()
            .filter(|s| s.len() >= 8)
            .map(str::to_string)
            .collect();
        // Longest first, so a value that contains another is masked whole.
        v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Scrubber(v)
    }

    /// The scrubber for the passwords in `deploy_dir` (none masked when there is no file).
    pub fn for_deploy_dir(deploy_dir: &Path) -> anyhow::Result<Scrubber> {
        Ok(load_existing(deploy_dir)?
            .map(|s| Scrubber::new(&s))
            .unwrap_or_default())
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), Self::MASK);
            }
        }
        out
    }
}

/// 32 characters from [A-Za-z0-9]: safe unquoted in YAML, SQL, shell and URLs.
pub fn generate() -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(LEN);
    let mut buf = [0u8; 64];
    while out.len() < LEN {
        getrandom::fill(&mut buf)
            .map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
        // Rejection sampling keeps every character equally likely (248 = 4 * 62).
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == LEN {
                break;
            }
            out.push(ALPHABET[(*b % 62) as usize] as char);
        }
    }
    Ok(out)
}

pub fn path(deploy_dir: &Path) -> PathBuf {
    deploy_dir.join(FILE)
}

fn parse(path: &Path, text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| {
            CdqError::usage(format!("`{}` line {}: expected `KEY=value`", path.display(), i + 1))
                .hint("restore the file from your backup; cdq never rewrites it, and MySQL still uses the old passwords")
        })?;
        if v.is_empty() {
            return Err(CdqError::usage(format!(
                "`{}` line {}: `{k}` is empty",
                path.display(),
                i + 1
            ))
            .hint("restore the file from your backup")
            .into());
        }
        // Which of two values is the password the data was made with cannot be known:
        // taking either silently may lock the user out.
        if let Some(first) = first_line.get(k) {
            return Err(CdqError::usage(format!(
                "`{}` line {}: `{k}` is set again (first on line {first})",
                path.display(),
                i + 1
            ))
            .hint(format!(
                "keep the line that holds the password the data was created with and delete the other (the running container still holds it: `docker inspect -f '{{{{range .Config.Env}}}}{{{{println .}}}}{{{{end}}}}' CONTAINER | grep {k}`)"
            ))
            .into());
        }
        first_line.insert(k.to_string(), i + 1);
        map.insert(k.to_string(), v.to_string());
    }
    Ok(map)
}

/// The service whose data is created with a key's password, so that the password must never
/// change once that data exists. Redis reads its password from its config at every start
/// (a new one takes over harmlessly); MySQL and Grafana store theirs in their data.
pub fn service_of(key: &str) -> Option<&'static str> {
    match key {
        "MYSQL_ROOT_PASSWORD" | "SERVER_DB_PASSWORD" | "UCENTER_DB_PASSWORD" => Some("mysql"),
        "GRAFANA_ADMIN_PASSWORD" => Some("grafana"),
        _ => None,
    }
}

/// Services whose data directory already holds data, keyed by service: their passwords are
/// fixed by that data.
pub type Initialised = BTreeMap<String, PathBuf>;

/// Refuses a missing key whose service's data is initialised: a generated replacement would
/// not be the password the data holds, and everything would look green while the stack's
/// credential is gone.
fn refuse_missing(
    p: &Path,
    map: Option<&BTreeMap<String, String>>,
    initialised: &Initialised,
) -> Result<(), CdqError> {
    for (k, _) in KEYS {
        if map.is_some_and(|m| m.contains_key(k)) {
            continue;
        }
        let Some(svc) = service_of(k) else { continue };
        let Some(dir) = initialised.get(svc) else {
            continue;
        };
        let missing = match map {
            Some(_) => format!("`{}` has no `{k}`", p.display()),
            None => format!("`{}` is missing", p.display()),
        };
        return Err(CdqError::usage(format!(
            "{missing}, and {svc}'s data in `{}` was initialised with that password: cdq will not generate a new one",
            dir.display()
        ))
        .hint(format!(
            "restore `{}` from your backup, or add the line `{k}=<value>` with the value the {svc} container still holds (`docker inspect -f '{{{{range .Config.Env}}}}{{{{println .}}}}{{{{end}}}}' PROJECT-{svc}-1 | grep {k}`); to start {svc} from scratch instead, move `{}` aside",
            FILE,
            dir.display()
        )));
    }
    Ok(())
}

/// The owner of `secrets.env` when it is not this user: a warning with the fix (cdq still
/// reads it, and as root rewrites it keeping that owner).
pub fn foreign_owner(deploy_dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path(deploy_dir)).ok()?;
    let me = rustix::process::geteuid().as_raw();
    (m.uid() != me).then(|| {
        format!(
            "`{}` is owned by {}, not by this user (uid {me}): another user can read and change the stack's passwords; hand it over with `sudo chown {me} {}`",
            path(deploy_dir).display(),
            crate::fsio::owner_name(m.uid()),
            path(deploy_dir).display()
        )
    })
}

/// Loads the secrets file, creating it (mode 0600) if absent, appending missing keys, and
/// tightening its mode if someone loosened it. Every write is atomic and durable. A key is
/// never generated for a service in `initialised` (its data holds the old password).
pub fn ensure(
    deploy_dir: &Path,
    initialised: &Initialised,
) -> anyhow::Result<(Secrets, FileChange)> {
    let p = path(deploy_dir);
    fsio::refuse_symlink(&p)?;
    match std::fs::read_to_string(&p) {
        Ok(text) => {
            let mut map = parse(&p, &text)?;
            refuse_missing(&p, Some(&map), initialised)?;
            let missing: Vec<&(&str, &str)> =
                KEYS.iter().filter(|(k, _)| !map.contains_key(*k)).collect();
            if missing.is_empty() {
                let mode = std::fs::metadata(&p)
                    .map_err(|e| fsio::io_error("reading", &p, &e))?
                    .permissions()
                    .mode()
                    & 0o777;
                if mode != 0o600 {
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                        .with_context(|| format!("making `{}` private (mode 0600)", p.display()))?;
                }
                return Ok((Secrets(map), FileChange::Kept));
            }
            let mut new = text.clone();
            if !text.ends_with('\n') && !text.is_empty() {
                new.push('\n');
            }
            let mut names = Vec::new();
            for (k, what) in missing {
                let v = generate()?;
                new.push_str(&format!("# {what}\n{k}={v}\n"));
                map.insert(k.to_string(), v);
                names.push(k.to_string());
            }
            // The old lines are kept byte for byte; the whole file is replaced atomically
            // so no fault leaves it half-appended.
            fsio::write_atomic(&p, new.as_bytes(), 0o600)?;
            Ok((Secrets(map), FileChange::Appended(names)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            refuse_missing(&p, None, initialised)?;
            let mut text = String::from(
                "# Generated once by cdq; never rewritten. MySQL keeps the passwords it was first\n\
                 # started with: back this file up with the data directory, and do not edit it.\n",
            );
            let mut map = BTreeMap::new();
            for (k, what) in KEYS {
                let v = generate()?;
                text.push_str(&format!("# {what}\n{k}={v}\n"));
                map.insert(k.to_string(), v);
            }
            fsio::create_dirs(deploy_dir)?;
            fsio::write_atomic(&p, text.as_bytes(), 0o600)?;
            Ok((Secrets(map), FileChange::Created))
        }
        Err(e) => Err(fsio::io_error("reading", &p, &e).into()),
    }
}

/// The first line of a `secrets.env` cdq generated: its mark, for a purge.
pub const HEADER: &str = "# Generated once by cdq";

/// Reads the secrets file without creating it (for commands that must not write). Refuses,
/// as `ensure` does, a missing key whose service's data is initialised.
pub fn load_existing_checked(
    deploy_dir: &Path,
    initialised: &Initialised,
) -> anyhow::Result<Option<Secrets>> {
    let p = path(deploy_dir);
    let s = load_existing(deploy_dir)?;
    refuse_missing(&p, s.as_ref().map(|s| &s.0), initialised)?;
    Ok(s)
}

/// Reads the secrets file without creating it (for commands that must not write).
pub fn load_existing(deploy_dir: &Path) -> anyhow::Result<Option<Secrets>> {
    let p = path(deploy_dir);
    match std::fs::read_to_string(&p) {
        Ok(text) => Ok(Some(Secrets(parse(&p, &text)?))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(fsio::io_error("reading", &p, &e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_long_and_distinct() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn created_once_then_kept_byte_identical() {
        let d = tempfile::tempdir().unwrap();
        let (s1, o1) = ensure(d.path(), &Initialised::new()).unwrap();
        assert_eq!(o1, FileChange::Created);
        let before = std::fs::read(path(d.path())).unwrap();
        let mode = std::fs::metadata(path(d.path()))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let (s2, o2) = ensure(d.path(), &Initialised::new()).unwrap();
        assert_eq!(o2, FileChange::Kept);
        assert_eq!(s1, s2);
        assert_eq!(before, std::fs::read(path(d.path())).unwrap());
    }

    #[test]
    fn missing_keys_are_appended_and_loose_mode_tightened() {
        let d = tempfile::tempdir().unwrap();
        let p = path(d.path());
        std::fs::write(&p, "MYSQL_ROOT_PASSWORD=old\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (s, o) = ensure(d.path(), &Initialised::new()).unwrap();
        assert_eq!(s.get("MYSQL_ROOT_PASSWORD"), "old");
        assert!(matches!(o, FileChange::Appended(ref k) if k.len() == 4));
        assert!(
            std::fs::read_to_string(&p)
                .unwrap()
                .starts_with("MYSQL_ROOT_PASSWORD=old\n")
        );
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn debug_never_shows_values() {
        let s = Secrets::fixed();
        let shown = format!("{s:?}");
        for v in s.values() {
            assert!(!shown.contains(v));
        }
    }

    #[test]
    fn corrupt_file_is_refused_not_rewritten() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(path(d.path()), "garbage\n").unwrap();
        assert!(ensure(d.path(), &Initialised::new()).is_err());
        assert_eq!(
            std::fs::read_to_string(path(d.path())).unwrap(),
            "garbage\n"
        );
    }

    #[test]
    fn scrubber_masks_every_password() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = ensure(dir.path(), &Initialised::new()).unwrap();
        let root = s.get("MYSQL_ROOT_PASSWORD").to_string();
        let redis = s.get("REDIS_PASSWORD").to_string();
        let text = format!("root={root} redis {redis}, again {root}");
        let masked = Scrubber::for_deploy_dir(dir.path()).unwrap().scrub(&text);
        assert_eq!(masked, "root=<redacted> redis <redacted>, again <redacted>");
        let none = Scrubber::for_deploy_dir(&dir.path().join("missing")).unwrap();
        assert_eq!(none.scrub(&text), text);
    }
}
