//! Streaming Content-Transfer-Encoding decoding (RFC 2045 §6) in constant memory.
//!
//! Attachments are downloaded from the IMAP server in chunks, and a chunk boundary can fall
//! anywhere: inside a base64 quantum, between the `\r` and `\n` of a line break, or between
//! the `=` and the hex digits of a quoted-printable escape. [`TransferDecoder`] carries the
//! few bytes of state such a split needs from one chunk to the next, so decoding a body in
//! chunks gives exactly the bytes decoding it in one piece gives.
//!
//! Decoding is lenient, as mail readers are: damaged input yields the best reading of it,
//! never an error.

use super::structure::TransferEncoding;
use super::uuencode::UuDecoder;

/// Decodes one body part's transfer encoding, chunk by chunk.
///
/// Feed every chunk to [`decode_chunk`](Self::decode_chunk) in order, then call
/// [`finish`](Self::finish) to flush what the end of the input completes.
#[derive(Debug, Clone)]
pub struct TransferDecoder {
    state: DecoderState,
}

#[derive(Debug, Clone)]
enum DecoderState {
    Identity,
    Base64(Base64State),
    QuotedPrintable(QpState),
    UuEncode(Box<UuDecoder>),
}

impl TransferDecoder {
    /// A decoder for `encoding`. 7bit, 8bit, binary and unknown encodings pass bytes through
    /// unchanged: an unknown encoding cannot be undone, and the raw bytes are the most useful
    /// thing to hand over.
    pub fn new(encoding: &TransferEncoding) -> Self {
        let state = match encoding {
            TransferEncoding::Base64 => DecoderState::Base64(Base64State::default()),
            TransferEncoding::QuotedPrintable => DecoderState::QuotedPrintable(QpState::Text),
            TransferEncoding::UuEncode => DecoderState::UuEncode(Box::default()),
            TransferEncoding::SevenBit
            | TransferEncoding::EightBit
            | TransferEncoding::Binary
            | TransferEncoding::Other(_) => DecoderState::Identity,
        };
        Self { state }
    }

    /// Decodes `input`, the next chunk of the encoded body, appending the decoded bytes to
    /// `out`. Bytes that need the next chunk to be decoded are held back.
    pub fn decode_chunk(&mut self, input: &[u8], out: &mut Vec<u8>) {
        match &mut self.state {
            DecoderState::Identity => out.extend_from_slice(input),
            DecoderState::Base64(state) => state.decode(input, out),
            DecoderState::QuotedPrintable(state) => state.decode(input, out),
            DecoderState::UuEncode(state) => state.decode_chunk(input, out),
        }
    }

    /// Ends the input, appending to `out` whatever the held-back bytes still decode to.
    pub fn finish(self, out: &mut Vec<u8>) {
        match self.state {
            DecoderState::Identity => {}
            DecoderState::Base64(state) => state.finish(out),
            DecoderState::QuotedPrintable(state) => state.finish(out),
            DecoderState::UuEncode(state) => state.finish(out),
        }
    }
}

/// Decodes a whole transfer-encoded body at once.
pub fn decode_all(encoding: &TransferEncoding, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut decoder = TransferDecoder::new(encoding);
    decoder.decode_chunk(input, &mut out);
    decoder.finish(&mut out);
    out
}

