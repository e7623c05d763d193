//! How cdq reaches a registry, decided the way the Docker daemon decides it, so that what
//! the daemon pushed to, cdq can reach too: HTTPS trusting the system's roots plus
//! `/etc/docker/certs.d/HOST:PORT/*.crt` (and a `*.cert`/`*.key` client pair there), or, for a
//! registry the daemon treats as insecure (`insecure-registries`, and loopback by default),
//! HTTPS without verification then plain HTTP.
//!
//! Must not: print, or read a key file anywhere but the registry's `certs.d` directory.

use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

/// Where the Docker daemon reads per-registry certificates.
pub const DOCKER_CERTS_D: &str = "/etc/docker/certs.d";

/// The daemon's insecure registries, from `docker info` (`RegistryConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Insecure {
    /// `IndexConfigs` entries with `Secure: false` (`host:port` as configured).
    pub names: Vec<String>,
    /// `InsecureRegistryCIDRs` (`127.0.0.0/8` unless the daemon was told otherwise).
    pub cidrs: Vec<String>,
}

impl Insecure {
    /// Whether the daemon treats `host` (`name[:port]`) as insecure: named, or one of its
    /// addresses inside an insecure CIDR (the daemon resolves the name, and so does this).
    pub fn covers(&self, host: &str) -> bool {
        if self.names.iter().any(|n| n == host) {
            return true;
        }
        let name = strip_port(host);
        let addrs: Vec<IpAddr> = match name.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => (name, 0)
                .to_socket_addrs()
                .map(|a| a.map(|s| s.ip()).collect())
                .unwrap_or_default(),
        };
        addrs
            .iter()
            .any(|ip| self.cidrs.iter().any(|c| in_cidr(*ip, c)))
    }
}

/// `h:5000` -> `h`, `[::1]:5000` -> `::1`, `h` -> `h`.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.parse::<u16>().is_ok() => name,
        _ => host,
    }
}

/// Whether `ip` is inside `cidr` (`10.0.0.0/8`, `fd00::/8`); a malformed CIDR holds nothing.
pub fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// A TLS setup that cannot be built: a certificate file cdq cannot read or parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFile {
    pub path: PathBuf,
    pub why: String,
}

/// The TLS settings for `host`: verified against the system roots and the registry's
/// `certs.d` directory under `certs_root`, or not verified at all (`verify` false, for an
/// insecure registry).
pub fn config(host: &str, certs_root: &Path, verify: bool) -> Result<TlsConfig, BadFile> {
    let provider = Arc::new(rustls_rustcrypto::provider());
    let dir = certs_root.join(host);
    let mut roots: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .into_iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    let mut client: Option<ClientCert> = None;
    for path in sorted_files(&dir) {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext {
            "crt" => roots.extend(read_certs(&path)?),
            "cert" => {
                let key = path.with_extension("key");
                let chain = read_certs(&path)?;
                let key = read_key(&key)?;
                client = Some(ClientCert::new_with_certs(&chain, key));
            }
            _ => {}
        }
    }
    Ok(TlsConfig::builder()
        .unversioned_rustls_crypto_provider(provider)
        .root_certs(RootCerts::new_with_certs(&roots))
        .client_cert(client)
        .disable_verification(!verify)
        .build())
}

fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn read_pem(path: &Path) -> Result<Vec<PemItem<'static>>, BadFile> {
    let bad = |why: String| BadFile {
        path: path.to_path_buf(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    ureq::tls::parse_pem(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("it is not PEM ({e})")))
}

fn read_certs(path: &Path) -> Result<Vec<Certificate<'static>>, BadFile> {
    let certs: Vec<Certificate<'static>> = read_pem(path)?
        .into_iter()
        .filter_map(|i| match i {
            PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(BadFile {
            path: path.to_path_buf(),
            why: "it holds no PEM certificate".into(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKey<'static>, BadFile> {
    read_pem(path)?
        .into_iter()
        .find_map(|i| match i {
            PemItem::PrivateKey(k) => Some(k),
            _ => None,
        })
        .ok_or_else(|| BadFile {
            path: path.to_path_buf(),
            why: "it holds no PEM private key (the client certificate beside it needs one)".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_hold_what_they_should() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_cidr(ip("127.0.0.1"), "127.0.0.0/8"));
        assert!(in_cidr(ip("10.1.2.3"), "10.0.0.0/8"));
        assert!(!in_cidr(ip("11.1.2.3"), "10.0.0.0/8"));
        assert!(in_cidr(ip("192.168.1.9"), "192.168.1.9/32"));
        assert!(in_cidr(ip("8.8.8.8"), "0.0.0.0/0"));
        assert!(in_cidr(ip("::1"), "::1/128"));
        assert!(!in_cidr(ip("::1"), "127.0.0.0/8"));
        assert!(!in_cidr(ip("127.0.0.1"), "127.0.0.0"));
        assert!(!in_cidr(ip("127.0.0.1"), "127.0.0.0/33"));
    }

    #[test]
    fn insecure_as_the_daemon_decides() {
        let i = Insecure {
            names: vec!["harbor.lan:5000".into()],
            cidrs: vec!["127.0.0.0/8".into(), "10.9.0.0/16".into()],
        };
        assert!(i.covers("127.0.0.1:5000"));
        assert!(i.covers("localhost:5000"), "the name resolves to loopback");
        assert!(i.covers("harbor.lan:5000"));
        assert!(i.covers("10.9.3.4:443"));
        assert!(!i.covers("10.8.3.4:443"));
        assert!(!i.covers("harbor.lan:5001"), "named with its port");
        assert!(!i.covers("[::1]:5000"), "::1 is not in 127.0.0.0/8");
        assert!(!Insecure::default().covers("127.0.0.1:5000"));
    }

    #[test]
    fn ports_come_off_names_and_addresses() {
        assert_eq!(strip_port("h:5000"), "h");
        assert_eq!(strip_port("h"), "h");
        assert_eq!(strip_port("[::1]:5000"), "::1");
        assert_eq!(strip_port("10.0.0.1:443"), "10.0.0.1");
    }

    #[test]
    fn a_certs_d_file_that_is_not_pem_is_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("h:5000")).unwrap();
        std::fs::write(d.path().join("h:5000/ca.crt"), "not a certificate").unwrap();
        let e = config("h:5000", d.path(), true).unwrap_err();
        assert_eq!(e.path, d.path().join("h:5000/ca.crt"));
        assert_eq!(e.why, "it holds no PEM certificate");
        assert!(
            config("other:5000", d.path(), true).is_ok(),
            "no directory: system roots"
        );
    }
}
