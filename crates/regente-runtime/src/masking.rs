//! Masking: every credential value and secret variable a robot was handed is
//! replaced by `***` in each line of its output, before the line is journaled or
//! sent, so that a robot echoing a password never puts it in a log.
//!
//! Each value is looked for as it is, in base64 (standard and URL-safe, without
//! the padding, which is then left visible) and URL-encoded (every
//! non-alphanumeric byte encoded, or all but `-_.~`, or all but `-_.~/`, with a
//! space as `%20` or `+`). Values shorter than [`MIN_MASKED_LEN`] are not masked: a one- to
//! three-character value would turn every occurrence of common text into `***`,
//! wrecking the log, while hiding nothing an attacker could not guess anyway.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Shortest value masked.
pub const MIN_MASKED_LEN: usize = 4;

/// What URL components leave as they are (RFC 3986's unreserved characters).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What URL paths leave as they are besides (Python's `quote` by default).
const PATH: &AsciiSet = &COMPONENT.remove(b'/');

/// The texts to mask in a run's output, longest first (so that a value inside
/// another's encoding is not masked half-way).
#[derive(Debug, Default, Clone)]
pub struct Masker {
    needles: Vec<String>,
}

impl Masker {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Masker {
        let mut needles = Vec::new();
        for value in values {
            if value.chars().count() < MIN_MASKED_LEN {
                continue;
            }
            needles.push(value.to_owned());
            needles.push(STANDARD_NO_PAD.encode(value));
            needles.push(URL_SAFE_NO_PAD.encode(value));
            for set in [NON_ALPHANUMERIC, COMPONENT, PATH] {
                let encoded = utf8_percent_encode(value, set).to_string();
                needles.push(encoded.replace("%20", "+"));
                needles.push(encoded);
            }
        }
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Masker { needles }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// The line with every needle replaced by `***`.
    pub fn mask(&self, line: String) -> String {
        let mut line = line;
        for needle in &self.needles {
            if line.contains(needle.as_str()) {
                line = line.replace(needle.as_str(), "***");
            }
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_their_encodings_are_masked() {
        let masker = Masker::new(["s3cr3t p@ss/word", "erp-user", "abc"]);
        let secret = "s3cr3t p@ss/word";
        for shown in [
            secret.to_owned(),
            STANDARD_NO_PAD.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
            "s3cr3t%20p%40ss%2Fword".to_owned(),
            "s3cr3t+p%40ss%2Fword".to_owned(),
            "s3cr3t%20p%40ss/word".to_owned(),
        ] {
            let line = masker.mask(format!("signing in with {shown} now"));
            assert_eq!(line, "signing in with *** now", "{shown}");
        }
        assert_eq!(
            masker.mask("user=erp-user;user=erp-user".into()),
            "user=***;user=***"
        );
        // Under the floor: left alone.
        assert_eq!(masker.mask("abc abc".into()), "abc abc");
        assert_eq!(masker.mask("nothing here".into()), "nothing here");
        assert!(Masker::new(["ab"]).is_empty());
    }
}
