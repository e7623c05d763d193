//! The resolved context of one command: the settings (`cdq.yaml`, `CDQ_*`, flags), the
//! templates, and the target architecture, decided once when the command starts; the host
//! IP is decided once too, by the commands that render ([`Context::with_ip`]).
//!
//! Must not: prompt, print, or decide anything a second time. Everything below the command
//! layer reads these values and never re-derives them, so preflight checks exactly what is
//! then deployed.

use crate::assets::Assets;
use crate::catalog::Catalog;
use crate::error::CdqError;
use crate::hostip::Decision;
use crate::services::{Arch, Service};
use crate::settings::Settings;

pub struct Context {
    pub settings: Settings,
    pub assets: Assets,
    /// The architecture the stack is rendered and deployed for.
    pub arch: Arch,
    /// The host IP, for the commands that render (`None` for the others).
    pub ip: Option<Decision>,
    /// Services whose existing data directory, not made by cdq, the user adopts
    /// (`--adopt-data`): preflight lets them pass and `up` marks them as this project's.
    pub adopt: std::collections::BTreeSet<String>,
}

impl Context {
    /// The architecture comes from the settings (flag, `CDQ_ARCH`, `cdq.yaml`), else the host.
    /// A deploy or data directory at a system path is refused here, before any command acts.
    pub fn new(settings: Settings) -> Result<Context, CdqError> {
        let arch = match settings.arch {
            Some(a) => a,
            None => host_arch()?,
        };
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        crate::fsio::refuse_system_path("dir", "--dir", &settings.deploy_dir, home.as_deref())?;
        crate::fsio::refuse_system_path(
            "data_dir",
            "--data-dir",
            &settings.data_dir,
            home.as_deref(),
        )?;
        Ok(Context {
            assets: Assets::new(settings.templates.clone()),
            settings,
            arch,
            ip: None,
            adopt: Default::default(),
        })
    }

    pub fn adopting(mut self, services: Vec<String>) -> Context {
        self.adopt.extend(services);
        self
    }

    pub fn with_ip(mut self, ip: Decision) -> Context {
        self.ip = Some(ip);
        self
    }

    /// The image catalogue of the chosen set for this architecture.
    pub fn catalog(&self) -> anyhow::Result<Catalog> {
        Catalog::load(
            &self.assets,
            self.arch,
            &self.settings.images,
            &self.settings.versions,
        )
    }

    /// The image each selected service runs, in service order.
    pub fn images(&self) -> anyhow::Result<Vec<(Service, String)>> {
        let catalog = self.catalog()?;
        Ok(self
            .settings
            .services
            .iter()
            .map(|s| (*s, catalog.image(*s).to_string()))
            .collect())
    }
}

/// This host's architecture, or the error saying cdq does not deploy to it.
pub fn host_arch() -> Result<Arch, CdqError> {
    Arch::host().ok_or_else(|| {
        CdqError::usage(format!(
            "this host's architecture `{}` is not one cdq deploys to",
            std::env::consts::ARCH
        ))
        .hint("cdq deploys to amd64 (x86_64) and arm64 (aarch64) hosts")
    })
}
