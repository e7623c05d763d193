//! `logs` as an engine-generic operation: the chosen services' log lines, merged, each
//! prefixed with its service and masked by the stack's [`Scrubber`]. Returns a stream; the
//! command prints it.

use futures_util::{Stream, StreamExt};

use crate::engine::{Container, Engine, explain};
use crate::error::CdqError;
use crate::secrets::Scrubber;

pub struct Query {
    /// Services to show; empty: all with a container.
    pub services: Vec<String>,
    pub follow: bool,
    pub tail: Option<u64>,
    /// Unix seconds.
    pub since: Option<i64>,
}

/// Lines of the project's containers, merged as they come. An unknown service is a usage
/// error naming the closest one.
pub async fn lines<'a, E: Engine>(
    engine: &'a E,
    project: &str,
    q: &Query,
    scrubber: Scrubber,
) -> Result<impl Stream<Item = Result<String, CdqError>> + 'a, CdqError> {
    let containers = engine.list_containers(project).await.map_err(explain)?;
    let known: Vec<&str> = containers.iter().filter_map(|c| c.service()).collect();
    for s in &q.services {
        if !known.contains(&s.as_str()) {
            let e = CdqError::usage(format!(
                "no container for service `{s}` in project `{project}`"
            ));
            return Err(match crate::settings::closest(s, &known) {
                Some(c) => e.hint(format!("did you mean `{c}`?")),
                None => e.hint(format!("services with containers: {}", known.join(", "))),
            });
        }
    }
    let chosen: Vec<&Container> = containers
        .iter()
        .filter(|c| {
            q.services.is_empty()
                || c.service()
                    .is_some_and(|s| q.services.iter().any(|x| x == s))
        })
        .collect();
    let width = chosen
        .iter()
        .filter_map(|c| c.service())
        .map(str::len)
        .max()
        .unwrap_or(0);
    let streams: Vec<_> = chosen
        .iter()
        .map(|c| {
            let prefix = format!("{:width$} | ", c.service().unwrap_or("?"));
            let scrubber = scrubber.clone();
            engine
                .follow_logs(&c.id, q.tail, q.since, q.follow)
                .map(move |l| {
                    l.map(|l| format!("{prefix}{}", scrubber.scrub(&l)))
                        .map_err(explain)
                })
        })
        .collect();
    Ok(futures_util::stream::select_all(streams))
}
