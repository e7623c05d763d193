//! Fuzzing the two parsers that read what a user typed: `cdq.yaml`
//! ([`cdq::settings::parse_file`]) and a compose file ([`cdq::project::parse`], which
//! `cdq up --compose FILE` feeds with any file a user hands it).
//!
//! proptest rather than cargo-fuzz: cargo-fuzz needs a nightly toolchain, which a fresh
//! machine here does not have, and proptest shrinks a failure to a small input by itself.
//!
//! The generators aim near the valid set, where the bugs are: a document shaped like a
//! real one (the real keys, each with values from a pool of valid and nearly-valid
//! values: overflowing numbers and durations, odd unicode, `${` fragments, YAML tags and
//! anchors), then 0-3 text edits (a byte inserted, deleted or replaced by one of YAML's
//! special characters). Beside those: random bytes, strings over YAML's punctuation, and
//! deep nesting of every kind.
//!
//! The property: the parser returns (never panics, never hangs) with either a value or a
//! usage error (exit 2) whose message is non-empty, names the file, and whose hint, if
//! any, is non-empty. For compose files also: an accepted project can be ordered
//! (`start_order`, which asserts that parsing rejected every cycle).
//!
//! `cargo test --test fuzz_parsers` runs a few hundred cases per target (seconds).
//! `scripts/fuzz.sh` runs each target for a set time: `CDQ_FUZZ_SECONDS=600` makes each
//! target loop over fresh random batches until the time is up, then print its case count.
//!
//! Every panic the fuzzer found is kept below as a named regression test.

use std::path::Path;
use std::time::{Duration, Instant};

use cdq::error::{CdqError, Kind};
use cdq::interpolate::Vars;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

// ---- a YAML document as a tree, rendered in block or flow style --------------------------

#[derive(Debug, Clone)]
enum Node {
    /// Written as is, so a scalar may carry quotes, tags, anchors or a block indicator.
    Scalar(String),
    Seq(Vec<Node>, bool),
    Map(Vec<(String, Node)>, bool),
}

impl Node {
    fn render(&self) -> String {
        let mut out = String::new();
        self.block(0, &mut out);
        out
    }

    fn flow(&self, out: &mut String) {
        match self {
            Node::Scalar(s) => out.push_str(s),
            Node::Seq(items, _) => {
                out.push('[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    x.flow(out);
                }
                out.push(']');
            }
            Node::Map(items, _) => {
                out.push('{');
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(k);
                    out.push_str(": ");
                    v.flow(out);
                }
                out.push('}');
            }
        }
    }

    /// Writes `self` as the value after `key:` or `-` (on the same line when inline).
    fn value(&self, indent: usize, out: &mut String) {
        match self {
            Node::Scalar(_) | Node::Seq(_, true) | Node::Map(_, true) => {
                out.push(' ');
                self.flow(out);
                out.push('\n');
            }
            _ => {
                out.push('\n');
                self.block(indent + 2, out);
            }
        }
    }

    fn block(&self, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match self {
            Node::Scalar(_) | Node::Seq(_, true) | Node::Map(_, true) => {
                out.push_str(&pad);
                self.flow(out);
                out.push('\n');
            }
            Node::Seq(items, false) => {
                for x in items {
                    out.push_str(&pad);
                    out.push('-');
                    x.value(indent, out);
                }
            }
            Node::Map(items, false) => {
                for (k, v) in items {
                    out.push_str(&pad);
                    out.push_str(k);
                    out.push(':');
                    v.value(indent, out);
                }
            }
        }
    }
}

// ---- value pools ---------------------------------------------------------------------------

