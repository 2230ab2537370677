//! Where the alerts' bytes live: append-only segment files in `<data_dir>/segments`, with only a
//! small reference ([`Ref`]) in sled.
//!
//! sled 0.34 keeps the tree nodes it has written in memory whatever `cache_capacity` says
//! (spacejam/sled#986, #1309, #1410): with the chunks themselves as values, 1 000 000 pending
//! alerts held about 76 MiB of sled's memory. A reference is 21 bytes, so sled's share shrinks
//! to a few MiB and a backlog's bytes stay in the page cache, not in the process.
//!
//! What keeps this safe (the store relies on each):
//! 1. **A reference is never durable before its bytes.** Bytes are written with plain `pwrite`;
//!    [`Blobs::sync`] makes everything written so far durable and returns a watermark, which the
//!    store records in sled before each flush it asks for. sled may still flush a newer
//!    reference on its own, so at open every reference beyond the watermark is read back and
//!    checked ([`Watermark::below`], [`Blobs::get`]); a bad one is dropped, and the write-ahead
//!    log, which still holds those alerts, puts them back.
//! 2. **A segment is deleted only when nothing durable points into it.** [`Blobs::release`]
//!    marks a segment whose last chunk went; the store deletes it ([`Blobs::delete`]) only after
//!    a sled flush has made the removals durable.
//! 3. **Segment numbers only grow**, also across restarts and deletions (the watermark's segment
//!    is a floor), so "beyond the watermark" is a plain comparison.
//! 4. **Space comes back.** A segment mostly freed (a slow robot's chunks pinning it among a
//!    fast robot's) is compacted: its live chunks are copied to the active segment, made
//!    durable, and swapped in with a compare-and-swap ([`Blobs::sparse`] picks them).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::wal::crc32;

/// A new segment is started once the active one would pass this size.
pub const SEGMENT_BYTES: u64 = 8 << 20;

/// Whether a chunk of `len` bytes goes into a segment already holding `size`: while the segment
/// stays within `segment_bytes`, or, for a chunk larger than any segment, only into an empty one.
fn fits(size: u64, len: u64, segment_bytes: u64) -> bool {
    size + len <= segment_bytes || (size == 0 && len > segment_bytes)
}

/// The first byte of a reference value (stored chunks start with 0x01, legacy alerts with `{`).
pub const TAG: u8 = 0x02;

/// Where one chunk's bytes are: 21 bytes in sled.
///
/// ```text
/// 0x02 | count u32 LE | segment u32 LE | offset u32 LE | len u32 LE | crc32 u32 LE
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ref {
    /// How many alerts the chunk holds (so counting needs no read).
    pub count: u32,
    pub seg: u32,
    pub off: u32,
    pub len: u32,
    pub crc: u32,
}

impl Ref {
    pub const SIZE: usize = 21;

    pub fn encode(&self) -> [u8; Ref::SIZE] {
        let mut b = [0u8; Ref::SIZE];
        b[0] = TAG;
        for (i, v) in [self.count, self.seg, self.off, self.len, self.crc]
            .into_iter()
            .enumerate()
        {
            b[1 + 4 * i..5 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// `None` unless `v` is a reference.
    pub fn decode(v: &[u8]) -> Option<Ref> {
        if v.len() != Ref::SIZE || v[0] != TAG {
            return None;
        }
        let at = |i: usize| u32::from_le_bytes(v[1 + 4 * i..5 + 4 * i].try_into().expect("4"));
        Some(Ref {
            count: at(0),
            seg: at(1),
            off: at(2),
            len: at(3),
            crc: at(4),
        })
    }

    /// Where its bytes end, comparable with a [`Watermark`].
    fn end(&self) -> Watermark {
        Watermark {
            seg: self.seg,
            end: u64::from(self.off) + u64::from(self.len),
        }
    }
}

/// Every byte before this position is on disk: all of segments below `seg`, and `seg` up to
/// `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Watermark {
    pub seg: u32,
    pub end: u64,
}

impl Watermark {
    pub fn encode(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.seg.to_be_bytes());
        b[4..].copy_from_slice(&self.end.to_be_bytes());
        b
    }

    pub fn decode(v: &[u8]) -> Option<Watermark> {
        Some(Watermark {
            seg: u32::from_be_bytes(v.get(..4)?.try_into().ok()?),
            end: u64::from_be_bytes(v.get(4..12)?.try_into().ok()?),
        })
    }

    /// Whether the bytes of `r` may not be on disk.
    pub fn below(&self, r: &Ref) -> bool {
        r.end() > *self
    }
}

#[derive(Debug)]
struct Segment {
    file: Arc<File>,
    size: u64,
    live_chunks: u64,
    live_bytes: u64,
}

#[derive(Debug, Default)]
struct State {
    segs: BTreeMap<u32, Segment>,
    /// The segment being appended to; created on the first write after open.
    active: Option<u32>,
    next_id: u32,
    /// Written since the last sync.
    unsynced: BTreeSet<u32>,
}

/// Totals over every segment file, for status and compaction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub files: u64,
    pub file_bytes: u64,
    pub live_bytes: u64,
}

