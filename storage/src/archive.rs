//! Checkpoint archives: a RocksDB checkpoint directory (a flat directory of regular files) as one
//! seekable byte stream, and back, file by file with checksums.
//!
//! openraft 0.9 ships a snapshot as one byte stream in chunks: the sender seeks to the end to learn
//! the length, then seeks to each chunk's offset and reads it (a failed chunk is resent at the same
//! offset); the receiver seeks to a chunk's offset when it differs from its own position, then
//! writes. [`ArchiveReader`] is the sender's side (`Read + Seek` over a directory) and
//! [`ArchiveWriter`] the receiver's (`Write + Seek` into a new directory, verifying as it goes).
//!
//! # Format
//!
//! All integers are big-endian.
//!
//! 1. Header: the magic [`MAGIC`], a `u32` file count, then per file a `u16` name length, the name
//!    bytes and a `u64` size; then the 32-byte SHA-256 of all the header bytes before it.
//! 2. Then, for each file in header order, its content (exactly `size` bytes) followed by its
//!    trailer, the checksum of that content the magic names ([`FileCheck`]): the 4-byte CRC-32
//!    (IEEE 802.3) in archives this build makes ([`MAGIC`]), the 32-byte SHA-256 in those of
//!    earlier releases ([`MAGIC_SHA256`], [`MAGIC_FORMAT_2`]), which it still accepts.
//!
//! Why a CRC and not a hash: the stream travels inside mutual TLS, which already authenticates
//! every byte, so the per-file checksum guards only against corruption between the sender's disk
//! and the receiver's (a torn read, a bad page); SHA-256 of every byte on both sides was the
//! largest part of a snapshot's transfer (docs/benchmarks.md). A CRC-32 misses a random
//! corruption of a file with probability 2^-32, and what it misses RocksDB's own block checksums
//! and `cluster status --digest` still see.
//!
//! The total length is therefore known from the header. Files are listed in strictly increasing
//! byte order of name; a name is 1 to 255 bytes of `[A-Za-z0-9._-]`, and not `.` or `..` (see
//! [`is_valid_name`]). The receiver enforces [`MAX_FILES`], [`MAX_HEADER_LEN`] and
//! [`MAX_FILE_SIZE`]; the sender refuses to build an archive beyond them.
//!
//! Errors are [`io::Error`]s: kind `InvalidData` for format, limit and checksum problems (and for
//! a file that changed size under the sender), otherwise the underlying IO error's kind; each
//! message is one line naming the file or directory concerned.

use std::fmt::Display;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The first eight bytes of every archive this build makes: a checkpoint of on-disk format 3
/// (a timestamp's expiry and bytes in `current`), each file checked by CRC-32. A release that
/// knows only SHA-256 trailers refuses it at its first bytes.
pub const MAGIC: &[u8; 8] = b"SEALCKP3";
/// The first eight bytes of an archive of on-disk format 3 made by an earlier release, each file
/// checked by SHA-256: still accepted. A node of format 2 refuses it at its first bytes.
pub const MAGIC_SHA256: &[u8; 8] = b"SEALCKP2";
/// The first eight bytes of an archive made by a node of on-disk format 2 (files checked by
/// SHA-256): still accepted, its checkpoint read as it is (format 3 reads format 2's values).
pub const MAGIC_FORMAT_2: &[u8; 8] = b"SEALCKP1";
/// The most files an archive may hold (1,000,000).
pub const MAX_FILES: u32 = 1_000_000;
/// The longest header accepted, its checksum included (64 MiB).
pub const MAX_HEADER_LEN: u64 = 64 << 20;
/// The largest file accepted (1 TiB).
pub const MAX_FILE_SIZE: u64 = 1 << 40;
/// The longest file name accepted, in bytes (255).
pub const MAX_NAME_LEN: usize = 255;

const HASH_LEN: usize = 32;
const IO_BUF_LEN: usize = 64 * 1024;

/// How an archive checks each file's content: the checksum in the trailer after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileCheck {
    /// SHA-256, 32 bytes: archives of earlier releases ([`MAGIC_SHA256`], [`MAGIC_FORMAT_2`]).
    Sha256,
    /// CRC-32 (IEEE 802.3), 4 bytes big-endian: archives this build makes ([`MAGIC`]).
    Crc32,
}

impl FileCheck {
    /// The check an archive starting with `magic` uses, if it is one this build accepts.
    fn of_magic(magic: &[u8]) -> Option<FileCheck> {
        if magic == MAGIC {
            Some(FileCheck::Crc32)
        } else if magic == MAGIC_SHA256 || magic == MAGIC_FORMAT_2 {
            Some(FileCheck::Sha256)
        } else {
            None
        }
    }

    /// The magic of a format-3 archive whose files are checked this way.
    fn magic(self) -> &'static [u8; 8] {
        match self {
            FileCheck::Sha256 => MAGIC_SHA256,
            FileCheck::Crc32 => MAGIC,
        }
    }

    /// The length of each file's trailer, in bytes.
    pub fn trailer_len(self) -> usize {
        match self {
            FileCheck::Sha256 => HASH_LEN,
            FileCheck::Crc32 => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FileCheck::Sha256 => "SHA-256",
            FileCheck::Crc32 => "CRC-32",
        }
    }
}

/// A file's checksum being computed.
enum Checker {
    Sha256(Sha256),
    Crc32(crc32fast::Hasher),
}

impl Checker {
    fn new(check: FileCheck) -> Checker {
        match check {
            FileCheck::Sha256 => Checker::Sha256(Sha256::new()),
            FileCheck::Crc32 => Checker::Crc32(crc32fast::Hasher::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Checker::Sha256(h) => h.update(data),
            Checker::Crc32(h) => h.update(data),
        }
    }

    /// Which check this computes.
    fn check(&self) -> FileCheck {
        match self {
            Checker::Sha256(_) => FileCheck::Sha256,
            Checker::Crc32(_) => FileCheck::Crc32,
        }
    }

    /// The trailer: the checksum of everything given to `update` since the last `finish`, in the
    /// archive's byte form; the checker starts afresh.
    fn finish(&mut self) -> Vec<u8> {
        match self {
            Checker::Sha256(h) => h.finalize_reset().to_vec(),
            Checker::Crc32(h) => std::mem::take(h).finalize().to_be_bytes().to_vec(),
        }
    }
}

/// Whether `name` may name a file in an archive: 1 to 255 bytes of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != b"."
        && name != b".."
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn invalid_data(msg: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, msg)
}

/// `err` with `what` in front of its message, its kind kept.
fn with_context(err: io::Error, what: impl Display) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// A big-endian unsigned integer of at most 8 bytes.
fn be_uint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

