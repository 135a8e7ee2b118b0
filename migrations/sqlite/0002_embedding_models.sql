-- Every space indexed before the embedding model was recorded was indexed by the local model.
UPDATE spaces
SET embedding_model = 'local/all-MiniLM-L6-v2', embedding_dim = 384
WHERE embedding_model IS NULL
  AND EXISTS (SELECT 1 FROM chunks WHERE chunks.space_id = spaces.id);
