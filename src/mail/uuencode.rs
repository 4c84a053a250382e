//! uuencode, the attachment format of mail before MIME, still sent by old mailers, Usenet
//! gateways and scripts: a `begin <mode> <name>` line, data lines that each start with a
//! length character, and an `end` line.
//!
//! It reaches the bridge two ways: as a part whose Content-Transfer-Encoding is `x-uuencode`
//! (or `uuencode`, `x-uue`, `uue`), decoded on download by [`UuDecoder`]; and as blocks inside
//! a text/plain body, which mail clients show as attachments and leave out of the text: see
//! [`find_blocks`].

use std::ops::Range;

use super::content::utf8_or_windows_1252;

/// Longest line kept whole; uuencoded lines have 62 characters, so longer ones are no data
/// and only their start matters.
const MAX_LINE: usize = 1024;

/// Most blocks taken from one text part.
pub const MAX_BLOCKS: usize = 100;

/// Most bytes held back while looking for the `begin` line.
const MAX_BEFORE_BEGIN: usize = 64 * 1024;

/// Streaming decoder of a uuencoded file, chunk by chunk like
/// [`TransferDecoder`](super::transfer::TransferDecoder): lines before `begin` and after `end`
/// are skipped, as Python's and other mail decoders skip them. Content without a `begin` line
/// (in its first 64 KiB) is no uuencoded file at all and is passed on as it is.
#[derive(Debug, Clone)]
pub struct UuDecoder {
    state: State,
    /// The current line (its first [`MAX_LINE`] bytes).
    line: Vec<u8>,
    /// Everything before `begin`, to pass on if no `begin` comes.
    before_begin: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for the `begin` line.
    Start,
    /// After `begin`.
    Data,
    /// After `end`.
    Done,
    /// No `begin` line: the content passes through.
    PassThrough,
}

impl Default for UuDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl UuDecoder {
    /// A decoder at the start of the content.
    pub fn new() -> Self {
        Self {
            state: State::Start,
            line: Vec::new(),
            before_begin: Vec::new(),
        }
    }

    /// Decodes the next chunk, appending what complete lines decode to `out`.
    pub fn decode_chunk(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut rest = input;
        while !rest.is_empty() {
            match self.state {
                State::PassThrough => {
                    out.extend_from_slice(rest);
                    return;
                }
                State::Done => return,
                State::Start | State::Data => {}
            }
            let (piece, tail, complete) = match rest.iter().position(|&b| b == b'\n') {
                Some(end) => (&rest[..=end], &rest[end + 1..], true),
                None => (rest, &rest[rest.len()..], false),
            };
            rest = tail;
            if self.state == State::Start {
                self.before_begin.extend_from_slice(piece);
                if self.before_begin.len() > MAX_BEFORE_BEGIN {
                    out.append(&mut self.before_begin);
                    self.state = State::PassThrough;
                    continue;
                }
            }
            let room = MAX_LINE.saturating_sub(self.line.len());
            self.line.extend_from_slice(&piece[..piece.len().min(room)]);
            if complete {
                let line = std::mem::take(&mut self.line);
                self.take_line(&line, out);
            }
        }
    }

    /// Ends the content, decoding a last line without a line break.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        let line = std::mem::take(&mut self.line);
        if self.state == State::Data && !line.is_empty() {
            self.take_line(&line, out);
        }
        if self.state == State::Start {
            out.append(&mut self.before_begin);
        }
    }

    fn take_line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        match self.state {
            State::Start if begin_line(line).is_some() => {
                self.state = State::Data;
                self.before_begin = Vec::new();
            }
            State::Data if is_end_line(line) => self.state = State::Done,
            State::Data => decode_line(line, out),
            State::Start | State::Done | State::PassThrough => {}
        }
    }
}

/// The file name of a `begin <mode> <name>` line, if `line` is one. The mode is three or
/// four octal digits.
pub fn begin_line(line: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(b"begin ")?;
    let mode_len = rest.iter().position(|&b| b == b' ')?;
    let mode = &rest[..mode_len];
    if !(3..=4).contains(&mode.len()) || !mode.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    let name = utf8_or_windows_1252(rest[mode_len..].trim_ascii());
    (!name.is_empty()).then_some(name)
}

fn is_end_line(line: &[u8]) -> bool {
    line.trim_ascii() == b"end"
}

/// The 6-bit value of a uuencoded character (space and backquote are both 0).
fn value(byte: u8) -> u8 {
    byte.wrapping_sub(b' ') & 0x3f
}

