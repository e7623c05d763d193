//! Data a service's new image cannot read: MySQL data written by another major (5.7 and 8.0
//! from cdq's old image set, MariaDB from the local kit) and Kafka data written in ZooKeeper
//! mode (Bitnami Kafka 3.6) or formatted for another KRaft cluster. Found on `cdq up` and
//! `cdq preflight`, before anything starts, so a server never opens data it cannot read.
//!
//! Three steps like the rest of preflight: [`needs`] (pure: which data directories the
//! rendered project mounts, and what its images read), [`probe`] (I/O, read-only: a few
//! marker files in each directory) and [`judge`] (pure: one finding per directory that
//! holds data). Must not write, move or chown anything: the user's data stays as found.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::catalog::Catalog;
use crate::project::Project;
use crate::services::Service;
use crate::settings::{ImageSet, Settings};

use super::{Finding, Status};

/// Where a service's data lives and what the chosen image can read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataNeed {
    pub service: String,
    pub dir: PathBuf,
    pub image: String,
    pub reader: Reader,
    /// The uid that must be able to write the directory, when the image runs as that uid
    /// from the start (kafka); None when its entrypoint starts as root and chowns (mysql).
    pub writer_uid: Option<u32>,
}

/// The server the chosen image runs, as far as its data format goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Reader {
    /// MySQL `major.minor` (from the image tag; the catalogue's 8.4 when the tag says none).
    Mysql(u32, u32),
    /// The local kit's MariaDB.
    Mariadb,
    /// Kafka in KRaft mode, formatting with this `CLUSTER_ID`.
    Kraft { cluster_id: String },
}

/// What a data directory holds, read from its marker files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Found {
    /// Absent or empty: the image initialises it.
    Empty,
    /// It exists but cdq may not list or read it (run as another user than its owner).
    Unreadable(String),
    /// MySQL data and the version that wrote it (`5.7`, `8.0.36`, `8.4.10`).
    Mysql(String),
    /// MariaDB data (`10.11.6-MariaDB`).
    Mariadb(String),
    /// Kafka data from ZooKeeper mode (meta.properties `version=0`): what it says.
    KafkaZk(String),
    /// Kafka data formatted for KRaft with this cluster id.
    KafkaKraft { cluster_id: String },
    /// Files that are none of the above.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub need: DataNeed,
    pub found: Found,
    /// The directory's owner, when it exists.
    pub owner: Option<u32>,
}

const MYSQL_DATA: &str = "/var/lib/mysql";
const KAFKA_DATA: &str = "/var/lib/kafka/data";

/// The data directories of mysql and kafka as the rendered project mounts them.
pub fn needs(s: &Settings, catalog: &Catalog, project: &Project) -> Vec<DataNeed> {
    let mut out = Vec::new();
    for (svc, target) in [(Service::Mysql, MYSQL_DATA), (Service::Kafka, KAFKA_DATA)] {
        let Some(spec) = project.services.get(svc.name()) else {
            continue;
        };
        let Some(bind) = spec.binds.iter().find(|b| b.target == target) else {
            continue;
        };
        let reader = match (svc, &s.images) {
            (Service::Mysql, ImageSet::Local | ImageSet::LocalRegistry(_)) => Reader::Mariadb,
            (Service::Mysql, _) => {
                let (major, minor) = tag_version(&spec.image).unwrap_or((8, 4));
                Reader::Mysql(major, minor)
            }
            _ => Reader::Kraft {
                cluster_id: spec
                    .environment
                    .get("CLUSTER_ID")
                    .cloned()
                    .unwrap_or_default(),
            },
        };
        out.push(DataNeed {
            service: svc.name().to_string(),
            dir: bind.source.clone(),
            image: spec.image.clone(),
            writer_uid: (svc == Service::Kafka)
                .then(|| catalog.images.get(&svc).map(|i| i.uid))
                .flatten(),
            reader,
        });
    }
    out
}

