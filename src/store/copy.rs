//! Rows written with `COPY … FROM STDIN (FORMAT binary)`.
//!
//! The worker writes each group's events and detail rows this way rather than with
//! `INSERT … SELECT FROM UNNEST(arrays)`: PostgreSQL reads binary values straight into
//! the rows, without building arrays, unnesting them into a tuplestore and reading that
//! back, and it writes the rows of one partition a page at a time (one WAL record per page
//! instead of one per row). Measured on 5,700 events into a day's partition: 18.8 ms
//! against 23.9 ms (BENCHMARKS.md).
//!
//! The format (PostgreSQL's documentation, `COPY`, "Binary Format"): a signature, flags
//! and an empty header extension; per row, the number of fields and each field as its
//! length and its value in the type's binary form (the form `recv` functions read, as in
//! the extended protocol); a trailer of -1. A `COPY` statement names the columns, so each
//! row here must give exactly those columns, in that order, with these types.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

/// `PGCOPY\n\377\r\n\0`, then flags (no OIDs) and the header extension's length (none).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const POSTGRES_EPOCH_UNIX_SECS: i64 = 946_684_800;

/// The version byte of `jsonb`'s binary form, followed by the JSON text.
const JSONB_VERSION: u8 = 1;

/// The data of one binary `COPY`, built a row at a time.
pub struct BinaryRows {
    buf: Vec<u8>,
    columns: i16,
    rows: u64,
    /// Fields written in the current row: a row of the wrong width is a bug of ours,
    /// caught here in tests rather than by the server.
    fields_in_row: i16,
}

