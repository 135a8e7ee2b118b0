-- An admin can disable an account: it keeps its data but cannot sign in, and its sessions
-- and keys stop working until it is enabled again.
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMPTZ;