/// `mysql:8.4.10` -> (8, 4); a digest or a tag without a version -> None.
fn tag_version(reference: &str) -> Option<(u32, u32)> {
    let name = &reference[reference.rfind('/').map_or(0, |i| i + 1)..];
    let tag = name.split_once(':')?.1;
    let mut it = tag.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Reads each directory's marker files. Read-only.
pub fn probe(needs: &[DataNeed]) -> Vec<Probe> {
    needs
        .iter()
        .map(|n| Probe {
            need: n.clone(),
            found: match n.reader {
                Reader::Kraft { .. } => probe_kafka(&n.dir),
                _ => probe_mysql(&n.dir),
            },
            owner: std::fs::metadata(&n.dir)
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::uid(&m)),
        })
        .collect()
}

fn listing(dir: &Path) -> Result<Vec<String>, Found> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Found::Unreadable(e.to_string())),
        Ok(rd) => Ok(rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()),
    }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

pub fn probe_mysql(dir: &Path) -> Found {
    let names = match listing(dir) {
        Ok(n) => n,
        Err(f) => return f,
    };
    if names.is_empty() {
        return Found::Empty;
    }
    let has = |n: &str| names.iter().any(|x| x == n);
    // MySQL 8.3+ keeps a JSON history of the versions that opened the directory.
    if let Some(h) = read(&dir.join("mysql_upgrade_history")) {
        let last = h
            .rsplit("\"version\"")
            .next()
            .and_then(|t| t.split('"').nth(1))
            .unwrap_or("8.4");
        return Found::Mysql(last.to_string());
    }
    let info = read(&dir.join("mysql_upgrade_info"))
        .map(|s| s.trim_matches(['\0', '\n', ' ']).to_string());
    if let Some(v) = &info
        && v.contains("MariaDB")
    {
        return Found::Mariadb(v.clone());
    }
    if dir.join("mysql").join("global_priv.frm").exists() {
        return Found::Mariadb("10.4 or newer".into());
    }
    if has("mysql.ibd") {
        // 8.0 has its data dictionary in mysql.ibd; 8.4 would have left an upgrade history.
        return Found::Mysql(
            info.filter(|v| v.starts_with('8'))
                .unwrap_or_else(|| "8.0".into()),
        );
    }
    if has("ibdata1") && dir.join("mysql").join("user.frm").exists() {
        return Found::Mysql(info.unwrap_or_else(|| "5.7".into()));
    }
    if has("ibdata1") || has("auto.cnf") {
        return Found::Mysql(info.unwrap_or_else(|| "5.7 or older".into()));
    }
    Found::Unknown(names.join(", "))
}

pub fn probe_kafka(dir: &Path) -> Found {
    let names = match listing(dir) {
        Ok(n) => n,
        Err(f) => return f,
    };
    if names.is_empty() {
        return Found::Empty;
    }
    let meta = dir.join("meta.properties");
    let Some(text) = read(&meta) else {
        if meta.exists() {
            return Found::Unreadable(format!("cannot read `{}`", meta.display()));
        }
        return Found::Unknown(names.join(", "));
    };
    let get = |k: &str| {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(k)?.strip_prefix('='))
            .next_back()
            .map(|v| v.trim().to_string())
    };
    match get("version").as_deref() {
        Some("1") => Found::KafkaKraft {
            cluster_id: get("cluster.id").unwrap_or_default(),
        },
        v => {
            let mut said = vec![format!("version={}", v.unwrap_or("<none>"))];
            if let Some(b) = get("broker.id") {
                said.push(format!("broker.id={b}"));
            }
            Found::KafkaZk(said.join(", "))
        }
    }
}

/// One finding per data directory that holds data; nothing for an empty one.
pub fn judge(probes: &[Probe], out: &mut Vec<Finding>) {
    for p in probes {
        if let Some(f) = judge_one(p) {
            out.push(f);
        }
    }
}

