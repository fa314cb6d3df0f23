//! API keys: random, shown once when made, stored and compared only as a hash.

use std::fmt;

use sha2::{Digest, Sha256};

/// Characters in a key: 32 of 62 letters and digits, 190 random bits. Letters and
/// digits only, so a key survives a URL (`?key=`), a shell and a double-click unquoted.
pub const KEY_CHARS: usize = 32;
/// The leading characters that `app keys list` shows to tell keys apart. They are not
/// secret: the other 24 characters still carry 142 random bits.
pub const PREFIX_CHARS: usize = 8;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A new key, in plain text. It exists only between its making and its one showing;
/// its `Debug` shows the prefix alone, so a stray `{:?}` cannot log it.
pub struct ApiKey(String);

impl ApiKey {
    /// Draws a key from the operating system's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut key = String::with_capacity(KEY_CHARS);
        // Rejection sampling: a byte below 248 (= 4 × 62) maps to a character without bias.
        let mut bytes = [0u8; 64];
        while key.len() < KEY_CHARS {
            getrandom::fill(&mut bytes)?;
            key.extend(
                bytes
                    .iter()
                    .filter(|&&b| b < 248)
                    .map(|&b| char::from(ALPHABET[usize::from(b % 62)]))
                    .take(KEY_CHARS - key.len()),
            );
        }
        Ok(Self(key))
    }

    /// The key itself, to show once.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    pub fn prefix(&self) -> &str {
        &self.0[..PREFIX_CHARS]
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.0)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}…)", self.prefix())
    }
}

/// Whether a presented string could be one of our keys at all. Anything else is refused
/// without a lookup.
pub fn is_well_formed(presented: &str) -> bool {
    presented.len() == KEY_CHARS && presented.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// SHA-256 of a key: what the database stores and what lookups compare. A fast hash is
/// right for keys of 190 random bits, which no one can guess or try by dictionary; a slow
/// password hash would only cost every request its time.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    pub fn of(presented: &str) -> Self {
        Self(Sha256::digest(presented.as_bytes()).into())
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not secret, but long: the first bytes are enough to tell hashes apart.
        write!(f, "KeyHash(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

impl TryFrom<Vec<u8>> for KeyHash {
    type Error = String;

    fn try_from(bytes: Vec<u8>) -> Result<Self, String> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|b| format!("a key hash has 32 bytes, not {}", b.len()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn keys_are_32_letters_and_digits_and_each_is_new() {
        let keys: Vec<ApiKey> = (0..1000).map(|_| ApiKey::generate().unwrap()).collect();
        for key in &keys {
            assert!(is_well_formed(key.reveal()), "{}", key.reveal());
            assert_eq!(key.prefix(), &key.reveal()[..8]);
        }
        let distinct: HashSet<&str> = keys.iter().map(|k| k.reveal()).collect();
        assert_eq!(distinct.len(), keys.len());
    }

    #[test]
    fn every_character_of_the_alphabet_is_drawn_about_evenly() {
        // 2,000 keys = 64,000 characters, ~1,032 of each; a biased mapping (b % 62 over
        // all 256 bytes) would draw the first 8 characters ~25 % more often.
        let mut counts = [0u32; 62];
        for _ in 0..2000 {
            for b in ApiKey::generate().unwrap().reveal().bytes() {
                counts[ALPHABET.iter().position(|&a| a == b).unwrap()] += 1;
            }
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 850 && *max < 1220, "counts {counts:?}");
    }

    #[test]
    fn only_well_formed_strings_are_looked_up() {
        assert!(is_well_formed(&"a".repeat(KEY_CHARS)));
        for bad in [
            String::new(),
            "a".repeat(KEY_CHARS - 1),
            "a".repeat(KEY_CHARS + 1),
            format!("{}-", "a".repeat(KEY_CHARS - 1)),
            format!("{}é", "a".repeat(KEY_CHARS - 2)),
        ] {
            assert!(!is_well_formed(&bad), "{bad:?}");
        }
    }

    #[test]
    fn the_hash_is_sha256_of_the_key_and_debug_never_shows_the_key() {
        let key = ApiKey::generate().unwrap();
        assert_eq!(key.hash(), KeyHash::of(key.reveal()));
        assert_ne!(key.hash(), KeyHash::of(&key.reveal().to_ascii_lowercase()));
        // Known answer: SHA-256("abc").
        assert_eq!(format!("{:?}", KeyHash::of("abc")), "KeyHash(ba7816bf…)");
        let shown = format!("{key:?}");
        assert!(!shown.contains(&key.reveal()[PREFIX_CHARS..]), "{shown}");
    }
}