/// Decodes one data line: its first character gives the number of bytes, the rest holds them
/// four characters per three bytes. Missing characters (trailing spaces stripped by a mailer)
/// count as zeros; characters beyond the count are ignored, as Python's and most decoders do.
pub fn decode_line(line: &[u8], out: &mut Vec<u8>) {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some((&count, chars)) = line.split_first() else {
        return;
    };
    let count = usize::from(value(count));
    let mut written = 0;
    for group in 0..count.div_ceil(3) {
        let at = |i: usize| chars.get(group * 4 + i).copied().map_or(0, value);
        let (a, b, c, d) = (at(0), at(1), at(2), at(3));
        for byte in [a << 2 | b >> 4, b << 4 | c >> 2, c << 6 | d] {
            if written < count {
                out.push(byte);
                written += 1;
            }
        }
    }
}

/// Whether `line` can be a data line: a length character, and at least the characters that
/// length needs (an empty line counts as the zero-length line whose space a mailer stripped).
fn is_data_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some((&count, chars)) = line.split_first() else {
        return true;
    };
    if !(b' '..=b'`').contains(&count) {
        return false;
    }
    let needed = (usize::from(value(count)) * 4).div_ceil(3);
    chars.len() >= needed && chars.iter().all(|b| (b' '..=b'`').contains(b))
}

/// One uuencoded file found inside text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The name on its `begin` line.
    pub name: String,
    /// Where it is in the text, from the start of `begin` to the end of the `end` line.
    pub range: Range<usize>,
    /// The decoded file.
    pub data: Vec<u8>,
}

/// The uuencoded files in `text` (a text/plain body, transfer-decoded), in order: each a
/// `begin` line, nothing but data lines, and an `end` line. A `begin` line that is not
/// followed by that (`begin 644 is the mode you want` in prose) is text. At most
/// [`MAX_BLOCKS`].
pub fn find_blocks(text: &[u8]) -> Vec<Block> {
    let lines = lines_of(text);
    let mut blocks = Vec::new();
    let mut index = 0;
    while index < lines.len() && blocks.len() < MAX_BLOCKS {
        let begin = &lines[index];
        let Some(name) = begin_line(&text[begin.clone()]) else {
            index += 1;
            continue;
        };
        let data_start = index + 1;
        let end = lines[data_start..]
            .iter()
            .position(|line| is_end_line(&text[line.clone()]) || !is_data_line(&text[line.clone()]))
            .map(|offset| data_start + offset)
            .filter(|&end| is_end_line(&text[lines[end].clone()]));
        let Some(end) = end else {
            index += 1;
            continue;
        };
        let mut data = Vec::new();
        for line in &lines[data_start..end] {
            decode_line(&text[line.clone()], &mut data);
        }
        blocks.push(Block {
            name,
            range: begin.start..lines[end].end + line_break_len(text, lines[end].end),
            data,
        });
        index = end + 1;
    }
    blocks
}

/// `text` without the blocks, which are attachments rather than text.
pub fn without_blocks(text: &str, blocks: &[Block]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for block in blocks {
        // Blocks start and end at line breaks, which are character boundaries.
        out.push_str(text.get(from..block.range.start).unwrap_or_default());
        from = block.range.end;
    }
    out.push_str(text.get(from..).unwrap_or_default());
    out
}

/// The lines of `text` without their line breaks, as ranges.
fn lines_of(text: &[u8]) -> Vec<Range<usize>> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (position, &byte) in text.iter().enumerate() {
        if byte == b'\n' {
            let end = if position > start && text[position - 1] == b'\r' {
                position - 1
            } else {
                position
            };
            lines.push(start..end);
            start = position + 1;
        }
    }
    if start < text.len() {
        lines.push(start..text.len());
    }
    lines
}

fn line_break_len(text: &[u8], line_end: usize) -> usize {
    match text.get(line_end..line_end + 2) {
        Some(b"\r\n") => 2,
        _ if text.get(line_end) == Some(&b'\n') => 1,
        _ => 0,
    }
}

