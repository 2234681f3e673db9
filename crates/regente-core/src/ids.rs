//! Identifiers: every object is named by 16 lowercase hex digits, the shape the
//! Integration API shows for execution ids: the millisecond it was made (32 bits)
//! then 32 random bits (see [`id_bits`]).

/// Length of every Regente identifier.
pub const ID_LEN: usize = 16;

/// Whether `text` has the shape of a Regente id. Ids of any other shape cannot
/// exist, so callers answer "not found" without asking the store.
pub fn is_valid_id(text: &str) -> bool {
    text.len() == ID_LEN && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The bits of a new id: the Unix time in milliseconds, modulo 2^32 (49 days),
/// then 32 random bits. Ids made in the same millisecond sort together, so an
/// index on them grows at one end instead of at random places: a commit of many
/// rows touches a few index pages rather than one per row. 2^32 values per
/// millisecond keep them unguessable and make a clash rare (about once in 10^5
/// seconds at 10,000 ids a second); the store refuses a clash, and callers draw
/// again.
pub fn id_bits(unix_millis: u64, random: u64) -> u64 {
    ((unix_millis & 0xffff_ffff) << 32) | (random & 0xffff_ffff)
}

/// Formats 64 bits as an id.
pub fn format_id(bits: u64) -> String {
    format!("{bits:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_a_later_second_sort_after() {
        let earlier = format_id(id_bits(1_800_000_000_000, u64::MAX));
        let later = format_id(id_bits(1_800_000_000_001, 0));
        assert!(earlier < later, "{earlier} < {later}");
        assert!(is_valid_id(&earlier) && is_valid_id(&later));
    }

    #[test]
    fn ids_are_sixteen_lowercase_hex_digits() {
        assert!(is_valid_id("7babeddae035ea1a"));
        assert!(is_valid_id(&format_id(0)));
        assert!(is_valid_id(&format_id(u64::MAX)));
        assert!(!is_valid_id("7BABEDDAE035EA1A"));
        assert!(!is_valid_id("7babeddae035ea1"));
        assert!(!is_valid_id("7babeddae035ea1ag"));
        assert!(!is_valid_id("../../etc/passwd"));
    }
}
