//! argon2id with working memory of its own: mapped for each hash, unmapped
//! when it is done.
//!
//! A hash works in 19 MiB (`m=19456` blocks of 1 KiB). Through the allocator,
//! glibc serves the first such block with its own mapping, but freeing it
//! raises glibc's mmap threshold past 19 MiB (and its trim threshold to twice
//! that): every later hash takes its block from the hashing thread's arena,
//! and in an arena other than the main one the freed block stays the top of
//! the arena's heap, which neither `free` nor `malloc_trim` hand back. The
//! server kept 19.5 MB of resident memory after its first login, for good, and
//! up to that again for each blocking thread that hashed. Mapped here, the
//! memory leaves the process with the hash.

use argon2::password_hash::{
    self, Decimal, Ident, Output, ParamsString, PasswordHash, PasswordHasher, Salt,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// argon2 (id by default, as [`Argon2::default`]) computing in a fresh
/// mapping. Verifying goes through [`password_hash::PasswordVerifier`], which
/// every [`PasswordHasher`] has.
pub struct MappedArgon2;

impl PasswordHasher for MappedArgon2 {
    type Params = Params;

    /// What argon2's own hasher does, with [`MappedBlocks`] for memory.
    fn hash_password_customized<'a>(
        &self,
        password: &[u8],
        algorithm: Option<Ident<'a>>,
        version: Option<Decimal>,
        params: Params,
        salt: impl Into<Salt<'a>>,
    ) -> password_hash::Result<PasswordHash<'a>> {
        let algorithm = algorithm
            .map(Algorithm::try_from)
            .transpose()?
            .unwrap_or_default();
        let version = version
            .map(Version::try_from)
            .transpose()?
            .unwrap_or_default();
        let salt = salt.into();
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
        let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let mut memory =
            MappedBlocks::new(params.block_count()).map_err(|_| password_hash::Error::Algorithm)?;
        let argon2 = Argon2::new(algorithm, version, params.clone());
        let output = Output::init_with(output_len, |out| {
            Ok(argon2.hash_password_into_with_memory(password, salt_bytes, out, &mut memory)?)
        })?;
        Ok(PasswordHash {
            algorithm: algorithm.ident(),
            version: Some(version.into()),
            params: ParamsString::try_from(&params)?,
            salt: Some(salt),
            hash: Some(output),
        })
    }
}

/// Zeroed argon2 blocks in an anonymous private mapping of their own, unmapped
/// on drop (the kernel zeroes the pages before anyone else gets them).
struct MappedBlocks {
    blocks: *mut Block,
    count: usize,
}

impl MappedBlocks {
    fn new(count: usize) -> std::io::Result<MappedBlocks> {
        let bytes = count.max(1) * std::mem::size_of::<Block>();
        // SAFETY: a new anonymous mapping, no address asked, no file.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // Faulting in 19 MiB page by page took about 11 ms on a 2-core VM,
        // against 3 ms in huge pages. Only a hint: the hash runs either way.
        #[cfg(target_os = "linux")]
        // SAFETY: advice on the mapping just made, with its length.
        unsafe {
            libc::madvise(address, bytes, libc::MADV_HUGEPAGE);
        }
        Ok(MappedBlocks {
            blocks: address.cast(),
            count,
        })
    }
}

impl AsMut<[Block]> for MappedBlocks {
    fn as_mut(&mut self) -> &mut [Block] {
        // SAFETY: the mapping is page-aligned (a Block needs 64 bytes), holds
        // `count` blocks, is zeroed (a valid Block is any bits) and is ours
        // alone until dropped; `&mut self` makes this borrow the only one.
        unsafe { std::slice::from_raw_parts_mut(self.blocks, self.count) }
    }
}

impl Drop for MappedBlocks {
    fn drop(&mut self) {
        let bytes = self.count.max(1) * std::mem::size_of::<Block>();
        // SAFETY: the mapping made in `new`, with its length; no borrow of it
        // outlives `self`.
        unsafe {
            libc::munmap(self.blocks.cast(), bytes);
        }
    }
}

// SAFETY: the mapping is owned by this value alone, like a Box's memory.
unsafe impl Send for MappedBlocks {}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordVerifier, SaltString};

    use super::*;

    #[test]
    fn hashes_are_argon2s_and_verify_both_ways() {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let ours = MappedArgon2
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert_eq!(ours, theirs);
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(MappedArgon2
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        assert!(MappedArgon2
            .verify_password(b"correct horsf", &parsed)
            .is_err());
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
    }

    #[test]
    fn a_stored_hash_with_other_parameters_verifies_with_them() {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let params = Params::new(1024, 1, 1, Some(24)).unwrap();
        let stored = Argon2::new(Algorithm::Argon2i, Version::V0x10, params)
            .hash_password(b"old password", &salt)
            .unwrap()
            .to_string();
        let parsed = PasswordHash::new(&stored).unwrap();
        assert!(MappedArgon2
            .verify_password(b"old password", &parsed)
            .is_ok());
        assert!(MappedArgon2.verify_password(b"other", &parsed).is_err());
    }
}