/// Values that are hard for any YAML reader, whatever the key.
const ODD: &[&str] = &[
    "~",
    "null",
    "''",
    "\"\"",
    "true",
    "no",
    "-1",
    "-0",
    "0",
    "0x1F",
    "0o17",
    "1e400",
    "-1e400",
    ".inf",
    ".nan",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "4294967296",
    "65536",
    "\"\\u0000\"",
    "\"\\t\"",
    "'a''b'",
    "ünïcödé",
    "数据",
    "🦀",
    "\u{202e}rtl",
    "\u{feff}bom",
    "a\u{0085}b",
    "*nope",
    "&a v",
    "*a",
    "!!binary aGk=",
    "!!int x",
    "!custom x",
    "? k",
    "|",
    ">-",
    "|\n  block\n",
    "---",
    "...",
    "%YAML 1.2",
    "@x",
    "`x`",
    "# comment",
    "a: b",
    "- x",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\"unclosed",
    "'unclosed",
    "${",
    "${}",
    "${PW",
    "${PW}",
    "${UNSET}",
    "${UNSET:-d}",
    "${UNSET-${PW}}",
    "${EMPTY:?need it}",
    "${EMPTY?}",
    "${A-${B-${C}}}",
    "${PW:-${",
    "$$",
    "$",
    "$PW",
    "$1",
    "${🦀}",
    "\"${PW}\"",
];

const DURATIONS: &[&str] = &[
    "90s",
    "5m",
    "1m30s",
    "1h",
    "500ms",
    "1.5s",
    "0s",
    "0",
    "5",
    "s",
    "5x",
    ".s",
    "..5s",
    "1e5s",
    "-5s",
    "18446744073709551615s",
    "18446744073709551616s",
    "9999999999999999999999h",
    "5124095576030432h",
    "307445734561825861m",
    "99999999999999999999.9s",
    "0.0000001us",
    "1us",
    "1h1h1h",
    "1m 30s",
];

const SIZES: &[&str] = &[
    "512m",
    "1g",
    "2G",
    "0m",
    "m",
    "1",
    "1.5g",
    "18014398509481984g",
    "18014398509481983g",
    "18446744073709551615m",
    "18446744073709551616m",
    "-1g",
];

const SETTINGS_VALUES: &[&str] = &[
    "demo",
    "cdq",
    "Demo",
    "-x",
    "data",
    "/opt/cd/data",
    "../../x",
    "10.1.2.3",
    "10.1.2",
    "::1",
    "fe80::1%eth0",
    "auto",
    "amd64",
    "arm64",
    "x86_64",
    "aarch64",
    "sparc",
    "official",
    "local",
    "harbor.example.com:5000/cd",
    "http://x",
    "Asia/Shanghai",
    "mysql",
    "redis",
    "8.0.40",
    "8080",
    "65535",
];

const SERVICES: &[&str] = &[
    "mysql",
    "redis",
    "zookeeper",
    "kafka",
    "elasticsearch",
    "prometheus",
    "grafana",
    "ucenter",
    "server",
];

const ODD_KEYS: &[&str] = &[
    "prots",
    "",
    "<<",
    "? x",
    "\"quoted\"",
    "1",
    "~",
    "null",
    "ünï",
    "Project",
    "x-ext",
    "[a]",
    "{a: b}",
    "&a k",
    "*a",
    "a b",
    "-",
    "\"\"",
];

fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
    proptest::sample::select(pool).prop_map(str::to_string)
}

/// A scalar from `pool` most of the time, else an odd one or a random short string.
fn scalar_from(pool: &'static [&'static str]) -> impl Strategy<Value = Node> + Clone {
    prop_oneof![
        8 => pick(pool),
        2 => pick(ODD),
        1 => "[ -~]{0,12}",
        1 => any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
    .prop_map(Node::Scalar)
}

/// Any tree: what a user who misunderstood the format might write under a key.
fn any_node() -> impl Strategy<Value = Node> + Clone {
    let leaf = scalar_from(SETTINGS_VALUES);
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 0..4), any::<bool>())
                .prop_map(|(v, f)| Node::Seq(v, f)),
            (
                prop::collection::vec((key_from(SERVICES), inner), 0..4),
                any::<bool>()
            )
                .prop_map(|(v, f)| Node::Map(v, f)),
        ]
    })
}

fn key_from(pool: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
    prop_oneof![8 => pick(pool), 1 => pick(ODD_KEYS), 1 => "[a-z_]{1,10}"]
}

