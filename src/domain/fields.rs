//! Validated field types: each one owns its rule, and the OpenAPI schema is built
//! from that same rule, so the documented bounds and the enforced bounds cannot drift.
//!
//! A value of one of these types has passed its rule; holding one is the proof.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Parses one JSON value into a validated field, or says in a short phrase why not.
pub trait FromJsonField: Sized {
    /// `None` when the field is absent.
    fn from_json_field(value: &Value) -> Result<Self, String>;
}

/// Implements poem-openapi's `Type`, `ParseFromJSON` and `ToJSON` for a validated field
/// from its `schema()` and `FromJsonField`. The traits are named in full, not imported:
/// in scope, `Type::is_empty` would shadow `str::is_empty` on references.
macro_rules! openapi_type {
    ($name:ident, $wire:ty) => {
        impl poem_openapi::types::Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }

            fn schema_ref() -> MetaSchemaRef {
                MetaSchemaRef::Inline(Box::new(Self::schema()))
            }

            fn as_raw_value(&self) -> Option<&Self> {
                Some(self)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
                Box::new(std::iter::once(self))
            }
        }

        impl poem_openapi::types::ParseFromJSON for $name {
            fn parse_from_json(value: Option<Value>) -> poem_openapi::types::ParseResult<Self> {
                let value = value.unwrap_or_default();
                Self::from_json_field(&value).map_err(poem_openapi::types::ParseError::custom)
            }
        }

        impl poem_openapi::types::ToJSON for $name {
            fn to_json(&self) -> Option<Value> {
                Some(Value::from(<$wire>::from(self.clone())))
            }
        }
    };
}

/// How the characters of a bounded string are restricted beyond "no control characters".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// Any character but control characters.
    Printable,
    /// Any character but NUL (free text such as error messages, where newlines and tabs belong).
    Text,
    /// `[A-Za-z0-9._:-]`
    Identifier,
    /// `[A-Z]`
    UpperAlpha,
}

impl Charset {
    fn allows(self, c: char) -> bool {
        match self {
            Charset::Printable => !c.is_control(),
            Charset::Text => c != '\0',
            Charset::Identifier => c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'),
            Charset::UpperAlpha => c.is_ascii_uppercase(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Charset::Printable => "must not contain control characters",
            Charset::Text => "must not contain NUL characters",
            Charset::Identifier => "may contain only letters, digits and . _ : -",
            Charset::UpperAlpha => "may contain only the letters A to Z",
        }
    }
}

/// The rule of a bounded string: a length range in characters, a charset, and optionally
/// `:`-separated parts (`level` = `world:stage:room`).
#[derive(Debug, Clone, Copy)]
pub struct StringRule {
    pub min_chars: usize,
    pub max_chars: usize,
    pub charset: Charset,
    /// `Some((max_parts, max_part_chars))` for hierarchical names joined by `:`.
    pub parts: Option<(usize, usize)>,
    /// The regular expression that states this rule in the OpenAPI document.
    pub pattern: Option<&'static str>,
}

impl StringRule {
    pub fn check(&self, s: &str) -> Result<(), String> {
        if let Some(bad) = s.chars().find(|&c| !self.charset.allows(c)) {
            return Err(format!("{} (found {:?})", self.charset.describe(), bad));
        }
        let chars = s.chars().count();
        if chars < self.min_chars || chars > self.max_chars {
            return Err(if self.min_chars == self.max_chars {
                format!("must be exactly {} characters long", self.min_chars)
            } else {
                format!(
                    "must be {} to {} characters long (got {chars})",
                    self.min_chars, self.max_chars
                )
            });
        }
        if let Some((max_parts, max_part_chars)) = self.parts {
            let parts: Vec<&str> = s.split(':').collect();
            if parts.len() > max_parts {
                return Err(format!(
                    "must have at most {max_parts} parts separated by ':' (got {})",
                    parts.len()
                ));
            }
            if let Some(part) = parts
                .iter()
                .find(|p| p.is_empty() || p.chars().count() > max_part_chars)
            {
                return Err(format!(
                    "each ':'-separated part must be 1 to {max_part_chars} characters long (got {:?})",
                    part
                ));
            }
        }
        Ok(())
    }