fn judge_one(p: &Probe) -> Option<Finding> {
    let n = &p.need;
    // Data the image could read but not write: Bitnami's kafka ran as 1001, apache/kafka
    // runs as 1000 and does not chown (cdq hands only directories it creates).
    if let (Some(want), Some(owner)) = (n.writer_uid, p.owner)
        && owner != want
        && matches!(p.found, Found::Empty | Found::KafkaKraft { .. })
    {
        let dir = n.dir.display();
        return Some(Finding {
            id: format!("data-format-{}", n.service),
            status: Status::Fail,
            found: format!(
                "`{dir}` belongs to uid {owner}; `{}` runs as uid {want} and cannot write it",
                n.image
            ),
            needed: format!("a data directory uid {want} can write"),
            fix: Some(format!(
                "hand it over: `sudo chown -R {want}:{want} {dir}` (or remove it if it is empty; `cdq up` creates it with the right owner)"
            )),
        });
    }
    let id = format!("data-format-{}", n.service);
    let dir = n.dir.display();
    let finding = |status, found: String, needed: String, fix: Option<String>| Finding {
        id: id.clone(),
        status,
        found,
        needed,
        fix,
    };
    let needed = match &n.reader {
        Reader::Mysql(a, b) => format!("MySQL {a}.{b} data, or none (`{}`)", n.image),
        Reader::Mariadb => format!("MariaDB data, or none (`{}`)", n.image),
        Reader::Kraft { .. } => format!("KRaft storage of this cluster, or none (`{}`)", n.image),
    };
    Some(match (&p.found, &n.reader) {
        (Found::Empty, _) => return None,
        (Found::Unreadable(e), _) => finding(
            Status::Warn,
            format!("cannot read `{dir}` to tell which server wrote it: {e}"),
            needed,
            Some(format!(
                "run cdq as root (or the directory's owner) so preflight can check it; `{}` will not start on data it cannot read",
                n.image
            )),
        ),
        (Found::Unknown(files), _) => finding(
            Status::Warn,
            format!("`{dir}` holds files no known server wrote: {}", cut(files)),
            needed,
            Some(format!(
                "check what wrote `{dir}`; move it aside (`mv {dir} {dir}.old`) if it is not this service's data"
            )),
        ),
        (Found::Mysql(v), Reader::Mysql(a, b)) => {
            let data = tag_version(&format!("x:{v}"));
            match data {
                Some((x, y)) if (x, y) == (*a, *b) => finding(
                    Status::Pass,
                    format!("MySQL {v} data in `{dir}`"),
                    needed,
                    None,
                ),
                _ => finding(
                    Status::Fail,
                    format!(
                        "MySQL {v} data in `{dir}`: MySQL {a}.{b} {}",
                        if data.is_some_and(|d| d > (*a, *b)) {
                            "cannot open data of a newer server".to_string()
                        } else if data.is_some_and(|d| d < (5, 8)) && (*a, *b) > (8, 0) {
                            "cannot upgrade it (5.7 data needs 8.0 first) and would refuse to start"
                                .to_string()
                        } else {
                            "would upgrade it in place, for good (no way back), and the accounts made with mysql_native_password would stop logging in".to_string()
                        }
                    ),
                    needed,
                    Some(mysql_fix(n, &format!("mysql:{v}"))),
                ),
            }
        }
        (Found::Mariadb(v), Reader::Mariadb) => finding(
            Status::Pass,
            format!("MariaDB {v} data in `{dir}` (the local kit)"),
            needed,
            None,
        ),
        (Found::Mariadb(v), Reader::Mysql(a, b)) => finding(
            Status::Fail,
            format!(
                "MariaDB {v} data in `{dir}` (written by the local kit): MySQL {a}.{b} cannot read it"
            ),
            needed,
            Some(mysql_fix(
                n,
                "cdq-local/mysql:2-<arch> (run `cdq up --images local`)",
            )),
        ),
        (Found::Mysql(v), Reader::Mariadb) => finding(
            Status::Fail,
            format!("MySQL {v} data in `{dir}`: the local kit's MariaDB cannot read it"),
            needed,
            Some(format!(
                "deploy the kit into another directory (`--dir`), or move this data aside: `mv {dir} {dir}.mysql-{v}`"
            )),
        ),
        (Found::KafkaZk(said), _) => finding(
            Status::Fail,
            format!(
                "Kafka data in `{dir}` was written in ZooKeeper mode ({said}; Bitnami Kafka 3.6 from cdq's old image set): Kafka 4 runs KRaft only and cannot read it"
            ),
            needed,
            Some(format!(
                "nothing was started or changed. cdq does not migrate Kafka data: if its topics hold nothing you need (a PoC's rarely do), move it aside and start again: `mv {dir} {dir}.zk-mode && cdq up` (the CD server re-creates its topics); to keep the messages, move them with Kafka 3.9's ZooKeeper-to-KRaft migration before using this image set"
            )),
        ),
        (Found::KafkaKraft { cluster_id }, Reader::Kraft { cluster_id: want }) => {
            if cluster_id == want || want.is_empty() {
                finding(
                    Status::Pass,
                    format!("KRaft storage of cluster `{cluster_id}` in `{dir}`"),
                    needed,
                    None,
                )
            } else {
                finding(
                    Status::Fail,
                    format!(
                        "KRaft storage in `{dir}` belongs to cluster `{cluster_id}`, this project's is `{want}`: Kafka refuses to start on it"
                    ),
                    needed,
                    Some(format!(
                        "the cluster id comes from the project name: deploy with the project that wrote it (`project:` in cdq.yaml), or move the data aside: `mv {dir} {dir}.other-cluster`"
                    )),
                )
            }
        }
        (found, reader) => finding(
            Status::Warn,
            format!("{found:?} in `{dir}`"),
            format!("{reader:?}"),
            None,
        ),
    })
}

