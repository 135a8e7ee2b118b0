//! Watched folders: the operating system says when something in a folder source changes, and the
//! scheduler syncs that source once the folder has been quiet for a moment, so a burst of edits
//! (a `git pull`, an editor's save dance) costs one sync.

use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

/// How long a watched folder must be quiet before its sync starts.
pub const QUIET: Duration = Duration::from_secs(2);

/// Changes waiting to be read; more are dropped, which loses nothing (one is enough to sync).
const CHANGES_QUEUED: usize = 1024;

/// The folders being watched, by source.
pub struct Watches {
    watching: HashMap<Uuid, (Uuid, PathBuf, notify::RecommendedWatcher)>,
    tx: mpsc::Sender<Uuid>,
    rx: mpsc::Receiver<Uuid>,
}

impl Default for Watches {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(CHANGES_QUEUED);
        Self {
            watching: HashMap::new(),
            tx,
            rx,
        }
    }
}

impl Watches {
    /// Watches exactly these (space, source, folder): new ones are added, gone ones dropped. A
    /// folder that cannot be watched is logged and tried again at the next call.
    pub fn set(&mut self, wanted: Vec<(Uuid, Uuid, PathBuf)>) {
        let keep: std::collections::HashSet<Uuid> = wanted.iter().map(|(_, id, _)| *id).collect();
        self.watching.retain(|id, _| keep.contains(id));
        for (space, id, folder) in wanted {
            if self
                .watching
                .get(&id)
                .is_some_and(|(_, watched, _)| *watched == folder)
            {
                continue;
            }
            let tx = self.tx.clone();
            let handler = move |event: notify::Result<notify::Event>| {
                let relevant = event.is_ok_and(|e| {
                    matches!(
                        e.kind,
                        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                    )
                });
                if relevant {
                    let _ = tx.try_send(id);
                }
            };
            match notify::recommended_watcher(handler)
                .and_then(|mut w| w.watch(&folder, RecursiveMode::Recursive).map(|()| w))
            {
                Ok(watcher) => {
                    tracing::info!(source = %id, folder = %folder.display(), "watching a folder source");
                    self.watching.insert(id, (space, folder, watcher));
                }
                Err(e) => {
                    tracing::warn!(source = %id, folder = %folder.display(), error = %e, "cannot watch a folder source");
                }
            }
        }
    }

    /// The next source whose folder changed, with its space.
    pub async fn changed(&mut self) -> Option<(Uuid, Uuid)> {
        loop {
            let id = self.rx.recv().await?;
            if let Some((space, _, _)) = self.watching.get(&id) {
                return Some((*space, id));
            }
        }
    }
}