fn map_of(
    keys: &'static [&'static str],
    value: impl Strategy<Value = Node> + Clone,
    max: usize,
) -> impl Strategy<Value = Node> + Clone {
    (
        prop::collection::vec((key_from(keys), value), 0..max),
        any::<bool>(),
    )
        .prop_map(|(v, f)| Node::Map(v, f))
}

fn seq_of(value: impl Strategy<Value = Node> + Clone, max: usize) -> impl Strategy<Value = Node> {
    (prop::collection::vec(value, 0..max), any::<bool>()).prop_map(|(v, f)| Node::Seq(v, f))
}

// ---- text edits ------------------------------------------------------------------------------

/// Bytes that change what YAML means.
const SPECIAL: &[&str] = &[
    "\t", "\n", " ", ":", "-", "[", "]", "{", "}", ",", "#", "&", "*", "!", "|", ">", "'", "\"",
    "%", "@", "`", "?", "$", "${", "\r", "\0", "\u{85}", "\u{2028}", "\u{feff}",
];

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, String),
    Delete(usize, usize),
    Replace(usize, String),
    DuplicateLine(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), pick(SPECIAL)).prop_map(|(i, s)| Edit::Insert(i, s)),
        (any::<usize>(), 1usize..8).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<usize>(), pick(SPECIAL)).prop_map(|(i, s)| Edit::Replace(i, s)),
        any::<usize>().prop_map(Edit::DuplicateLine),
    ]
}

/// Half the documents are left as generated, so deep paths (value parsers, dependency
/// checks) are reached; the other half get 1-3 edits.
fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop_oneof![Just(vec![]), prop::collection::vec(edit(), 1..4)]
}

fn boundary(s: &str, i: usize) -> usize {
    let mut i = i % (s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(mut s: String, edits: &[Edit]) -> String {
    for e in edits {
        match e {
            Edit::Insert(i, x) => {
                let i = boundary(&s, *i);
                s.insert_str(i, x);
            }
            Edit::Delete(i, n) => {
                let a = boundary(&s, *i);
                let b = boundary(&s, a + n).max(a);
                // `boundary` wraps past the end; deleting up to the end is what was meant.
                let b = if a + n > s.len() { s.len() } else { b };
                s.replace_range(a..b, "");
            }
            Edit::Replace(i, x) => {
                let a = boundary(&s, *i);
                let b = s[a..].chars().next().map_or(a, |c| a + c.len_utf8());
                s.replace_range(a..b, x);
            }
            Edit::DuplicateLine(i) => {
                let lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let l = lines[i % lines.len()].to_string();
                    s = format!("{s}\n{l}\n");
                }
            }
        }
    }
    s
}

// ---- inputs that are not near any valid document ---------------------------------------------

/// Depth stops at 1500: libyaml's flow-mapping nesting is quadratic (`{a: ` x 8000 takes
/// 5 s in a debug build), a known cost of the YAML library, not a crash; 1500 levels is
/// already ten times what serde_yaml accepts (128), so every deeper input is an error.
fn deep_nesting() -> impl Strategy<Value = String> {
    (0usize..8, 1usize..1500).prop_map(|(kind, d)| match kind {
        0 => format!("{}{}", "[".repeat(d), "]".repeat(d)),
        1 => format!("{}1{}", "{a: ".repeat(d), "}".repeat(d)),
        2 => (0..d.min(600))
            .map(|i| format!("{}a:\n", " ".repeat(i)))
            .collect(),
        3 => (0..d.min(600))
            .map(|i| format!("{}-\n", " ".repeat(i)))
            .collect(),
        4 => "- ".repeat(d) + "x\n",
        5 => "[".repeat(d),
        6 => {
            // Alias expansion, the "billion laughs" shape.
            let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
            for i in 1..d.min(24) {
                let p = format!("*a{}", i - 1);
                s.push_str(&format!(
                    "a{i}: &a{i} [{p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}]\n"
                ));
            }
            s
        }
        _ => format!(
            "services:\n  s:\n    image: x\n    labels: {}1{}\n",
            "{a: ".repeat(d),
            "}".repeat(d)
        ),
    })
}

fn noise() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "[-:{}\\[\\],&*!|>'\"%@`#? \n\ta-z0-9$_.]{0,300}",
        any::<String>(),
    ]
}

