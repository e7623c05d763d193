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
    /// Image set: `official`, `local` (the local image kit) or a registry prefix
    #[arg(long, global = true, env = "CDQ_IMAGES", value_name = "SET")]
    pub images: Option<String>,
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
}
