//! Password hashes: argon2id with its default cost (19 MiB, 2 passes), off the async executor.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::sync::OnceLock;
use tokio::sync::Semaphore;

/// Password hashes computed at once: each takes about 19 MiB and a core for a while, so a burst
/// of sign-ins waits its turn instead of exhausting memory and starving every other request.
fn hashing_slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Semaphore::new(cores.clamp(1, 4))
    })
}

/// Hashes a password into a PHC string (`$argon2id$…`) with a fresh random salt.
pub async fn hash(password: &str) -> anyhow::Result<String> {
    let password = password.to_owned();
    let _slot = hashing_slots().acquire().await?;
    tokio::task::spawn_blocking(move || hash_now(&password)).await?
}

fn hash_now(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches `phc`; a malformed stored hash never matches. The comparison
/// inside argon2 is constant-time, and the cost is the same whether or not it matches.
pub async fn verify(password: &str, phc: &str) -> bool {
    let password = password.to_owned();
    let phc = phc.to_owned();
    let Ok(_slot) = hashing_slots().acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A hash of a password nobody knows, checked against when an email is unknown, so an unknown
/// account costs as long to refuse as a wrong password (no account discovery by timing).
pub fn decoy() -> anyhow::Result<String> {
    let mut secret = [0u8; 24];
    getrandom::getrandom(&mut secret)?;
    hash_now(&hex::encode(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_matches_its_own_hash_and_nothing_else() {
        let phc = hash("correct horse battery").await.unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify("correct horse battery", &phc).await);
        assert!(!verify("correct horse battery ", &phc).await);
        assert!(!verify("", &phc).await);
    }

    #[tokio::test]
    async fn the_same_password_hashes_differently_each_time() {
        assert_ne!(hash("same").await.unwrap(), hash("same").await.unwrap());
    }

    #[tokio::test]
    async fn a_malformed_stored_hash_never_matches() {
        assert!(!verify("x", "not a hash").await);
        assert!(!verify("x", "").await);
    }
}
