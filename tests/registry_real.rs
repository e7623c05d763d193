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
        Registry::start_auth(tls, None)
    }

    /// With `token` (the realm, and the certificate that signs its tokens), the registry asks
    /// for Bearer tokens from that realm instead of htpasswd's Basic.
    fn start_auth(tls: Option<(PathBuf, PathBuf)>, token: Option<(String, PathBuf)>) -> Registry {
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
            "version: 0.1\nlog: {{ level: warn }}\nstorage: {{ filesystem: {{ rootdirectory: {data} }} }}\nhttp: {{ addr: 127.0.0.1:{port}, secret: cdq-test{tls} }}\nauth: {auth}\n",
            data = root.path().join("data").display(),
            auth = match token {
                None => format!(
                    "{{ htpasswd: {{ realm: cdq-test, path: {} }} }}",
                    root.path().join("htpasswd").display()
                ),
                Some((realm, cert)) => format!(
                    "{{ token: {{ realm: \"{realm}\", service: cdq-test, issuer: cdq-test-issuer, rootcertbundle: {} }} }}",
                    cert.display()
                ),
            },
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

/// A local tag the test made (an official-style name no one else uses), removed on drop.
struct LocalTag(String);

impl Drop for LocalTag {
    fn drop(&mut self) {
        let _ = docker(&["rmi", &self.0]);
    }
}

/// A `DOCKER_CONFIG` whose `credsStore` is `cdqtest`, and a `docker-credential-cdqtest` on
/// the returned PATH: a real helper program speaking the documented protocol (`get`, the
/// server on stdin, `{"ServerURL","Username","Secret"}` on stdout, "credentials not found"
/// and exit 1 for a server it does not know). It logs each server it was asked about.
struct Helper {
    dir: tempfile::TempDir,
}

impl Helper {
    fn new() -> Helper {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("cdq-credhelper-")
            .tempdir()
            .unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let log = dir.path().join("asked.log");
        let script = format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread -r server\necho \"$server\" >> {log}\ncase \"$server\" in\n  127.0.0.1:*) printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}\\n' \"$server\" ;;\n  *) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n",
            log = log.display()
        );
        let helper = bin.join("docker-credential-cdqtest");
        std::fs::write(&helper, script).unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(dir.path().join("docker")).unwrap();
        std::fs::write(
            dir.path().join("docker/config.json"),
            "{\"credsStore\":\"cdqtest\"}",
        )
        .unwrap();
        Helper { dir }
    }

    fn config(&self) -> String {
        self.dir.path().join("docker").display().to_string()
    }

    fn path(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// The servers the helper was asked about, in order.
    fn asked(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("asked.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Two bundles of one official-style name, `redis:<tag>`: the kit's amd64 image in one, its
/// arm64 image in the other (as a customer carries the official set for both), saved by cdq.
/// The name is left on the amd64 image, as on an amd64 office machine.
fn two_bundles(dir: &Path, tag: &str) -> (PathBuf, PathBuf, LocalTag) {
    let name = format!("redis:{tag}");
    let local = LocalTag(name.clone());
    let plain = Sandbox::new("cdqt", "regbundles");
    std::fs::create_dir(plain.dir()).unwrap();
    let plain = plain.flags(&["--images", "official"]);
    plain.write_config(&format!(
        "services: [redis]\nversions: {{ redis: {tag} }}\n"
    ));
    let mut files = vec![];
    for arch in ["amd64", "arm64"] {
        let _ = docker(&["rmi", &name]);
        docker_ok(&["tag", &format!("cdq-local/redis:2-{arch}"), &name]);
        let file = dir.join(format!("{arch}.cdqb"));
        let save = plain.cdq(&[
            "bundle",
            "save",
            "--arch",
            arch,
            "-o",
            file.to_str().unwrap(),
        ]);
        assert_eq!(save.code, Some(0), "{save}");
        files.push(file);
    }
    let _ = docker(&["rmi", &name]);
    docker_ok(&["tag", "cdq-local/redis:2-amd64", &name]);
    (files[0].clone(), files[1].clone(), local)
}

/// Issue 13 item 5: `cdq push --bundle amd64.cdqb --bundle arm64.cdqb` of one official-style
/// name publishes one tag holding both architectures, with credentials from a real
/// `credsStore` helper for the daemon's pushes, cdq's list PUT and the pulls after. A real
/// client (`docker manifest inspect`, and buildah) reads a list with linux/amd64 and
/// linux/arm64; `docker pull --platform linux/arm64` and `cdq bundle save --arch arm64` get
/// the arm64 image with the pushed id, `cdq bundle load` restores it, and `cdq up` on this
/// amd64 host pulls the amd64 one and reaches healthy. The local name ends where it was.
#[test]
fn push_of_two_bundles_publishes_one_multi_arch_tag() {
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "this test needs an amd64 host"
    );
    common::ensure_arm64_kit(&["redis"]);
    let reg = Registry::start();
    let host = reg.host();
    let tag = format!("cdqt-{}", reg.port);
    let amd = image_id("cdq-local/redis:2-amd64").unwrap();
    let arm = image_id("cdq-local/redis:2-arm64").unwrap();
    let (amd_file, arm_file, _local) = two_bundles(reg.root.path(), &tag);

    let helper = Helper::new();
    let prefix = format!("{host}/cd");
    let s = reg
        .sandbox("regmulti")
        .env("DOCKER_CONFIG", &helper.config())
        .env("PATH", &helper.path())
        .flags(&["--images", "official", "--registry", &prefix]);
    s.write_config(&format!(
        "services: [redis]\nversions: {{ redis: {tag} }}\n"
    ));
    let push = s.cdq(&[
        "push",
        "--bundle",
        amd_file.to_str().unwrap(),
        "--bundle",
        arm_file.to_str().unwrap(),
        "--progress",
        "plain",
    ]);
    assert_eq!(push.code, Some(0), "{push}");
    let target = format!("{prefix}/library/redis:{tag}");
    assert!(
        push.stderr
            .contains(&format!("pushed 1 arm64 images to `{prefix}`\n")),
        "{push}"
    );
    assert!(
        push.stderr
            .contains(&format!("pushed 1 amd64 images to `{prefix}`\n")),
        "{push}"
    );
    assert!(
        push.stderr.contains(&format!(
            "published `{target}` for arm64 and amd64 (sha256:"
        )),
        "{push}"
    );
    assert!(!push.stderr.contains(PASSWORD) && !push.stdout.contains(PASSWORD));
    assert!(
        helper.asked().iter().filter(|h| **h == host).count() >= 3,
        "the helper gave the credentials for both pushes and the list: {:?}",
        helper.asked()
    );
    assert_eq!(
        image_id(&format!("redis:{tag}")),
        Some(amd.clone()),
        "the name is back on the image it named before the arm64 bundle was loaded"
    );

    // A real client reads one list with both platforms.
    let inspect = reg.docker(&["manifest", "inspect", "--insecure", &target]);
    assert_eq!(inspect.code, Some(0), "{inspect}");
    let list: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let platforms: Vec<String> = list["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    // buildah reads it too: `manifest add --all` of the remote tag copies each instance of
    // its list into a local list.
    let list = format!("cdqt-list-{}", reg.port);
    let buildah = |args: &[&str]| {
        let mut c = Command::new("buildah");
        c.env("BUILDAH_ISOLATION", "chroot").args(args);
        run(&mut c)
    };
    assert_eq!(buildah(&["manifest", "create", &list]).code, Some(0));
    let add = buildah(&[
        "manifest",
        "add",
        "--all",
        "--creds",
        &format!("{USER}:{PASSWORD}"),
        "--tls-verify=false",
        &list,
        &format!("docker://{target}"),
    ]);
    let local = buildah(&["manifest", "inspect", &list]);
    let _ = buildah(&["manifest", "rm", &list]);
    assert_eq!(add.code, Some(0), "{add}");
    let local: serde_json::Value = serde_json::from_str(&local.stdout).unwrap();
    let mut archs: Vec<&str> = local["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    archs.sort();
    assert_eq!(archs, ["amd64", "arm64"]);

    // The arm64 variant, by the docker CLI.
    reg.untag_all();
    let pull = reg.docker(&["pull", "--platform", "linux/arm64", &target]);
    assert_eq!(pull.code, Some(0), "{pull}");
    assert_eq!(
        image_id(&target),
        Some(arm.clone()),
        "the pushed arm64 image"
    );
    reg.untag_all();

    // ... and by cdq, into a bundle; loaded back, it is the same image.
    let bundle = s.root().join("from-registry-arm64.cdqb");
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
    assert_eq!(image_id(&target), Some(arm.clone()));
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
        image_id(&target),
        Some(arm),
        "the load restored the same image"
    );

    // The same tag deployed on this amd64 host: `up` pulls the amd64 variant.
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
    assert_eq!(image_id(&target), Some(amd));
    assert!(!up.stderr.contains(PASSWORD) && !up.stdout.contains(PASSWORD));
}

/// `cdq push --bundle FILE` of one architecture: the bundle is loaded, its images pushed
/// under their own names (no suffix, no list), and the name the load moved is put back.
#[test]
fn push_of_one_bundle_pushes_its_architecture_under_the_name() {
    common::ensure_arm64_kit(&["redis"]);
    let reg = Registry::start();
    let tag = format!("cdqt-{}", reg.port);
    let amd = image_id("cdq-local/redis:2-amd64").unwrap();
    let arm = image_id("cdq-local/redis:2-arm64").unwrap();
    let (_, arm_file, _local) = two_bundles(reg.root.path(), &tag);
    let prefix = format!("{}/one", reg.host());
    let s = reg
        .sandbox("regonebundle")
        .flags(&["--images", "official", "--registry", &prefix]);
    s.write_config(&format!(
        "services: [redis]\nversions: {{ redis: {tag} }}\n"
    ));
    let push = s.cdq(&[
        "push",
        "--bundle",
        arm_file.to_str().unwrap(),
        "--progress",
        "plain",
    ]);
    assert_eq!(push.code, Some(0), "{push}");
    assert!(
        push.stderr.contains(&format!("  loaded   redis:{tag}")),
        "the bundle was loaded: {push}"
    );
    assert!(
        push.stderr
            .contains(&format!("pushed 1 arm64 images to `{prefix}`\n")),
        "{push}"
    );
    assert!(!push.stderr.contains("published"), "{push}");
    assert_eq!(image_id(&format!("redis:{tag}")), Some(amd));
    let target = format!("{prefix}/library/redis:{tag}");
    let inspect = reg.docker(&["manifest", "inspect", "--insecure", &target]);
    assert_eq!(inspect.code, Some(0), "{inspect}");
    assert!(
        inspect
            .stdout
            .contains("application/vnd.docker.distribution.manifest.v2+json"),
        "a single image, not a list: {inspect}"
    );
    reg.untag_all();
    let pull = reg.docker(&["pull", &target]);
    assert_eq!(pull.code, Some(0), "{pull}");
    assert_eq!(image_id(&target), Some(arm));
}

/// A proxy to `upstream` that answers every PUT of a manifest list with 403 DENIED (as
/// Harbor does for an account without push rights or an immutable tag) and passes the rest.
fn denying_proxy(upstream: u16) -> u16 {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let mut c_deny = client.try_clone().unwrap();
                let (mut s_in, mut c_out) = (server, client);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = s_in.read(&mut buf) {
                        if n == 0 || c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_out.shutdown(Shutdown::Write);
                });
                let mut buf = [0u8; 16384];
                while let Ok(n) = c_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                    if text.starts_with("put /v2/") && text.contains("manifest.list.v2+json") {
                        let body = r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#;
                        let _ = write!(
                            c_deny,
                            "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = c_deny.shutdown(Shutdown::Both);
                        let _ = s_out.shutdown(Shutdown::Both);
                        return;
                    }
                    if s_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_out.shutdown(Shutdown::Write);
            });
        }
    });
    port
}