/// `Read::read` retried on `Interrupted`.
fn read_retrying(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn size_changed(path: &Path, recorded: u64, found: impl Display) -> io::Error {
    invalid_data(format!(
        "{}: size changed since the archive was opened (recorded {recorded} bytes, found {found})",
        path.display()
    ))
}

/// The sender's side: a directory of regular files read as an archive stream.
///
/// [`ArchiveReader::open`] lists the files, records their sizes and builds the header in memory;
/// contents are read from the files as the stream is read, each file's checksum computed on the
/// way. Any offset in `0..=len()` may be sought, by `SeekFrom::Start`, `End` or `Current`; seeking
/// outside that range is an `InvalidInput` error. Header bytes are served from memory; for an
/// offset inside a file's content the next read reopens the file and re-hashes the bytes before
/// that offset (so its trailer comes out right), and for an offset inside a trailer it hashes the
/// whole file. A file whose size differs from the one recorded by `open` makes the read fail
/// (`InvalidData`); after a failed read the stream may be sought and read again.
pub struct ArchiveReader {
    dir: PathBuf,
    header: Vec<u8>,
    files: Vec<(String, u64)>,
    /// The stream offset of each file's content.
    starts: Vec<u64>,
    check: FileCheck,
    len: u64,
    pos: u64,
    open: Option<OpenFile>,
}

impl std::fmt::Debug for ArchiveReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveReader")
            .field("dir", &self.dir)
            .field("files", &self.files.len())
            .field("len", &self.len)
            .field("pos", &self.pos)
            .finish()
    }
}

/// The file being read: its handle is at `hashed`, and `hasher` has seen the bytes before it.
struct OpenFile {
    index: usize,
    file: File,
    hasher: Checker,
    hashed: u64,
    digest: Option<Vec<u8>>,
}

impl OpenFile {
    /// Reads and hashes the file's bytes up to `target`.
    fn hash_up_to(&mut self, target: u64, size: u64, path: &Path) -> io::Result<()> {
        if self.hashed >= target {
            return Ok(());
        }
        let mut buf = vec![0; IO_BUF_LEN];
        while self.hashed < target {
            let want = usize::try_from(target - self.hashed)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = read_retrying(&mut self.file, &mut buf[..want])
                .map_err(|err| with_context(err, format!("cannot read {}", path.display())))?;
            if n == 0 {
                return Err(size_changed(path, size, format_args!("only {} bytes", self.hashed)));
            }
            self.hasher.update(&buf[..n]);
            self.hashed += n as u64;
        }
        Ok(())
    }

    /// The whole file's trailer, once all of it has been hashed; checks the file has no more bytes.
    fn digest(&mut self, size: u64, path: &Path) -> io::Result<&[u8]> {
        let digest = match self.digest.take() {
            Some(digest) => digest,
            None => {
                let mut probe = [0; 1];
                let extra = read_retrying(&mut self.file, &mut probe)
                    .map_err(|err| with_context(err, format!("cannot read {}", path.display())))?;
                if extra != 0 {
                    return Err(size_changed(path, size, "more"));
                }
                self.hasher.finish()
            }
        };
        Ok(self.digest.insert(digest))
    }
}

impl ArchiveReader {
    /// Lists the regular files of `dir`, records their sizes and builds the archive header.
    ///
    /// Errors: `InvalidData` for an entry that is not a regular file (a subdirectory, a symlink,
    /// ...), a name that is not valid in an archive, or a limit exceeded; the IO error otherwise.
    pub fn open(dir: &Path) -> io::Result<ArchiveReader> {
        ArchiveReader::open_with(dir, FileCheck::Crc32)
    }

    /// [`open`](Self::open), the files checked by `check` (SHA-256: an earlier release's archive).
    fn open_with(dir: &Path, check: FileCheck) -> io::Result<ArchiveReader> {
        let list_error = |err| with_context(err, format!("cannot list checkpoint directory {}", dir.display()));
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(list_error)? {
            let entry = entry.map_err(list_error)?;
            let path = entry.path();
            let file_type = entry
                .file_type()
                .map_err(|err| with_context(err, format!("cannot stat {}", path.display())))?;
            if !file_type.is_file() {
                return Err(invalid_data(format!(
                    "{} is not a regular file; a checkpoint archive holds regular files only",
                    path.display()
                )));
            }
            let name = match entry.file_name().into_string() {
                Ok(name) if is_valid_name(name.as_bytes()) => name,
                _ => {
                    return Err(invalid_data(format!(
                        "{}: name not allowed in a checkpoint archive (1 to 255 of A-Z a-z 0-9 . _ -, not . or ..)",
                        path.display()
                    )))
                }
            };
            let size = entry
                .metadata()
                .map_err(|err| with_context(err, format!("cannot stat {}", path.display())))?
                .len();
            if size > MAX_FILE_SIZE {
                return Err(invalid_data(format!(
                    "{}: {size} bytes is over the archive limit of {MAX_FILE_SIZE} bytes per file",
                    path.display()
                )));
            }
            files.push((name, size));
        }
        let count = u32::try_from(files.len())
            .ok()
            .filter(|&count| count <= MAX_FILES)
            .ok_or_else(|| {
                invalid_data(format!(
                    "{}: {} files is over the archive limit of {MAX_FILES}",
                    dir.display(),
                    files.len()
                ))
            })?;
        // Names in one directory are unique, so this is strictly increasing byte order of name.
        files.sort_unstable();

        let mut header = Vec::new();
        header.extend_from_slice(check.magic());
        header.extend_from_slice(&count.to_be_bytes());
        for (name, size) in &files {
            // A valid name is at most 255 bytes.
            header.extend_from_slice(&(name.len() as u16).to_be_bytes());
            header.extend_from_slice(name.as_bytes());
            header.extend_from_slice(&size.to_be_bytes());
        }
        let checksum = Sha256::digest(&header);
        header.extend_from_slice(&checksum);
        if header.len() as u64 > MAX_HEADER_LEN {
            return Err(invalid_data(format!(
                "{}: archive header of {} bytes is over the limit of {MAX_HEADER_LEN} bytes",
                dir.display(),
                header.len()
            )));
        }

        let mut starts = Vec::with_capacity(files.len());
        let mut len = header.len() as u64;
        for (_, size) in &files {
            starts.push(len);
            len += size + check.trailer_len() as u64;
        }
        Ok(ArchiveReader {
            dir: dir.to_path_buf(),
            header,
            files,
            starts,
            check,
            len,
            pos: 0,
            open: None,
        })
    }