/// A media type for a file name's extension, for files that carry no MIME type of their
/// own; `application/octet-stream` for the others.
pub fn media_type_of(name: &str) -> &'static str {
    let extension = name
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "tif" | "tiff" => "image/tiff",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "doc" => "application/msword",
        "xls" => "application/vnd.ms-excel",
        "ppt" => "application/vnd.ms-powerpoint",
        "txt" => "text/plain",
        "htm" | "html" => "text/html",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// uuencodes as `uuencode(1)` does: 45 bytes per line, a backquote for zero.
    fn encode(data: &[u8], name: &str) -> Vec<u8> {
        let char_of = |v: u8| if v == 0 { b'`' } else { v + b' ' };
        let mut out = format!("begin 644 {name}\r\n").into_bytes();
        for chunk in data.chunks(45) {
            out.push(char_of(u8::try_from(chunk.len()).expect("45 at most")));
            for group in chunk.chunks(3) {
                let b = [
                    group[0],
                    *group.get(1).unwrap_or(&0),
                    *group.get(2).unwrap_or(&0),
                ];
                for v in [
                    b[0] >> 2,
                    (b[0] << 4 | b[1] >> 4) & 0x3f,
                    (b[1] << 2 | b[2] >> 6) & 0x3f,
                    b[2] & 0x3f,
                ] {
                    out.push(char_of(v));
                }
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"`\r\nend\r\n");
        out
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| u8::try_from(i * 7 % 256).expect("byte"))
            .collect()
    }

    fn decode_all(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut decoder = UuDecoder::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            decoder.decode_chunk(piece, &mut out);
        }
        decoder.finish(&mut out);
        out
    }

    #[test]
    fn decodes_what_uuencode_writes_in_any_chunks() {
        for len in [0, 1, 2, 3, 44, 45, 46, 90, 1000] {
            let data = sample(len);
            let encoded = encode(&data, "f.bin");
            for chunk in [1, 2, 7, 64, encoded.len()] {
                assert_eq!(
                    decode_all(&encoded, chunk),
                    data,
                    "{len} bytes, chunks of {chunk}"
                );
            }
        }
    }

    #[test]
    fn known_vector_and_tolerance() {
        // Python: binascii.b2a_uu(b"Cat") == b"#0V%T\n".
        let mut out = Vec::new();
        decode_line(b"#0V%T\r\n", &mut out);
        assert_eq!(out, b"Cat");
        // Trailing spaces stripped by a mailer: the missing characters are zeros.
        out.clear();
        decode_line(b"\"86(", &mut out);
        assert_eq!(out, b"ab");
        // Lines before begin and after end are skipped; LF line ends work too.
        let input = b"junk\r\n\nbegin 600 x\n#0V%T\n`\nend\ntrailer\n";
        assert_eq!(decode_all(input, 3), b"Cat");
        // Without a begin line the content is no uuencoded file: passed on as it is.
        assert_eq!(
            decode_all(b"plain bytes\r\nmore", 4),
            b"plain bytes\r\nmore"
        );
        let long = vec![b'x'; MAX_BEFORE_BEGIN + 10];
        assert_eq!(decode_all(&long, 1000), long);
    }

    #[test]
    fn begin_lines() {
        assert_eq!(
            begin_line(b"begin 644 photo.jpg\r\n").as_deref(),
            Some("photo.jpg")
        );
        assert_eq!(
            begin_line(b"begin 0600 two words.txt").as_deref(),
            Some("two words.txt")
        );
        assert_eq!(
            begin_line(b"begin 644 Fr\xe4sche.txt").as_deref(),
            Some("Fräsche.txt")
        );
        for line in [
            &b"begin 644"[..],
            b"begin 999 x",
            b"begin 64 x",
            b"begin  644 x",
            b"Begin 644 x",
        ] {
            assert_eq!(begin_line(line), None, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn blocks_in_text() {
        let one = sample(700);
        let two = sample(90);
        let mut text = b"Two files:\r\n".to_vec();
        let first_start = text.len();
        text.extend_from_slice(&encode(&one, "one.pdf"));
        let first_end = text.len();
        text.extend_from_slice(b"and\r\nbegin 644 is not a file\r\n");
        text.extend_from_slice(&encode(&two, "two file.txt"));
        text.extend_from_slice(b"bye");
        let blocks = find_blocks(&text);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].name, "one.pdf");
        assert_eq!(blocks[0].range, first_start..first_end);
        assert_eq!(blocks[0].data, one);
        assert_eq!(blocks[1].name, "two file.txt");
        assert_eq!(blocks[1].data, two);
        let text = String::from_utf8(text).expect("ASCII");
        assert_eq!(
            without_blocks(&text, &blocks),
            "Two files:\r\nand\r\nbegin 644 is not a file\r\nbye"
        );
    }

    #[test]
    fn prose_is_no_block() {
        for text in [
            &b"begin 644 file\r\nthis is prose, not data\r\nend\r\n"[..],
            b"begin 644 file\r\nM\r\n",
            b"begin 644 file",
            b"begin 644 file\r\n#0V%T\r\n",
        ] {
            assert!(
                find_blocks(text).is_empty(),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        // A zero-length line whose space was stripped still ends the data.
        let blocks = find_blocks(b"begin 644 c\n#0V%T\n\nend\n");
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].data, b"Cat");
    }

    #[test]
    fn media_types_by_extension() {
        assert_eq!(media_type_of("photo.JPG"), "image/jpeg");
        assert_eq!(media_type_of("old.doc"), "application/msword");
        assert_eq!(media_type_of("noextension"), "application/octet-stream");
        assert_eq!(media_type_of("two file.txt"), "text/plain");
    }

    #[test]
    fn arbitrary_input_never_panics() {
        for input in crate::mail::summary::tests::arbitrary_inputs(3000) {
            let mut prefixed = b"begin 644 x\n".to_vec();
            prefixed.extend_from_slice(&input);
            prefixed.extend_from_slice(b"\nend\n");
            find_blocks(&prefixed);
            decode_all(&prefixed, 5);
            let mut out = Vec::new();
            decode_line(&input, &mut out);
            assert!(out.len() <= 63);
        }
    }
}
