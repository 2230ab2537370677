//! The store's write-ahead log: what makes an acknowledged write durable.
//!
//! sled's own `flush` wakes a pool of IO threads and costs far more than the write it makes
//! durable (a profile of 64 clients posting single alerts showed those threads taking about
//! 45 % of the process's samples). So the store writes every change that a `commit` must make
//! durable twice: into sled's memory, and as a record appended here; a commit writes the
//! records gathered since the last one with one `write` and one `fdatasync`. sled flushes
//! itself in the background, and once the log passes [`CHECKPOINT_BYTES`] the commit thread
//! starts a new file, flushes sled, and deletes the old file. At open, the store applies what
//! the files hold before anything else (see `SledStore::open`).
//!
//! A file is a sequence of records:
//!
//! ```text
//! len u32 LE | crc32 u32 LE (of body) | body: tree u8 | op u8 (1 insert, 0 remove) | key len u32 LE | key | value
//! ```
//!
//! A crash can leave the last record of the newest file torn; it was never acknowledged (its
//! `fdatasync` did not return), so reading stops there. A bad record anywhere else is damage.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The log is checkpointed (sled flushed, old file deleted) once it is this large.
pub const CHECKPOINT_BYTES: u64 = 32 << 20;

/// Which sled tree a record is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Tree {
    Alerts = 0,
    Digests = 1,
    Meta = 2,
    Dedup = 3,
    Requests = 4,
}

impl Tree {
    fn from_u8(b: u8) -> Option<Tree> {
        Some(match b {
            0 => Tree::Alerts,
            1 => Tree::Digests,
            2 => Tree::Meta,
            3 => Tree::Dedup,
            4 => Tree::Requests,
            _ => return None,
        })
    }
}

/// One logged change.
#[derive(Debug, PartialEq, Eq)]
pub struct Op {
    pub tree: Tree,
    pub key: Vec<u8>,
    /// `None`: remove.
    pub value: Option<Vec<u8>>,
}

/// Appends one record to `buf`.
pub fn encode(buf: &mut Vec<u8>, tree: Tree, key: &[u8], value: Option<&[u8]>) {
    let body_len = 2 + 4 + key.len() + value.map_or(0, <[u8]>::len);
    buf.reserve(8 + body_len);
    buf.extend_from_slice(&(body_len as u32).to_le_bytes());
    let crc_at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let body_at = buf.len();
    buf.push(tree as u8);
    buf.push(u8::from(value.is_some()));
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(key);
    if let Some(v) = value {
        buf.extend_from_slice(v);
    }
    let crc = crc32(&buf[body_at..]);
    buf[crc_at..body_at].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes records from `bytes` until the end or the first bad record. Returns them and
/// whether the whole input was good.
pub fn decode(bytes: &[u8]) -> (Vec<Op>, bool) {
    let mut ops = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(op) = decode_one(&bytes[at..]) else {
            return (ops, false);
        };
        at += op.1;
        ops.push(op.0);
    }
    (ops, true)
}

fn decode_one(b: &[u8]) -> Option<(Op, usize)> {
    let len = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(b.get(4..8)?.try_into().ok()?);
    let body = b.get(8..8 + len)?;
    if crc32(body) != crc || body.len() < 6 {
        return None;
    }
    let tree = Tree::from_u8(body[0])?;
    let insert = match body[1] {
        0 => false,
        1 => true,
        _ => return None,
    };
    let klen = u32::from_le_bytes(body[2..6].try_into().ok()?) as usize;
    let key = body.get(6..6 + klen)?.to_vec();
    let value = insert.then(|| body[6 + klen..].to_vec());
    if !insert && body.len() != 6 + klen {
        return None;
    }
    Some((Op { tree, key, value }, 8 + len))
}

/// CRC-32 (IEEE), bytewise with a table built on first use.
pub fn crc32(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    let mut c = !0u32;
    for &b in bytes {
        c = table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

fn file_name(generation: u64) -> String {
    format!("wal-{generation:016x}.log")
}

/// The log files in `dir`, oldest first, with their generations.
pub fn files(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    numbered_files(dir, "wal-", ".log")
}

/// The files in `dir` named `<prefix><hex number><suffix>`, by number, with their numbers.
pub fn numbered_files(
    dir: &Path,
    prefix: &str,
    suffix: &str,
) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|n| n.strip_suffix(suffix))
            .and_then(|hex| u64::from_str_radix(hex, 16).ok());
        if let Some(number) = number {
            out.push((number, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Every record in `dir`'s log files, oldest first. A torn tail of the newest file is dropped
/// (never acknowledged); damage anywhere else is an error.
pub fn read_all(dir: &Path) -> Result<Vec<Op>, String> {
    let files = files(dir).map_err(|e| format!("cannot list the write-ahead log: {e}"))?;
    let mut ops = Vec::new();
    for (i, (_, path)) in files.iter().enumerate() {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let (mut got, whole) = decode(&bytes);
        if !whole && i + 1 < files.len() {
            return Err(format!(
                "{} is damaged after {} good records",
                path.display(),
                got.len()
            ));
        }
        ops.append(&mut got);
    }
    Ok(ops)
}

/// Deletes every log file of a generation below `keep_from`.
pub fn remove_before(dir: &Path, keep_from: u64) -> std::io::Result<()> {
    for (generation, path) in files(dir)? {
        if generation < keep_from {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

/// The file being appended to (owned by the commit thread).
pub struct Writer {
    dir: PathBuf,
    file: File,
    generation: u64,
    size: u64,
}

impl Writer {
    /// Starts a new file of `generation`.
    pub fn create(dir: &Path, generation: u64) -> std::io::Result<Writer> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(file_name(generation)))?;
        File::open(dir)?.sync_all()?;
        Ok(Writer {
            dir: dir.to_path_buf(),
            file,
            generation,
            size: 0,
        })
    }

    /// Appends and waits until the bytes are on disk.
    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)?;
        self.file.sync_data()?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Moves on to a new file; returns the generation that must stay until the data it holds is
    /// durable elsewhere.
    pub fn rotate(&mut self) -> std::io::Result<u64> {
        let next = Writer::create(&self.dir, self.generation + 1)?;
        let old = self.generation;
        *self = next;
        Ok(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_dropped() {
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        encode(
            &mut buf,
            Tree::Alerts,
            b"ops\0\0\0\0\0\0\0\0\x01",
            Some(b"{}"),
        );
        ends.push(buf.len());
        encode(&mut buf, Tree::Meta, b"cursor\0ops", None);
        ends.push(buf.len());
        encode(&mut buf, Tree::Requests, b"key", Some(b""));
        let (ops, whole) = decode(&buf);
        assert!(whole);
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].tree, Tree::Alerts);
        assert_eq!(ops[0].value.as_deref(), Some(&b"{}"[..]));
        assert_eq!(ops[1].value, None);
        assert_eq!(ops[2].value.as_deref(), Some(&b""[..]));
        for cut in 1..buf.len() {
            let (ops, whole) = decode(&buf[..cut]);
            assert_eq!(ops.len(), ends.iter().filter(|&&e| e <= cut).count());
            assert_eq!(whole, ends.contains(&cut), "cut at {cut}");
        }
        let mut flipped = buf.clone();
        flipped[10] ^= 1;
        assert!(!decode(&flipped).1);
    }
}