// ---- the settings file -----------------------------------------------------------------------

const TOP_KEYS: &[&str] = &[
    "project",
    "data_dir",
    "host_ip",
    "arch",
    "images",
    "timezone",
    "services",
    "versions",
    "ports",
    "heap",
    "deadlines",
    "seccomp",
    "selinux_relabel",
];
const PORT_KEYS: &[&str] = &["server", "ucenter", "grafana", "kafka", "prometheus"];
const HEAP_KEYS: &[&str] = &["elasticsearch", "kafka", "server", "ucenter"];

fn settings_entry() -> impl Strategy<Value = (String, Node)> {
    key_from(TOP_KEYS).prop_flat_map(|k| {
        let shaped = match k.as_str() {
            "services" => seq_of(scalar_from(SERVICES), 10).boxed(),
            "versions" => map_of(SERVICES, scalar_from(SETTINGS_VALUES), 5).boxed(),
            "deadlines" => map_of(SERVICES, scalar_from(DURATIONS), 5).boxed(),
            "heap" => map_of(HEAP_KEYS, scalar_from(SIZES), 5).boxed(),
            "ports" => map_of(PORT_KEYS, scalar_from(SETTINGS_VALUES), 6).boxed(),
            _ => scalar_from(SETTINGS_VALUES).boxed(),
        };
        (Just(k), prop_oneof![8 => shaped, 1 => any_node()])
    })
}

fn settings_text() -> impl Strategy<Value = String> {
    let doc = (prop::collection::vec(settings_entry(), 0..8), edits())
        .prop_map(|(entries, edits)| apply(Node::Map(entries, false).render(), &edits));
    prop_oneof![
        8 => doc,
        1 => deep_nesting(),
        1 => noise(),
    ]
}

// ---- the compose file ------------------------------------------------------------------------

const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "volumes",
    "ports",
    "depends_on",
    "healthcheck",
    "restart",
    "ulimits",
    "user",
    "working_dir",
    "hostname",
    "labels",
    "stop_grace_period",
];
/// Outside the subset: must be refused naming the key.
const UNSUPPORTED_KEYS: &[&str] = &[
    "privileged",
    "networks",
    "build",
    "deploy",
    "network_mode",
    "container_name",
];
const SERVICE_NAMES: &[&str] = &[
    "db", "web", "a", "b", "redis", "Web", "bad name", "1", "s-1",
];
const COMMANDS: &[&str] = &[
    "redis-server",
    "sh -c 'echo hi'",
    "sh -c 'unclosed",
    "a \"b\\\" c\"",
    "\"a\\",
    "a\\",
    "''",
    "\"\"",
    "CMD",
    "CMD-SHELL",
    "NONE",
    "x ${PW} y",
];
const VOLUMES: &[&str] = &[
    "./data:/var/lib",
    "/a:/b:ro",
    "/a:/b:rw",
    "/a:/b:z",
    "named:/x",
    "a:b:c:d",
    "~/x:/y",
    "~:/y",
    ":",
    "/a:rel",
    "../../../x:/y",
    "./${PW}:/y",
    "/a:/b:ro:ro",
];
const PORTS: &[&str] = &[
    "8080:80",
    "127.0.0.1:80:80",
    "[::1]:80:80",
    "80",
    "99999:80",
    "0:80",
    "a:b",
    "1:2/sctp",
    "1:2/udp",
    "[::1:80:80",
    "[",
    "[]:",
    "::",
    "1:2:3:4",
    "/tcp",
    ":/",
];
const CONDITIONS: &[&str] = &[
    "service_started",
    "service_healthy",
    "service_completed_successfully",
    "service_unknown",
];
const HC_KEYS: &[&str] = &[
    "test",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "disable",
];
const ULIMIT_KEYS: &[&str] = &["nofile", "nproc", "memlock", "soft", "hard"];
const NUMBERS: &[&str] = &[
    "1",
    "65535",
    "-1",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "4294967295",
    "4294967296",
    "1.5",
];