/// The exact length [`decode_all`] gives a base64 part of `size` bytes, from its first and
/// last bytes (`head` from offset 0, `tail` ending at `size`), when the part is written the
/// way every encoder writes it: lines of one width of the base64 alphabet, each ended by the
/// same line break, the last one shorter and holding the padding, then only whitespace.
/// `None` when the ends show anything else (other widths, junk, a footer), or do not show
/// enough (fewer than two line breaks in the tail).
pub fn decoded_base64_len(size: u64, head: &[u8], tail: &[u8]) -> Option<u64> {
    let is_alphabet = |byte: &u8| BASE64[usize::from(*byte)] & INVALID == 0;
    let first_break = head.iter().position(|&byte| byte == b'\n')?;
    let (first_line, line_break) = match head[..first_break].strip_suffix(b"\r") {
        Some(line) => (line, 2u64),
        None => (&head[..first_break], 1u64),
    };
    let width = first_line.len() as u64;
    if width == 0 || !first_line.iter().all(is_alphabet) {
        return None;
    }
    let content = tail.trim_ascii_end();
    let content_len = size.checked_sub((tail.len() - content.len()) as u64)?;
    let last_break = content.iter().rposition(|&byte| byte == b'\n')?;
    let last_line = &content[last_break + 1..];
    let data = last_line
        .strip_suffix(b"==")
        .or_else(|| last_line.strip_suffix(b"="))
        .unwrap_or(last_line);
    let padding = (last_line.len() - data.len()) as u64;
    if data.is_empty() && padding == 0
        || last_line.len() as u64 > width
        || !data.iter().all(is_alphabet)
    {
        return None;
    }
    // The line before the last is a whole line like the first: the tail shows it when it is
    // long enough, and it must agree.
    let before = &content[..last_break];
    let before = before.strip_suffix(b"\r").unwrap_or(before);
    if (before.len() as u64) > width {
        let previous = &before[before.len() - usize::try_from(width).ok()?..];
        let separator = before[before.len() - previous.len() - 1];
        if separator != b'\n' || !previous.iter().all(is_alphabet) {
            return None;
        }
    }
    let full_lines = content_len.checked_sub(last_line.len() as u64)?;
    if full_lines % (width + line_break) != 0 {
        return None;
    }
    let chars = full_lines / (width + line_break) * width + data.len() as u64;
    // What the decoder makes of the characters: 3 bytes a quantum, and 1 or 2 from a
    // quantum cut short by padding or the end.
    Some(chars / 4 * 3 + [0, 0, 1, 2][usize::try_from(chars % 4).ok()?])
}

/// Base64 state: the 6-bit values of an incomplete quantum.
#[derive(Debug, Clone, Default)]
struct Base64State {
    quantum: [u8; 4],
    len: usize,
    /// Set once padding is seen: RFC 2045 §6.8 makes `=` the end of the encoded data, so
    /// anything after it (often a mailing-list footer glued onto the part) is not decoded.
    ended: bool,
}

impl Base64State {
    fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        out.reserve(input.len() / 4 * 3 + 3);
        let mut rest = input;
        while !rest.is_empty() {
            // Fast path: between quanta, whole groups of four alphabet characters (a line of
            // mail base64 is 19 of them) decode by table lookups alone.
            if self.len == 0 {
                let mut groups = rest.chunks_exact(4);
                for group in groups.by_ref() {
                    let [a, b, c, d] = [
                        BASE64[usize::from(group[0])],
                        BASE64[usize::from(group[1])],
                        BASE64[usize::from(group[2])],
                        BASE64[usize::from(group[3])],
                    ];
                    if (a | b | c | d) & INVALID != 0 {
                        break;
                    }
                    out.extend_from_slice(&[a << 2 | b >> 4, b << 4 | c >> 2, c << 6 | d]);
                    rest = &rest[4..];
                }
            }
            // Slow path, one byte: a line break, junk, padding or a quantum split by a chunk
            // or line boundary.
            let Some((&byte, tail)) = rest.split_first() else {
                break;
            };
            rest = tail;
            if byte == b'=' {
                self.flush(out);
                self.ended = true;
                return;
            }
            // RFC 2045 §6.8: characters outside the alphabet, line breaks included, are ignored.
            let value = BASE64[usize::from(byte)];
            if value & INVALID != 0 {
                continue;
            }
            self.quantum[self.len] = value;
            self.len += 1;
            if self.len == 4 {
                let [a, b, c, d] = self.quantum;
                out.extend_from_slice(&[a << 2 | b >> 4, b << 4 | c >> 2, c << 6 | d]);
                self.len = 0;
            }
        }
    }

    fn finish(mut self, out: &mut Vec<u8>) {
        self.flush(out);
    }

    /// Emits the bytes an incomplete quantum fully determines, as if padded. A lone
    /// leftover character carries only 6 bits, less than a byte, and is dropped.
    fn flush(&mut self, out: &mut Vec<u8>) {
        let [a, b, c, _] = self.quantum;
        match self.len {
            2 => out.push(a << 2 | b >> 4),
            3 => out.extend_from_slice(&[a << 2 | b >> 4, b << 4 | c >> 2]),
            _ => {}
        }
        self.len = 0;
    }
}

