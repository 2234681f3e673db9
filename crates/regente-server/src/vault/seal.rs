//! Sealing and opening values: XChaCha20-Poly1305 under a master key, with a
//! fresh random 24-byte nonce per value (random nonces of that size never
//! collide in practice) and associated data naming what the value belongs to,
//! so that a ciphertext moved to another row, organisation, version or field
//! does not open.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// Bytes of a master key.
pub const KEY_BYTES: usize = 32;
/// Bytes of a nonce.
pub const NONCE_BYTES: usize = 24;

/// One master key, ready to seal and open. The key's bytes live only inside the
/// cipher; its id is derived from them one way.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> MasterKey {
        MasterKey {
            id: key_id(bytes),
            cipher: XChaCha20Poly1305::new(bytes.into()),
        }
    }

    /// A key from its base64 text (standard alphabet, 32 bytes); `what` names it
    /// in the error.
    pub fn from_base64(text: &str, what: &str) -> anyhow::Result<MasterKey> {
        let bytes = BASE64.decode(text.trim()).map_err(|_| {
            anyhow::anyhow!("{what} is not base64: give 32 random bytes in base64 (e.g. `openssl rand -base64 32`)")
        })?;
        let bytes: [u8; KEY_BYTES] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            anyhow::anyhow!(
                "{what} holds {} bytes: a master key has exactly {KEY_BYTES} (e.g. `openssl rand -base64 32`)",
                bytes.len()
            )
        })?;
        Ok(MasterKey::from_bytes(&bytes))
    }

    /// A fresh random key and its base64 text.
    pub fn generate() -> (MasterKey, String) {
        let mut bytes = [0u8; KEY_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        (MasterKey::from_bytes(&bytes), BASE64.encode(bytes))
    }

    /// 16 hex digits naming the key in what it sealed: the start of a SHA-256 of
    /// a tagged copy of the key, which tells nothing of the key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext` bound to `context`: (nonce, ciphertext).
    pub fn seal(&self, context: &[&str], plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        let aad = associated_data(context);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any length a store holds");
        (nonce.to_vec(), ciphertext)
    }

    /// Opens what [`MasterKey::seal`] sealed with the same `context`; `None` when
    /// it does not open (another key, another context, or changed bytes).
    pub fn open(&self, context: &[&str], nonce: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
        if nonce.len() != NONCE_BYTES {
            return None;
        }
        let aad = associated_data(context);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .ok()
    }
}

fn key_id(bytes: &[u8; KEY_BYTES]) -> String {
    let digest = Sha256::new()
        .chain_update(b"regente vault key id v1\0")
        .chain_update(bytes)
        .finalize();
    hex::encode(&digest[..8])
}

/// Each part prefixed by its length, so that no two contexts encode alike.
fn associated_data(context: &[&str]) -> Vec<u8> {
    let mut aad = Vec::new();
    for part in context {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_in_its_context_under_its_key() {
        let (key, text) = MasterKey::generate();
        assert_eq!(
            MasterKey::from_base64(&text, "the key").unwrap().id(),
            key.id()
        );
        let context = ["credential", "org-1", "cred-1", "1", "password"];
        let (nonce, ciphertext) = key.seal(&context, b"hunter2");
        assert_eq!(
            key.open(&context, &nonce, &ciphertext).as_deref(),
            Some(&b"hunter2"[..])
        );
        assert!(!ciphertext.windows(7).any(|w| w == b"hunter2"));
        // Another organisation, row, version, field, key, or a flipped bit.
        for moved in [
            ["credential", "org-2", "cred-1", "1", "password"],
            ["credential", "org-1", "cred-2", "1", "password"],
            ["credential", "org-1", "cred-1", "2", "password"],
            ["credential", "org-1", "cred-1", "1", "username"],
        ] {
            assert_eq!(key.open(&moved, &nonce, &ciphertext), None, "{moved:?}");
        }
        // Parts are length-prefixed: shifting a boundary is another context.
        assert_eq!(
            key.open(
                &["credential", "org-1c", "red-1", "1", "password"],
                &nonce,
                &ciphertext
            ),
            None
        );
        let (other, _) = MasterKey::generate();
        assert_ne!(other.id(), key.id());
        assert_eq!(other.open(&context, &nonce, &ciphertext), None);
        let mut flipped = ciphertext.clone();
        flipped[0] ^= 1;
        assert_eq!(key.open(&context, &nonce, &flipped), None);
        // Fresh nonces: the same value seals differently each time.
        let (nonce2, ciphertext2) = key.seal(&context, b"hunter2");
        assert_ne!((nonce2, ciphertext2), (nonce, ciphertext));
    }

    #[test]
    fn bad_key_texts_say_what_is_wrong() {
        let error = MasterKey::from_base64("not base64!", "REGENTE_MASTER_KEY")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("REGENTE_MASTER_KEY is not base64"),
            "{error}"
        );
        let error = MasterKey::from_base64(&BASE64.encode([1u8; 16]), "REGENTE_MASTER_KEY")
            .unwrap_err()
            .to_string();
        assert!(error.contains("holds 16 bytes"), "{error}");
        assert!(!error.contains("AQEB"), "the key is never echoed: {error}");
    }
}
