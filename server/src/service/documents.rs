//! Documents: uploads streamed to disk and queued, listing, passages, deletion.

use super::*;

/// Where an upload comes from: its key decides which earlier version it replaces.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// A path or URL naming the document across versions; the file name when none is given.
    pub key: Option<String>,
    /// The source whose sync read it.
    pub source_id: Option<Uuid>,
    /// Size and modification time, so the next sync can skip it unread.
    pub stamp: Option<String>,
}

impl Service {
    /// Lists a space's documents; an unknown space is a 404, not an empty list.
    pub async fn list_documents(
        &self,
        space_id: SpaceId,
        page: PageRequest,
    ) -> Result<Page<Document>, ServiceError> {
        let id = space_id.uuid();
        self.store
            .get_space(id)
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))?;
        self.store
            .list_documents(id, page)
            .await
            .map_err(|e| ServiceError::from_store(e, "document"))
    }

    /// Searches a space's passages.
    pub async fn search(
        &self,
        space_id: SpaceId,
        req: &SearchRequest,
    ) -> Result<SearchResponse, ServiceError> {
        let space = space_id.uuid();
        self.store
            .get_space(space)
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))?;
        let search = Search::parse(space, req).map_err(search_error)?;
        self.retriever.search(&search).await.map_err(search_error)
    }

    /// The vector store, for health checks.
    pub fn vectors(&self) -> Option<&Arc<dyn VectorStore>> {
        self.vectors.as_ref()
    }

    /// One document with its ingestion progress.
    pub async fn get_document(
        &self,
        space_id: SpaceId,
        document_id: &str,
    ) -> Result<Document, ServiceError> {
        let space = space_id.uuid();
        let doc = Self::document_id(document_id)?;
        self.store
            .get_document(space, doc)
            .await
            .map_err(|e| ServiceError::from_store(e, "document"))
    }

    /// A document's passages in order.
    pub async fn list_chunks(
        &self,
        space_id: SpaceId,
        document_id: &str,
        page: PageRequest,
    ) -> Result<Page<Chunk>, ServiceError> {
        let space = space_id.uuid();
        let doc = Self::document_id(document_id)?;
        // An unknown document is a 404, not an empty list.
        self.store
            .get_document(space, doc)
            .await
            .map_err(|e| ServiceError::from_store(e, "document"))?;
        self.store
            .list_chunks(space, doc, page)
            .await
            .map_err(|e| ServiceError::from_store(e, "document"))
    }

    /// One ingestion job of a space.
    pub async fn get_job(&self, space_id: SpaceId, job_id: &str) -> Result<Job, ServiceError> {
        let space = space_id.uuid();
        let job = parse_id(job_id).ok_or(ServiceError::NotFound("job"))?;
        self.store
            .get_job(space, job)
            .await
            .map_err(|e| ServiceError::from_store(e, "job"))
    }

    /// Deletes a document and its stored file.
    pub async fn delete_document(
        &self,
        space_id: SpaceId,
        document_id: &str,
    ) -> Result<(), ServiceError> {
        let space = space_id.uuid();
        let doc = Self::document_id(document_id)?;
        let storage_path = self
            .store
            .delete_document(space, doc)
            .await
            .map_err(|e| ServiceError::from_store(e, "document"))?;
        let gone = [crate::store::Superseded {
            id: doc,
            storage_path,
        }];
        crate::ingest::discard(self.vectors.as_ref(), &self.data_dir, space, &gone).await;
        Ok(())
    }

    /// Streams an upload to disk while hashing it, enforcing the size limit as bytes arrive.
    ///
    /// Order matters for "nothing half-written": the file is written to `tmp/`, synced, moved to
    /// its final place, and only then is the row inserted; any failure removes the file.
    pub async fn upload_document<S, E>(
        &self,
        space_id: SpaceId,
        filename: Option<&str>,
        declared_mime: Option<&str>,
        origin: Origin,
        mut body: S,
    ) -> Result<Uploaded, ServiceError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let space = space_id.uuid();
        self.store
            .get_space(space)
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))?;
        self.admit_job().await?;
        let filename = clean_filename(filename);
        let source_key = match origin.key.as_deref() {
            Some(key) => crate::domain::source_key(key)?,
            None => filename.clone(),
        };

        let tmp_dir = self.data_dir.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir)
            .await
            .map_err(io_error)?;
        let tmp_path = tmp_dir.join(format!("{}.part", Uuid::now_v7()));
        let guard = RemoveOnDrop(Some(tmp_path.clone()));
        let mut file = tokio::fs::File::create(&tmp_path).await.map_err(io_error)?;

        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut head: Vec<u8> = Vec::with_capacity(SNIFF_BYTES);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                ServiceError::Invalid(InvalidInput {
                    code: "upload_interrupted",
                    message: format!("The upload could not be read: {e}"),
                })
            })?;
            size += chunk.len() as u64;
            if size > self.max_upload_bytes {
                return Err(ServiceError::TooLarge {
                    limit: self.max_upload_bytes,
                });
            }
            if head.len() < SNIFF_BYTES {
                let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io_error)?;
        }
        if size == 0 {
            return Err(ServiceError::Invalid(InvalidInput {
                code: "empty_file",
                message: "The file is empty.".into(),
            }));
        }
        let format = crate::ingest::parse::detect(
            &filename,
            declared_mime,
            &head,
            size as usize == head.len(),
        )
        .map_err(|e| ServiceError::UnsupportedMedia(e.0))?;
        let mime = format.mime().to_string();
        file.sync_all().await.map_err(io_error)?;
        drop(file);

        let content_hash = hex::encode(hasher.finalize());
        if let Some(existing) = self
            .store
            .find_document_by_hash(space, &content_hash)
            .await
            .map_err(|e| ServiceError::from_store(e, "document"))?
        {
            if let (Some(stamp), Some(id)) = (&origin.stamp, parse_id(&existing.id)) {
                if existing.source_key.as_deref() == Some(source_key.as_str()) {
                    self.store
                        .set_source_stamp(id, stamp)
                        .await
                        .map_err(|e| ServiceError::from_store(e, "document"))?;
                }
            }
            return Ok(Uploaded {
                document: existing,
                created: false,
            });
        }

        let id = Uuid::now_v7();
        let relative = PathBuf::from("documents")
            .join(space.to_string())
            .join(id.to_string());
        let final_path = self.data_dir.join(&relative);
        if let Some(parent) = final_path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io_error)?;
        }
        tokio::fs::rename(&tmp_path, &final_path)
            .await
            .map_err(io_error)?;
        let mut guard = guard;
        guard.0 = Some(final_path.clone());

        let new = NewDocument {
            id,
            space_id: space,
            filename,
            mime,
            size_bytes: size as i64,
            content_hash,
            storage_path: relative.to_string_lossy().into_owned(),
            source_id: origin.source_id,
            source_key,
            source_stamp: origin.stamp,
        };
        let job = NewJob {
            id: Uuid::now_v7(),
            max_attempts: self.max_attempts,
        };
        match self.store.insert_document(&new, &job).await {
            Ok(document) => {
                guard.0 = None;
                self.wake.notify_one();
                Ok(Uploaded {
                    document,
                    created: true,
                })
            }
            // A concurrent upload of the same bytes won the race: answer with its row.
            Err(StoreError::Conflict(_)) => {
                let existing = self
                    .store
                    .find_document_by_hash(space, &new.content_hash)
                    .await
                    .map_err(|e| ServiceError::from_store(e, "document"))?
                    .ok_or(ServiceError::NotFound("document"))?;
                Ok(Uploaded {
                    document: existing,
                    created: false,
                })
            }
            Err(e) => Err(ServiceError::from_store(e, "space")),
        }
    }
}

/// Deletes a file when an upload is abandoned part-way, whatever the reason.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn io_error(e: std::io::Error) -> ServiceError {
    // ENOSPC and EDQUOT mean the disk is full: the client should hear 507, not 500; EROFS, a
    // read-only data directory, is 503: nothing the client can change, and it may pass.
    match e.raw_os_error() {
        Some(28) | Some(122) => ServiceError::InsufficientStorage,
        Some(30) => ServiceError::ReadOnlyStorage,
        _ => ServiceError::Internal(anyhow::Error::new(e).context("writing the upload")),
    }
}
