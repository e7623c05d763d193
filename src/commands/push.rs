//! `cdq push`: copies the current image set from this host, or from bundles, into the
//! registry under the names cdq renders for it. One architecture, or both: each from the
//! daemon or from its bundle (`--bundle` per architecture, each loaded just before its
//! images are pushed, since the daemon holds one image per name), and then, for each image
//! whose name is the same on both, one multi-arch tag (`ops::multiarch`).
//!
//! Names a bundle load moved are put back on the images they named before, pass or fail.

use std::path::{Path, PathBuf};

use crate::bundle::{self, Bundle, Want as BundleWant};
use crate::catalog::Catalog;
use crate::cli::ProgressMode;
use crate::context::Context;
use crate::engine::Engine;
use crate::error::{CdqError, Kind};
use crate::ops::multiarch;
use crate::ops::transfer::{self, Copy, Pushed, Retry};
use crate::regclient::tls::{DOCKER_CERTS_D, Insecure};
use crate::registry::Keychain;
use crate::services::Arch;
use crate::ui::{TransferProgress, Ui};

/// Where one architecture's images come from.
struct Source {
    arch: Arch,
    bundle: Option<PathBuf>,
}

pub fn run(
    ctx: Context,
    ui: &Ui,
    archs: Vec<Arch>,
    bundles: Vec<PathBuf>,
    progress: ProgressMode,
) -> anyhow::Result<i32> {
    let s = &ctx.settings;
    let Some(registry) = s.images.registry() else {
        return Err(CdqError::usage(format!(
            "the image set `{}` has no registry to push to",
            s.images
        ))
        .hint("name one: `--registry harbor.example.com:5000/cd` (or `registry:` in cdq.yaml, `CDQ_REGISTRY`)")
        .into());
    };
    let prefix = registry.prefix.clone();
    let sources = sources(&archs, &bundles, ctx.arch)?;
    let mut by_arch: Vec<(Arch, Vec<Copy>)> = vec![];
    for src in &sources {
        let targets = Catalog::load(&ctx.assets, src.arch, &s.images, &s.versions)?;
        let from = Catalog::load(
            &ctx.assets,
            src.arch,
            &s.images.without_registry(),
            &s.versions,
        )?;
        let copies = s
            .services
            .iter()
            .map(|svc| Copy {
                service: svc.name().to_string(),
                source: from.image(*svc).to_string(),
                target: targets.image(*svc).to_string(),
            })
            .collect();
        by_arch.push((src.arch, copies));
    }
    let (pushes, lists) = multiarch::plan(&by_arch);
    let origin = super::pull::origin(s);
    super::runtime()?.block_on(async {
        let engine = super::connect().await?;
        let keychain = Keychain::load()?;
        let reporter = TransferProgress::new(progress, "push");
        // What the names a bundle may retag named before, to put them back afterwards.
        let mut before: Vec<(String, String)> = vec![];
        if sources.iter().any(|s| s.bundle.is_some()) {
            for (_, copies) in &pushes {
                for c in copies {
                    if before.iter().any(|(n, _)| *n == c.source) {
                        continue;
                    }
                    if let Some(i) = engine.image(&c.source).await.map_err(crate::engine::explain)? {
                        before.push((c.source.clone(), i.id));
                    }
                }
            }
        }
        let work = async {
            let mut pushed: Vec<Pushed> = vec![];
            for (src, (arch, copies)) in sources.iter().zip(&pushes) {
                if let Some(file) = &src.bundle {
                    let want = BundleWant {
                        arch: *arch,
                        because: format!("the push is for {arch}"),
                    };
                    let report = bundle::load(&engine, file, &want, false, ui).await?;
                    for l in super::bundle::describe_load(&report, false) {
                        ui.info(l);
                    }
                }
                pushed.extend(
                    transfer::push(
                        &engine,
                        copies,
                        *arch,
                        &keychain,
                        Retry::default(),
                        &reporter,
                        &origin,
                    )
                    .await?,
                );
                ui.info(format!("pushed {} {arch} images to `{prefix}`", copies.len()));
            }
            anyhow::Ok(pushed)
        };
        let result = tokio::select! {
            r = work => r,
            _ = tokio::signal::ctrl_c() => Err(CdqError::new(Kind::Interrupted, "interrupted: the push was stopped")
                .hint("run `cdq push` again: layers the registry has are not sent twice")
                .into()),
        };
        let restored = restore_names(&engine, &before).await;
        let pushed = result?;
        restored?;
        if lists.is_empty() {
            return Ok(0);
        }
        let (names, cidrs) = engine
            .insecure_registries()
            .await
            .map_err(crate::engine::explain)?;
        let insecure = Insecure { names, cidrs };
        let archs: Vec<String> = sources.iter().map(|s| s.arch.to_string()).collect();
        let published = tokio::task::spawn_blocking(move || {
            multiarch::publish(
                &lists,
                &pushed,
                &keychain,
                &insecure,
                Path::new(DOCKER_CERTS_D),
                &origin,
            )
        })
        .await??;
        for p in &published {
            ui.info(format!(
                "published `{}` for {} ({})",
                p.target,
                archs.join(" and "),
                p.digest
            ));
        }
        Ok(0)
    })
}