    /// The total length of the stream, in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the stream is empty: never, as it always has a header.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The files in the archive, in stream order, with the sizes recorded by `open`.
    pub fn files(&self) -> &[(String, u64)] {
        &self.files
    }

    /// Reads from the file part at `rel` bytes into file `index`'s content-and-trailer.
    fn read_file_part(&mut self, index: usize, rel: u64, buf: &mut [u8]) -> io::Result<usize> {
        let (name, size) = &self.files[index];
        let size = *size;
        let path = self.dir.join(name);
        let content_pos = rel.min(size);
        let open = match self.open.take() {
            Some(open) if open.index == index && open.hashed <= content_pos => self.open.insert(open),
            _ => {
                let file =
                    File::open(&path).map_err(|err| with_context(err, format!("cannot open {}", path.display())))?;
                let found = file
                    .metadata()
                    .map_err(|err| with_context(err, format!("cannot stat {}", path.display())))?
                    .len();
                if found != size {
                    return Err(size_changed(&path, size, format_args!("{found} bytes")));
                }
                self.open.insert(OpenFile {
                    index,
                    file,
                    hasher: Checker::new(self.check),
                    hashed: 0,
                    digest: None,
                })
            }
        };
        open.hash_up_to(content_pos, size, &path)?;
        if rel < size {
            let want = usize::try_from(size - rel).unwrap_or(usize::MAX).min(buf.len());
            let n = read_retrying(&mut open.file, &mut buf[..want])
                .map_err(|err| with_context(err, format!("cannot read {}", path.display())))?;
            if n == 0 {
                return Err(size_changed(&path, size, format_args!("only {} bytes", open.hashed)));
            }
            open.hasher.update(&buf[..n]);
            open.hashed += n as u64;
            Ok(n)
        } else {
            let digest = open.digest(size, &path)?;
            // rel - size < the trailer's length as rel is inside this file's part of the stream.
            let offset = (rel - size) as usize;
            let n = (digest.len() - offset).min(buf.len());
            buf[..n].copy_from_slice(&digest[offset..offset + n]);
            Ok(n)
        }
    }
}

impl Read for ArchiveReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.pos >= self.len {
            return Ok(0);
        }
        if self.pos < self.header.len() as u64 {
            let start = self.pos as usize;
            let n = buf.len().min(self.header.len() - start);
            buf[..n].copy_from_slice(&self.header[start..start + n]);
            self.pos += n as u64;
            return Ok(n);
        }
        // header.len() = starts[0] <= pos < len, so there is a file here.
        let index = self.starts.partition_point(|&start| start <= self.pos) - 1;
        let rel = self.pos - self.starts[index];
        match self.read_file_part(index, rel, buf) {
            Ok(n) => {
                self.pos += n as u64;
                Ok(n)
            }
            Err(err) => {
                self.open = None;
                Err(err)
            }
        }
    }
}

impl Seek for ArchiveReader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => self.len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        match target {
            Some(target) if target <= self.len => {
                self.pos = target;
                Ok(target)
            }
            _ => Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{}: seek to {pos:?} from {} is outside the archive of {} bytes",
                    self.dir.display(),
                    self.pos,
                    self.len
                ),
            )),
        }
    }
}

/// The receiver's side: an archive stream written into a new directory, verified as it goes.
///
/// Bytes may arrive in any chunking. The header is parsed incrementally and checked (magic,
/// limits, names valid and in strictly increasing order, header checksum) before any file is
/// created; each file is then created with `create_new`, its content streamed into it, and on its
/// trailer the content checksum is checked (a mismatch is `InvalidData` naming the file) and the
/// file is handed to a thread that fsyncs it while the next arrives ([`ArchiveWriter::finish`]
/// waits for them all). Bytes after the end of the archive are an error. After any error the writer is
/// poisoned: every later call fails. It never removes what it wrote: on error the caller removes
/// the directory.
///
/// Resends: [`ArchiveWriter::seek_to`] moves back to any offset already received; the bytes then
/// written up to the furthest offset received are taken as a resend and skipped (not checked, not
/// written again), and those beyond it are accepted as usual.
pub struct ArchiveWriter {
    dir: PathBuf,
    /// Where the next byte written goes in the stream.
    position: u64,
    /// How many bytes of the stream have been accepted (the furthest position reached).
    received: u64,
    /// The stream's total length, once the header is known.
    total: Option<u64>,
    files: Vec<(String, u64)>,
    phase: Phase,
    /// The kind and message of the first error.
    poison: Option<(ErrorKind, String)>,
    /// Syncs each file once complete.
    syncer: Syncer,
}

impl std::fmt::Debug for ArchiveWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("dir", &self.dir)
            .field("position", &self.position)
            .field("received", &self.received)
            .field("total", &self.total)
            .finish()
    }
}

enum Phase {
    Header(HeaderParser),
    File(FileSink),
    Done,
}

/// The header fields, in order.
#[derive(Clone, Copy)]
enum Field {
    Magic,
    Count,
    NameLen,
    Name(usize),
    Size,
    Checksum,
}

/// Incremental header parser: `buf` holds the header bytes received, the current field starting
/// at `field_start`.
struct HeaderParser {
    buf: Vec<u8>,
    field_start: usize,
    field: Field,
    count: u32,
    files: Vec<(String, u64)>,
    name: String,
    /// How the files are checked, once the magic is known.
    check: FileCheck,
}

impl HeaderParser {
    fn new() -> HeaderParser {
        HeaderParser {
            buf: Vec::new(),
            field_start: 0,
            field: Field::Magic,
            count: 0,
            files: Vec::new(),
            name: String::new(),
            check: FileCheck::Crc32,
        }
    }

    fn field_len(&self) -> usize {
        match self.field {
            Field::Magic | Field::Size => 8,
            Field::Count => 4,
            Field::NameLen => 2,
            Field::Name(len) => len,
            Field::Checksum => HASH_LEN,
        }
    }

    /// Takes bytes of `data` into the header; returns how many, and whether the header is now
    /// complete and verified (then the rest of `data` is not the header's).
    fn feed(&mut self, data: &[u8]) -> io::Result<(usize, bool)> {
        let mut taken = 0;
        while taken < data.len() {
            let end = self.field_start + self.field_len();
            if end as u64 > MAX_HEADER_LEN {
                return Err(invalid_data(format!(
                    "archive header is longer than the limit of {MAX_HEADER_LEN} bytes"
                )));
            }
            let n = (end - self.buf.len()).min(data.len() - taken);
            self.buf.extend_from_slice(&data[taken..taken + n]);
            taken += n;
            if self.buf.len() == end && self.complete_field()? {
                return Ok((taken, true));
            }
        }
        Ok((taken, false))
    }

