//! The host's intranet IP: kafka advertises it, so it must be an address other machines on
//! the customer's network reach, and it must not move silently between runs. The chosen IP is
//! kept in the deploy directory; changing it takes an explicit `--ip` and is reported.
//!
//! `candidates` and `decide` are pure; `interfaces` and the stored-IP file are the I/O.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::error::CdqError;

/// Interface name prefixes that are never the host's intranet address.
const IGNORED_PREFIXES: [&str; 11] = [
    "lo",
    "docker",
    "br-",
    "veth",
    "virbr",
    "cni",
    "flannel",
    "tun",
    "tap",
    "kube-ipvs",
    "cali",
];

/// Addresses that could be the host's intranet IP, in interface order.
pub fn candidates(ifaces: &[(String, IpAddr)]) -> Vec<(String, Ipv4Addr)> {
    ifaces
        .iter()
        .filter_map(|(name, ip)| match ip {
            IpAddr::V4(v4) => Some((name, *v4)),
            IpAddr::V6(_) => None,
        })
        .filter(|(name, ip)| {
            !ip.is_loopback()
                && !ip.is_link_local()
                && !ip.is_unspecified()
                && !ip.is_multicast()
                && !ignored(name)
        })
        .map(|(n, ip)| (n.clone(), ip))
        .collect()
}

