//! Identifiers: every object is named by 16 lowercase hex digits (64 random bits),
//! the shape the Integration API shows for execution ids.

/// Length of every Regente identifier.
pub const ID_LEN: usize = 16;

/// Whether `text` has the shape of a Regente id. Ids of any other shape cannot
/// exist, so callers answer "not found" without asking the store.
pub fn is_valid_id(text: &str) -> bool {
    text.len() == ID_LEN && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Formats 64 random bits as an id.
pub fn format_id(bits: u64) -> String {
    format!("{bits:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

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
