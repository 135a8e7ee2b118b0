//! `kenning sync --space S`: syncs a space's sources on a running Kenning through its API, one
//! progress bar per source, and reports what each sync did.

use crate::api_client::{client, ok};
use crate::config::SyncCommand;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kenning_api::{Page, Source, Space};
use std::time::{Duration, Instant};

/// Longest a sync is waited for before the command gives up on it (it goes on in the server).
const MAX_WAIT: Duration = Duration::from_secs(6 * 3600);

/// Syncs the sources and waits for every sync to end; returns them as they ended. Fails when
/// any sync failed, with its reason.
pub async fn run(cmd: &SyncCommand, show_progress: bool) -> anyhow::Result<Vec<Source>> {
    let http = client(cmd.api_key.as_ref(), Duration::from_secs(60))?;
    let base = cmd.url.trim_end_matches('/');
    let space = find_space(&http, base, &cmd.space).await?;
    let mut sources: Vec<Source> = ok(http
        .get(format!("{base}/api/v1/spaces/{space}/sources?limit=200"))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("no Kenning answers at {base}: {e}"))?)
    .await?
    .json::<Page<Source>>()
    .await?
    .items;
    if let Some(only) = &cmd.source {
        sources.retain(|s| &s.id == only);
        anyhow::ensure!(!sources.is_empty(), "the space has no source {only}");
    }
    anyhow::ensure!(
        !sources.is_empty(),
        "the space has no sources; add one with POST /api/v1/spaces/{space}/sources or on its page"
    );

    let hidden = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
    let bars = if show_progress {
        crate::telemetry::bars()
    } else {
        &hidden
    };
    let style = ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {percent:>3}% {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut running = Vec::new();
    for s in &sources {
        let url = format!("{base}/api/v1/spaces/{space}/sources/{}/sync", s.id);
        let r = http.post(&url).json(&serde_json::json!({})).send().await?;
        // 409: a sync of it is already under way; waiting for that one does as well.
        if r.status() != reqwest::StatusCode::CONFLICT {
            ok(r).await?;
        }
        let bar = bars.add(ProgressBar::new(100).with_style(style.clone()));
        bar.set_prefix(format!("{} {}", s.kind, s.location));
        running.push((s.id.clone(), bar));
    }

    let started = Instant::now();
    let mut ended = Vec::new();
    while !running.is_empty() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut still = Vec::new();
        for (id, bar) in running {
            let source: Source = ok(http
                .get(format!("{base}/api/v1/spaces/{space}/sources/{id}"))
                .send()
                .await?)
            .await?
            .json()
            .await?;
            if source.status == "syncing" && started.elapsed() < MAX_WAIT {
                bar.set_position((source.progress * 100.0) as u64);
                bar.set_message(source.phase.clone().unwrap_or_default());
                still.push((id, bar));
                continue;
            }
            bar.finish_with_message(outcome(&source));
            ended.push(source);
        }
        running = still;
    }
    for s in &ended {
        println!("{} {}: {}", s.kind, s.location, outcome(s));
    }
    if let Some(failed) = ended.iter().find(|s| s.last_error.is_some()) {
        anyhow::bail!(
            "the sync of {} failed: {}",
            failed.location,
            failed.last_error.as_deref().unwrap_or_default()
        );
    }
    Ok(ended)
}

/// One line on what a sync did.
fn outcome(s: &Source) -> String {
    if s.status == "syncing" {
        return "still syncing (the server goes on)".into();
    }
    if let Some(e) = &s.last_error {
        return format!("failed: {e}");
    }
    match &s.last_result {
        Some(r) => {
            let mut line = format!(
                "{} added, {} updated, {} unchanged, {} deleted, {} failed",
                r.added, r.updated, r.unchanged, r.deleted, r.failed
            );
            for e in &r.errors {
                line.push_str(&format!("\n  {e}"));
            }
            line
        }
        None => "done".into(),
    }
}

/// The id of the space named (or identified) `wanted`.
async fn find_space(http: &reqwest::Client, base: &str, wanted: &str) -> anyhow::Result<String> {
    let mut offset = 0;
    loop {
        let page: Page<Space> = ok(http
            .get(format!("{base}/api/v1/spaces"))
            .query(&[("limit", "100"), ("offset", &offset.to_string())])
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("no Kenning answers at {base}: {e}"))?)
        .await?
        .json()
        .await?;
        if let Some(s) = page
            .items
            .iter()
            .find(|s| s.name == wanted || s.id == wanted)
        {
            return Ok(s.id.clone());
        }
        offset += page.items.len() as i64;
        anyhow::ensure!(
            !page.items.is_empty() && offset < page.total,
            "there is no space {wanted:?} at {base}"
        );
    }
}