/// The architectures to push and where each comes from, in push order: the daemon's first
/// (a bundle load may retag the names they are under), then the bundles, the host's
/// architecture last, so the names end on images this host can run.
fn sources(archs: &[Arch], bundles: &[PathBuf], host: Arch) -> anyhow::Result<Vec<Source>> {
    let mut from_bundles: Vec<(Arch, PathBuf)> = vec![];
    for f in bundles {
        let b = Bundle::open(f)?;
        let Some(arch) = b.arch() else {
            return Err(CdqError::usage(format!(
                "bundle `{}` holds images for `{}`, which cdq does not deploy",
                f.display(),
                b.manifest.arch
            ))
            .hint("save the bundle with `cdq bundle save --arch amd64` or `--arch arm64`")
            .into());
        };
        if let Some((_, other)) = from_bundles.iter().find(|(a, _)| *a == arch) {
            return Err(CdqError::usage(format!(
                "bundles `{}` and `{}` both hold {arch} images",
                other.display(),
                f.display()
            ))
            .hint("pass one bundle per architecture")
            .into());
        }
        from_bundles.push((arch, f.clone()));
    }
    let mut wanted: Vec<Arch> = vec![];
    let named = if !archs.is_empty() {
        archs.to_vec()
    } else if !from_bundles.is_empty() {
        from_bundles.iter().map(|(a, _)| *a).collect()
    } else {
        vec![host]
    };
    for a in named {
        if !wanted.contains(&a) {
            wanted.push(a);
        }
    }
    if let Some((arch, f)) = from_bundles.iter().find(|(a, _)| !wanted.contains(a)) {
        let names: Vec<String> = wanted.iter().map(|a| a.to_string()).collect();
        return Err(CdqError::usage(format!(
            "bundle `{}` holds {arch} images, but `--arch` names only {}",
            f.display(),
            names.join(" and ")
        ))
        .hint(format!("add `--arch {arch}`, or leave that bundle out"))
        .into());
    }
    let bundle_of = |a: Arch| {
        from_bundles
            .iter()
            .find(|(b, _)| *b == a)
            .map(|(_, f)| f.clone())
    };
    Ok(in_push_order(
        wanted
            .iter()
            .map(|a| Source {
                arch: *a,
                bundle: bundle_of(*a),
            })
            .collect(),
        host,
    ))
}

/// The daemon's sources first, then the bundles, the host's architecture's bundle last
/// (a stable sort: otherwise in the order named).
fn in_push_order(mut sources: Vec<Source>, host: Arch) -> Vec<Source> {
    sources.sort_by_key(|s| (s.bundle.is_some(), s.bundle.is_some() && s.arch == host));
    sources
}

/// Tags each name back onto the image it named before the bundle loads.
async fn restore_names<E: Engine>(engine: &E, before: &[(String, String)]) -> anyhow::Result<()> {
    for (name, id) in before {
        let now = engine.image(name).await.map_err(crate::engine::explain)?;
        if now.map(|i| i.id) != Some(id.clone()) {
            engine
                .tag_image(id, name)
                .await
                .map_err(crate::engine::explain)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_goes_first_and_the_hosts_bundle_last() {
        let src = |arch: Arch, bundle: bool| Source {
            arch,
            bundle: bundle.then(|| PathBuf::from(format!("{arch}.cdqb"))),
        };
        let order = |v: Vec<Source>, host: Arch| -> Vec<(Arch, bool)> {
            in_push_order(v, host)
                .iter()
                .map(|s| (s.arch, s.bundle.is_some()))
                .collect()
        };
        assert_eq!(
            order(
                vec![src(Arch::Arm64, true), src(Arch::Amd64, false)],
                Arch::Amd64
            ),
            vec![(Arch::Amd64, false), (Arch::Arm64, true)],
            "the daemon's amd64 before the arm64 bundle retags the names"
        );
        assert_eq!(
            order(
                vec![src(Arch::Amd64, true), src(Arch::Arm64, true)],
                Arch::Amd64
            ),
            vec![(Arch::Arm64, true), (Arch::Amd64, true)],
            "the names end on the host's images"
        );
        assert_eq!(
            order(
                vec![src(Arch::Amd64, true), src(Arch::Arm64, true)],
                Arch::Arm64
            ),
            vec![(Arch::Amd64, true), (Arch::Arm64, true)]
        );
    }

    #[test]
    fn architectures_named_once_each_and_the_hosts_by_default() {
        let r = sources(&[Arch::Arm64, Arch::Amd64, Arch::Arm64], &[], Arch::Amd64).unwrap();
        let got: Vec<Arch> = r.iter().map(|s| s.arch).collect();
        assert_eq!(got, vec![Arch::Arm64, Arch::Amd64]);
        let r = sources(&[], &[], Arch::Arm64).unwrap();
        let got: Vec<Arch> = r.iter().map(|s| s.arch).collect();
        assert_eq!(got, vec![Arch::Arm64]);
    }
}