fn service_entry() -> impl Strategy<Value = (String, Node)> {
    let key = prop_oneof![
        12 => pick(SERVICE_KEYS),
        1 => pick(UNSUPPORTED_KEYS),
        1 => pick(ODD_KEYS),
    ];
    key.prop_flat_map(|k| {
        let shaped = match k.as_str() {
            "command" | "entrypoint" => {
                prop_oneof![scalar_from(COMMANDS), seq_of(scalar_from(COMMANDS), 4)].boxed()
            }
            "environment" => prop_oneof![
                map_of(&["A", "B", "PW", "TZ"], scalar_from(ODD), 4),
                seq_of(scalar_from(&["A=1", "B", "=", "A==", "PW=${PW}"]), 4)
            ]
            .boxed(),
            "volumes" => seq_of(scalar_from(VOLUMES), 4).boxed(),
            "ports" => seq_of(scalar_from(PORTS), 4).boxed(),
            "depends_on" => prop_oneof![
                seq_of(scalar_from(SERVICE_NAMES), 3),
                map_of(
                    SERVICE_NAMES,
                    map_of(&["condition", "restart"], scalar_from(CONDITIONS), 2),
                    3
                )
            ]
            .boxed(),
            "healthcheck" => map_of(
                HC_KEYS,
                prop_oneof![
                    scalar_from(DURATIONS),
                    scalar_from(NUMBERS),
                    scalar_from(COMMANDS),
                    seq_of(scalar_from(COMMANDS), 3)
                ],
                6,
            )
            .boxed(),
            "ulimits" => map_of(
                ULIMIT_KEYS,
                prop_oneof![
                    scalar_from(NUMBERS),
                    map_of(&["soft", "hard"], scalar_from(NUMBERS), 3)
                ],
                3,
            )
            .boxed(),
            "labels" => map_of(&["a", "io.cdq.project", "b"], scalar_from(ODD), 3).boxed(),
            "stop_grace_period" => scalar_from(DURATIONS).boxed(),
            "restart" => scalar_from(&[
                "no",
                "always",
                "unless-stopped",
                "on-failure",
                "on-failure:3",
                "sometimes",
            ])
            .boxed(),
            _ => scalar_from(&["redis:7", "cdq-local/redis:2-amd64", "root", "/w", "h"]).boxed(),
        };
        (Just(k), prop_oneof![8 => shaped, 1 => any_node()])
    })
}

fn compose_text() -> impl Strategy<Value = String> {
    let service = (prop::collection::vec(service_entry(), 0..7), any::<bool>()).prop_map(
        |(mut entries, has_image)| {
            // Most real services have an image: keep enough of them valid to get past it.
            if has_image && !entries.iter().any(|(k, _)| k == "image") {
                entries.insert(0, ("image".into(), Node::Scalar("redis:7".into())));
            }
            Node::Map(entries, false)
        },
    );
    let services = (
        prop::collection::vec((key_from(SERVICE_NAMES), service), 0..4),
        any::<bool>(),
    )
        .prop_map(|(v, f)| Node::Map(v, f));
    let top = prop_oneof![
        8 => services.prop_map(|s| ("services".to_string(), s)),
        1 => (key_from(&["name", "version", "networks", "volumes", "x-ext", "configs"]), any_node()),
    ];
    let doc = (prop::collection::vec(top, 0..3), edits())
        .prop_map(|(entries, edits)| apply(Node::Map(entries, false).render(), &edits));
    prop_oneof![
        8 => doc,
        1 => deep_nesting(),
        1 => noise(),
    ]
}

// ---- properties ------------------------------------------------------------------------------

const SETTINGS_FILE: &str = "/fuzz/cdq.yaml";
const COMPOSE_FILE: &str = "/fuzz/compose.yaml";

