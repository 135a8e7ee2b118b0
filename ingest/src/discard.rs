//! What is left of a document once its rows are gone: its vectors and its stored file. Removing
//! them is tidiness, not correctness (search keeps only hits whose passage row exists), so
//! failures are logged, never returned.

use kenning_store::Superseded;
use kenning_vectors::vector::VectorStore;
use std::path::Path;
use std::sync::Arc;
use uuid::Uuid;

/// Removes the vectors and files of documents whose rows were deleted.
pub async fn discard(
    vectors: Option<&Arc<dyn VectorStore>>,
    data_dir: &Path,
    space_id: Uuid,
    gone: &[Superseded],
) {
    for doc in gone {
        if let Some(vectors) = vectors {
            if let Err(e) = vectors.delete_document(space_id, doc.id).await {
                tracing::warn!(document = %doc.id, error = %e, "could not remove a deleted document's vectors");
            }
        }
        let full = data_dir.join(&doc.storage_path);
        if let Err(e) = tokio::fs::remove_file(&full).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %full.display(), error = %e, "could not remove a deleted document's file");
            }
        }
    }
}
