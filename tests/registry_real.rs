//! Real-registry tests of `cdq push`, `cdq pull`, `cdq up --pull` and `cdq bundle save
//! --arch` (issue 13's must-shows), against Debian's `docker-registry` (the CNCF
//! distribution registry) that each test starts on 127.0.0.1:<free port> with its own config,
//! htpasswd file (bcrypt, from `htpasswd -Bbn`) and storage in a temporary directory. Docker
//! trusts loopback registries over plain HTTP, so no daemon setting changes.
//!
//! Credentials reach cdq the way Docker's own do: a `DOCKER_CONFIG` directory of the test's
//! with an `auths` entry. Every local tag a test makes is under `127.0.0.1:<its port>/`, so
//! it touches no reference anyone else uses; a [`Registry`] removes those tags and stops the
//! registry on drop, pass or fail, and each test's [`Sandbox`] removes what carries its label.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Sandbox, docker, docker_ok, free_ports, run};

const USER: &str = "cdq";
const PASSWORD: &str = "s3cret-cdq-test";

fn image_id(reference: &str) -> Option<String> {
    let o = docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
    (o.code == Some(0)).then(|| o.stdout.trim().to_string())
}

/// A `docker-registry` on 127.0.0.1:<port> behind htpasswd, and the docker config holding
/// its credentials.
struct Registry {
    port: u16,
    root: tempfile::TempDir,
    child: Child,
}

impl Registry {
    fn start() -> Registry {
        Registry::start_with(None)
    }