/// A hang is a finding, slowness alone is not: alias expansion up to serde_yaml's
/// repetition limit (100 x the document's events, then an error) took 5.6 s in a debug
/// build with two fuzzers and other builds sharing 2 cores. 30 s catches a hang without
/// failing on a busy machine.
const SLOW: Duration = Duration::from_secs(30);

fn check_error(e: &CdqError, file: &str) -> Result<(), TestCaseError> {
    prop_assert!(!e.message.trim().is_empty(), "empty message: {e:?}");
    prop_assert_eq!(e.kind, Kind::Usage, "bad input must exit 2: {:?}", e);
    prop_assert!(
        e.message.contains(file),
        "the message must name the file: {:?}",
        e
    );
    if let Some(h) = &e.hint {
        prop_assert!(!h.trim().is_empty(), "empty hint: {e:?}");
    }
    Ok(())
}

fn check_settings(text: &str) -> Result<(), TestCaseError> {
    let t0 = Instant::now();
    let r = cdq::settings::parse_file(Path::new(SETTINGS_FILE), text);
    prop_assert!(t0.elapsed() < SLOW, "took {:?}", t0.elapsed());
    match r {
        Ok(_) => Ok(()),
        Err(e) => check_error(&e, SETTINGS_FILE),
    }
}

fn vars() -> Vars {
    Vars::from_dotenv("PW=s3cret\nEMPTY=\nA=1\n", [])
}

fn check_compose(text: &str) -> Result<(), TestCaseError> {
    let t0 = Instant::now();
    let r = cdq::project::parse(
        Path::new(COMPOSE_FILE),
        Path::new("/fuzz"),
        text,
        &vars(),
        "fuzz",
    );
    prop_assert!(t0.elapsed() < SLOW, "took {:?}", t0.elapsed());
    match r {
        Ok(p) => {
            let order = p.start_order();
            prop_assert_eq!(order.len(), p.services.len());
            Ok(())
        }
        Err(e) => check_error(&e, COMPOSE_FILE),
    }
}

