//! Raw command-line arguments as clap parses them (stage one). `settings` turns them into
//! resolved values; nothing here touches the disk or the engine.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "cdq", version, about = "Stand up the CD control plane on one Docker host", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Deploy directory: rendered files, secrets and (by default) data live here
    #[arg(long, global = true, env = "CDQ_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Settings file [default: DIR/cdq.yaml]
    #[arg(long, global = true, env = "CDQ_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Project name, as in docker compose [default: cdq]
    #[arg(
        short = 'p',
        long = "project-name",
        global = true,
        env = "CDQ_PROJECT_NAME",
        value_name = "NAME"
    )]
    pub project: Option<String>,
    /// Image set: `official` or `local` (the local image kit); a registry prefix here is the
    /// older spelling of `--images official --registry PREFIX`
    #[arg(long, global = true, env = "CDQ_IMAGES", value_name = "SET")]
    pub images: Option<String>,
    /// Pull and push the image set from this registry and project (`harbor.example.com:5000/cd`)
    #[arg(long, global = true, env = "CDQ_REGISTRY", value_name = "PREFIX")]
    pub registry: Option<String>,
    /// Data directory [default: DIR/data]
    #[arg(
        long = "data-dir",
        global = true,
        env = "CDQ_DATA_DIR",
        value_name = "DIR"
    )]
    pub data_dir: Option<PathBuf>,
    /// Override the embedded templates with files from DIR (same layout as the repository)
    #[arg(long, global = true, env = "CDQ_TEMPLATES", value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Where the stack runs: `host` (this Docker host) or `swarm` (the Swarm cluster whose
    /// manager DOCKER_HOST names; `cluster.nodes` in cdq.yaml) [default: host]
    #[arg(long, global = true, env = "CDQ_TARGET", value_name = "TARGET", value_parser = crate::settings::Target::parse)]
    pub target: Option<crate::settings::Target>,
    /// Answer yes to confirmations (non-interactive runs take the safe default otherwise)
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
    /// More output (repeat for more)
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchArg {
    Amd64,
    Arm64,
}

#[derive(Debug, Args, Clone, Default)]
pub struct Target {
    /// Architecture to render for [default: the host's]
    #[arg(long, value_enum, env = "CDQ_ARCH")]
    pub arch: Option<ArchArg>,
    /// The host's intranet IP, advertised by kafka [default: detected]
    #[arg(long, env = "CDQ_HOST_IP", value_name = "IP")]
    pub ip: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    Auto,
    Tty,
    Plain,
    Json,
}

