//! `kenning ingest`: a folder into a space, with a truthful summary, in this process or through
//! a running server's API.

use crate::helpers::{spawn_app, Backend};
use clap::Parser;
use kenning::config::{Cli, Command, IngestCommand};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Five files to ingest (two good, one copy, one unsupported, one broken) and one hidden.
fn folder(dir: &Path) -> PathBuf {
    let docs = dir.join("docs");
    std::fs::create_dir_all(docs.join("nested")).unwrap();
    std::fs::create_dir_all(docs.join(".hidden")).unwrap();
    std::fs::write(docs.join("a.md"), "# A\n\nAlpha passage about invoices.\n").unwrap();
    std::fs::write(docs.join("nested/b.txt"), "Beta passage about laptops.").unwrap();
    std::fs::write(docs.join("nested/copy.txt"), "Beta passage about laptops.").unwrap();
    std::fs::write(docs.join("image.png"), [0x89u8, 0x50, 0x4e, 0x47, 0, 0, 0]).unwrap();
    std::fs::write(docs.join("broken.pdf"), "%PDF-1.4 not a pdf").unwrap();
    std::fs::write(docs.join(".hidden/secret.md"), "# hidden").unwrap();
    docs
}

/// `kenning ingest <docs> --space Imported --data-dir <data>` and any further arguments.
fn command(docs: &Path, data: &Path, more: &[&str]) -> IngestCommand {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut args: Vec<&OsStr> = vec![
        "kenning".as_ref(),
        "ingest".as_ref(),
        docs.as_os_str(),
        "--space".as_ref(),
        "Imported".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--models-dir".as_ref(),
        models.as_os_str(),
        "--job-poll-ms".as_ref(),
        "50".as_ref(),
    ];
    args.extend(more.iter().map(|a| OsStr::new(*a)));
    let Command::Ingest(cmd) = Cli::parse_from(args).command else {
        panic!("expected ingest")
    };
    cmd
}

/// The summary of the folder's first ingestion, wherever it ran.
fn assert_first_summary(summary: &kenning::cli::ingest::Summary) {
    assert_eq!(summary.files, 5, "hidden folders are skipped: {summary:?}");
    assert_eq!(summary.ready, 2, "{summary}");
    assert_eq!(
        summary.duplicates, 1,
        "identical content is stored once: {summary}"
    );
    assert_eq!(summary.skipped.len(), 1, "{summary}");
    assert!(summary.skipped[0].0.ends_with("image.png"));
    assert_eq!(summary.failed.len(), 1, "{summary}");
    assert!(summary.failed[0].1.contains("PDF"), "{summary}");
    assert!(summary.passages >= 2);
}

#[tokio::test]
async fn a_folder_is_ingested_into_a_new_space_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = command(&folder(dir.path()), &dir.path().join("data"), &[]);
    let summary = kenning::cli::ingest::run(&cmd, false)
        .await
        .expect("bulk ingestion runs");
    assert_first_summary(&summary);

    // Running it again finds the same space and adds nothing.
    let again = kenning::cli::ingest::run(&cmd, false).await.unwrap();
    assert_eq!(again.ready, 0);
    assert_eq!(again.duplicates, 4, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_goes_through_a_running_server_that_holds_the_data_directory() {
    let app = spawn_app(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let docs = folder(dir.path());

    // The server holds the data directory's Qdrant Edge shard: a second process is refused,
    // and told how to go through the server instead.
    let local = command(&docs, &app.data_dir, &[]);
    let Err(err) = kenning::cli::ingest::run(&local, false).await else {
        panic!("a second process opened the server's data directory");
    };
    let err = format!("{err:#}");
    assert!(
        err.contains("another Kenning process") && err.contains("--url"),
        "{err}"
    );

    let remote = command(&docs, dir.path(), &["--url", &app.address]);
    let summary = kenning::cli::ingest::run(&remote, false)
        .await
        .expect("ingestion through the server runs");
    assert_first_summary(&summary);

    // The server's own search finds what went in, in the space the command made.
    let (_, spaces) = app.get_json("/api/v1/spaces").await;
    let space = spaces["items"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "Imported"))
        .expect("the space was made")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (status, found) = app
        .post_json(
            &format!("/api/v1/spaces/{space}/search"),
            &serde_json::json!({ "query": "laptops" }),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    // b.txt and copy.txt hold the same text and are uploaded concurrently: whichever arrives
    // first is the document, the other its duplicate.
    let first = found["results"][0]["filename"].as_str().unwrap_or_default();
    assert!(["b.txt", "copy.txt"].contains(&first), "{found}");
    assert_eq!(
        found["results"][0]["chunk"]["text"], "Beta passage about laptops.",
        "{found}"
    );

    let again = kenning::cli::ingest::run(&remote, false).await.unwrap();
    assert_eq!(again.ready, 0);
    assert_eq!(
        again.duplicates, 4,
        "the same space is found again: {again}"
    );

    // A server that is not there is a clear error, not a hang.
    let nowhere = command(&docs, dir.path(), &["--url", "http://127.0.0.1:9"]);
    let Err(err) = kenning::cli::ingest::run(&nowhere, false).await else {
        panic!("ingested into nothing");
    };
    assert!(format!("{err:#}").contains("no Kenning answers"), "{err:#}");
}

#[tokio::test]
async fn ingesting_a_folder_again_with_sync_replaces_changed_files_and_deletes_gone_ones() {
    let dir = tempfile::tempdir().unwrap();
    let docs = folder(dir.path());
    let data = dir.path().join("data");
    let first = kenning::cli::ingest::run(&command(&docs, &data, &[]), false)
        .await
        .unwrap();
    assert_first_summary(&first);

    std::fs::write(
        docs.join("a.md"),
        "# A\n\nAlpha passage about receipts, rewritten.\n",
    )
    .unwrap();
    std::fs::remove_file(docs.join("broken.pdf")).unwrap();
    // One of the two identical files goes: the other still holds the content.
    std::fs::remove_file(docs.join("nested/b.txt")).unwrap();
    let synced = kenning::cli::ingest::run(&command(&docs, &data, &["--sync"]), false)
        .await
        .unwrap();
    assert_eq!(
        synced.ready, 1,
        "the changed file is indexed again: {synced}"
    );
    assert_eq!(
        synced.deleted, 1,
        "the broken PDF's document goes: {synced}"
    );
    assert_eq!(synced.duplicates, 1, "{synced}");

    // What the space holds now, read through the same command's store.
    let store = kenning::store::connect(&command(&docs, &data, &[]).store)
        .await
        .unwrap();
    let space = store.find_space_by_name("Imported").await.unwrap().unwrap();
    let space_id = uuid::Uuid::parse_str(&space.id).unwrap();
    let page = store
        .list_documents(
            space_id,
            kenning::domain::PageRequest::parse(Some(50), None).unwrap(),
        )
        .await
        .unwrap();
    let mut held: Vec<(String, i64)> = page
        .items
        .iter()
        .map(|d| (d.source_key.clone().unwrap_or_default(), d.version))
        .collect();
    held.sort();
    assert_eq!(held.len(), 2, "{held:?}");
    assert_eq!(held[0], ("a.md".to_string(), 2));
    assert!(held[1].0.starts_with("nested/"), "{held:?}");
    let hits = store
        .keyword_search(space_id, &["receipts".to_string()], None, 10)
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    let stale = store
        .keyword_search(space_id, &["invoices".to_string()], None, 10)
        .await
        .unwrap();
    assert!(stale.is_empty(), "the old text is gone");
}