/// Runs `check` on inputs from `strategy`: one batch (`PROPTEST_CASES`, default 256), or,
/// with `CDQ_FUZZ_SECONDS`, fresh random batches until that time is up. Prints the count.
fn fuzz(
    name: &str,
    strategy: impl Strategy<Value = String>,
    check: fn(&str) -> Result<(), TestCaseError>,
) {
    let batch: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let seconds: Option<u64> = std::env::var("CDQ_FUZZ_SECONDS")
        .ok()
        .map(|v| v.parse().expect("CDQ_FUZZ_SECONDS is a number of seconds"));
    let t0 = Instant::now();
    let mut cases: u64 = 0;
    loop {
        // A new runner per batch: a new random seed, so long runs do not repeat inputs.
        // No persistence file: findings are kept as named tests below instead.
        let mut runner = TestRunner::new(Config {
            cases: batch,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&strategy, |text| check(&text)) {
            panic!("{name}: after {cases} passing cases: {e}");
        }
        cases += u64::from(batch);
        match seconds {
            Some(s) if t0.elapsed() < Duration::from_secs(s) => {}
            _ => break,
        }
    }
    eprintln!(
        "fuzz {name}: {cases} cases in {:.1}s, no panic",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn fuzz_settings_parse_file() {
    fuzz("settings::parse_file", settings_text(), check_settings);
}

#[test]
fn fuzz_project_parse() {
    fuzz("project::parse", compose_text(), check_compose);
}

/// The generators must reach valid documents too, or the fuzzer only ever tests the first
/// error path: this fails if (nearly) every generated input is rejected.
#[test]
fn generators_reach_valid_documents() {
    let mut runner = TestRunner::deterministic();
    let (mut ok_settings, mut ok_compose) = (0, 0);
    for _ in 0..400 {
        let s = settings_text().new_tree(&mut runner).unwrap().current();
        ok_settings += usize::from(cdq::settings::parse_file(Path::new(SETTINGS_FILE), &s).is_ok());
        let c = compose_text().new_tree(&mut runner).unwrap().current();
        ok_compose += usize::from(
            cdq::project::parse(
                Path::new(COMPOSE_FILE),
                Path::new("/fuzz"),
                &c,
                &vars(),
                "fuzz",
            )
            .is_ok(),
        );
    }
    eprintln!("valid: settings {ok_settings}/400, compose {ok_compose}/400");
    assert!(ok_settings >= 20, "settings: {ok_settings}/400 valid");
    // Compose documents have more keys to get right at once (an image, and every value
    // of every key of every service), so fewer come out valid; the runner is
    // deterministic, so these counts are the same on every run.
    assert!(ok_compose >= 10, "compose: {ok_compose}/400 valid");
}

// ---- regressions: every panic the fuzzer found, kept as its own test -------------------------

fn settings_err(text: &str) -> CdqError {
    let e =
        cdq::settings::parse_file(Path::new(SETTINGS_FILE), text).expect_err("must be rejected");
    check_error(&e, SETTINGS_FILE).unwrap();
    e
}

fn compose_err(text: &str) -> CdqError {
    let e = cdq::project::parse(
        Path::new(COMPOSE_FILE),
        Path::new("/fuzz"),
        text,
        &vars(),
        "fuzz",
    )
    .expect_err("must be rejected");
    check_error(&e, COMPOSE_FILE).unwrap();
    e
}

/// Found by the fuzzer: hours that fit a u64 but overflow it in seconds panicked
/// (`attempt to multiply with overflow`, settings.rs `parse_duration`).
#[test]
fn regression_deadline_overflowing_seconds_is_a_usage_error() {
    for d in [
        "5124095576030432h",
        "307445734561825861m",
        "18446744073709551615s1s",
    ] {
        let e = settings_err(&format!("deadlines:\n  mysql: {d}\n"));
        assert_eq!(
            e.message,
            format!(
                "`{SETTINGS_FILE}` line 2: deadlines: `{d}` is not a duration: write it like `90s`, `5m` or `1m30s`"
            )
        );
    }
}

/// Same bug in `MiB::parse`, found beside the one above: `18014398509481984g` is a u64
/// but overflows once multiplied into MiB.
#[test]
fn regression_heap_overflowing_mib_is_a_usage_error() {
    let e = settings_err("heap: { kafka: 18014398509481984g }\n");
    assert!(
        e.message
            .ends_with("`18014398509481984g` is not a size: write it like `512m` or `2g`"),
        "{e:?}"
    );
    // The largest that fits still parses.
    cdq::settings::parse_file(
        Path::new(SETTINGS_FILE),
        "heap: { kafka: 18014398509481983g }\n",
    )
    .unwrap();
}

/// Same bug in the compose parser: `Duration::from_secs_f64` panics past u64 seconds, and
/// `+=` on `Duration` panics on overflow.
#[test]
fn regression_compose_duration_past_u64_seconds_is_a_usage_error() {
    for d in [
        "99999999999999999999s",
        "18446744073709551615s18446744073709551615s",
    ] {
        let e = compose_err(&format!(
            "services:\n  a:\n    image: x\n    stop_grace_period: {d}\n"
        ));
        assert_eq!(
            e.message,
            format!(
                "`{COMPOSE_FILE}`: `stop_grace_period`: `{d}` is not a duration (write `5s`, `1m30s`)"
            )
        );
    }
}

/// Found by the fuzzer (38,000 cases in): an invalid `name:` in a compose file was
/// reported without the file (`project name `Demo` is not valid`), unlike every other
/// compose error; with `--compose FILE` the user could not tell which file was meant.
#[test]
fn regression_invalid_compose_name_names_the_file() {
    let e = compose_err("name: Demo\nservices:\n  a:\n    image: x\n");
    assert_eq!(
        e.message,
        format!("`{COMPOSE_FILE}`: `name`: project name `Demo` is not valid")
    );
    assert!(e.hint.unwrap().starts_with("use lowercase letters"));
}