    /// Checks the field just received and moves to the next; true once the checksum is verified.
    fn complete_field(&mut self) -> io::Result<bool> {
        let bytes = &self.buf[self.field_start..];
        let value = be_uint(&bytes[..bytes.len().min(8)]);
        let number = self.files.len() + 1;
        let next = match self.field {
            Field::Magic => {
                self.check = FileCheck::of_magic(bytes).ok_or_else(|| {
                    invalid_data(format!(
                        "not a checkpoint archive: magic is {} instead of {}",
                        hex::encode(bytes),
                        hex::encode(MAGIC)
                    ))
                })?;
                Field::Count
            }
            Field::Count => {
                if value > u64::from(MAX_FILES) {
                    return Err(invalid_data(format!(
                        "archive header: {value} files is over the limit of {MAX_FILES}"
                    )));
                }
                self.count = value as u32;
                if value == 0 {
                    Field::Checksum
                } else {
                    Field::NameLen
                }
            }
            Field::NameLen => {
                if value == 0 || value > MAX_NAME_LEN as u64 {
                    return Err(invalid_data(format!(
                        "archive header: file #{number} has a name of {value} bytes (must be 1 to {MAX_NAME_LEN})"
                    )));
                }
                Field::Name(value as usize)
            }
            Field::Name(_) => {
                let shown = format!("{:?}", String::from_utf8_lossy(bytes));
                if !is_valid_name(bytes) {
                    return Err(invalid_data(format!(
                        "archive header: file #{number} name {shown} is not allowed (1 to 255 of A-Z a-z 0-9 . _ -, not . or ..)"
                    )));
                }
                let name = String::from_utf8_lossy(bytes).into_owned();
                if let Some((last, _)) = self.files.last() {
                    if name == *last {
                        return Err(invalid_data(format!("archive header: duplicate file name {shown}")));
                    }
                    if name.as_bytes() < last.as_bytes() {
                        return Err(invalid_data(format!(
                            "archive header: file names out of order: {shown} after {last:?}"
                        )));
                    }
                }
                self.name = name;
                Field::Size
            }
            Field::Size => {
                let name = std::mem::take(&mut self.name);
                if value > MAX_FILE_SIZE {
                    return Err(invalid_data(format!(
                        "archive header: file {name:?} of {value} bytes is over the limit of {MAX_FILE_SIZE} bytes"
                    )));
                }
                self.files.push((name, value));
                if self.files.len() as u64 == u64::from(self.count) {
                    Field::Checksum
                } else {
                    Field::NameLen
                }
            }
            Field::Checksum => {
                let computed = Sha256::digest(&self.buf[..self.field_start]);
                if computed[..] != *bytes {
                    return Err(invalid_data(format!(
                        "archive header checksum mismatch: header says {}, its bytes hash to {}",
                        hex::encode(bytes),
                        hex::encode(computed)
                    )));
                }
                return Ok(true);
            }
        };
        self.field = next;
        self.field_start = self.buf.len();
        Ok(false)
    }
}

/// The file being written.
struct FileSink {
    index: usize,
    path: PathBuf,
    out: BufWriter<File>,
    hasher: Checker,
    size: u64,
    written: u64,
    trailer: Vec<u8>,
}

impl FileSink {
    /// Takes bytes of `data` into the file's content or trailer; returns how many, and whether the
    /// file is now complete and verified (and queued on `syncer` for its sync).
    fn feed(&mut self, data: &[u8], syncer: &Syncer) -> io::Result<(usize, bool)> {
        if self.written < self.size {
            let n = usize::try_from(self.size - self.written)
                .unwrap_or(usize::MAX)
                .min(data.len());
            self.out
                .write_all(&data[..n])
                .map_err(|err| with_context(err, format!("cannot write {}", self.path.display())))?;
            self.hasher.update(&data[..n]);
            self.written += n as u64;
            return Ok((n, false));
        }
        let check = self.hasher.check();
        let trailer_len = check.trailer_len();
        let n = (trailer_len - self.trailer.len()).min(data.len());
        self.trailer.extend_from_slice(&data[..n]);
        if self.trailer.len() < trailer_len {
            return Ok((n, false));
        }
        let computed = self.hasher.finish();
        if computed != self.trailer {
            return Err(invalid_data(format!(
                "{}: content checksum mismatch: archive says {} {}, the {} bytes received give {}",
                self.path.display(),
                check.name(),
                hex::encode(&self.trailer),
                self.size,
                hex::encode(computed)
            )));
        }
        self.out
            .flush()
            .and_then(|()| self.out.get_ref().try_clone())
            .map_err(|err| with_context(err, format!("cannot write {}", self.path.display())))
            .and_then(|file| syncer.sync(self.path.clone(), file))?;
        Ok((n, true))
    }
}

/// Syncs the files of an archive on a thread of its own as each completes, so that the disk
/// writes one file while the next arrives, instead of the receiver stopping at every file to wait
/// for its fsync. [`ArchiveWriter::finish`] waits for the last one.
struct Syncer {
    /// Files to sync, at most [`SYNC_QUEUE`] waiting: a disk slower than the stream slows the
    /// receiver down rather than holding more of the archive unsynced.
    tx: Option<std::sync::mpsc::SyncSender<(PathBuf, File)>>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

/// Completed files that may wait for their sync.
const SYNC_QUEUE: usize = 4;

impl Syncer {
    fn start() -> io::Result<Syncer> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(PathBuf, File)>(SYNC_QUEUE);
        let thread = std::thread::Builder::new().name("archive-sync".into()).spawn(move || {
            let mut first_error = None;
            for (path, file) in rx {
                if let Err(err) = file.sync_all() {
                    first_error.get_or_insert(with_context(err, format!("cannot sync {}", path.display())));
                }
            }
            first_error.map_or(Ok(()), Err)
        })?;
        Ok(Syncer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queue `file` (complete and verified) for its sync.
    fn sync(&self, path: PathBuf, file: File) -> io::Result<()> {
        match &self.tx {
            Some(tx) if tx.send((path, file)).is_ok() => Ok(()),
            _ => Err(io::Error::other("the archive's sync thread is gone")),
        }
    }

    /// Wait until every queued file is synced: the first error, if any.
    fn wait(&mut self) -> io::Result<()> {
        drop(self.tx.take());
        match self.thread.take().map(|t| t.join()) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(err))) => Err(err),
            Some(Err(_)) => Err(io::Error::other("the archive's sync thread panicked")),
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|err| with_context(err, format!("cannot sync directory {}", dir.display())))
}