/// The registry refuses the list (403) after both pushes went through: exit 7, the message
/// names the registry and the tag, the registry's words are the cause, the hint the fix;
/// the password is not printed.
#[test]
fn a_refused_list_names_the_registry_and_the_fix() {
    common::ensure_arm64_kit(&["redis"]);
    let reg = Registry::start();
    let proxy = denying_proxy(reg.port);
    let tag = format!("cdqt-{}", reg.port);
    let (amd_file, arm_file, _local) = two_bundles(reg.root.path(), &tag);
    let via = format!("127.0.0.1:{proxy}");
    let helper = Helper::new();
    let s = reg
        .sandbox("regdenied")
        .env("DOCKER_CONFIG", &helper.config())
        .env("PATH", &helper.path())
        .flags(&["--images", "official", "--registry", &format!("{via}/cd")]);
    s.write_config(&format!(
        "services: [redis]\nversions: {{ redis: {tag} }}\n"
    ));
    let push = s.cdq(&[
        "push",
        "--bundle",
        amd_file.to_str().unwrap(),
        "--bundle",
        arm_file.to_str().unwrap(),
        "--progress",
        "plain",
    ]);
    for t in [
        format!("{via}/cd/library/redis:{tag}-amd64"),
        format!("{via}/cd/library/redis:{tag}-arm64"),
    ] {
        let _ = docker(&["rmi", &t]);
    }
    assert_eq!(push.code, Some(7), "{push}");
    let target = format!("{via}/cd/library/redis:{tag}");
    assert!(
        push.stderr.contains(&format!(
            "error: the registry `{via}` refused the multi-arch tag `{target}` (403: not allowed)\ncaused by: HTTP 403: DENIED: requested access to the resource is denied\n"
        )),
        "{push}"
    );
    assert!(
        push.stderr.ends_with(&format!(
            "hint: the account `docker login {via}` stored needs push rights on the repository, and the tag must not be immutable (Harbor: the project's tag immutability rules), then run `cdq push` again (the images already there are not sent twice)\n"
        )),
        "{push}"
    );
    assert!(!push.stderr.contains(PASSWORD) && !push.stdout.contains(PASSWORD));
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

/// A token service as Harbor and Docker Hub run one: `GET /token?service=…&scope=…` with
/// Basic credentials answers `{"token": JWT}`, the JWT signed (RS256, by `openssl`) with a
/// key whose self-signed certificate the registry trusts, granting the scopes asked for; wrong
/// or no credentials get 401. Returns its realm URL, the certificate, and how many tokens it
/// gave for good credentials.
fn token_service(
    dir: &Path,
) -> (
    String,
    PathBuf,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=cdq test token issuer",
            "-keyout",
            "token.key",
            "-out",
            "token.crt",
        ],
    );
    let pem = std::fs::read_to_string(dir.join("token.crt")).unwrap();
    let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let key = dir.join("token.key");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let realm = format!(
        "http://127.0.0.1:{}/token",
        listener.local_addr().unwrap().port()
    );
    let given = Arc::new(AtomicUsize::new(0));
    let given2 = given.clone();
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    std::thread::spawn(move || {
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut authorized = false;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = h.split_once(':')
                    && name.eq_ignore_ascii_case("authorization")
                {
                    authorized = value.trim() == good;
                }
            }
            let mut out = stream;
            if !authorized {
                let _ = write!(
                    out,
                    "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                );
                continue;
            }
            let query = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let access: Vec<serde_json::Value> = query
                .split(['?', '&'])
                .filter_map(|kv| kv.strip_prefix("scope="))
                .map(|scope| {
                    let scope = scope.replace("%3A", ":").replace("%2C", ",").replace("%2F", "/");
                    let parts: Vec<&str> = scope.splitn(3, ':').collect();
                    serde_json::json!({
                        "type": parts.first().copied().unwrap_or(""),
                        "name": parts.get(1).copied().unwrap_or(""),
                        "actions": parts.get(2).map_or(vec![], |a| a.split(',').collect::<Vec<_>>()),
                    })
                })
                .collect();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [der_b64]});
            let claims = serde_json::json!({
                "iss": "cdq-test-issuer", "sub": USER, "aud": "cdq-test",
                "exp": now + 600, "nbf": now - 60, "iat": now - 60,
                "jti": format!("cdq-{now}-{}", given2.load(Ordering::SeqCst)),
                "access": access,
            });
            let signing = format!(
                "{}.{}",
                url.encode(header.to_string()),
                url.encode(claims.to_string())
            );
            let mut sign = Command::new("openssl");
            sign.args(["dgst", "-sha256", "-sign"])
                .arg(&key)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            let mut child = sign.spawn().unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(signing.as_bytes())
                .unwrap();
            let sig = child.wait_with_output().unwrap().stdout;
            let jwt = format!("{signing}.{}", url.encode(sig));
            let body = format!("{{\"token\":\"{jwt}\",\"expires_in\":600}}");
            given2.fetch_add(1, Ordering::SeqCst);
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (realm, dir.join("token.crt"), given)
}