impl BinaryRows {
    /// Rows of `columns` fields each; `capacity` is a guess of the bytes they take.
    pub fn new(columns: i16, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER.len() + capacity + 2);
        buf.extend_from_slice(HEADER);
        Self {
            buf,
            columns,
            rows: 0,
            fields_in_row: 0,
        }
    }

    fn end_row(&self) {
        debug_assert!(
            self.rows == 0 || self.fields_in_row == self.columns,
            "a row of {} fields where the COPY has {} columns",
            self.fields_in_row,
            self.columns
        );
    }

    /// Starts a row: exactly `columns` fields must follow.
    pub fn row(&mut self) -> &mut Self {
        self.end_row();
        self.buf.extend_from_slice(&self.columns.to_be_bytes());
        self.rows += 1;
        self.fields_in_row = 0;
        self
    }

    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        let len = i32::try_from(bytes.len()).expect("a field is far below 2 GiB");
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
        self.fields_in_row += 1;
        self
    }

    /// SQL NULL.
    pub fn null(&mut self) -> &mut Self {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        self.fields_in_row += 1;
        self
    }

    pub fn int4(&mut self, value: i32) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    pub fn int8(&mut self, value: i64) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    pub fn float8(&mut self, value: f64) -> &mut Self {
        self.field(&value.to_bits().to_be_bytes())
    }

    pub fn uuid(&mut self, value: Uuid) -> &mut Self {
        self.field(value.as_bytes())
    }

    /// `text`: its UTF-8 bytes (the database's encoding is UTF-8, as the migrations
    /// require).
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.field(value.as_bytes())
    }

    /// `timestamptz`: microseconds since 2000-01-01 UTC (the integer datetimes every
    /// PostgreSQL since 10 uses), truncated toward 2000 exactly as sqlx's own encoding
    /// of `OffsetDateTime` does. It must be the same: `occurred_at` is part of the events'
    /// unique key, and an event stored through one path is looked up through the other.
    pub fn timestamptz(&mut self, value: OffsetDateTime) -> &mut Self {
        let nanos =
            value.unix_timestamp_nanos() - i128::from(POSTGRES_EPOCH_UNIX_SECS) * 1_000_000_000;
        let micros = i64::try_from(nanos / 1_000).expect("a timestamp within PostgreSQL's range");
        self.field(&micros.to_be_bytes())
    }

    /// `jsonb`: a version byte and the JSON text, which PostgreSQL parses as it would
    /// the text form.
    pub fn jsonb(&mut self, value: &impl serde::Serialize) -> &mut Self {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0i32.to_be_bytes());
        self.buf.push(JSONB_VERSION);
        serde_json::to_writer(&mut self.buf, value).expect("serializing to memory succeeds");
        let len = i32::try_from(self.buf.len() - at - 4).expect("a field is far below 2 GiB");
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        self.fields_in_row += 1;
        self
    }

    /// Writes `value`, or NULL for `None`, with `write`.
    pub fn or_null<T>(
        &mut self,
        value: Option<T>,
        write: impl FnOnce(&mut Self, T) -> &mut Self,
    ) -> &mut Self {
        match value {
            Some(value) => write(self, value),
            None => self.null(),
        }
    }

    /// Rows started so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The data, with its trailer.
    fn finish(mut self) -> Vec<u8> {
        self.end_row();
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

/// Runs `statement` (a `COPY … FROM STDIN (FORMAT binary)`) with `rows` as its data, on
/// `conn`, inside its transaction. Returns the rows stored; an error of any row fails the
/// whole statement (and, outside a savepoint, the transaction), as an `INSERT` would.
pub async fn copy_in(
    conn: &mut PgConnection,
    statement: &str,
    rows: BinaryRows,
) -> Result<u64, sqlx::Error> {
    let expected = rows.rows();
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(rows.finish()).await?;
    let stored = copy.finish().await?;
    debug_assert_eq!(stored, expected);
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_is_header_rows_and_trailer() {
        let mut rows = BinaryRows::new(3, 64);
        rows.row().int4(7).null().text("hé");
        assert_eq!(rows.rows(), 1);
        let data = rows.finish();
        let mut expected = HEADER.to_vec();
        expected.extend_from_slice(&[0, 3]); // three fields
        expected.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 7]); // int4 7
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // NULL
        expected.extend_from_slice(&[0, 0, 0, 3, b'h', 0xc3, 0xa9]); // "hé" in UTF-8
        expected.extend_from_slice(&[0xff, 0xff]); // trailer
        assert_eq!(data, expected);
        assert_eq!(HEADER.len(), 19);
    }

    #[test]
    fn timestamps_count_microseconds_from_2000() {
        let at = |s: &str| {
            OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
        };
        let field = |t: OffsetDateTime| {
            let mut rows = BinaryRows::new(1, 16);
            rows.timestamptz(t);
            rows.buf[HEADER.len() + 4..].to_vec()
        };
        for (time, micros) in [
            ("2000-01-01T00:00:00Z", 0i64),
            ("2000-01-01T02:00:00.000001+02:00", 1),
            ("1999-12-31T23:59:59.999999Z", -1),
            // Nanoseconds are cut toward 2000, as sqlx cuts them.
            ("2000-01-01T00:00:00.000001999Z", 1),
            ("1999-12-31T23:59:59.999998999Z", -1),
        ] {
            assert_eq!(field(at(time)), micros.to_be_bytes(), "{time}");
        }
    }

    #[test]
    #[should_panic(expected = "a row of 2 fields where the COPY has 3 columns")]
    fn a_row_of_the_wrong_width_is_caught() {
        let mut rows = BinaryRows::new(3, 64);
        rows.row().int4(1).null();
        rows.row();
    }

    #[test]
    fn jsonb_is_a_version_byte_and_the_text_with_its_length() {
        let mut rows = BinaryRows::new(1, 16);
        rows.jsonb(&serde_json::json!({"a": 1}));
        let field = &rows.buf[HEADER.len()..];
        assert_eq!(&field[..4], &8i32.to_be_bytes()); // 1 + len(r#"{"a":1}"#)
        assert_eq!(field[4], JSONB_VERSION);
        assert_eq!(&field[5..], br#"{"a":1}"#);
    }
}
