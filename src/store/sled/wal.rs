//! The store's write-ahead log: what makes an acknowledged write durable.
//!
//! sled's own `flush` wakes a pool of IO threads and costs far more than the write it makes
//! durable (a profile of 64 clients posting single alerts showed those threads taking about
//! 45 % of the process's samples). So the store writes every change that a `commit` must make
//! durable twice: into sled's memory, and as a record written here; a commit writes the
//! records gathered since the last one with one `write` and one `fdatasync`. sled flushes
//! itself in the background, and once the log passes [`CHECKPOINT_BYTES`] the commit thread
//! starts a new file, flushes sled, and retires the old file. At open, the store applies what
//! the files hold before anything else (see `SledStore::open`).
//!
//! A file that grows makes every sync commit the file's metadata too (the new size and blocks),
//! and a buffered write can wait for a page the kernel's writeback holds. So a file is never
//! deleted but kept as the spare ([`SPARE`]), grown with zeros in the background to twice what
//! the last file needed (or cut back to that after a busy spell), and the next file is the spare
//! renamed: its writes land on blocks that exist. They are `O_DIRECT | O_DSYNC` writes of whole
//! blocks, past the page cache. (On the project's virtual disk the end-to-end gain was within
//! the noise: there every durable write ends with a cache flush, which the layout cannot avoid;
//! BENCHMARKS.md, issue 17.)
//!
//! A file is a header and a sequence of records:
//!
//! ```text
//! header: "SLUICEW2" | generation u64 LE
//! record: len u32 LE | crc u32 LE | body: tree u8 | op u8 (1 insert, 0 remove) | key len u32 LE | key | value
//! ```
//!
//! A record's `crc` is the CRC-32 of its body XORed with a salt of the file's generation, so
//! records left over from the spare's earlier life (or its zeros) end the file: they never
//! decode under the new generation. When the commit thread moves on to a new file it writes an
//! end record (tree 255) into the old one first. A crash can leave the last record of the
//! newest file torn; it was never acknowledged (its `fdatasync` did not return), so reading
//! stops there. An older file that does not reach its end record is damaged. Files from before
//! the header existed (no magic, plain CRC, no end record) are still read.
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The log is checkpointed (sled flushed, old file retired) once it is this large.
pub const CHECKPOINT_BYTES: u64 = 32 << 20;

/// The retired file kept for reuse as the next one.
pub const SPARE: &str = "wal-spare.log";

/// The spare is grown to at most this (a checkpoint starts once a file holds
/// [`CHECKPOINT_BYTES`]; the last commit before it may go a little past).
const SPARE_MAX: u64 = CHECKPOINT_BYTES + (4 << 20);

/// A spare more than this larger than twice what the last file held is cut back to that: after
/// a busy spell the two files are 36 MiB each, and a store whose backlog has drained should not
/// keep 72 MiB of zeros. The next busy spell grows the file again until its first checkpoint.
const SPARE_SLACK: u64 = 4 << 20;

const MAGIC: &[u8; 8] = b"SLUICEW2";
const HEADER: u64 = 16;

/// The tree byte of the record that closes a file.
const END: u8 = 255;

/// What a generation XORs into its records' CRCs. Multiplying by an odd constant is a bijection,
/// so generations less than 2^32 apart never share a salt.
fn salt(generation: u64) -> u32 {
    generation.wrapping_mul(0x9E37_79B9_7F4A_7C15) as u32 | 1
}

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

/// Decodes records from `bytes` (written with `salt`, 0 for files without a header) until the
/// end, an end record or the first bad record. Returns them and how the reading stopped.
fn decode_salted(bytes: &[u8], salt: u32) -> (Vec<Op>, Stop) {
    let mut ops = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match decode_one(&bytes[at..], salt) {
            Some(Decoded::Op(op, len)) => {
                at += len;
                ops.push(op);
            }
            Some(Decoded::End) => return (ops, Stop::EndRecord),
            None => return (ops, Stop::Bad),
        }
    }
    (ops, Stop::Eof)
}