#[derive(Debug)]
pub struct Blobs {
    dir: PathBuf,
    segment_bytes: u64,
    state: Mutex<State>,
    /// Held through a whole [`sync`](Blobs::sync): a second caller must not report a watermark
    /// whose bytes the first is still syncing.
    syncing: Mutex<()>,
}

/// A segment's file name.
pub fn file_name(seg: u32) -> String {
    format!("seg-{seg:08x}.blob")
}

impl Blobs {
    /// Opens `dir` (created if missing). New segments are numbered above every file present and
    /// above `floor`, the segment of the last recorded watermark (invariant 3). Nothing counts
    /// as live until the store [`adopt`](Self::adopt)s its references. A new segment is started
    /// once the active one would pass `segment_bytes` ([`SEGMENT_BYTES`] but in tests).
    pub fn open(dir: &Path, floor: u32, segment_bytes: u64) -> std::io::Result<Blobs> {
        std::fs::create_dir_all(dir)?;
        let mut segs = BTreeMap::new();
        for (seg, path) in super::wal::numbered_files(dir, "seg-", ".blob")? {
            let Ok(seg) = u32::try_from(seg) else {
                continue;
            };
            let file = File::open(path)?;
            let size = file.metadata()?.len();
            segs.insert(
                seg,
                Segment {
                    file: Arc::new(file),
                    size,
                    live_chunks: 0,
                    live_bytes: 0,
                },
            );
        }
        let next_id = segs
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(floor)
            .saturating_add(1);
        Ok(Blobs {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.clamp(1, u64::from(u32::MAX)),
            syncing: Mutex::new(()),
            state: Mutex::new(State {
                segs,
                next_id,
                ..State::default()
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("blobs lock")
    }

    /// Appends a chunk of `count` alerts; its bytes are readable at once, durable after the next
    /// [`sync`](Self::sync).
    ///
    /// A chunk larger than a segment (one request of many megabytes: an Alertmanager group
    /// cannot be split) gets a segment of its own, which is then full: a segment is a unit of
    /// space reuse, not a limit on what one request may hold.
    pub fn put(&self, count: u32, bytes: &[u8]) -> std::io::Result<Ref> {
        let len = u32::try_from(bytes.len()).map_err(|_| {
            std::io::Error::other(format!(
                "a chunk of {} bytes, more than the {} a segment file can address",
                bytes.len(),
                u32::MAX
            ))
        })?;
        let crc = crc32(bytes);
        let mut st = self.state();
        let seg = match st.active {
            Some(seg) if fits(st.segs[&seg].size, u64::from(len), self.segment_bytes) => seg,
            _ => self.start_segment(&mut st)?,
        };
        let s = st.segs.get_mut(&seg).expect("active segment");
        let off = s.size;
        s.file.write_all_at(bytes, off)?;
        s.size += u64::from(len);
        s.live_chunks += 1;
        s.live_bytes += u64::from(len);
        st.unsynced.insert(seg);
        Ok(Ref {
            count,
            seg,
            off: off as u32,
            len,
            crc,
        })
    }

    fn start_segment(&self, st: &mut State) -> std::io::Result<u32> {
        let seg = st.next_id;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.dir.join(file_name(seg)))?;
        st.next_id += 1;
        st.active = Some(seg);
        st.segs.insert(
            seg,
            Segment {
                file: Arc::new(file),
                size: 0,
                live_chunks: 0,
                live_bytes: 0,
            },
        );
        Ok(seg)
    }

    /// The chunk's bytes, checked against its checksum.
    pub fn get(&self, r: &Ref) -> Result<Vec<u8>, String> {
        let file = self
            .state()
            .segs
            .get(&r.seg)
            .map(|s| s.file.clone())
            .ok_or_else(|| format!("blob segment {} is missing", file_name(r.seg)))?;
        let mut buf = vec![0u8; r.len as usize];
        file.read_exact_at(&mut buf, u64::from(r.off))
            .map_err(|e| {
                format!(
                    "cannot read {} bytes at {} of {}: {e}",
                    r.len,
                    r.off,
                    file_name(r.seg)
                )
            })?;
        if crc32(&buf) != r.crc {
            return Err(format!(
                "checksum mismatch in {} bytes at {} of {}",
                r.len,
                r.off,
                file_name(r.seg)
            ));
        }
        Ok(buf)
    }

    /// Whether the file of `r`'s segment is there and long enough to hold it (checked at open
    /// for every reference; only those beyond the watermark are read back).
    pub fn holds(&self, r: &Ref) -> bool {
        self.state()
            .segs
            .get(&r.seg)
            .is_some_and(|s| u64::from(r.off) + u64::from(r.len) <= s.size)
    }

    /// Counts a stored reference as live (open, after reading the index).
    pub fn adopt(&self, r: &Ref) {
        if let Some(s) = self.state().segs.get_mut(&r.seg) {
            s.live_chunks += 1;
            s.live_bytes += u64::from(r.len);
        }
    }

    /// The reference is gone from the index; its segment may become empty (invariant 2).
    pub fn release(&self, r: &Ref) {
        if let Some(s) = self.state().segs.get_mut(&r.seg) {
            s.live_chunks = s.live_chunks.saturating_sub(1);
            s.live_bytes = s.live_bytes.saturating_sub(u64::from(r.len));
        }
    }

    /// Makes every byte written so far durable. Returns the new watermark, or `None` when
    /// nothing was written since open.
    pub fn sync(&self) -> std::io::Result<Option<Watermark>> {
        let _one_at_a_time = self.syncing.lock().expect("blobs sync lock");
        let (files, mark) = {
            let mut st = self.state();
            let files: Vec<Arc<File>> = std::mem::take(&mut st.unsynced)
                .into_iter()
                .filter_map(|seg| st.segs.get(&seg).map(|s| s.file.clone()))
                .collect();
            let mark = st.active.map(|seg| Watermark {
                seg,
                end: st.segs[&seg].size,
            });
            (files, mark)
        };
        for f in &files {
            f.sync_data()?;
        }
        Ok(mark)
    }

    /// Segments with nothing live (not the active one), found at open or left by releases.
    /// Delete them with [`delete`](Self::delete) only after a sled flush that followed this call.
    pub fn empty(&self) -> Vec<u32> {
        let st = self.state();
        st.segs
            .iter()
            .filter(|(id, s)| s.live_chunks == 0 && Some(**id) != st.active)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Deletes those of `segs` that are still empty. Returns the bytes freed.
    pub fn delete(&self, segs: &[u32]) -> std::io::Result<u64> {
        let mut freed = 0;
        for &seg in segs {
            let gone = {
                let mut st = self.state();
                let still_empty =
                    st.active != Some(seg) && st.segs.get(&seg).is_some_and(|s| s.live_chunks == 0);
                st.unsynced.remove(&seg);
                if still_empty {
                    st.segs.remove(&seg)
                } else {
                    None
                }
            };
            if let Some(s) = gone {
                match std::fs::remove_file(self.dir.join(file_name(seg))) {
                    Ok(()) => freed += s.size,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(freed)
    }

    /// Up to `max` segments (not the active one) whose live bytes are under half their size,
    /// sparsest first: worth copying their live chunks elsewhere (invariant 4).
    pub fn sparse(&self, max: usize) -> Vec<u32> {
        let st = self.state();
        let mut found: Vec<(u64, u32)> = st
            .segs
            .iter()
            .filter(|(id, s)| {
                Some(**id) != st.active && s.live_chunks > 0 && s.live_bytes * 2 < s.size
            })
            .map(|(id, s)| (s.live_bytes * 1000 / s.size.max(1), *id))
            .collect();
        found.sort_unstable();
        found.into_iter().take(max).map(|(_, id)| id).collect()
    }

    pub fn usage(&self) -> Usage {
        let st = self.state();
        Usage {
            files: st.segs.len() as u64,
            file_bytes: st.segs.values().map(|s| s.size).sum(),
            live_bytes: st.segs.values().map(|s| s.live_bytes).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_round_trips_and_other_values_are_not_references() {
        let r = Ref {
            count: 7,
            seg: 3,
            off: 4096,
            len: 512,
            crc: 0xdead_beef,
        };
        assert_eq!(Ref::decode(&r.encode()), Some(r));
        assert_eq!(Ref::decode(b"{\"title\":\"x\"}"), None);
        let mut chunk = vec![0x01];
        chunk.extend_from_slice(&[0; 20]);
        assert_eq!(Ref::decode(&chunk), None);
        let w = Watermark { seg: 3, end: 4608 };
        assert_eq!(Watermark::decode(&w.encode()), Some(w));
        assert!(!w.below(&r), "ends exactly at the watermark");
        assert!(w.below(&Ref { off: 4097, ..r }));
        assert!(w.below(&Ref {
            seg: 4,
            off: 0,
            ..r
        }));
        assert!(!w.below(&Ref {
            seg: 2,
            off: 1 << 30,
            ..r
        }));
    }

    #[test]
    fn bytes_read_back_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path(), 0, SEGMENT_BYTES).unwrap();
        let a = blobs.put(1, b"first chunk").unwrap();
        let b = blobs.put(2, b"second chunk").unwrap();
        assert_eq!((a.seg, a.off, b.seg, b.off), (1, 0, 1, 11));
        assert_eq!(blobs.get(&b).unwrap(), b"second chunk");
        // Flip a byte on disk: the checksum catches it.
        let path = dir.path().join(file_name(1));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[12] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert!(blobs.get(&b).unwrap_err().contains("checksum mismatch"));
        assert!(blobs.get(&a).is_ok());
        assert!(blobs.get(&Ref { len: 400, ..a }).is_err(), "past the end");
        let missing = blobs.get(&Ref { seg: 9, ..a }).unwrap_err();
        assert!(
            missing.contains("seg-00000009.blob is missing"),
            "{missing}"
        );
    }

    #[test]
    fn segments_roll_over_and_an_emptied_one_is_deleted_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path(), 0, SEGMENT_BYTES).unwrap();
        let big = vec![7u8; (SEGMENT_BYTES / 2) as usize];
        let r1 = blobs.put(1, &big).unwrap();
        let r2 = blobs.put(1, &big).unwrap();
        let r3 = blobs.put(1, &big).unwrap();
        assert_eq!((r1.seg, r2.seg, r3.seg), (1, 1, 2));
        let mark = blobs.sync().unwrap().unwrap();
        assert_eq!(
            mark,
            Watermark {
                seg: 2,
                end: SEGMENT_BYTES / 2
            }
        );
        blobs.release(&r1);
        assert!(blobs.empty().is_empty(), "segment 1 still holds r2");
        blobs.release(&r2);
        assert_eq!(blobs.empty(), vec![1]);
        assert_eq!(blobs.usage().files, 2);
        assert_eq!(blobs.delete(&[1]).unwrap(), SEGMENT_BYTES);
        assert!(!dir.path().join(file_name(1)).exists());
        // The active segment is never deleted, even when empty.
        blobs.release(&r3);
        assert!(blobs.empty().is_empty());
        assert_eq!(blobs.delete(&[2]).unwrap(), 0);
        assert_eq!(blobs.get(&r3).unwrap().len(), big.len());
    }

    #[test]
    fn numbering_continues_above_the_files_and_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        {
            let blobs = Blobs::open(dir.path(), 0, SEGMENT_BYTES).unwrap();
            blobs.put(1, b"x").unwrap();
        }
        let reopened = Blobs::open(dir.path(), 0, SEGMENT_BYTES).unwrap();
        assert_eq!(reopened.put(1, b"y").unwrap().seg, 2);
        // A floor above the files (a watermark whose segments were all deleted) wins.
        let floored = Blobs::open(dir.path(), 9, SEGMENT_BYTES).unwrap();
        assert_eq!(floored.put(1, b"z").unwrap().seg, 10);
        // At open nothing is live until adopted: both old segments count as empty.
        let again = Blobs::open(dir.path(), 0, SEGMENT_BYTES).unwrap();
        let r = Ref {
            count: 1,
            seg: 2,
            off: 0,
            len: 1,
            crc: crc32(b"y"),
        };
        again.adopt(&r);
        assert_eq!(again.empty(), vec![1, 10]);
        assert!(again.holds(&r));
        assert!(
            !again.holds(&Ref { len: 2, ..r }),
            "the file is one byte long"
        );
        assert!(!again.holds(&Ref { seg: 3, ..r }), "no segment 3");
        assert_eq!(again.get(&r).unwrap(), b"y");
    }

    #[test]
    fn sparse_segments_are_found_sparsest_first() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path(), 0, SEGMENT_BYTES).unwrap();
        let quarter = vec![1u8; (SEGMENT_BYTES / 4) as usize];
        let refs: Vec<Ref> = (0..9).map(|_| blobs.put(1, &quarter).unwrap()).collect();
        // Segments 1 and 2 full (4 each), 3 active with one.
        assert_eq!(refs[8].seg, 3);
        for r in &refs[0..3] {
            blobs.release(r); // segment 1: one quarter left
        }
        blobs.release(&refs[4]); // segment 2: three quarters left
        assert_eq!(blobs.sparse(4), vec![1]);
        blobs.release(&refs[5]);
        blobs.release(&refs[6]); // segment 2: one quarter left
        assert_eq!(blobs.sparse(4), vec![1, 2]);
        assert_eq!(blobs.sparse(1), vec![1]);
        let u = blobs.usage();
        assert_eq!((u.files, u.live_bytes), (3, 3 * SEGMENT_BYTES / 4));
    }
}