    fn schema(&self, description: &'static str, example: &'static str) -> MetaSchema {
        MetaSchema {
            description: Some(description),
            min_length: Some(self.min_chars),
            max_length: Some(self.max_chars),
            pattern: self.pattern.map(str::to_owned),
            example: Some(Value::from(example)),
            ..MetaSchema::new("string")
        }
    }
}

/// Declares a string newtype checked by a `StringRule`.
macro_rules! bounded_string {
    ($(#[doc = $doc:literal])* $name:ident, $rule:expr, example = $example:literal) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const RULE: StringRule = $rule;

            pub fn as_str(&self) -> &str {
                &self.0
            }

            fn schema() -> MetaSchema {
                Self::RULE.schema(concat!($($doc),*).trim_start(), $example)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                Self::RULE.check(&s)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl FromJsonField for $name {
            fn from_json_field(value: &Value) -> Result<Self, String> {
                match value {
                    Value::String(s) => Self::try_from(s.clone()),
                    other => Err(format!("must be a string, not {}", json_kind(other))),
                }
            }
        }

        openapi_type!($name, String);
    };
}

/// [`Charset::Printable`] as a pattern: no character of Unicode's Cc category, which is
/// what `char::is_control` refuses. Lengths stay with `minLength` and `maxLength`, which
/// count characters, where a JavaScript pattern's `{1,64}` would count UTF-16 units.
const PRINTABLE: &str = r"^[^\x00-\x1F\x7F-\x9F]*$";
/// [`Charset::Text`] as a pattern: no NUL.
const TEXT: &str = r"^[^\x00]*$";

const fn plain(min_chars: usize, max_chars: usize) -> StringRule {
    StringRule {
        min_chars,
        max_chars,
        charset: Charset::Printable,
        parts: None,
        pattern: Some(PRINTABLE),
    }
}

const fn hierarchical(
    max_parts: usize,
    max_part_chars: usize,
    pattern: &'static str,
) -> StringRule {
    StringRule {
        min_chars: 1,
        max_chars: max_parts * (max_part_chars + 1) - 1,
        charset: Charset::Printable,
        parts: Some((max_parts, max_part_chars)),
        pattern: Some(pattern),
    }
}

bounded_string!(
    /// The game's own identifier of the player: 1 to 64 of `[A-Za-z0-9._:-]`.
    PlayerId,
    StringRule {
        charset: Charset::Identifier,
        pattern: Some("^[A-Za-z0-9._:-]{1,64}$"),
        ..plain(1, 64)
    },
    example = "player-42"
);
bounded_string!(
    /// Version of the game client, 1 to 32 characters.
    AppVersion,
    plain(1, 32),
    example = "1.4.2"
);
bounded_string!(
    /// Device model, at most 64 characters.
    DeviceModel,
    plain(1, 64),
    example = "iPhone15,3"
);
bounded_string!(
    /// Level identifier: 1 to 3 parts joined by `:`, each 1 to 64 characters (`world:stage:room`).
    LevelName,
    hierarchical(3, 64, r"^[^:\x00-\x1F\x7F-\x9F]{1,64}(:[^:\x00-\x1F\x7F-\x9F]{1,64}){0,2}$"),
    example = "world-1:stage-3"
);
bounded_string!(
    /// Custom event name: 1 to 5 parts joined by `:`, each 1 to 64 characters.
    CustomEventName,
    hierarchical(5, 64, r"^[^:\x00-\x1F\x7F-\x9F]{1,64}(:[^:\x00-\x1F\x7F-\x9F]{1,64}){0,4}$"),
    example = "tutorial:step:completed"
);
bounded_string!(
    /// Identifier or kind of an item, 1 to 64 characters.
    ItemName,
    plain(1, 64),
    example = "gem_pack_small"
);
bounded_string!(
    /// Store transaction identifier, at most 128 characters.
    TransactionId,
    plain(1, 128),
    example = "GPA.3372-4150-9012-34567"
);
bounded_string!(
    /// Name of a virtual currency, 1 to 64 characters.
    VirtualCurrency,
    plain(1, 64),
    example = "gold"
);
bounded_string!(
    /// ISO 4217 currency code of a real-money purchase.
    CurrencyCode,
    StringRule {
        charset: Charset::UpperAlpha,
        pattern: Some("^[A-Z]{3}$"),
        ..plain(3, 3)
    },
    example = "EUR"
);
bounded_string!(
    /// Error message, 1 to 8192 characters.
    ErrorMessage,
    StringRule {
        charset: Charset::Text,
        pattern: Some(TEXT),
        ..plain(1, 8192)
    },
    example = "NullReferenceException in ShopController.Open"
);

/// ISO 3166-1 alpha-2 country code (an assigned code, such as `GB`; not `UK`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CountryCode(String);

impl CountryCode {
    fn schema() -> MetaSchema {
        MetaSchema {
            description: Some("ISO 3166-1 alpha-2 country code, an assigned one (`GB`, not `UK`)."),
            min_length: Some(2),
            max_length: Some(2),
            pattern: Some("^[A-Z]{2}$".to_owned()),
            example: Some(Value::from("SE")),
            ..MetaSchema::new("string")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Officially assigned ISO 3166-1 alpha-2 codes, in alphabetical order.
const ASSIGNED_COUNTRY_CODES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR \
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP \
KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT \
MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW \
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG \
UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

impl TryFrom<String> for CountryCode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let well_formed = s.len() == 2 && s.chars().all(|c| c.is_ascii_uppercase());
        if !well_formed {
            return Err("must be two capital letters (ISO 3166-1 alpha-2)".to_owned());
        }
        if !ASSIGNED_COUNTRY_CODES.split(' ').any(|code| code == s) {
            return Err(format!("{s:?} is not an assigned ISO 3166-1 alpha-2 code"));
        }
        Ok(Self(s))
    }
}

impl From<CountryCode> for String {
    fn from(v: CountryCode) -> String {
        v.0
    }
}

impl FromJsonField for CountryCode {
    fn from_json_field(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(s) => Self::try_from(s.clone()),
            other => Err(format!("must be a string, not {}", json_kind(other))),
        }
    }
}

openapi_type!(CountryCode, String);

/// Declares an integer newtype with an inclusive range.
macro_rules! bounded_integer {
    ($(#[doc = $doc:literal])* $name:ident($int:ty = $int_name:literal), min = $min:expr, max = $max:expr, example = $example:literal) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = $int_name, into = $int_name)]
        pub struct $name($int);

        impl $name {
            pub const MIN: $int = $min;
            pub const MAX: $int = $max;

            pub fn get(self) -> $int {
                self.0
            }

            fn schema() -> MetaSchema {
                MetaSchema {
                    description: Some(concat!($($doc),*).trim_start()),
                    format: Some(if <$int>::BITS == 64 { "int64" } else { "int32" }),
                    minimum: Some(Self::MIN as f64),
                    maximum: Some(Self::MAX as f64),
                    example: Some(Value::from($example)),
                    ..MetaSchema::new("integer")
                }
            }
        }

        impl TryFrom<$int> for $name {
            type Error = String;
            fn try_from(v: $int) -> Result<Self, String> {
                if (Self::MIN..=Self::MAX).contains(&v) {
                    Ok(Self(v))
                } else if Self::MAX == <$int>::MAX {
                    Err(format!("must be at least {} (got {v})", Self::MIN))
                } else {
                    Err(format!("must be between {} and {} (got {v})", Self::MIN, Self::MAX))
                }
            }
        }

        impl From<$name> for $int {
            fn from(v: $name) -> $int {
                v.0
            }
        }

        impl FromJsonField for $name {
            fn from_json_field(value: &Value) -> Result<Self, String> {
                let Value::Number(n) = value else {
                    return Err(format!("must be an integer, not {}", json_kind(value)));
                };
                if let Some(v) = n.as_i64() {
                    let v = <$int>::try_from(v).map_err(|_| {
                        format!("must be between {} and {} (got {v})", Self::MIN, Self::MAX)
                    })?;
                    return Self::try_from(v);
                }
                if n.is_u64() {
                    return Err(format!("must be at most {} (got {n})", Self::MAX));
                }
                Err(format!("must be an integer (got {n})"))
            }
        }

        openapi_type!($name, $int);
    };
}

bounded_integer!(
    /// Length of the session in seconds, 0 to 604800 (one week).
    DurationSeconds(i32 = "i32"),
    min = 0,
    max = 604_800,
    example = 1860
);
bounded_integer!(
    /// Score reached, 0 or more.
    Score(i64 = "i64"),
    min = 0,
    max = i64::MAX,
    example = 12500
);
bounded_integer!(
    /// Which attempt at the level this is, 1 or more.
    AttemptNumber(i32 = "i32"),
    min = 1,
    max = i32::MAX,
    example = 3
);
bounded_integer!(
    /// Price in minor units of the currency (cents for EUR), more than 0.
    AmountMinor(i64 = "i64"),
    min = 1,
    max = i64::MAX,
    example = 499
);

/// How a number is bounded: finite always, and optionally strictly positive.
macro_rules! bounded_number {
    ($(#[doc = $doc:literal])* $name:ident, positive = $positive:literal, example = $example:literal) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
        #[serde(try_from = "f64", into = "f64")]
        pub struct $name(f64);

        impl $name {
            pub fn get(self) -> f64 {
                self.0
            }

            fn schema() -> MetaSchema {
                MetaSchema {
                    description: Some(concat!($($doc),*).trim_start()),
                    format: Some("double"),
                    minimum: $positive.then_some(0.0),
                    exclusive_minimum: $positive.then_some(true),
                    example: Some(Value::from($example)),
                    ..MetaSchema::new("number")
                }
            }
        }

        impl TryFrom<f64> for $name {
            type Error = String;
            fn try_from(v: f64) -> Result<Self, String> {
                if !v.is_finite() {
                    Err("must be a finite number".to_owned())
                } else if $positive && v <= 0.0 {
                    Err(format!("must be greater than 0 (got {v})"))
                } else {
                    Ok(Self(v))
                }
            }
        }

        impl From<$name> for f64 {
            fn from(v: $name) -> f64 {
                v.0
            }
        }

        impl FromJsonField for $name {
            fn from_json_field(value: &Value) -> Result<Self, String> {
                match value.as_f64() {
                    Some(v) => Self::try_from(v),
                    None => Err(format!("must be a number, not {}", json_kind(value))),
                }
            }
        }

        openapi_type!($name, f64);
    };
}

bounded_number!(
    /// Amount of virtual currency that flowed, more than 0.
    ResourceAmount,
    positive = true,
    example = 250.0
);
bounded_number!(
    /// Optional numeric value of a custom event, any finite number.
    CustomValue,
    positive = false,
    example = 42.5
);

/// Free-form properties of a custom event: a JSON object of at most 50 keys and
/// 8 KiB serialized, nested at most 8 levels deep, with no NUL characters
/// (PostgreSQL's `jsonb` cannot store them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    try_from = "serde_json::Map<String, Value>",
    into = "serde_json::Map<String, Value>"
)]
pub struct CustomProperties(serde_json::Map<String, Value>);

impl CustomProperties {
    pub const MAX_KEYS: usize = 50;
    pub const MAX_BYTES: usize = 8 * 1024;
    pub const MAX_DEPTH: usize = 8;

    pub fn as_map(&self) -> &serde_json::Map<String, Value> {
        &self.0
    }

    fn schema() -> MetaSchema {
        MetaSchema {
            description: Some(
                "Free-form properties: a JSON object of at most 50 keys and 8 KiB serialized, nested at most 8 levels deep.",
            ),
            max_properties: Some(Self::MAX_KEYS),
            additional_properties: Some(Box::new(MetaSchemaRef::Inline(Box::new(MetaSchema::ANY)))),
            example: Some(serde_json::json!({"step": 3, "skipped": false})),
            ..MetaSchema::new("object")
        }
    }
}

/// Depth of nested arrays and objects below `value` (a scalar is 0).
fn nesting_depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(nesting_depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(nesting_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

impl TryFrom<serde_json::Map<String, Value>> for CustomProperties {
    type Error = String;
    fn try_from(map: serde_json::Map<String, Value>) -> Result<Self, String> {
        if map.len() > Self::MAX_KEYS {
            return Err(format!(
                "must have at most {} keys (got {})",
                Self::MAX_KEYS,
                map.len()
            ));
        }
        let value = Value::Object(map);
        let depth = nesting_depth(&value);
        if depth > Self::MAX_DEPTH {
            return Err(format!(
                "must be nested at most {} levels deep (got {depth})",
                Self::MAX_DEPTH
            ));
        }
        if contains_nul(&value) {
            return Err("must not contain NUL characters".to_owned());
        }
        let bytes = serde_json::to_vec(&value).map_or(usize::MAX, |v| v.len());
        if bytes > Self::MAX_BYTES {
            return Err(format!(
                "must be at most {} bytes serialized (got {bytes})",
                Self::MAX_BYTES
            ));
        }
        let Value::Object(map) = value else {
            unreachable!("constructed as an object above")
        };
        Ok(Self(map))
    }
}

impl From<CustomProperties> for serde_json::Map<String, Value> {
    fn from(v: CustomProperties) -> Self {
        v.0
    }
}

impl FromJsonField for CustomProperties {
    fn from_json_field(value: &Value) -> Result<Self, String> {
        match value {
            Value::Object(map) => Self::try_from(map.clone()),
            other => Err(format!("must be a JSON object, not {}", json_kind(other))),
        }
    }
}

openapi_type!(CustomProperties, serde_json::Map<String, Value>);

impl FromJsonField for uuid::Uuid {
    fn from_json_field(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(s) => uuid::Uuid::try_parse(s).map_err(|_| {
                format!("must be a UUID such as 0192f0c1-7d5e-7a3b-9c1d-2e3f4a5b6c7d (got {s:?})")
            }),
            other => Err(format!("must be a UUID string, not {}", json_kind(other))),
        }
    }
}

impl FromJsonField for time::OffsetDateTime {
    fn from_json_field(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(s) => time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| format!("must be an RFC 3339 date-time with an offset, such as 2026-11-25T14:03:07.250Z (got {s:?})")),
            other => Err(format!("must be an RFC 3339 date-time string, not {}", json_kind(other))),
        }
    }
}

/// serde for a type with `as_str` and `from_wire`: its word as a JSON string, and only
/// that (serde's derive for an enum would also read `{"word": null}`, which the API's
/// rules refuse).
macro_rules! wire_word {
    ($name:ty) => {
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Word;
                impl serde::de::Visitor<'_> for Word {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " word"))
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$name, E> {
                        <$name>::from_wire(s)
                            .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(s), &self))
                    }
                }
                deserializer.deserialize_str(Word)
            }
        }
    };
}
pub(crate) use wire_word;