impl ArchiveWriter {
    /// Creates the directory `dir`, which must not exist (if it does: an `AlreadyExists` error),
    /// and a writer to unpack an archive into it.
    pub fn create(dir: &Path) -> io::Result<ArchiveWriter> {
        fs::create_dir(dir)
            .map_err(|err| with_context(err, format!("cannot create checkpoint directory {}", dir.display())))?;
        Ok(ArchiveWriter {
            dir: dir.to_path_buf(),
            position: 0,
            received: 0,
            total: None,
            files: Vec::new(),
            phase: Phase::Header(HeaderParser::new()),
            poison: None,
            syncer: Syncer::start()
                .map_err(|err| with_context(err, format!("cannot start syncing {}", dir.display())))?,
        })
    }

    /// The offset in the stream where the next byte written goes: the number of bytes received,
    /// unless a [`seek_to`](Self::seek_to) moved it back for a resend not yet fully rewritten.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The number of bytes of the stream received and accepted so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The total length of the stream, once its header has been received and verified.
    pub fn expected_len(&self) -> Option<u64> {
        self.total
    }

    /// Moves to offset `pos` of the stream. `pos` may be at most [`received`](Self::received):
    /// the next `received - pos` bytes written are then a resend and skipped. A `pos` beyond it
    /// would leave a gap: an `InvalidInput` error (and the writer is poisoned).
    pub fn seek_to(&mut self, pos: u64) -> io::Result<u64> {
        self.check_poison()?;
        if pos > self.received {
            let err = io::Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{}: seek to offset {pos} of the archive would leave a gap: only {} bytes received",
                    self.dir.display(),
                    self.received
                ),
            );
            return self.poison_on_err(Err(err));
        }
        self.position = pos;
        Ok(pos)
    }

    /// Completes the unpacking: an error unless the whole archive has arrived (`UnexpectedEof`) or
    /// if the writer is poisoned. Waits until every file is synced (each began as it completed),
    /// syncs the directory and its parent, and returns the files, in stream order, with their
    /// sizes.
    pub fn finish(mut self) -> io::Result<Vec<(String, u64)>> {
        self.check_poison()?;
        if !matches!(self.phase, Phase::Done) {
            let expected = match self.total {
                Some(total) => format!("{total} bytes"),
                None => "a header not yet complete".to_string(),
            };
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                format!(
                    "{}: archive incomplete: received {} bytes of {expected}",
                    self.dir.display(),
                    self.received
                ),
            ));
        }
        self.syncer.wait()?;
        sync_dir(&self.dir)?;
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent)?;
        }
        Ok(self.files)
    }

    fn check_poison(&self) -> io::Result<()> {
        match &self.poison {
            None => Ok(()),
            Some((kind, msg)) => Err(io::Error::new(
                *kind,
                format!(
                    "{}: archive writer unusable after an earlier error: {msg}",
                    self.dir.display()
                ),
            )),
        }
    }

    fn poison_on_err<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(err) = &result {
            self.poison = Some((err.kind(), err.to_string()));
        }
        result
    }

    fn write_stream(&mut self, mut data: &[u8]) -> io::Result<()> {
        // Bytes before `received` are a resend.
        let resent = usize::try_from(self.received - self.position)
            .unwrap_or(usize::MAX)
            .min(data.len());
        self.position += resent as u64;
        data = &data[resent..];
        while !data.is_empty() {
            let n = self.accept(data)?;
            data = &data[n..];
            self.position += n as u64;
            self.received += n as u64;
        }
        Ok(())
    }

    /// Accepts at least one byte of `data` (not empty) at offset `received`; returns how many.
    fn accept(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.phase {
            Phase::Header(parser) => {
                let (n, done) = parser.feed(data).map_err(|err| with_context(err, self.dir.display()))?;
                if done {
                    let header_len = parser.buf.len() as u64;
                    self.files = std::mem::take(&mut parser.files);
                    let check = parser.check;
                    let trailer_len = check.trailer_len() as u64;
                    self.total = Some(self.files.iter().map(|(_, size)| size + trailer_len).sum::<u64>() + header_len);
                    self.start_file(0, check)?;
                }
                Ok(n)
            }
            Phase::File(sink) => {
                let (n, done) = sink.feed(data, &self.syncer)?;
                if done {
                    let (next, check) = (sink.index + 1, sink.hasher.check());
                    self.start_file(next, check)?;
                }
                Ok(n)
            }
            Phase::Done => Err(invalid_data(format!(
                "{}: {} unexpected bytes after the end of the archive (its length is {} bytes)",
                self.dir.display(),
                data.len(),
                self.received
            ))),
        }
    }

    /// Creates file `index`, checked by `check`, and makes it the one being written; `Done` past
    /// the last file.
    fn start_file(&mut self, index: usize, check: FileCheck) -> io::Result<()> {
        self.phase = match self.files.get(index) {
            None => Phase::Done,
            Some((name, size)) => {
                let path = self.dir.join(name);
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|err| with_context(err, format!("cannot create {}", path.display())))?;
                Phase::File(FileSink {
                    index,
                    path,
                    out: BufWriter::with_capacity(IO_BUF_LEN, file),
                    hasher: Checker::new(check),
                    size: *size,
                    written: 0,
                    trailer: Vec::with_capacity(check.trailer_len()),
                })
            }
        };
        Ok(())
    }
}

impl Write for ArchiveWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check_poison()?;
        let result = self.write_stream(buf);
        self.poison_on_err(result).map(|()| buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check_poison()?;
        let result = match &mut self.phase {
            Phase::File(sink) => sink
                .out
                .flush()
                .map_err(|err| with_context(err, format!("cannot write {}", sink.path.display()))),
            Phase::Header(_) | Phase::Done => Ok(()),
        };
        self.poison_on_err(result)
    }
}