/// A registry behind a Bearer token service (as Harbor runs): cdq answers the list PUT's
/// 401 `Bearer realm=…,service=…` with a token fetched with the stored credentials, and the
/// list is published; a real client reads both platforms from it.
#[test]
fn the_list_is_published_through_a_bearer_token_service() {
    common::ensure_arm64_kit(&["redis"]);
    let pki = tempfile::tempdir().unwrap();
    let (realm, cert, given) = token_service(pki.path());
    let reg = Registry::start_auth(None, Some((realm, cert)));
    let host = reg.host();
    let tag = format!("cdqt-{}", reg.port);
    let (amd_file, arm_file, _local) = two_bundles(reg.root.path(), &tag);
    let prefix = format!("{host}/cd");
    let s = reg
        .sandbox("regbearer")
        .flags(&["--images", "official", "--registry", &prefix]);
    s.write_config(&format!(
        "services: [redis]\nversions: {{ redis: {tag} }}\n"
    ));
    let push = s.cdq(&[
        "push",
        "--bundle",
        amd_file.to_str().unwrap(),
        "--bundle",
        arm_file.to_str().unwrap(),
        "--progress",
        "plain",
    ]);
    assert_eq!(push.code, Some(0), "{push}");
    let target = format!("{prefix}/library/redis:{tag}");
    assert!(
        push.stderr.contains(&format!(
            "published `{target}` for arm64 and amd64 (sha256:"
        )),
        "{push}"
    );
    assert!(!push.stderr.contains(PASSWORD) && !push.stdout.contains(PASSWORD));
    let before = given.load(std::sync::atomic::Ordering::SeqCst);
    let inspect = reg.docker(&["manifest", "inspect", "--insecure", &target]);
    assert_eq!(inspect.code, Some(0), "{inspect}");
    assert!(
        inspect.stdout.contains("\"architecture\": \"arm64\""),
        "{inspect}"
    );
    assert!(
        inspect.stdout.contains("\"architecture\": \"amd64\""),
        "{inspect}"
    );
    assert!(
        given.load(std::sync::atomic::Ordering::SeqCst) > before,
        "the docker CLI went through the token service too"
    );
}