/// How to move MySQL data across servers: dump with the server that wrote it, reload into
/// the new one. Every step leaves the old directory in place until the user moves it.
fn mysql_fix(n: &DataNeed, old_image: &str) -> String {
    let dir = n.dir.display();
    format!(
        "nothing was started or changed. Either keep the old server for now: `image_refs: {{mysql: \"{old_image}\"}}` in cdq.yaml; \
or move the data with a dump and reload: \
(1) `docker run -d --name cdq-mysql-old --env-file .env -v {dir}:/var/lib/mysql {old_image}`; \
(2) `docker exec cdq-mysql-old sh -c 'exec mysqldump -uroot -p\"$MYSQL_ROOT_PASSWORD\" --databases cd_server ucenter --routines --events --single-transaction' > cd-dump.sql`; \
(3) `docker rm -f cdq-mysql-old && mv {dir} {dir}.old`; \
(4) `cdq up` (it initialises `{}` on an empty directory), then load the dump: `docker exec -i <project>-mysql-1 sh -c 'exec mysql -uroot -p\"$MYSQL_ROOT_PASSWORD\"' < cd-dump.sql`",
        n.image
    )
}

fn cut(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(80).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(service: &str, dir: &Path, reader: Reader) -> DataNeed {
        DataNeed {
            service: service.into(),
            dir: dir.to_path_buf(),
            image: match reader {
                Reader::Kraft { .. } => "apache/kafka:4.3.1".into(),
                Reader::Mariadb => "cdq-local/mysql:2-amd64".into(),
                Reader::Mysql(..) => "mysql:8.4.10".into(),
            },
            writer_uid: None,
            reader,
        }
    }

    fn one(service: &str, dir: &Path, reader: Reader) -> Option<Finding> {
        let mut out = Vec::new();
        judge(&probe(&[need(service, dir, reader)]), &mut out);
        assert!(out.len() <= 1);
        out.pop()
    }

    fn touch(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn empty_or_absent_directories_say_nothing() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(
            one("mysql", &t.path().join("absent"), Reader::Mysql(8, 4)),
            None
        );
        assert_eq!(one("mysql", t.path(), Reader::Mysql(8, 4)), None);
        assert_eq!(
            one(
                "kafka",
                t.path(),
                Reader::Kraft {
                    cluster_id: "a".into()
                }
            ),
            None
        );
    }

    #[test]
    fn mysql_57_data_fails_with_a_dump_and_reload() {
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("ibdata1"), "");
        touch(&t.path().join("mysql/user.frm"), "");
        touch(&t.path().join("mysql_upgrade_info"), "5.7.44");
        let f = one("mysql", t.path(), Reader::Mysql(8, 4)).unwrap();
        assert_eq!(f.status, Status::Fail);
        assert_eq!(f.id, "data-format-mysql");
        assert!(f.found.contains("MySQL 5.7.44 data"), "{}", f.found);
        assert!(f.found.contains("5.7 data needs 8.0 first"), "{}", f.found);
        let fix = f.fix.unwrap();
        assert!(fix.contains("mysqldump"), "{fix}");
        assert!(
            fix.contains("image_refs: {mysql: \"mysql:5.7.44\"}"),
            "{fix}"
        );
    }

    #[test]
    fn mysql_80_data_fails_but_84_data_passes() {
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("mysql.ibd"), "");
        touch(&t.path().join("mysql_upgrade_info"), "8.0.36");
        let f = one("mysql", t.path(), Reader::Mysql(8, 4)).unwrap();
        assert_eq!(f.status, Status::Fail);
        assert!(f.found.contains("in place, for good"), "{}", f.found);
        // the same data under a pinned 8.0 server is fine
        let f = one("mysql", t.path(), Reader::Mysql(8, 0)).unwrap();
        assert_eq!(f.status, Status::Pass, "{f:?}");
        touch(
            &t.path().join("mysql_upgrade_history"),
            r#"{"file_format":"1","upgrade_history":[{"date":"2026-01-01 00:00:00","version":"8.4.10","maturity":"LTS","initialize":true}]}"#,
        );
        let f = one("mysql", t.path(), Reader::Mysql(8, 4)).unwrap();
        assert_eq!(f.status, Status::Pass, "{f:?}");
        // a newer server's data under an older one
        let f = one("mysql", t.path(), Reader::Mysql(8, 0)).unwrap();
        assert_eq!(f.status, Status::Fail);
        assert!(f.found.contains("newer server"), "{}", f.found);
    }

    #[test]
    fn kit_mariadb_data_passes_on_the_kit_and_fails_on_mysql() {
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("mysql_upgrade_info"), "10.11.6-MariaDB\n");
        touch(&t.path().join("ibdata1"), "");
        assert_eq!(
            one("mysql", t.path(), Reader::Mariadb).unwrap().status,
            Status::Pass
        );
        assert_eq!(
            one("mysql", t.path(), Reader::Mysql(8, 4)).unwrap().status,
            Status::Fail
        );
    }

    #[test]
    fn zookeeper_mode_kafka_data_fails() {
        let t = tempfile::tempdir().unwrap();
        touch(
            &t.path().join("meta.properties"),
            "#\n#Tue Nov 01 00:00:00 UTC 2026\nbroker.id=1\nversion=0\ncluster.id=abc\n",
        );
        touch(
            &t.path()
                .join("__consumer_offsets-0/00000000000000000000.log"),
            "",
        );
        let f = one(
            "kafka",
            t.path(),
            Reader::Kraft {
                cluster_id: "x".into(),
            },
        )
        .unwrap();
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.found.contains("ZooKeeper mode (version=0, broker.id=1"),
            "{}",
            f.found
        );
        assert!(f.fix.unwrap().contains(".zk-mode"));
    }

    #[test]
    fn kraft_data_passes_for_its_own_cluster_only() {
        let t = tempfile::tempdir().unwrap();
        touch(
            &t.path().join("meta.properties"),
            "node.id=1\ndirectory.id=q\nversion=1\ncluster.id=abc\n",
        );
        let ok = one(
            "kafka",
            t.path(),
            Reader::Kraft {
                cluster_id: "abc".into(),
            },
        )
        .unwrap();
        assert_eq!(ok.status, Status::Pass);
        let f = one(
            "kafka",
            t.path(),
            Reader::Kraft {
                cluster_id: "xyz".into(),
            },
        )
        .unwrap();
        assert_eq!(f.status, Status::Fail);
        assert!(f.found.contains("belongs to cluster `abc`"), "{}", f.found);
    }

    #[test]
    fn a_kafka_dir_another_uid_owns_fails_with_a_chown() {
        let t = tempfile::tempdir().unwrap();
        let mine = std::fs::metadata(t.path())
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap();
        let mut n = need(
            "kafka",
            t.path(),
            Reader::Kraft {
                cluster_id: "a".into(),
            },
        );
        n.writer_uid = Some(mine.wrapping_add(1));
        let mut out = Vec::new();
        judge(&probe(&[n.clone()]), &mut out);
        let f = out
            .pop()
            .expect("an empty directory of another uid is a finding");
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.fix
                .unwrap()
                .contains(&format!("chown -R {0}:{0}", mine.wrapping_add(1)))
        );
        n.writer_uid = Some(mine);
        let mut out = Vec::new();
        judge(&probe(&[n]), &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn versions_come_from_the_tag() {
        assert_eq!(tag_version("mysql:8.4.10"), Some((8, 4)));
        assert_eq!(tag_version("reg:5000/library/mysql:5.7.44"), Some((5, 7)));
        assert_eq!(tag_version("reg:5000/mysql"), None);
        assert_eq!(tag_version("mysql:lts"), None);
    }
}