/// `cdq up --pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullArg {
    /// Pull what is not on the host for the target architecture
    Missing,
    /// Pull every image (picks up a moved tag)
    Always,
    /// Pull nothing (offline; preflight fails on a missing image)
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Preflight, render, and start every service once what it depends on is healthy
    Up {
        #[command(flatten)]
        target: Target,
        /// Print the plan and change nothing
        #[arg(long)]
        dry_run: bool,
        /// Start even if preflight finds a FAIL
        #[arg(long)]
        skip_preflight: bool,
        /// Progress output
        #[arg(long, value_enum, default_value = "auto")]
        progress: ProgressMode,
        /// Drive this compose file instead of the rendered one
        #[arg(long, value_name = "FILE")]
        compose: Option<PathBuf>,
        /// How long a service cdq does not know (from `--compose`) may take to become healthy
        /// [default: 120s]; the nine use `deadlines` in cdq.yaml
        #[arg(long, value_name = "DURATION", value_parser = crate::settings::parse_duration)]
        deadline: Option<std::time::Duration>,
        /// Load the images of this offline bundle first (`cdq bundle save` makes one)
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
        /// Mount this service's existing, non-empty data directory though cdq did not make it:
        /// its files are handed to the uid the service runs as, and `down --purge` deletes it
        #[arg(long = "adopt-data", value_name = "SERVICE")]
        adopt_data: Vec<String>,
        /// Do not back up a stateful service before replacing its image
        #[arg(long)]
        no_backup: bool,
        /// Pull images before anything is created
        #[arg(long, value_enum, default_value = "missing", value_name = "WHEN")]
        pull: PullArg,
    },
    /// Pull the images of the current image set (for the target architecture) from its registry
    Pull {
        /// Services to pull [default: every enabled one]
        services: Vec<String>,
        #[arg(long, value_enum, env = "CDQ_ARCH")]
        arch: Option<ArchArg>,
        /// Pull even what is present
        #[arg(long)]
        always: bool,
        /// Progress output
        #[arg(long, value_enum, default_value = "auto")]
        progress: ProgressMode,
    },
    /// Copy the image set from this host (or bundles) into the registry, under the names cdq
    /// renders for it
    Push {
        /// Which architectures' images; both (`--arch amd64 --arch arm64`) publish one
        /// multi-arch tag per image [default: the bundles', else the host's]
        #[arg(long, value_enum, env = "CDQ_ARCH", value_delimiter = ',')]
        arch: Vec<ArchArg>,
        /// Load this bundle just before its architecture's images are pushed (once per
        /// architecture; the other comes from this host)
        #[arg(long, value_name = "FILE")]
        bundle: Vec<PathBuf>,
        /// Progress output
        #[arg(long, value_enum, default_value = "auto")]
        progress: ProgressMode,
    },
    /// Stop and remove the containers and network; data and secrets stay
    Down {
        /// Also delete the data directory and secrets (asks for confirmation)
        #[arg(long)]
        purge: bool,
        /// Seconds to wait for each container to stop
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        timeout: u64,
        /// The compose file `up --compose` drove (its project name and services)
        #[arg(long, value_name = "FILE")]
        compose: Option<PathBuf>,
    },
    /// Show every service's state and health
    Status {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        /// Keep showing it: redrawn in place on a terminal, one table per interval otherwise,
        /// until Ctrl-C
        #[arg(long)]
        watch: bool,
        /// Seconds between two tables of `--watch`
        #[arg(long, default_value_t = 2, value_name = "S", requires = "watch",
              value_parser = clap::value_parser!(u64).range(1..))]
        interval: u64,
        /// The compose file `up --compose` drove (its project name and services)
        #[arg(long, value_name = "FILE")]
        compose: Option<PathBuf>,
    },
    /// Render the compose file, .env and confd/ into the deploy directory
    Render {
        #[command(flatten)]
        target: Target,
        /// Print what was written as JSON
        #[arg(long)]
        json: bool,
    },
    /// Check this host before anything is created
    Preflight {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
        /// Treat warnings as failures
        #[arg(long)]
        strict: bool,
        /// Mount this service's existing, non-empty data directory though cdq did not make it:
        /// its files are handed to the uid the service runs as, and `down --purge` deletes it
        #[arg(long = "adopt-data", value_name = "SERVICE")]
        adopt_data: Vec<String>,
    },
    /// Show service logs, interleaved with service prefixes
    Logs {
        /// Services to show [default: all]
        services: Vec<String>,
        #[arg(short = 'f', long)]
        follow: bool,
        /// Lines from the end of each log
        #[arg(long, value_name = "N")]
        tail: Option<u64>,
        /// Only lines since this long ago (`10m`) or this Unix time
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
    },
    /// List the image references of the current settings (for mirroring)
    Images {
        #[arg(long, value_enum, env = "CDQ_ARCH")]
        arch: Option<ArchArg>,
        #[arg(long)]
        json: bool,
    },
    /// Write a support archive (.tar.gz): settings, rendered files, preflight, status,
    /// inspects, logs, engine and host facts, every password masked
    Diagnose {
        /// The archive [default: cdq-diagnose-<project>-<time>.tar.gz]
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Back up the running stack's state (MySQL dump, Redis RDB, data directories,
    /// secrets.env, cdq.yaml) into one file, mode 0600
    Backup {
        /// The backup file [default: cdq-backup-<project>-<time>.tar.gz]
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Restore a backup into an empty deploy directory; `cdq up` then brings the data back
    Restore {
        /// A file `cdq backup` wrote
        file: PathBuf,
    },
    /// Who logs in where; `cdq logins NAME` prints that one password
    Logins {
        /// `grafana`, `mysql`, `mysql-server`, `mysql-ucenter` or `redis`
        name: Option<String>,
    },
    /// Print a shell completion script (`cdq completions bash > /etc/bash_completion.d/cdq`)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Offline image bundles: save the image set to one file, load it on a host with no registry
    Bundle {
        #[command(subcommand)]
        action: BundleAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum BundleAction {
    /// Export every image of the current image set from the local engine into one file
    Save {
        /// Which architecture's set [default: the host's]
        #[arg(long, value_enum, env = "CDQ_ARCH")]
        arch: Option<ArchArg>,
        /// The bundle file [default: cdq-images-<arch>.bundle]
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Verify a bundle, then load the images it holds that are not present
    Load {
        file: PathBuf,
        /// Load a bundle for another architecture than the host's
        #[arg(long, value_enum)]
        arch: Option<ArchArg>,
    },
    /// Check that this binary's bundle compression works here (scripts/release.sh runs it)
    #[command(hide = true)]
    SelfCheck,
}