/// Marks a byte outside the base64 alphabet in [`BASE64`] (`=` included: it is handled first).
const INVALID: u8 = 0x80;

/// The 6-bit value of each base64 character, or [`INVALID`].
const BASE64: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0u8;
    while i < 26 {
        table[(b'A' + i) as usize] = i;
        table[(b'a' + i) as usize] = i + 26;
        i += 1;
    }
    let mut d = 0u8;
    while d < 10 {
        table[(b'0' + d) as usize] = d + 52;
        d += 1;
    }
    table[b'+' as usize] = 62;
    table[b'/' as usize] = 63;
    table
};

/// Quoted-printable state: how much of an `=` escape has been seen.
#[derive(Debug, Clone, Copy)]
enum QpState {
    Text,
    /// After `=`.
    Equals,
    /// After `=` and one hex digit (kept as written, to pass it through if no second follows).
    EqualsHex(u8),
    /// After `=\r`: a soft line break, whose `\n` may still come.
    EqualsCr,
}

impl QpState {
    fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &byte in input {
            self.push(byte, out);
        }
    }

    fn push(&mut self, byte: u8, out: &mut Vec<u8>) {
        match *self {
            QpState::Text => {
                if byte == b'=' {
                    *self = QpState::Equals;
                } else {
                    out.push(byte);
                }
            }
            QpState::Equals => match byte {
                b'\n' => *self = QpState::Text,
                b'\r' => *self = QpState::EqualsCr,
                _ if hex_value(byte).is_some() => *self = QpState::EqualsHex(byte),
                _ => {
                    // Not an escape: a stray `=` is kept literally, as RFC 2045 §6.7 advises.
                    out.push(b'=');
                    *self = QpState::Text;
                    self.push(byte, out);
                }
            },
            QpState::EqualsHex(first) => match (hex_value(first), hex_value(byte)) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    *self = QpState::Text;
                }
                _ => {
                    out.extend_from_slice(&[b'=', first]);
                    *self = QpState::Text;
                    self.push(byte, out);
                }
            },
            QpState::EqualsCr => {
                // `=\r` alone is taken as a soft break too (old Mac line ends); whatever
                // follows other than its `\n` is ordinary text.
                *self = QpState::Text;
                if byte != b'\n' {
                    self.push(byte, out);
                }
            }
        }
    }

    fn finish(self, out: &mut Vec<u8>) {
        match self {
            QpState::Text | QpState::EqualsCr => {}
            // A trailing `=` is a soft break before the end of the body.
            QpState::Equals => {}
            QpState::EqualsHex(first) => out.extend_from_slice(&[b'=', first]),
        }
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        // Lower case is not valid QP, but some encoders write it and its meaning is clear.
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn streamed(encoding: &TransferEncoding, chunks: &[&[u8]]) -> Vec<u8> {
        let mut decoder = TransferDecoder::new(encoding);
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.decode_chunk(chunk, &mut out);
        }
        decoder.finish(&mut out);
        out
    }

    /// Every split of `input` into two chunks, and one-byte chunks, decode like the whole.
    fn assert_split_invariant(encoding: &TransferEncoding, input: &[u8]) {
        let whole = decode_all(encoding, input);
        for split in 0..=input.len() {
            let (head, tail) = input.split_at(split);
            assert_eq!(
                streamed(encoding, &[head, tail]),
                whole,
                "split at {split} of {:?}",
                String::from_utf8_lossy(input)
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(streamed(encoding, &bytes), whole, "one-byte chunks");
        for size in [2, 3, 5, 7] {
            let chunks: Vec<&[u8]> = input.chunks(size).collect();
            assert_eq!(streamed(encoding, &chunks), whole, "{size}-byte chunks");
        }
    }

    fn sample_binary() -> Vec<u8> {
        (0..=255u8).cycle().take(700).collect()
    }

    fn mime_base64(data: &[u8]) -> Vec<u8> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(data);
        let mut wrapped = Vec::new();
        for line in encoded.as_bytes().chunks(76) {
            wrapped.extend_from_slice(line);
            wrapped.extend_from_slice(b"\r\n");
        }
        wrapped
    }

    #[test]
    fn base64_matches_reference_decoder() {
        for len in [0, 1, 2, 3, 4, 56, 57, 58, 700] {
            let data = &sample_binary()[..len];
            assert_eq!(
                decode_all(&TransferEncoding::Base64, &mime_base64(data)),
                data
            );
        }
    }

    #[test]
    fn base64_any_line_width_and_junk_decode_the_same() {
        let data = sample_binary();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
        // Line widths that split quanta everywhere, line breaks of both kinds, and junk
        // between characters: all of it is skipped, whatever the alignment.
        for width in 1..=80 {
            for separator in [&b"\r\n"[..], b"\n", b" \t!\r\n"] {
                let mut wrapped = Vec::new();
                for line in encoded.as_bytes().chunks(width) {
                    wrapped.extend_from_slice(line);
                    wrapped.extend_from_slice(separator);
                }
                assert_eq!(
                    decode_all(&TransferEncoding::Base64, &wrapped),
                    data,
                    "width {width}"
                );
            }
        }
    }

    #[test]
    fn base64_split_anywhere() {
        for len in [0, 1, 2, 3, 100, 200] {
            let encoded = mime_base64(&sample_binary()[..len]);
            assert_split_invariant(&TransferEncoding::Base64, &encoded);
        }
        assert_split_invariant(&TransferEncoding::Base64, b"SGVs\r\nbG8\r\n=\r\nZm9v");
        assert_split_invariant(&TransferEncoding::Base64, b" S G V\tsbG8 ");
    }

    #[test]
    fn base64_ignores_whitespace_and_junk() {
        assert_eq!(
            decode_all(&TransferEncoding::Base64, b" SGVs\r\n bG8s\tIHdv*cmxk\n"),
            b"Hello, world"
        );
    }

    #[test]
    fn base64_tolerates_missing_padding() {
        assert_eq!(decode_all(&TransferEncoding::Base64, b"SGVsbG8"), b"Hello");
        assert_eq!(decode_all(&TransferEncoding::Base64, b"SGVsbA"), b"Hell");
        // One leftover character holds less than a byte.
        assert_eq!(decode_all(&TransferEncoding::Base64, b"SGVsb"), b"Hel");
    }

    #[test]
    fn base64_stops_at_padding() {
        assert_eq!(
            decode_all(&TransferEncoding::Base64, b"SGVsbG8=\r\nSGVsbG8=\r\n"),
            b"Hello"
        );
        assert_eq!(
            decode_all(&TransferEncoding::Base64, b"SGk=\r\n-- \r\nList footer\r\n"),
            b"Hi"
        );
    }

    #[test]
    fn base64_length_from_the_ends() {
        // 10239 bytes: 13652 characters, no padding; 10240: two `=`. Dovecot's size leaves out
        // the last line break, which the old estimate got wrong by up to three bytes.
        for len in [10_239, 10_240, 10_241, 700] {
            let data = &sample_binary().repeat(20)[..len];
            let wrapped = mime_base64(data);
            for body in [&wrapped[..], &wrapped[..wrapped.len() - 2]] {
                let size = body.len() as u64;
                let (head, tail) = (&body[..256], &body[body.len() - 256..]);
                assert_eq!(
                    decoded_base64_len(size, head, tail),
                    Some(len as u64),
                    "{len}"
                );
                assert_eq!(decode_all(&TransferEncoding::Base64, body).len(), len);
            }
        }
        // What the ends cannot vouch for.
        let unwrapped = base64::engine::general_purpose::STANDARD.encode([7u8; 900]);
        let unwrapped = unwrapped.as_bytes();
        assert_eq!(
            decoded_base64_len(
                unwrapped.len() as u64,
                &unwrapped[..256],
                &unwrapped[unwrapped.len() - 256..]
            ),
            None
        );
        let mut junk_tail = mime_base64(&[1u8; 900]);
        junk_tail.extend_from_slice(b"-- \r\nfooter\r\n");
        let size = junk_tail.len() as u64;
        assert_eq!(
            decoded_base64_len(size, &junk_tail[..256], &junk_tail[junk_tail.len() - 256..]),
            None
        );
        assert_eq!(decoded_base64_len(10, b"", b""), None);
    }

    #[test]
    fn uuencode_streams_like_the_other_encodings() {
        let encoded = b"begin 644 cat.txt\r\n#0V%T\r\n`\r\nend\r\n";
        assert_eq!(decode_all(&TransferEncoding::UuEncode, encoded), b"Cat");
        assert_split_invariant(&TransferEncoding::UuEncode, encoded);
        assert_split_invariant(&TransferEncoding::UuEncode, b"no begin line\r\nat all");
    }

    #[test]
    fn quoted_printable_decodes_escapes_and_soft_breaks() {
        let input = b"caf=C3=A9 =\r\nau lait=\nnoir=3D\r\nnext line";
        assert_eq!(
            decode_all(&TransferEncoding::QuotedPrintable, input),
            "café au laitnoir=\r\nnext line".as_bytes()
        );
    }

    #[test]
    fn quoted_printable_passes_invalid_sequences_through() {
        let cases: [(&[u8], &[u8]); 6] = [
            (b"a=zb", b"a=zb"),
            (b"a=4zb", b"a=4zb"),
            (b"100% =", b"100% "),
            (b"end=4", b"end=4"),
            (b"x==41y", b"x=Ay"),
            (b"=e9t=E9", b"\xe9t\xe9"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                decode_all(&TransferEncoding::QuotedPrintable, input),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn quoted_printable_bare_cr_soft_break() {
        assert_eq!(
            decode_all(&TransferEncoding::QuotedPrintable, b"ab=\rcd"),
            b"abcd"
        );
    }

    #[test]
    fn quoted_printable_split_anywhere() {
        let inputs: [&[u8]; 4] = [
            b"caf=C3=A9 =\r\nau lait=\nnoir=3D\r\nnext line",
            b"=\r\n=\r\n=0D=0A=\r\r\n",
            b"a=zb=4zb=\r=4",
            b"==41=3d=3D=",
        ];
        for input in inputs {
            assert_split_invariant(&TransferEncoding::QuotedPrintable, input);
        }
    }

    #[test]
    fn quoted_printable_matches_mail_parser() {
        let input = b"J'interdis aux marchands de vanter trop leurs marchandises. Car ils se font =\r\nvite p=C3=A9dagogues et t'enseignent comme but ce qui n'est par essence qu'=\r\nun moyen.\r\n";
        let reference = mail_parser::decoders::quoted_printable::quoted_printable_decode(input);
        assert_eq!(
            Some(decode_all(&TransferEncoding::QuotedPrintable, input)),
            reference
        );
    }

    #[test]
    fn identity_encodings_pass_through() {
        let data = sample_binary();
        for encoding in [
            TransferEncoding::SevenBit,
            TransferEncoding::EightBit,
            TransferEncoding::Binary,
            TransferEncoding::Other("x-gzip64".into()),
        ] {
            assert_eq!(decode_all(&encoding, &data), data);
            assert_split_invariant(&encoding, &data[..40]);
        }
    }
}