/// Interfaces that are never the intranet address: loopback and container/VPN bridges.
fn ignored(name: &str) -> bool {
    IGNORED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The interface holding `ip`, and whether it is one cdq would never pick (loopback, a
/// container bridge): kafka advertised there is unreachable from other machines. None when
/// no interface holds it (an `--ip` for another machine, or a host that moved networks).
pub fn interface_of(ip: IpAddr, ifaces: &[(String, IpAddr)]) -> Option<(String, bool)> {
    ifaces.iter().find(|(_, a)| *a == ip).map(|(n, _)| {
        (
            n.clone(),
            ignored(n) || ip.is_loopback() || matches!(ip, IpAddr::V4(v) if v.is_link_local()),
        )
    })
}

/// Every (interface, address) pair on the host.
pub fn interfaces() -> anyhow::Result<Vec<(String, IpAddr)>> {
    local_ip_address::list_afinet_netifas().context("listing the host's network interfaces")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Settings,
    Stored,
    Detected,
    Selected,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Flag => "from --ip",
            Source::Settings => "from host_ip in settings",
            Source::Stored => "kept from the last run",
            Source::Detected => "detected",
            Source::Selected => "selected",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub ip: IpAddr,
    pub source: Source,
    /// The stored IP this one replaces, when it differs.
    pub changed_from: Option<IpAddr>,
}

/// What `decide` could not settle alone: several candidates and nobody told us which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Decided(Decision),
    Choose(Vec<(String, Ipv4Addr)>),
}

/// Picks the IP: `--ip`, then settings, then the stored one, then the only candidate.
pub fn decide(
    flag: Option<IpAddr>,
    setting: Option<IpAddr>,
    stored: Option<IpAddr>,
    cands: &[(String, Ipv4Addr)],
) -> Result<Choice, CdqError> {
    let explicit = flag
        .map(|ip| (ip, Source::Flag))
        .or(setting.map(|ip| (ip, Source::Settings)));
    if let Some((ip, source)) = explicit {
        let changed_from = stored.filter(|s| *s != ip);
        return Ok(Choice::Decided(Decision {
            ip,
            source,
            changed_from,
        }));
    }
    if let Some(ip) = stored {
        return Ok(Choice::Decided(Decision {
            ip,
            source: Source::Stored,
            changed_from: None,
        }));
    }
    match cands {
        [] => Err(CdqError::usage(
            "no intranet IP found: every interface is loopback, link-local or a container bridge",
        )
        .hint("pass the address other machines reach this host on: `--ip 10.x.x.x`")),
        [(_, ip)] => Ok(Choice::Decided(Decision {
            ip: IpAddr::V4(*ip),
            source: Source::Detected,
            changed_from: None,
        })),
        many => Ok(Choice::Choose(many.to_vec())),
    }
}

/// The error for several candidates when no one can be asked.
pub fn ambiguous(cands: &[(String, Ipv4Addr)]) -> CdqError {
    let list: Vec<String> = cands.iter().map(|(n, ip)| format!("{ip} ({n})")).collect();
    CdqError::usage(format!(
        "this host has several intranet IPs: {}",
        list.join(", ")
    ))
    .hint(format!(
        "choose the one other machines reach this host on: `--ip {}`",
        cands[0].1
    ))
}

pub fn stored_path(deploy_dir: &Path) -> PathBuf {
    deploy_dir.join(".cdq").join("host-ip")
}

pub fn load_stored(deploy_dir: &Path) -> anyhow::Result<Option<IpAddr>> {
    let p = stored_path(deploy_dir);
    match std::fs::read_to_string(&p) {
        Ok(s) => s.trim().parse().map(Some).map_err(|_| {
            CdqError::usage(format!("`{}` does not hold an IP address", p.display()))
                .hint("delete it and pass `--ip` to choose again")
                .into()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading `{}`", p.display()))),
    }
}

pub fn store(deploy_dir: &Path, ip: IpAddr) -> anyhow::Result<()> {
    let p = stored_path(deploy_dir);
    if load_stored(deploy_dir).ok().flatten() == Some(ip) {
        return Ok(());
    }
    let dir = p.parent().expect("has a parent");
    crate::fsio::refuse_symlink(dir)?;
    crate::fsio::create_dirs(dir)?;
    crate::fsio::write_atomic(&p, format!("{ip}\n").as_bytes(), 0o644)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifs(list: &[(&str, &str)]) -> Vec<(String, IpAddr)> {
        list.iter()
            .map(|(n, ip)| (n.to_string(), ip.parse().unwrap()))
            .collect()
    }

    #[test]
    fn bridges_loopback_and_link_local_are_left_out() {
        let c = candidates(&ifs(&[
            ("lo", "127.0.0.1"),
            ("docker0", "172.17.0.1"),
            ("br-3f2a", "172.18.0.1"),
            ("veth12", "10.9.9.9"),
            ("eth1", "169.254.3.4"),
            ("eth0", "10.1.2.3"),
            ("eth0", "fe80::1"),
            ("virbr0", "192.168.122.1"),
            ("flannel.1", "10.244.0.0"),
            ("tun0", "10.8.0.2"),
        ]));
        assert_eq!(c, vec![("eth0".to_string(), Ipv4Addr::new(10, 1, 2, 3))]);
    }

    #[test]
    fn decision_order() {
        let one = vec![("eth0".to_string(), Ipv4Addr::new(10, 0, 0, 5))];
        let two = vec![
            ("eth0".to_string(), Ipv4Addr::new(10, 0, 0, 5)),
            ("eth1".to_string(), Ipv4Addr::new(192, 168, 1, 5)),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // one candidate: used
        assert_eq!(
            decide(None, None, None, &one).unwrap(),
            Choice::Decided(Decision {
                ip: ip("10.0.0.5"),
                source: Source::Detected,
                changed_from: None
            })
        );
        // several: must choose
        assert_eq!(
            decide(None, None, None, &two).unwrap(),
            Choice::Choose(two.clone())
        );
        // stored beats detection, even if interfaces changed
        assert_eq!(
            decide(None, None, Some(ip("10.0.0.9")), &two).unwrap(),
            Choice::Decided(Decision {
                ip: ip("10.0.0.9"),
                source: Source::Stored,
                changed_from: None
            })
        );
        // flag beats stored and reports the change
        assert_eq!(
            decide(Some(ip("10.0.0.5")), None, Some(ip("10.0.0.9")), &two).unwrap(),
            Choice::Decided(Decision {
                ip: ip("10.0.0.5"),
                source: Source::Flag,
                changed_from: Some(ip("10.0.0.9"))
            })
        );
        // none
        assert!(decide(None, None, None, &[]).is_err());
        let e = ambiguous(&two);
        assert!(e.message.contains("10.0.0.5 (eth0)") && e.message.contains("192.168.1.5 (eth1)"));
        assert_eq!(
            e.hint.as_deref(),
            Some("choose the one other machines reach this host on: `--ip 10.0.0.5`")
        );
    }

    #[test]
    fn interface_of_finds_the_holder_and_flags_bridges() {
        let list = ifs(&[
            ("lo", "127.0.0.1"),
            ("docker0", "172.17.0.1"),
            ("eth0", "10.1.2.3"),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            interface_of(ip("10.1.2.3"), &list),
            Some(("eth0".into(), false))
        );
        assert_eq!(
            interface_of(ip("172.17.0.1"), &list),
            Some(("docker0".into(), true))
        );
        assert_eq!(
            interface_of(ip("127.0.0.1"), &list),
            Some(("lo".into(), true))
        );
        assert_eq!(interface_of(ip("10.9.9.9"), &list), None);
    }

    #[test]
    fn stored_round_trip() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load_stored(d.path()).unwrap(), None);
        store(d.path(), "10.1.2.3".parse().unwrap()).unwrap();
        assert_eq!(
            load_stored(d.path()).unwrap(),
            Some("10.1.2.3".parse().unwrap())
        );
    }
}