impl Seek for ArchiveWriter {
    /// `SeekFrom::Start(p)` is [`ArchiveWriter::seek_to`]; `SeekFrom::Current(0)` returns the
    /// position; anything else is an `Unsupported` error (and poisons the writer).
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match pos {
            SeekFrom::Start(offset) => self.seek_to(offset),
            SeekFrom::Current(0) => {
                self.check_poison()?;
                Ok(self.position)
            }
            _ => {
                self.check_poison()?;
                let err = io::Error::new(
                    ErrorKind::Unsupported,
                    format!("{}: archive writer cannot seek to {pos:?}", self.dir.display()),
                );
                self.poison_on_err(Err(err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (xorshift64).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    /// A checkpoint-like directory; returns its files, sorted, with their contents.
    fn sample_dir(root: &Path, big: usize) -> (PathBuf, Vec<(String, Vec<u8>)>) {
        let dir = root.join("src");
        fs::create_dir(&dir).unwrap();
        let mut rng = Rng(0x5EA1_C4EC);
        let mut files = vec![
            ("000012.sst".to_string(), rng.bytes(big)),
            ("CURRENT".to_string(), b"MANIFEST-000005\n".to_vec()),
            ("MANIFEST-000005".to_string(), rng.bytes(1000)),
            ("OPTIONS-000007".to_string(), rng.bytes(4097)),
            ("empty.log".to_string(), Vec::new()),
            ("x_y-z.1".to_string(), rng.bytes(31)),
        ];
        for (name, content) in &files {
            fs::write(dir.join(name), content).unwrap();
        }
        files.sort();
        (dir, files)
    }

    fn read_all_in_chunks(reader: &mut ArchiveReader, chunks: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0; chunks.iter().copied().max().unwrap()];
        for &chunk in chunks.iter().cycle() {
            let n = reader.read(&mut buf[..chunk]).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    fn stream_of(dir: &Path) -> Vec<u8> {
        stream_with(dir, FileCheck::Crc32)
    }

    /// The archive of `dir` with its files checked by `check` (SHA-256: as an earlier release sends it).
    fn stream_with(dir: &Path, check: FileCheck) -> Vec<u8> {
        let mut reader = ArchiveReader::open_with(dir, check).unwrap();
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out.len() as u64, reader.len());
        out
    }

    /// Writes `stream` in chunks of `chunk` bytes, then finishes; the first error.
    fn unpack(dest: &Path, stream: &[u8], chunk: usize) -> io::Result<Vec<(String, u64)>> {
        let mut writer = ArchiveWriter::create(dest)?;
        for piece in stream.chunks(chunk) {
            writer.write_all(piece)?;
        }
        writer.finish()
    }

    fn assert_same_files(dest: &Path, files: &[(String, Vec<u8>)]) {
        let mut names: Vec<String> = fs::read_dir(dest)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, files.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>());
        for (name, content) in files {
            assert!(fs::read(dest.join(name)).unwrap() == *content, "{name} differs");
        }
    }

    /// The trailer of an empty file: its CRC-32.
    const EMPTY_CRC: [u8; 4] = [0; 4];

    /// Header entries: name bytes and size.
    type Entries<'a> = &'a [(&'a [u8], u64)];

    /// A header for `entries` (name bytes, size), its checksum right.
    fn header_of(entries: &[(&[u8], u64)]) -> Vec<u8> {
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for (name, size) in entries {
            header.extend_from_slice(&(name.len() as u16).to_be_bytes());
            header.extend_from_slice(name);
            header.extend_from_slice(&size.to_be_bytes());
        }
        let checksum = Sha256::digest(&header);
        header.extend_from_slice(&checksum);
        header
    }

    fn expect_invalid(result: io::Result<Vec<(String, u64)>>, needle: &str) {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
        let msg = err.to_string();
        assert!(msg.contains(needle), "{msg:?} does not mention {needle:?}");
        assert!(!msg.contains('\n'), "{msg:?} is not one line");
    }

    #[test]
    fn round_trip_in_odd_chunks() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, files) = sample_dir(tmp.path(), 3_000_001);
        let mut reader = ArchiveReader::open(&dir).unwrap();
        let listed: Vec<(String, u64)> = files
            .iter()
            .map(|(name, content)| (name.clone(), content.len() as u64))
            .collect();
        assert_eq!(reader.files(), &listed[..]);
        let stream = read_all_in_chunks(&mut reader, &[1, 7, 4093, 65_537, 13, 100_003]);
        assert_eq!(stream.len() as u64, reader.len());
        assert_eq!(stream, stream_of(&dir));

        let dest = tmp.path().join("dest");
        let mut writer = ArchiveWriter::create(&dest).unwrap();
        let mut rest = &stream[..];
        for &chunk in [3, 1, 8191, 1, 2, 77_777, 131_072].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = chunk.min(rest.len());
            assert_eq!(writer.write(&rest[..n]).unwrap(), n);
            rest = &rest[n..];
            assert_eq!(writer.position(), (stream.len() - rest.len()) as u64);
        }
        assert_eq!(writer.expected_len(), Some(stream.len() as u64));
        assert_eq!(writer.finish().unwrap(), listed);
        assert_same_files(&dest, &files);
    }

    #[test]
    fn round_trip_one_byte_at_a_time_and_empty_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, files) = sample_dir(tmp.path(), 5000);
        let stream = stream_of(&dir);
        let dest = tmp.path().join("dest");
        unpack(&dest, &stream, 1).unwrap();
        assert_same_files(&dest, &files);

        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        let stream = stream_of(&empty);
        assert_eq!(stream.len(), 8 + 4 + 32);
        assert_eq!(unpack(&tmp.path().join("empty-dest"), &stream, 5).unwrap(), vec![]);
    }