/// How reading a file stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Eof,
    EndRecord,
    Bad,
}

/// Decodes plain records (as [`encode`] writes them) from `bytes` until the end or the first
/// bad record. Returns them and whether the whole input was good.
pub fn decode(bytes: &[u8]) -> (Vec<Op>, bool) {
    let (ops, stop) = decode_salted(bytes, 0);
    (ops, stop == Stop::Eof)
}

enum Decoded {
    Op(Op, usize),
    End,
}

fn decode_one(b: &[u8], salt: u32) -> Option<Decoded> {
    let len = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(b.get(4..8)?.try_into().ok()?);
    let body = b.get(8..8 + len)?;
    if crc32(body) ^ salt != crc || body.len() < 6 {
        return None;
    }
    if body[0] == END && salt != 0 {
        return Some(Decoded::End);
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
    Some(Decoded::Op(Op { tree, key, value }, 8 + len))
}

/// The record that closes a file, unsalted (as [`encode`] makes records).
fn end_record() -> Vec<u8> {
    let body = [END, 0, 0, 0, 0, 0];
    let mut end = Vec::with_capacity(8 + body.len());
    end.extend_from_slice(&(body.len() as u32).to_le_bytes());
    end.extend_from_slice(&crc32(&body).to_le_bytes());
    end.extend_from_slice(&body);
    end
}

/// XORs `salt` into the CRC of every record in `buf` (whole records, as [`encode`] made them).
fn apply_salt(buf: &mut [u8], salt: u32) {
    let mut at = 0;
    while at + 8 <= buf.len() {
        let len = u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(buf[at + 4..at + 8].try_into().expect("4 bytes"));
        buf[at + 4..at + 8].copy_from_slice(&(crc ^ salt).to_le_bytes());
        at += 8 + len;
    }
}

/// CRC-32 (IEEE), as zlib and Ethernet compute it (`crc32fast`: SSE 4.2 / PCLMULQDQ where the
/// CPU has them, a table otherwise).
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
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
    for (i, (generation, path)) in files.iter().enumerate() {
        let newest = i + 1 == files.len();
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let (mut got, clean) = match bytes.strip_prefix(MAGIC) {
            Some(rest) => {
                let named = rest
                    .get(..8)
                    .map(|g| u64::from_le_bytes(g.try_into().unwrap()));
                if named != Some(*generation) {
                    // A spare renamed for this generation whose header was not written yet:
                    // nothing in it was ever acknowledged.
                    if !newest {
                        return Err(format!(
                            "{} has the header of another generation",
                            path.display()
                        ));
                    }
                    continue;
                }
                let (got, stop) = decode_salted(&rest[8..], salt(*generation));
                (got, stop == Stop::EndRecord)
            }
            None => decode(&bytes),
        };
        if !clean && !newest {
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

/// Retires every log file of a generation below `keep_from`: the first becomes the spare (unless
/// there is one), grown with zeros to twice `used` (at most [`SPARE_MAX`]), or cut back to that
/// when it is more than [`SPARE_SLACK`] larger; the others are deleted. The directory is synced,
/// so that a retired file cannot come back after a crash. The spare holds no record anyone
/// reads (its old records do not decode under the generation it is renamed to), so its length
/// is free to change.
pub fn retire_before(dir: &Path, keep_from: u64, used: u64) -> std::io::Result<()> {
    let spare = dir.join(SPARE);
    let mut changed = false;
    for (generation, path) in files(dir)? {
        if generation >= keep_from {
            continue;
        }
        if spare.exists() {
            std::fs::remove_file(path)?;
        } else {
            std::fs::rename(path, &spare)?;
        }
        changed = true;
    }
    if !changed {
        return Ok(());
    }
    File::open(dir)?.sync_all()?;
    let file = OpenOptions::new().write(true).open(&spare)?;
    let have = file.metadata()?.len();
    let want = used.saturating_mul(2).min(SPARE_MAX);
    if want > have {
        // Real zeros, not `fallocate`: a block allocated but never written is converted on its
        // first write, and that conversion is metadata again.
        let zeros = vec![0u8; 1 << 20];
        let mut at = have;
        while at < want {
            let n = (want - at).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        file.sync_all()?;
    } else if have > want + SPARE_SLACK {
        file.set_len(want)?;
        file.sync_all()?;
    }
    Ok(())
}

/// The file being written (owned by the commit thread).
pub struct Writer {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    generation: u64,
    /// Bytes of records written after the header.
    size: u64,
    /// Written with `O_DIRECT`: past the page cache, so the kernel's writeback of other files'
    /// data (which, with another process writing large files, holds a cached page under
    /// writeback for hundreds of milliseconds) never stands between a commit and the disk.
    direct: bool,
    /// The last, partly filled block as written: the next write starts with it.
    tail: Vec<u8>,
    /// Where that block starts in the file (a multiple of [`BLOCK`]).
    tail_at: u64,
    /// Scratch for a batch, kept between commits: salted, and for direct writes aligned and
    /// padded to whole blocks.
    scratch: Vec<u8>,
}

/// The unit of direct writes: offsets, lengths and the buffer's address are multiples of it.
const BLOCK: usize = 4096;

fn open_for_writing(path: &Path, direct: bool) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = OpenOptions::new();
    options.write(true);
    if direct {
        options.custom_flags(libc::O_DIRECT | libc::O_DSYNC);
    }
    options.open(path)
}

impl Writer {
    /// Starts the file of `generation`: the spare renamed, if there is one, else a new file.
    pub fn create(dir: &Path, generation: u64) -> std::io::Result<Writer> {
        let path = dir.join(file_name(generation));
        let spare = dir.join(SPARE);
        if spare.exists() {
            std::fs::rename(&spare, &path)?;
        } else {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
        }
        File::open(dir)?.sync_all()?;
        // Some file systems (tmpfs among them) refuse O_DIRECT: they get buffered writes.
        let (file, direct) = match open_for_writing(&path, true) {
            Ok(f) => (f, true),
            Err(_) => (open_for_writing(&path, false)?, false),
        };
        let mut header = Vec::with_capacity(HEADER as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&generation.to_le_bytes());
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            file,
            path,
            generation,
            size: 0,
            direct,
            tail: Vec::new(),
            tail_at: 0,
            scratch: Vec::new(),
        };
        writer.write_raw(&header, 0)?;
        writer.file.sync_all()?;
        Ok(writer)
    }

    /// Writes whole records (as [`encode`] made them) after the last ones and waits until they
    /// are on disk.
    pub fn append(&mut self, records: &[u8]) -> std::io::Result<()> {
        self.write_raw(records, salt(self.generation))?;
        self.sync()?;
        self.size += records.len() as u64;
        Ok(())
    }

    /// Waits until what was written is on disk. A direct write (`O_DSYNC`) returned only once it
    /// was, and needs nothing more.
    fn sync(&self) -> std::io::Result<()> {
        if self.direct {
            return Ok(());
        }
        self.file.sync_data()
    }

    /// Writes `bytes` after what the file holds (without syncing buffered writes), with `salt`
    /// XORed into their records' CRCs (0: written as they are, for the header).
    fn write_raw(&mut self, bytes: &[u8], salt: u32) -> std::io::Result<()> {
        let mut buf = std::mem::take(&mut self.scratch);
        let written = self.write_with(&mut buf, bytes, salt);
        self.scratch = buf;
        written
    }

    fn write_with(&mut self, buf: &mut Vec<u8>, bytes: &[u8], salt: u32) -> std::io::Result<()> {
        buf.clear();
        if !self.direct {
            buf.extend_from_slice(bytes);
            if salt != 0 {
                apply_salt(buf, salt);
            }
            let at = self.tail_at + self.tail.len() as u64;
            self.file.write_all_at(buf, at)?;
            self.tail_at = at + bytes.len() as u64;
            return Ok(());
        }
        // The partial last block again, then the new bytes, padded with zeros to whole blocks, from
        // an aligned address. Rewriting the last block gives its earlier bytes the same values,
        // so a write torn by a crash cannot change what was acknowledged.
        let total = self.tail.len() + bytes.len();
        let padded = total.div_ceil(BLOCK) * BLOCK;
        buf.resize(padded + BLOCK, 0);
        let start = buf.as_ptr().align_offset(BLOCK);
        let block = &mut buf[start..start + padded];
        block[..self.tail.len()].copy_from_slice(&self.tail);
        block[self.tail.len()..total].copy_from_slice(bytes);
        if salt != 0 {
            apply_salt(&mut block[self.tail.len()..total], salt);
        }
        match self.file.write_all_at(block, self.tail_at) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // The file system took O_DIRECT at open but not for this write.
                self.file = open_for_writing(&self.path, false)?;
                self.direct = false;
                let tail = std::mem::take(&mut self.tail);
                self.file.write_all_at(&tail, self.tail_at)?;
                self.tail_at += tail.len() as u64;
                return self.write_with(buf, bytes, salt);
            }
            Err(e) => return Err(e),
        }
        let full = total / BLOCK * BLOCK;
        self.tail = block[full..total].to_vec();
        self.tail_at += full as u64;
        Ok(())
    }

    /// Bytes of records in the file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Closes this file with an end record and moves on to a new one; returns the generation
    /// that must stay until the data it holds is durable elsewhere, and its size.
    pub fn rotate(&mut self) -> std::io::Result<(u64, u64)> {
        self.append(&end_record())?;
        let next = Writer::create(&self.dir, self.generation + 1)?;
        let old = (self.generation, self.size);
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
    fn records(titles: &[&str]) -> Vec<u8> {
        let mut buf = Vec::new();
        for t in titles {
            encode(&mut buf, Tree::Alerts, t.as_bytes(), Some(b"value"));
        }
        buf
    }

    fn keys(dir: &Path) -> Vec<String> {
        read_all(dir)
            .unwrap()
            .into_iter()
            .map(|op| String::from_utf8(op.key).unwrap())
            .collect()
    }

    #[test]
    fn a_spare_left_large_by_a_busy_spell_is_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        // A spare as a busy spell leaves it (sparse here; the store writes real zeros).
        let big = 3 * SPARE_SLACK;
        File::create(dir.path().join(SPARE))
            .unwrap()
            .set_len(big)
            .unwrap();
        // The next file is that spare renamed, and holds a few records only.
        let mut w = Writer::create(dir.path(), 1).unwrap();
        w.append(&records(&["a1", "a2"])).unwrap();
        let (old, used) = w.rotate().unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join(file_name(old)))
                .unwrap()
                .len(),
            big,
            "generation 1 reused the spare"
        );
        retire_before(dir.path(), old + 1, used).unwrap();
        let spare = std::fs::metadata(dir.path().join(SPARE)).unwrap().len();
        assert_eq!(spare, 2 * used, "cut back to twice what the file held");
        // A small file retired is grown to twice what it held, as before.
        w.append(&records(&["b1"])).unwrap();
        let (old, used) = w.rotate().unwrap();
        retire_before(dir.path(), old + 1, used).unwrap();
        assert!(std::fs::metadata(dir.path().join(SPARE)).unwrap().len() >= 2 * used);
        assert_eq!(keys(dir.path()), Vec::<String>::new());
        w.append(&records(&["c1"])).unwrap();
        assert_eq!(keys(dir.path()), ["c1"]);
    }

    #[test]
    fn a_reused_file_never_gives_back_its_old_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::create(dir.path(), 1).unwrap();
        w.append(&records(&["a1", "a2", "a3"])).unwrap();
        let (old, used) = w.rotate().unwrap();
        assert_eq!(old, 1);
        retire_before(dir.path(), old + 1, used).unwrap();
        // The retired file is the spare, grown with zeros to twice what it held (direct writes
        // already padded it to a whole block).
        let spare = std::fs::metadata(dir.path().join(SPARE)).unwrap().len();
        assert!(spare >= 2 * used, "{spare} bytes");
        w.append(&records(&["b1"])).unwrap();
        let (old, used) = w.rotate().unwrap();
        assert!(
            !dir.path().join(SPARE).exists(),
            "generation 3 is the spare"
        );
        assert_eq!(
            std::fs::metadata(dir.path().join(file_name(3)))
                .unwrap()
                .len(),
            spare
        );
        assert_eq!(keys(dir.path()), ["b1"]);
        // The reused file holds generation 1's records after the new header, in the clear: they
        // do not decode under generation 3, and neither do its zeros.
        w.append(&records(&["c1"])).unwrap();
        assert_eq!(keys(dir.path()), ["b1", "c1"]);
        retire_before(dir.path(), old + 1, used).unwrap();
        assert_eq!(keys(dir.path()), ["c1"]);
    }

    #[test]
    fn an_older_file_that_does_not_reach_its_end_record_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::create(dir.path(), 1).unwrap();
        w.append(&records(&["a1"])).unwrap();
        // Generation 2 started without closing generation 1.
        let mut w2 = Writer::create(dir.path(), 2).unwrap();
        w2.append(&records(&["b1"])).unwrap();
        let err = read_all(dir.path()).unwrap_err();
        assert!(err.contains("is damaged after 1 good records"), "{err}");
        drop(w);
        // Closed properly, the same files read whole.
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::create(dir.path(), 1).unwrap();
        w.append(&records(&["a1"])).unwrap();
        w.rotate().unwrap();
        w.append(&records(&["b1"])).unwrap();
        assert_eq!(keys(dir.path()), ["a1", "b1"]);
    }

    #[test]
    fn a_torn_tail_and_a_spare_renamed_before_its_header_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::create(dir.path(), 1).unwrap();
        w.append(&records(&["a1", "a2"])).unwrap();
        let (old, used) = w.rotate().unwrap();
        retire_before(dir.path(), old + 1, used).unwrap();
        w.append(&records(&["b1", "b2"])).unwrap();
        // A crash cut the next write short: its first half is on disk.
        let next = records(&["b3"]);
        let path = dir.path().join(file_name(2));
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&next[..next.len() / 2], HEADER + w.size())
            .unwrap();
        assert_eq!(keys(dir.path()), ["b1", "b2"]);
        // A crash between renaming the spare and writing its header: generation 3 still has
        // generation 1's header, and holds nothing.
        let mut closed = w;
        closed.append(&records(&["b3"])).unwrap();
        let end_of_two = closed.size();
        drop(closed);
        let mut end = end_record();
        apply_salt(&mut end, salt(2));
        f.write_all_at(&end, HEADER + end_of_two).unwrap();
        std::fs::rename(dir.path().join(SPARE), dir.path().join(file_name(3))).unwrap();
        assert_eq!(keys(dir.path()), ["b1", "b2", "b3"]);
    }

    #[test]
    fn files_from_before_the_header_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file_name(1)), records(&["old1", "old2"])).unwrap();
        let mut torn = records(&["old3", "old4"]);
        torn.truncate(torn.len() - 3);
        std::fs::write(dir.path().join(file_name(2)), torn).unwrap();
        assert_eq!(keys(dir.path()), ["old1", "old2", "old3"]);
        // Damage in an older file of the old format is still damage.
        let mut bad = records(&["old1", "old2"]);
        bad[10] ^= 1;
        std::fs::write(dir.path().join(file_name(1)), bad).unwrap();
        assert!(read_all(dir.path()).is_err());
    }
}