/// Declares a closed set of lowercase words, documented as an OpenAPI enum.
macro_rules! word_enum {
    ($(#[doc = $doc:literal])* $name:ident { $($variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, poem_openapi::Enum)]
        #[oai(rename_all = "snake_case")]
        pub enum $name {
            $($variant),+
        }

        wire_word!($name);

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }

            pub fn from_wire(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl FromJsonField for $name {
            fn from_json_field(value: &Value) -> Result<Self, String> {
                let expected = || Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ");
                match value {
                    Value::String(s) => Self::from_wire(s)
                        .ok_or_else(|| format!("must be one of {} (got {s:?})", expected())),
                    other => Err(format!("must be one of {}, not {}", expected(), json_kind(other))),
                }
            }
        }
    };
}

word_enum!(
    /// Platform the game runs on.
    Platform {
        Ios = "ios",
        Android = "android",
        Windows = "windows",
        Macos = "macos",
        Linux = "linux",
        Web = "web",
        Playstation = "playstation",
        Xbox = "xbox",
        Switch = "switch",
        Other = "other",
    }
);
word_enum!(
    /// Where the player is in the level.
    ProgressionStatus {
        Start = "start",
        Complete = "complete",
        Fail = "fail",
    }
);
word_enum!(
    /// Whether virtual currency was gained (`source`) or spent (`sink`).
    ResourceFlow {
        Source = "source",
        Sink = "sink",
    }
);
word_enum!(
    /// Severity of a client-side error.
    Severity {
        Debug = "debug",
        Info = "info",
        Warning = "warning",
        Error = "error",
        Critical = "critical",
    }
);

/// The JSON kind of a value, for error messages ("must be a string, not a number").
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse<T: FromJsonField>(v: Value) -> Result<T, String> {
        T::from_json_field(&v)
    }

    #[test]
    fn player_id_length_bounds_on_both_sides() {
        assert!(parse::<PlayerId>(json!("")).is_err());
        assert!(parse::<PlayerId>(json!("a")).is_ok());
        assert!(parse::<PlayerId>(json!("a".repeat(64))).is_ok());
        assert!(parse::<PlayerId>(json!("a".repeat(65))).is_err());
    }

    #[test]
    fn player_id_charset() {
        assert!(parse::<PlayerId>(json!("Ab9._:-")).is_ok());
        for bad in ["a b", "a/b", "é", "a\u{0}", "a\nb"] {
            assert!(parse::<PlayerId>(json!(bad)).is_err(), "{bad:?} accepted");
        }
        assert!(parse::<PlayerId>(json!(42))
            .unwrap_err()
            .contains("must be a string"));
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let version = "é".repeat(32);
        assert_eq!(version.len(), 64);
        assert!(parse::<AppVersion>(json!(version)).is_ok());
        assert!(parse::<AppVersion>(json!("é".repeat(33))).is_err());
    }

    #[test]
    fn printable_strings_reject_control_characters() {
        assert!(parse::<ItemName>(json!("sword\u{7}")).is_err());
        assert!(parse::<ItemName>(json!("sword\n")).is_err());
        assert!(parse::<TransactionId>(json!("t".repeat(128))).is_ok());
        assert!(parse::<TransactionId>(json!("t".repeat(129))).is_err());
    }

    #[test]
    fn error_message_allows_newlines_but_not_nul() {
        assert!(parse::<ErrorMessage>(json!("line 1\n\tline 2")).is_ok());
        assert!(parse::<ErrorMessage>(json!("nul\u{0}byte")).is_err());
        assert!(parse::<ErrorMessage>(json!("m".repeat(8192))).is_ok());
        assert!(parse::<ErrorMessage>(json!("m".repeat(8193))).is_err());
        assert!(parse::<ErrorMessage>(json!("")).is_err());
    }

    #[test]
    fn level_has_one_to_three_parts_of_one_to_64_characters() {
        assert!(parse::<LevelName>(json!("w")).is_ok());
        assert!(parse::<LevelName>(json!("w:s:r")).is_ok());
        assert!(parse::<LevelName>(json!("w:s:r:x")).is_err());
        assert!(parse::<LevelName>(json!("w::r")).is_err());
        assert!(parse::<LevelName>(json!(":w")).is_err());
        assert!(parse::<LevelName>(json!(format!("{}:b", "a".repeat(64)))).is_ok());
        assert!(parse::<LevelName>(json!(format!("{}:b", "a".repeat(65)))).is_err());
        assert!(parse::<LevelName>(json!(vec!["a".repeat(64); 3].join(":"))).is_ok());
    }

    #[test]
    fn custom_event_name_has_one_to_five_parts() {
        assert!(parse::<CustomEventName>(json!("a:b:c:d:e")).is_ok());
        assert!(parse::<CustomEventName>(json!("a:b:c:d:e:f")).is_err());
        assert!(parse::<CustomEventName>(json!(vec!["n".repeat(64); 5].join(":"))).is_ok());
    }

    #[test]
    fn currency_code_is_three_capital_letters() {
        assert!(parse::<CurrencyCode>(json!("EUR")).is_ok());
        for bad in ["eur", "EU", "EURO", "E1R"] {
            assert!(parse::<CurrencyCode>(json!(bad)).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn country_code_must_be_assigned() {
        assert!(parse::<CountryCode>(json!("GB")).is_ok());
        assert!(parse::<CountryCode>(json!("ZW")).is_ok());
        assert!(parse::<CountryCode>(json!("AD")).is_ok());
        assert!(parse::<CountryCode>(json!("UK"))
            .unwrap_err()
            .contains("not an assigned"));
        assert!(parse::<CountryCode>(json!("gb")).is_err());
        assert!(parse::<CountryCode>(json!("GBR")).is_err());
    }

    #[test]
    fn duration_bounds_on_both_sides() {
        assert!(parse::<DurationSeconds>(json!(-1)).is_err());
        assert_eq!(parse::<DurationSeconds>(json!(0)).unwrap().get(), 0);
        assert_eq!(
            parse::<DurationSeconds>(json!(604_800)).unwrap().get(),
            604_800
        );
        assert!(parse::<DurationSeconds>(json!(604_801)).is_err());
        assert!(parse::<DurationSeconds>(json!(1.5)).is_err());
        assert!(parse::<DurationSeconds>(json!("60")).is_err());
    }

    #[test]
    fn integer_lower_bounds_and_overflow() {
        assert!(parse::<Score>(json!(-1)).is_err());
        assert!(parse::<Score>(json!(0)).is_ok());
        assert!(parse::<AttemptNumber>(json!(0)).is_err());
        assert!(parse::<AttemptNumber>(json!(1)).is_ok());
        assert!(parse::<AttemptNumber>(json!(i64::from(i32::MAX) + 1)).is_err());
        assert!(parse::<AmountMinor>(json!(0)).is_err());
        assert!(parse::<AmountMinor>(json!(1)).is_ok());
        assert!(parse::<AmountMinor>(json!(u64::MAX)).is_err());
        assert!(parse::<AmountMinor>(json!(1e3)).is_err());
    }

    #[test]
    fn numbers_are_finite_and_positive_where_required() {
        assert!(parse::<ResourceAmount>(json!(0.0)).is_err());
        assert!(parse::<ResourceAmount>(json!(-3)).is_err());
        assert!(parse::<ResourceAmount>(json!(f64::MIN_POSITIVE)).is_ok());
        assert!(ResourceAmount::try_from(f64::INFINITY).is_err());
        assert!(CustomValue::try_from(f64::NAN).is_err());
        assert!(parse::<CustomValue>(json!(-3.5)).is_ok());
        assert!(parse::<CustomValue>(json!("3")).is_err());
    }

    #[test]
    fn enums_list_their_values_in_errors() {
        assert_eq!(
            parse::<Platform>(json!("switch")).unwrap(),
            Platform::Switch
        );
        let err = parse::<Platform>(json!("amiga")).unwrap_err();
        assert!(err.contains("ios") && err.contains("other"), "{err}");
        assert!(parse::<Severity>(json!("CRITICAL")).is_err());
    }

    #[test]
    fn properties_limits_on_both_sides() {
        let keys = |n: usize| -> Value {
            Value::Object((0..n).map(|i| (format!("k{i}"), json!(i))).collect())
        };
        assert!(parse::<CustomProperties>(keys(50)).is_ok());
        assert!(parse::<CustomProperties>(keys(51)).is_err());

        // {"v":"…"} is 8 bytes of JSON around the string.
        assert!(parse::<CustomProperties>(json!({"v": "x".repeat(8192 - 8)})).is_ok());
        assert!(parse::<CustomProperties>(json!({"v": "x".repeat(8192 - 7)})).is_err());

        let mut nested = json!(1);
        for _ in 0..7 {
            nested = json!([nested]);
        }
        assert!(parse::<CustomProperties>(json!({ "n": nested.clone() })).is_ok());
        assert!(parse::<CustomProperties>(json!({ "n": [nested] })).is_err());

        assert!(parse::<CustomProperties>(json!({"k": "a\u{0}"})).is_err());
        assert!(parse::<CustomProperties>(json!({"a\u{0}": 1})).is_err());
        assert!(parse::<CustomProperties>(json!([1])).is_err());
    }
}