    /// With `tls`, the registry serves HTTPS with this (certificate, key) pair.
    fn start_with(tls: Option<(PathBuf, PathBuf)>) -> Registry {
        let bin = Path::new("/usr/bin/docker-registry");
        assert!(
            bin.exists(),
            "`/usr/bin/docker-registry` is missing\nhint: scripts/setup.sh installs Debian's docker-registry and apache2-utils"
        );
        let root = tempfile::Builder::new()
            .prefix("cdq-registry-")
            .tempdir()
            .unwrap();
        let hash = Command::new("htpasswd")
            .args(["-Bbn", USER, PASSWORD])
            .output()
            .expect("htpasswd (apache2-utils) runs");
        assert!(hash.status.success(), "htpasswd failed");
        std::fs::write(root.path().join("htpasswd"), &hash.stdout).unwrap();
        let [port] = free_ports::<1>();
        let tls = tls.map_or(String::new(), |(cert, key)| {
            format!(
                ", tls: {{ certificate: {}, key: {} }}",
                cert.display(),
                key.display()
            )
        });
        let config = format!(
            "version: 0.1\nlog: {{ level: warn }}\nstorage: {{ filesystem: {{ rootdirectory: {data} }} }}\nhttp: {{ addr: 127.0.0.1:{port}, secret: cdq-test{tls} }}\nauth: {{ htpasswd: {{ realm: cdq-test, path: {pw} }} }}\n",
            data = root.path().join("data").display(),
            pw = root.path().join("htpasswd").display(),
        );
        std::fs::write(root.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(root.path().join("registry.log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(root.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        let r = Registry { port, root, child };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the registry did not listen on {port}: {}",
                std::fs::read_to_string(r.root.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r.write_docker_config(PASSWORD);
        r
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `DOCKER_CONFIG` for cdq and the docker CLI: an `auths` entry with `password`.
    fn docker_config(&self) -> PathBuf {
        self.root.path().join("docker")
    }

    fn write_docker_config(&self, password: &str) {
        std::fs::create_dir_all(self.docker_config()).unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        std::fs::write(
            self.docker_config().join("config.json"),
            format!(
                "{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}",
                self.host()
            ),
        )
        .unwrap();
    }

    /// A sandbox whose cdq reads this registry's credentials.
    fn sandbox(&self, test: &str) -> Sandbox {
        let s = Sandbox::new("cdqt", test)
            .env("DOCKER_CONFIG", self.docker_config().to_str().unwrap())
            .down_on_drop("5");
        std::fs::create_dir(s.dir()).unwrap();
        s
    }

    /// `docker ARGS` with this registry's credentials.
    fn docker(&self, args: &[&str]) -> common::Out {
        let mut c = Command::new("docker");
        c.env("DOCKER_CONFIG", self.docker_config()).args(args);
        run(&mut c)
    }

    /// Every local tag under this registry, to untag.
    fn local_tags(&self) -> Vec<String> {
        docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .lines()
            .filter(|l| l.starts_with(&format!("{}/", self.host())))
            .map(str::to_string)
            .collect()
    }

    fn untag_all(&self) {
        for t in self.local_tags() {
            let _ = docker(&["rmi", &t]);
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.untag_all();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue 13's first must-show: `cdq --images local --registry R push` fills the registry;
/// with the local copies removed, `cdq up` pulls and reaches healthy, and the pulled image is
/// the pushed one (same id).
#[test]
fn push_then_up_pulls_from_a_registry_behind_htpasswd() {
    let reg = Registry::start();
    let prefix = format!("{}/cd", reg.host());
    let s = reg
        .sandbox("regup")
        .flags(&["--images", "local", "--registry", &prefix]);
    s.write_config("services: [redis]\n");
    let kit = image_id("cdq-local/redis:2-amd64").expect(
        "the kit image `cdq-local/redis:2-amd64` is missing: run scripts/build-local-images.sh",
    );

    let push = s.cdq(&["push", "--arch", "amd64", "--progress", "plain"]);
    assert_eq!(push.code, Some(0), "{push}");
    let target = format!("{prefix}/cdq-local/redis:2-amd64");
    assert!(
        push.stderr
            .contains(&format!("pushed 1 amd64 images to `{prefix}`")),
        "{push}"
    );
    assert!(!push.stderr.contains(PASSWORD) && !push.stdout.contains(PASSWORD));

    reg.untag_all();
    assert_eq!(image_id(&target), None, "the local copy is gone");

    let up = s.cdq(&[
        "up",
        "--ip",
        "127.0.0.1",
        "--arch",
        "amd64",
        "--progress",
        "plain",
    ]);
    assert_eq!(up.code, Some(0), "{up}");
    assert!(up.stderr.contains("pulling 1 image for amd64"), "{up}");
    assert!(
        up.stderr.contains(&format!("pulled {target}: done")),
        "{up}"
    );
    assert_eq!(
        image_id(&target),
        Some(kit),
        "the pulled image is the pushed one"
    );
    assert!(!up.stderr.contains(PASSWORD) && !up.stdout.contains(PASSWORD));
    let status = s.cdq(&["status", "--json"]);
    assert!(status.stdout.contains("\"healthy\""), "{status}");
}

/// A wrong password: exit 6, the message names the registry and `docker login`, no
/// container or file is created, the password is not printed.
#[test]
fn a_wrong_password_names_the_registry_and_creates_nothing() {
    let reg = Registry::start();
    let prefix = format!("{}/cd", reg.host());
    let s = reg
        .sandbox("regauth")
        .flags(&["--images", "local", "--registry", &prefix]);
    s.write_config("services: [redis]\n");
    assert_eq!(
        s.cdq(&["push", "--arch", "amd64", "--progress", "plain"])
            .code,
        Some(0)
    );
    reg.untag_all();
    reg.write_docker_config("not-the-password");

    let up = s.cdq(&[
        "up",
        "--ip",
        "127.0.0.1",
        "--arch",
        "amd64",
        "--progress",
        "plain",
    ]);
    assert_eq!(up.code, Some(7), "{up}");
    let host = reg.host();
    assert!(
        up.stderr.contains(&format!(
            "error: the registry `{host}` refused to let this host pull `{prefix}/cdq-local/redis:2-amd64` (401: no or wrong credentials)\n"
        )),
        "{up}"
    );
    assert!(
        up.stderr.ends_with(&format!(
            "hint: log in with `docker login {host}` (cdq reads the same credentials), then run cdq again\n"
        )),
        "{up}"
    );
    assert!(!up.stderr.contains("not-the-password") && !up.stdout.contains("not-the-password"));
    assert_eq!(
        s.labelled(),
        Vec::<String>::new(),
        "no container, no network"
    );
    assert!(
        !s.dir().join("docker-compose.amd64.yaml").exists(),
        "nothing rendered to disk"
    );
}

/// A missing tag, a missing architecture and an unreachable host: exit 6 each, with the
/// registry and the fix, and nothing created.
#[test]
fn missing_tag_missing_arch_and_unreachable_host() {
    let reg = Registry::start();
    let host = reg.host();

    // Not pushed: the reference and the settings that produced it.
    let s = reg.sandbox("regmiss").flags(&[
        "--images",
        "local",
        "--registry",
        &format!("{host}/nothere"),
    ]);
    s.write_config("services: [redis]\n");
    let o = s.cdq(&["pull", "--arch", "amd64", "--progress", "plain"]);
    assert_eq!(o.code, Some(7), "{o}");
    assert!(
        o.stderr.contains(&format!(
            "error: `{host}/nothere/cdq-local/redis:2-amd64` is not on the registry `{host}`\n"
        )),
        "{o}"
    );
    assert!(
        o.stderr
            .contains("hint: the reference comes from the image set `local from "),
        "{o}"
    );
    let up = s.cdq(&[
        "up",
        "--ip",
        "127.0.0.1",
        "--arch",
        "amd64",
        "--progress",
        "plain",
    ]);
    assert_eq!(up.code, Some(7), "{up}");
    assert_eq!(s.labelled(), Vec::<String>::new());

    // Only amd64 under the tag: a pull for arm64 names the architectures it has.
    let single = format!("{host}/cdqt/redis:2-amd64-only");
    assert_eq!(
        reg.docker(&["tag", "cdq-local/redis:2-amd64", &single])
            .code,
        Some(0)
    );
    let p = reg.docker(&["push", &single]);
    assert_eq!(p.code, Some(0), "{p}");
    reg.untag_all();
    let s2 = reg.sandbox("regarch").flags(&["--images", "official"]);
    s2.write_config(&format!(
        "services: [redis]\nimage_refs: {{ redis: {single} }}\n"
    ));
    let o = s2.cdq(&["pull", "--arch", "arm64", "--progress", "plain"]);
    assert_eq!(o.code, Some(7), "{o}");
    assert!(
        o.stderr.contains(&format!(
            "error: `{single}` on the registry `{host}` has no linux/arm64 variant (it has: linux/amd64)\n"
        )),
        "{o}"
    );

    // Nothing listens there.
    let [dead] = free_ports::<1>();
    let s3 = reg.sandbox("regdead").flags(&[
        "--images",
        "local",
        "--registry",
        &format!("127.0.0.1:{dead}/cd"),
    ]);
    s3.write_config("services: [redis]\n");
    let up = s3.cdq(&[
        "up",
        "--ip",
        "127.0.0.1",
        "--arch",
        "amd64",
        "--progress",
        "plain",
    ]);
    assert_eq!(up.code, Some(7), "{up}");
    assert!(
        up.stderr.contains(&format!(
            "error: cannot reach the registry `127.0.0.1:{dead}` to pull `127.0.0.1:{dead}/cd/cdq-local/redis:2-amd64`\n"
        )),
        "{up}"
    );
    assert!(up.stderr.contains("connection refused"), "{up}");
    assert_eq!(s3.labelled(), Vec::<String>::new());
}

/// Issue 13's bundle must-show: a multi-arch tag (amd64 and arm64 kit images, assembled with
/// buildah), `cdq bundle save --arch arm64` on this amd64 host pulls the arm64 variant and
/// bundles it; `cdq bundle load` restores the same image; `cdq up` on this host then pulls
/// the amd64 variant of the same tag and reaches healthy.
#[test]
fn bundle_save_for_arm64_pulls_the_variant_of_a_multi_arch_tag() {
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "this test needs an amd64 host"
    );
    common::ensure_arm64_kit(&["redis"]);
    let reg = Registry::start();
    let host = reg.host();
    let tag = format!("{host}/cdqt/redis:7.2.11");
    for arch in ["amd64", "arm64"] {
        let one = format!("{tag}-{arch}");
        assert_eq!(
            reg.docker(&["tag", &format!("cdq-local/redis:2-{arch}"), &one])
                .code,
            Some(0)
        );
        let p = reg.docker(&["push", &one]);
        assert_eq!(p.code, Some(0), "{p}");
    }
    reg.untag_all();
    // buildah assembles the list from the two pushed manifests (cdq push pushes one
    // architecture per run).
    let list = format!("cdqt-list-{}", reg.port);
    let creds = format!("{USER}:{PASSWORD}");
    let buildah = |args: &[&str]| {
        let mut c = Command::new("buildah");
        c.env("BUILDAH_ISOLATION", "chroot").args(args);
        run(&mut c)
    };
    assert_eq!(buildah(&["manifest", "create", &list]).code, Some(0));
    for arch in ["amd64", "arm64"] {
        let o = buildah(&[
            "manifest",
            "add",
            "--creds",
            &creds,
            "--tls-verify=false",
            &list,
            &format!("docker://{tag}-{arch}"),
        ]);
        assert_eq!(o.code, Some(0), "{o}");
    }
    let o = buildah(&[
        "manifest",
        "push",
        "--all",
        "--creds",
        &creds,
        "--tls-verify=false",
        &list,
        &format!("docker://{tag}"),
    ]);
    let _ = buildah(&["manifest", "rm", &list]);
    assert_eq!(o.code, Some(0), "{o}");

    let s = reg.sandbox("regbundle").flags(&["--images", "official"]);
    s.write_config(&format!(
        "services: [redis]\nimage_refs: {{ redis: {tag} }}\n"
    ));
    let bundle = s.root().join("arm64.bundle");
    let save = s.cdq(&[
        "bundle",
        "save",
        "--arch",
        "arm64",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(save.code, Some(0), "{save}");
    assert!(
        save.stderr.contains("pulled 1 arm64 images for the bundle"),
        "{save}"
    );
    assert!(save.stderr.contains("saved 1 arm64 images"), "{save}");
    let arm = image_id("cdq-local/redis:2-arm64").unwrap();
    assert_eq!(
        image_id(&tag),
        Some(arm.clone()),
        "the arm64 variant was pulled"
    );

    reg.untag_all();
    let load = s.cdq(&[
        "bundle",
        "load",
        "--arch",
        "arm64",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(load.code, Some(0), "{load}");
    assert_eq!(
        image_id(&tag),
        Some(arm),
        "the load restored the same image"
    );

    // The same tag deployed on this amd64 host: the arm64 copy under the tag is not what
    // the target needs, so `up` pulls the amd64 variant and reaches healthy on it.
    let up = s.cdq(&[
        "up",
        "--ip",
        "127.0.0.1",
        "--arch",
        "amd64",
        "--progress",
        "plain",
    ]);
    assert_eq!(up.code, Some(0), "{up}");
    assert!(up.stderr.contains("pulling 1 image for amd64"), "{up}");
    assert_eq!(image_id(&tag), image_id("cdq-local/redis:2-amd64"));
}

/// A TCP proxy to `upstream` that, once, cuts the connection 256 KiB into the first blob
/// response it forwards; returns its port and how many connections it cut.
fn dropping_proxy(upstream: u16) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cut = Arc::new(AtomicUsize::new(0));
    let cut2 = cut.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let cut = cut2.clone();
            std::thread::spawn(move || {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                let blob = Arc::new(AtomicBool::new(false));
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let blob_w = blob.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = c_in.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]);
                        if text.starts_with("GET ") && text.contains("/blobs/sha256:") {
                            blob_w.store(true, Ordering::SeqCst);
                        }
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(Shutdown::Write);
                });
                let (mut s_in, mut c_out) = (server, client);
                let mut buf = [0u8; 16384];
                let mut after_blob = 0usize;
                while let Ok(n) = s_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if blob.load(Ordering::SeqCst) {
                        after_blob += n;
                        if after_blob > 256 * 1024
                            && cut
                                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                                .is_ok()
                        {
                            let _ = c_out.shutdown(Shutdown::Both);
                            let _ = s_in.shutdown(Shutdown::Both);
                            return;
                        }
                    }
                    if c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_out.shutdown(Shutdown::Write);
            });
        }
    });
    (port, cut)
}

/// A registry that drops the connection in the middle of a blob: the pull still completes
/// (the transfer is retried) with the pushed image's id.
#[test]
fn a_connection_dropped_mid_blob_is_retried() {
    let reg = Registry::start();
    let (proxy, cut) = dropping_proxy(reg.port);
    // An image of its own (4 MiB of random bytes): no layer of it is on this host already,
    // so the pull must download the blob through the proxy.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vec![0u8; 4 << 20];
    getrandom::fill(&mut bytes).unwrap();
    std::fs::write(dir.path().join("blob"), &bytes).unwrap();
    let direct = format!("{}/cdqt/blob:1", reg.host());
    let mut import = Command::new("sh");
    import.arg("-c").arg(format!(
        "tar -C {} -c blob | docker import - {direct}",
        dir.path().display()
    ));
    let o = run(&mut import);
    assert_eq!(o.code, Some(0), "{o}");
    let id = image_id(&direct).unwrap();
    let p = reg.docker(&["push", &direct]);
    assert_eq!(p.code, Some(0), "{p}");
    reg.untag_all();
    assert_eq!(image_id(&direct), None);

    let via = format!("127.0.0.1:{proxy}/cdqt/blob:1");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(
        reg.docker_config().join("config.json"),
        format!("{{\"auths\":{{\"127.0.0.1:{proxy}\":{{\"auth\":\"{auth}\"}}}}}}"),
    )
    .unwrap();
    let s = reg.sandbox("regdrop").flags(&["--images", "official"]);
    s.write_config(&format!(
        "services: [redis]\nimage_refs: {{ redis: {via} }}\n"
    ));
    let o = s.cdq(&["pull", "--arch", "amd64", "--progress", "plain"]);
    let pulled = image_id(&via);
    let _ = docker(&["rmi", &via]);
    assert_eq!(o.code, Some(0), "{o}");
    assert_eq!(
        cut.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the proxy cut a blob: {o}"
    );
    assert_eq!(pulled, Some(id), "the pulled image is the pushed one");
}

/// The daemon's `certs.d/HOST:PORT/ca.crt` for one registry, removed on drop.
struct DaemonCa(PathBuf);

impl Drop for DaemonCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `openssl ARGS` in `dir`, or a panic with its output.
fn openssl(dir: &Path, args: &[&str]) {
    let mut c = Command::new("openssl");
    c.current_dir(dir).args(args);
    let o = run(&mut c);
    assert_eq!(o.code, Some(0), "openssl {args:?}: {o}");
}

/// Over TLS from a throwaway CA placed under the daemon's `certs.d/127.0.0.1:PORT/ca.crt`
/// (removed afterwards): `cdq push` and `cdq pull` speak HTTPS to the registry and the pulled
/// image is the pushed one. (On loopback the daemon would also accept an unknown authority,
/// since it treats 127.0.0.0/8 as an insecure registry, so the x509 message is covered by
/// `ops::transfer`'s classification test instead.)
#[test]
fn push_and_pull_over_tls_with_the_ca_in_certs_d() {
    let pki = tempfile::tempdir().unwrap();
    let d = pki.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=cdq test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "reg.key",
            "-out",
            "reg.csr",
        ],
    );
    std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "reg.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "reg.crt",
        ],
    );
    let reg = Registry::start_with(Some((d.join("reg.crt"), d.join("reg.key"))));
    let host = reg.host();
    let certs = PathBuf::from(format!("/etc/docker/certs.d/{host}"));
    std::fs::create_dir_all(&certs).expect("writing /etc/docker/certs.d (run as root)");
    let _ca = DaemonCa(certs.clone());
    std::fs::copy(d.join("ca.crt"), certs.join("ca.crt")).unwrap();

    // The registry speaks HTTPS only.
    let curl = run(Command::new("curl").args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        d.join("ca.crt").to_str().unwrap(),
        &format!("https://{host}/v2/"),
    ]));
    assert_eq!(curl.stdout.trim(), "401", "{curl}");

    let prefix = format!("{host}/cd");
    let s = reg
        .sandbox("regtls")
        .flags(&["--images", "local", "--registry", &prefix]);
    s.write_config("services: [redis]\n");
    let push = s.cdq(&["push", "--arch", "amd64", "--progress", "plain"]);
    assert_eq!(push.code, Some(0), "{push}");
    reg.untag_all();
    let pull = s.cdq(&["pull", "--arch", "amd64", "--progress", "json"]);
    assert_eq!(pull.code, Some(0), "{pull}");
    assert!(
        pull.stdout.lines().all(|l| l.starts_with("{\"")),
        "JSON events: {pull}"
    );
    assert!(pull.stdout.contains("\"event\":\"done\""), "{pull}");
    assert_eq!(
        image_id(&format!("{prefix}/cdq-local/redis:2-amd64")),
        image_id("cdq-local/redis:2-amd64")
    );
}
