//! Games: the tenants of the service. Every batch, event, player and session belongs to
//! one game, and nothing is shared between games.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A game's id in the database (`games.game_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GameId(pub i32);

impl GameId {
    /// The game that data from before games existed moved into (migration 7 gives it this
    /// id), and so the game of a job queued before then, whose payload names none.
    pub const DEFAULT: GameId = GameId(1);
}

impl fmt::Display for GameId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A game's name: what the command line calls it. 1 to 64 characters of lower-case
/// letters, digits, `.`, `_` and `-`, starting with a letter or a digit, so that it is
/// safe in a shell, a URL and a log line alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GameName(String);

pub const MAX_GAME_NAME_CHARS: usize = 64;

impl GameName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GameName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        match name.chars().next() {
            None => return Err("a game name must not be empty".to_owned()),
            Some(first) if !allowed(first) => {
                return Err(format!(
                    "a game name must start with a lower-case letter or a digit (found {first:?})"
                ))
            }
            Some(_) => {}
        }
        if let Some(bad) = name
            .chars()
            .find(|&c| !(allowed(c) || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "a game name may contain only lower-case letters, digits and . _ - (found {bad:?})"
            ));
        }
        if name.len() > MAX_GAME_NAME_CHARS {
            return Err(format!(
                "a game name must be at most {MAX_GAME_NAME_CHARS} characters long (got {})",
                name.len()
            ));
        }
        Ok(Self(name))
    }
}

impl std::str::FromStr for GameName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_owned())
    }
}

impl fmt::Display for GameName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A browser origin a game accepts events from, as browsers send it in `Origin`:
/// `scheme://host[:port]`, lower-case, with no path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin(String);

impl Origin {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Origin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let origin = s.to_ascii_lowercase();
        let host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .ok_or_else(|| {
                format!("{s:?} is not an origin: it must start with https:// or http://")
            })?;
        let valid_host = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !valid_host {
            return Err(format!(
                "{s:?} is not an origin: after the scheme comes a host and an optional port, \
                 with no path (such as https://game.example or http://localhost:8000)"
            ));
        }
        Ok(Self(origin))
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn game_names_are_lower_case_words_safe_anywhere() {
        for good in ["demo", "space-shooter", "a", "game_2.beta", "9lives"] {
            assert!(good.parse::<GameName>().is_ok(), "{good} refused");
        }
        let long = "a".repeat(MAX_GAME_NAME_CHARS + 1);
        for bad in [
            "",
            "Demo",
            "-x",
            ".x",
            "has space",
            "é",
            "a/b",
            long.as_str(),
        ] {
            assert!(bad.parse::<GameName>().is_err(), "{bad:?} accepted");
        }
        assert!("a".repeat(MAX_GAME_NAME_CHARS).parse::<GameName>().is_ok());
    }

    #[test]
    fn origins_are_scheme_host_and_port_lower_cased() {
        let origin: Origin = "https://Game.Example:8443".parse().unwrap();
        assert_eq!(origin.as_str(), "https://game.example:8443");
        assert!("http://localhost:8000".parse::<Origin>().is_ok());
        assert!("http://[::1]:8000".parse::<Origin>().is_ok());
        for bad in [
            "game.example",
            "ftp://game.example",
            "https://",
            "https://game.example/",
            "https://game.example/play",
            "https://game.example?x=1",
            "https://user@game.example",
        ] {
            assert!(bad.parse::<Origin>().is_err(), "{bad:?} accepted");
        }
    }
}