    #[test]
    fn seeks_anywhere_give_the_same_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _) = sample_dir(tmp.path(), 200_000);
        for check in [FileCheck::Crc32, FileCheck::Sha256] {
            seeks_anywhere_in(&dir, check);
        }
    }

    fn seeks_anywhere_in(dir: &Path, check: FileCheck) {
        let stream = stream_with(dir, check);
        let len = stream.len() as u64;
        let mut reader = ArchiveReader::open_with(dir, check).unwrap();
        assert_eq!(reader.seek(SeekFrom::End(0)).unwrap(), len);
        assert_eq!(reader.read(&mut [0; 10]).unwrap(), 0);

        // Every boundary (header end, content starts, trailer starts) and its neighbours, and
        // random offsets, in random order.
        let mut offsets = vec![0, len];
        for (index, start) in reader.starts.clone().into_iter().enumerate() {
            let trailer = start + reader.files()[index].1;
            for at in [start, trailer, trailer + check.trailer_len() as u64] {
                offsets.extend([at.saturating_sub(1), at, at + 1].into_iter().filter(|&o| o <= len));
            }
        }
        let mut rng = Rng(42);
        offsets.extend((0..300).map(|_| rng.below(len + 1)));
        for i in (1..offsets.len()).rev() {
            offsets.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for offset in offsets {
            let want = rng.below(70_000) as usize;
            let end = (offset as usize + want).min(stream.len());
            let got = match rng.below(3) {
                0 => reader.seek(SeekFrom::Start(offset)).unwrap(),
                1 => reader.seek(SeekFrom::End(offset as i64 - len as i64)).unwrap(),
                _ => {
                    let here = reader.stream_position().unwrap();
                    reader.seek(SeekFrom::Current(offset as i64 - here as i64)).unwrap()
                }
            };
            assert_eq!(got, offset);
            let mut buf = vec![0; end - offset as usize];
            reader.read_exact(&mut buf).unwrap();
            assert!(buf == stream[offset as usize..end], "bytes {offset}..{end} differ");
            assert_eq!(reader.stream_position().unwrap(), end as u64);
        }

        // Outside 0..=len is an error, and leaves the position alone.
        reader.seek(SeekFrom::Start(5)).unwrap();
        for bad in [
            SeekFrom::Start(len + 1),
            SeekFrom::End(1),
            SeekFrom::Current(-6),
            SeekFrom::Current(i64::MAX),
        ] {
            assert_eq!(reader.seek(bad).unwrap_err().kind(), ErrorKind::InvalidInput);
        }
        assert_eq!(reader.stream_position().unwrap(), 5);
    }

    #[test]
    fn resent_chunks_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, files) = sample_dir(tmp.path(), 100_000);
        let stream = stream_of(&dir);
        let dest = tmp.path().join("dest");
        let mut writer = ArchiveWriter::create(&dest).unwrap();
        let mut rng = Rng(7);
        let mut pos = 0;
        while pos < stream.len() {
            let n = (1 + rng.below(9000) as usize).min(stream.len() - pos);
            writer.write_all(&stream[pos..pos + n]).unwrap();
            pos += n;
            // Sometimes the same chunk again, or a resend from further back running past it.
            match rng.below(4) {
                0 => {
                    assert_eq!(
                        writer.seek(SeekFrom::Start((pos - n) as u64)).unwrap(),
                        (pos - n) as u64
                    );
                    assert_eq!(writer.stream_position().unwrap(), (pos - n) as u64);
                    writer.write_all(&stream[pos - n..pos]).unwrap();
                }
                1 => {
                    let back = rng.below(pos as u64 + 1) as usize;
                    let ahead = (rng.below(500) as usize).min(stream.len() - pos);
                    writer.seek_to((pos - back) as u64).unwrap();
                    writer.write_all(&stream[pos - back..pos + ahead]).unwrap();
                    pos += ahead;
                }
                _ => {}
            }
            assert_eq!(writer.position(), pos as u64);
            assert_eq!(writer.received(), pos as u64);
        }
        // A trailing resend after the end is fine too.
        writer.seek_to(10).unwrap();
        writer.write_all(&stream[10..20]).unwrap();
        writer.finish().unwrap();
        assert_same_files(&dest, &files);
    }

    #[test]
    fn flipped_bytes_are_caught() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _) = sample_dir(tmp.path(), 10_000);
        for check in [FileCheck::Crc32, FileCheck::Sha256] {
            flipped_bytes_are_caught_in(&tmp.path().join(check.name()), &dir, check);
        }
    }

    fn flipped_bytes_are_caught_in(tmp: &Path, dir: &Path, check: FileCheck) {
        fs::create_dir(tmp).unwrap();
        let stream = stream_with(dir, check);
        let reader = ArchiveReader::open_with(dir, check).unwrap();
        let header_len = reader.starts[0] as usize;
        // Files: 000012.sst (first), CURRENT (second).
        let first_name = 8 + 4 + 2;
        let first_size = first_name + "000012.sst".len();
        let second_content = reader.starts[1] as usize;
        let second_trailer = second_content + reader.files()[1].1 as usize;
        let cases = [
            (0, "magic"),
            (first_name + 3, "header checksum mismatch"),
            (first_size + 7, "header checksum mismatch"),
            (header_len - 5, "header checksum mismatch"),
            (header_len + 1234, "000012.sst: content checksum mismatch"),
            (second_content + 3, "CURRENT: content checksum mismatch"),
            (
                second_trailer + check.trailer_len() - 1,
                "CURRENT: content checksum mismatch",
            ),
        ];
        for (i, (at, needle)) in cases.into_iter().enumerate() {
            let mut bad = stream.clone();
            bad[at] ^= 0x01;
            let dest = tmp.join(format!("dest{i}"));
            expect_invalid(unpack(&dest, &bad, 1000), needle);
            if at > header_len {
                expect_invalid(unpack(&tmp.join(format!("named{i}")), &bad, 1000), check.name());
            }
        }
        // Sizes beyond the limits, and a corrupt name, fail before the checksum is read.
        let mut bad = stream.clone();
        bad[first_size] = 0xff;
        expect_invalid(unpack(&tmp.join("big"), &bad, 1000), "over the limit");
        let mut bad = stream.clone();
        bad[first_name + 2] = b'/';
        expect_invalid(unpack(&tmp.join("slash"), &bad, 1000), "not allowed");
        let mut bad = stream;
        bad[8] = 0xff;
        expect_invalid(unpack(&tmp.join("count"), &bad, 1000), "files is over the limit");
    }

    #[test]
    fn the_stream_is_as_the_format_says() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("src");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("a"), b"abc").unwrap();
        fs::write(dir.join("b"), b"").unwrap();
        let header = header_of(&[(b"a", 3), (b"b", 0)]);
        assert_eq!(&header[..8], b"SEALCKP3");
        let mut want = header.clone();
        // CRC-32 (IEEE 802.3) of "abc" is 0x352441c2, big-endian; of nothing, 0.
        want.extend_from_slice(b"abc\x35\x24\x41\xc2\0\0\0\0");
        assert_eq!(stream_of(&dir), want);
        // An earlier release's: the same header but its magic, SHA-256 trailers.
        let mut want = header_of(&[(b"a", 3), (b"b", 0)]);
        want[..8].copy_from_slice(b"SEALCKP2");
        let checksum = Sha256::digest(&want[..header.len() - HASH_LEN]);
        want.truncate(header.len() - HASH_LEN);
        want.extend_from_slice(&checksum);
        want.extend_from_slice(b"abc");
        want.extend_from_slice(&Sha256::digest(b"abc"));
        want.extend_from_slice(&Sha256::digest(b""));
        assert_eq!(stream_with(&dir, FileCheck::Sha256), want);
    }

    #[test]
    fn archives_of_earlier_releases_are_accepted_and_an_unknown_one_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, files) = sample_dir(tmp.path(), 10_000);
        assert_eq!(&stream_of(&dir)[..8], MAGIC);
        // What an earlier release of format 3 sends: files checked by SHA-256.
        let stream = stream_with(&dir, FileCheck::Sha256);
        assert_eq!(&stream[..8], MAGIC_SHA256);
        let dest = tmp.path().join("from-sha256");
        unpack(&dest, &stream, 1000).unwrap();
        assert_same_files(&dest, &files);
        let header_len = ArchiveReader::open(&dir).unwrap().starts[0] as usize;
        let with_magic = |magic: &[u8; 8]| {
            let mut s = stream.clone();
            s[..8].copy_from_slice(magic);
            let checksum = Sha256::digest(&s[..header_len - HASH_LEN]);
            s[header_len - HASH_LEN..header_len].copy_from_slice(&checksum);
            s
        };
        // What a node of format 2 sends: installed as it is.
        let dest = tmp.path().join("from-format-2");
        unpack(&dest, &with_magic(MAGIC_FORMAT_2), 1000).unwrap();
        assert_same_files(&dest, &files);
        // A later format, whose checkpoint this build could misread, at its first bytes.
        expect_invalid(
            unpack(&tmp.path().join("later"), &with_magic(b"SEALCKP4"), 1000),
            "magic",
        );
    }

    #[test]
    fn poisoned_after_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _) = sample_dir(tmp.path(), 1000);
        let mut stream = stream_of(&dir);
        let at = stream.len() - 40;
        stream[at] ^= 0x80;
        let mut writer = ArchiveWriter::create(&tmp.path().join("dest")).unwrap();
        let err = writer.write_all(&stream).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        let later = writer.write(&[0]).unwrap_err();
        assert_eq!(later.kind(), ErrorKind::InvalidData);
        assert!(later.to_string().contains("earlier error"), "{later}");
        assert!(writer.flush().is_err());
        assert!(writer.seek_to(0).is_err());
        assert!(writer.stream_position().is_err());
        assert!(writer.finish().is_err());
    }

    #[test]
    fn truncated_and_trailing_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _) = sample_dir(tmp.path(), 1000);
        let stream = stream_of(&dir);
        for (i, cut) in [0, 5, 20, stream.len() / 2, stream.len() - 1].into_iter().enumerate() {
            let err = unpack(&tmp.path().join(format!("cut{i}")), &stream[..cut], 300).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
            assert!(err.to_string().contains("incomplete"), "{err}");
        }

        let mut long = stream.clone();
        long.push(0);
        expect_invalid(unpack(&tmp.path().join("long"), &long, 7), "after the end");
        let mut writer = ArchiveWriter::create(&tmp.path().join("long2")).unwrap();
        writer.write_all(&stream).unwrap();
        let err = writer.write(b"more").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(writer.finish().is_err());
    }

    #[test]
    fn bad_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let long = [b'a'; 256];
        let cases: [(Entries, &str); 9] = [
            (&[(b"..", 0)], "not allowed"),
            (&[(b".", 0)], "not allowed"),
            (&[(b"a/b", 0)], "not allowed"),
            (&[(b"", 0)], "name of 0 bytes"),
            (&[("é".as_bytes(), 0)], "not allowed"),
            (&[(b"a b", 0)], "not allowed"),
            (&[(&long, 0)], "name of 256 bytes"),
            (&[(b"b", 0), (b"a", 0)], "out of order"),
            (&[(b"a", 0), (b"a", 0)], "duplicate"),
        ];
        for (i, (entries, needle)) in cases.into_iter().enumerate() {
            let dest = tmp.path().join(format!("dest{i}"));
            let mut stream = header_of(entries);
            stream.extend_from_slice(&EMPTY_CRC);
            expect_invalid(unpack(&dest, &stream, 3), needle);
            assert_eq!(fs::read_dir(&dest).unwrap().count(), 0, "case {i} created a file");
        }
        // The same header with good names is fine.
        let mut stream = header_of(&[(b"a", 0), (b"b", 0)]);
        stream.extend_from_slice(&EMPTY_CRC);
        stream.extend_from_slice(&EMPTY_CRC);
        assert_eq!(unpack(&tmp.path().join("good"), &stream, 3).unwrap().len(), 2);
        // The sender refuses such names too, and anything but a regular file.
        let src = tmp.path().join("src-space");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("a b"), b"").unwrap();
        assert_eq!(ArchiveReader::open(&src).err().unwrap().kind(), ErrorKind::InvalidData);
        let src = tmp.path().join("src-subdir");
        fs::create_dir_all(src.join("sub")).unwrap();
        let err = ArchiveReader::open(&src).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn gaps_unsupported_seeks_and_existing_dirs_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _) = sample_dir(tmp.path(), 1000);
        let stream = stream_of(&dir);
        let mut writer = ArchiveWriter::create(&tmp.path().join("gap")).unwrap();
        writer.write_all(&stream[..100]).unwrap();
        writer.seek_to(100).unwrap();
        assert_eq!(writer.seek_to(101).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert!(writer.write_all(&stream[100..]).is_err());

        let mut writer = ArchiveWriter::create(&tmp.path().join("end")).unwrap();
        assert_eq!(
            writer.seek(SeekFrom::End(0)).unwrap_err().kind(),
            ErrorKind::Unsupported
        );
        assert!(writer.write_all(&stream).is_err());

        let err = ArchiveWriter::create(&dir).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert!(err.to_string().contains(&dir.display().to_string()), "{err}");
        assert!(fs::read(dir.join("CURRENT")).unwrap() == b"MANIFEST-000005\n");
    }

    #[test]
    fn a_file_changing_size_fails_the_read() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _) = sample_dir(tmp.path(), 1000);
        let mut buf = Vec::new();

        // Grown before it is opened for reading.
        let mut reader = ArchiveReader::open(&dir).unwrap();
        fs::write(dir.join("CURRENT"), b"MANIFEST-000005\nand more").unwrap();
        let err = reader.read_to_end(&mut buf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(err.to_string().contains("CURRENT: size changed"), "{err}");

        // Shrunk while being read.
        fs::write(dir.join("CURRENT"), b"MANIFEST-000005\n").unwrap();
        let mut reader = ArchiveReader::open(&dir).unwrap();
        reader.seek(SeekFrom::Start(reader.starts[1] + 3)).unwrap();
        reader.read_exact(&mut [0; 2]).unwrap();
        File::options()
            .write(true)
            .open(dir.join("CURRENT"))
            .unwrap()
            .set_len(4)
            .unwrap();
        let err = reader.read_to_end(&mut buf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(err.to_string().contains("CURRENT: size changed"), "{err}");

        // Grown while being read: caught at the end of its content.
        fs::write(dir.join("CURRENT"), b"MANIFEST-000005\n").unwrap();
        let mut reader = ArchiveReader::open(&dir).unwrap();
        reader.seek(SeekFrom::Start(reader.starts[1])).unwrap();
        reader.read_exact(&mut [0; 2]).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(dir.join("CURRENT"))
            .unwrap()
            .write_all(b"x")
            .unwrap();
        let err = reader.read_to_end(&mut buf).unwrap_err();
        assert!(err.to_string().contains("CURRENT: size changed"), "{err}");
    }
}
