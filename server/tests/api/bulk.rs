//! `kenning ingest`: a folder into a space, with a truthful summary.

use clap::Parser;
use kenning::config::{Cli, Command};

#[tokio::test]
async fn a_folder_is_ingested_into_a_new_space_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(docs.join("nested")).unwrap();
    std::fs::create_dir_all(docs.join(".hidden")).unwrap();
    std::fs::write(docs.join("a.md"), "# A\n\nAlpha passage about invoices.\n").unwrap();
    std::fs::write(docs.join("nested/b.txt"), "Beta passage about laptops.").unwrap();
    std::fs::write(docs.join("nested/copy.txt"), "Beta passage about laptops.").unwrap();
    std::fs::write(docs.join("image.png"), [0x89u8, 0x50, 0x4e, 0x47, 0, 0, 0]).unwrap();
    std::fs::write(docs.join("broken.pdf"), "%PDF-1.4 not a pdf").unwrap();
    std::fs::write(docs.join(".hidden/secret.md"), "# hidden").unwrap();

    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let data = dir.path().join("data");
    let cli = Cli::parse_from([
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
    ] as [&std::ffi::OsStr; 11]);
    let Command::Ingest(cmd) = cli.command else {
        panic!("expected ingest")
    };
    let summary = kenning::ingest::bulk::run(&cmd, false)
        .await
        .expect("bulk ingestion runs");

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

    // Running it again finds the same space and adds nothing.
    let again = kenning::ingest::bulk::run(&cmd, false).await.unwrap();
    assert_eq!(again.ready, 0);
    assert_eq!(again.duplicates, 4, "{again}");
}
