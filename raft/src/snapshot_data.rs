//! [`SnapshotData`]: a snapshot as openraft moves it, in chunks of one seekable byte stream.
//!
//! A snapshot is a checkpoint directory of the state machine's database. Sent, it is read as one
//! stream by [`seal_storage::archive::ArchiveReader`] (a header listing the files, then each
//! file's bytes and checksum); received, the stream is written by
//! [`seal_storage::archive::ArchiveWriter`] into a new directory, each file checked as it
//! completes. openraft 0.9's chunked transport asks for `AsyncRead + AsyncWrite + AsyncSeek`;
//! the archive does plain file IO, at most one chunk (`snapshot_max_chunk_size`) per call, run
//! where tokio allows blocking (`block_in_place` on a multi-threaded runtime).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use seal_storage::archive::{ArchiveReader, ArchiveWriter};
use tokio::io::ReadBuf;

/// A snapshot being sent (a checkpoint directory read as a stream) or received (a stream being
/// written into a new directory).
#[derive(Debug)]
pub enum SnapshotData {
    /// The checkpoint directory read as an archive stream: a private copy (hard links) of the
    /// snapshot's directory, so that a newer snapshot replacing this one cannot remove a file
    /// from under the sender; removed when the sender is dropped.
    Sending(ArchiveReader, DirGuard),
    /// An archive stream written into `dir`, removed if dropped before [`SnapshotData::into_dir`]
    /// hands it over.
    Receiving {
        /// The directory the files go to.
        dir: PathBuf,
        /// The writer.
        writer: Option<ArchiveWriter>,
        /// Removes `dir` unless disarmed.
        guard: DirGuard,
    },
}

/// Removes a directory when dropped, unless disarmed.
#[derive(Debug)]
pub struct DirGuard {
    path: Option<PathBuf>,
}

impl DirGuard {
    /// Remove `path` when this guard drops.
    pub fn new(path: &Path) -> DirGuard {
        DirGuard {
            path: Some(path.to_path_buf()),
        }
    }

    /// Keep the directory.
    fn disarm(mut self) {
        self.path = None;
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // Best effort: what is left is removed at the next start.
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// Run `f`, which does file IO, telling tokio first when it can move other tasks off this thread.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn wrong_side(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        format!("a snapshot being {what} cannot be used that way"),
    )
}

impl SnapshotData {
    /// Read the checkpoint directory `dir` as a stream, through `private`, a new directory of
    /// links to its files (copies of the small ones RocksDB would rewrite in a database, which
    /// nothing does here) that lives as long as the returned value. The caller keeps `dir` from
    /// being removed during this call.
    pub fn send(dir: &Path, private: &Path) -> std::io::Result<SnapshotData> {
        blocking(|| {
            let guard = DirGuard::new(private);
            seal_storage::copy_checkpoint(dir, private).map_err(std::io::Error::other)?;
            Ok(SnapshotData::Sending(ArchiveReader::open(private)?, guard))
        })
    }

    /// Receive a stream into the new directory `dir`.
    pub fn receive(dir: &Path) -> std::io::Result<SnapshotData> {
        let writer = blocking(|| ArchiveWriter::create(dir))?;
        Ok(SnapshotData::Receiving {
            dir: dir.to_path_buf(),
            writer: Some(writer),
            guard: DirGuard::new(dir),
        })
    }

    /// The directory this snapshot's files are written to, when it is being received.
    pub fn receiving_dir(&self) -> Option<&Path> {
        match self {
            SnapshotData::Receiving { dir, .. } => Some(dir),
            SnapshotData::Sending(..) => None,
        }
    }

    /// The directory of the complete snapshot, to install: for a received one, once the whole
    /// stream arrived (every file complete, matching its checksum and fsync'd); for one read
    /// locally (openraft's storage tests install what they built), its stream written into
    /// `copy_to` the same way. Blocking.
    pub fn into_dir(self, copy_to: &Path) -> std::io::Result<PathBuf> {
        match self {
            SnapshotData::Receiving { dir, writer, guard } => {
                let w = writer.ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "snapshot stream already finished")
                })?;
                w.finish()?;
                guard.disarm();
                Ok(dir)
            }
            SnapshotData::Sending(mut reader, _private) => {
                let guard = DirGuard::new(copy_to);
                let mut w = ArchiveWriter::create(copy_to)?;
                reader.seek(SeekFrom::Start(0))?;
                std::io::copy(&mut reader, &mut w)?;
                w.finish()?;
                guard.disarm();
                Ok(copy_to.to_path_buf())
            }
        }
    }

    fn writer(&mut self) -> std::io::Result<&mut ArchiveWriter> {
        match self {
            SnapshotData::Receiving { writer: Some(w), .. } => Ok(w),
            SnapshotData::Receiving { writer: None, .. } => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "snapshot stream already finished",
            )),
            SnapshotData::Sending(..) => Err(wrong_side("sent")),
        }
    }
}

impl tokio::io::AsyncRead for SnapshotData {
    fn poll_read(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let SnapshotData::Sending(reader, _) = self.get_mut() else {
            return Poll::Ready(Err(wrong_side("received")));
        };
        let n = blocking(|| reader.read(buf.initialize_unfilled()));
        Poll::Ready(n.map(|n| buf.advance(n)))
    }
}

impl tokio::io::AsyncWrite for SnapshotData {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        Poll::Ready(this.writer().and_then(|w| blocking(|| w.write(data))))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        Poll::Ready(match this {
            // Every file is synced as it completes; `finish` syncs the directory.
            SnapshotData::Receiving { .. } => this.writer().map(|_| ()),
            SnapshotData::Sending(..) => Ok(()),
        })
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl tokio::io::AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> std::io::Result<()> {
        match self.get_mut() {
            SnapshotData::Sending(reader, _) => blocking(|| reader.seek(position)).map(|_| ()),
            receiving => receiving.writer().and_then(|w| w.seek(position)).map(|_| ()),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        Poll::Ready(match self.get_mut() {
            SnapshotData::Sending(reader, _) => reader.stream_position(),
            receiving => receiving.writer().map(|w| w.position()),
        })
    }
}
