//! What a platform must say about a digest: how each block is written in its markup, and what
//! a piece of text costs in its own measure of a message.
//!
//! The plan (`plan`) decides which blocks a digest has and what they say; the fit
//! (`fit`) decides how many of them fit the budget; a dialect only writes one block at
//! a time and measures text. Everything the fitting guarantee leans on is a property of the
//! dialect, checked for every dialect by the contract test (`digest::tests::contract`):
//!
//! 1. **Additive cost.** `size(a + b) == size(a) + size(b)` for all strings, so sizes are
//!    tracked exactly while writing and a block's cost is the sum of its pieces'.
//! 2. **Prefix cuts.** What a block writes from alert content is cut on a character boundary,
//!    and a cut of it is a prefix of the whole; [`Dialect::cut`] is the longest prefix within a
//!    size.
//! 3. **Bounded blocks.** A block's cost depends on its counts only through their digits, and on
//!    names only through their own written cost: the overflow line is reserved at the cost of the
//!    same block written with the largest counts and the costliest names.
//! 4. **The budget is met.** With these, `render_in` fits every budget of at least
//!    [`MIN_BUDGET`](super::MIN_BUDGET) and accounts for every alert (`listed + summarized ==
//!    total`).
//!
//! A new platform adds one implementation (DingTalk's is [`super::dingtalk::DingTalk`]) and one
//! line in the contract test.

use std::fmt;
use std::iter::Sum;
use std::marker::PhantomData;
use std::ops::{Add, AddAssign};

use super::plan::{Entry, GroupLine, Overflow, Section, Summary};

/// An amount in dialect `D`'s own measure of a message (for DingTalk: bytes after JSON
/// escaping). Sizes of different dialects are different types, so a DingTalk budget cannot be
/// spent on another platform's text.
pub struct Size<D: ?Sized> {
    n: usize,
    unit: PhantomData<fn() -> D>,
}

impl<D: ?Sized> Size<D> {
    pub const ZERO: Size<D> = Size::new(0);

    pub const fn new(n: usize) -> Size<D> {
        Size {
            n,
            unit: PhantomData,
        }
    }

    /// The number, in the dialect's unit.
    pub const fn get(self) -> usize {
        self.n
    }

    pub fn saturating_sub(self, other: Size<D>) -> Size<D> {
        Size::new(self.n.saturating_sub(other.n))
    }
}

impl<D: ?Sized> Clone for Size<D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D: ?Sized> Copy for Size<D> {}

impl<D: ?Sized> PartialEq for Size<D> {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n
    }
}

impl<D: ?Sized> Eq for Size<D> {}

impl<D: ?Sized> PartialOrd for Size<D> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<D: ?Sized> Ord for Size<D> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.n.cmp(&other.n)
    }
}

impl<D: ?Sized> fmt::Debug for Size<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.n.fmt(f)
    }
}

impl<D: ?Sized> fmt::Display for Size<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.n.fmt(f)
    }
}

impl<D: ?Sized> Add for Size<D> {
    type Output = Size<D>;
    fn add(self, other: Size<D>) -> Size<D> {
        Size::new(self.n + other.n)
    }
}

impl<D: ?Sized> AddAssign for Size<D> {
    fn add_assign(&mut self, other: Size<D>) {
        self.n += other.n;
    }
}

impl<D: ?Sized> Sum for Size<D> {
    fn sum<I: Iterator<Item = Size<D>>>(iter: I) -> Size<D> {
        Size::new(iter.map(|s| s.n).sum())
    }
}

/// A platform's way of writing a digest. Each `write_*` method appends one block (or one line
/// of a block) to `out`, without the break before it, which the plan writes. Alert content
/// reaches a dialect only through [`Entry`], [`GroupLine`], [`Overflow`] and the group names of
/// [`Dialect::write_group`], and the dialect escapes it; everything else was written by sluice or the
/// configuration and goes out as it is.
pub trait Dialect {
    /// Between two blocks (a heading and what follows, two sections, the footer).
    const BLOCK_BREAK: &'static str;
    /// Between two lines of one block (group heading, entries, count lines).
    const LINE_BREAK: &'static str;

    /// What `s` costs in this platform's measure of a message; additive over concatenation.
    fn size(&self, s: &str) -> Size<Self>;

    /// The budget of a message whose limit is `n` in this platform's unit.
    fn budget(&self, n: usize) -> Size<Self> {
        Size::new(n)
    }

    /// What the title costs beside the text. DingTalk sends it as a field of its own
    /// (`markdown.title`) and counts it; a platform whose message is the text alone (WeCom's
    /// `markdown.content`) shows the title only as the text's first block
    /// ([`Dialect::write_title`]), and its own cost is zero.
    fn title_size(&self, title: &str) -> Size<Self> {
        self.size(title)
    }

    /// What a digest of `title` and `text` costs: the title's own cost and the text's.
    fn message_size(&self, title: &str, text: &str) -> Size<Self> {
        self.title_size(title) + self.size(text)
    }

    /// The longest prefix of `s` on a character boundary whose size is at most `max`.
    fn cut<'s>(&self, s: &'s str, max: Size<Self>) -> &'s str {
        let mut used = Size::ZERO;
        for (i, c) in s.char_indices() {
            let mut buf = [0u8; 4];
            used += self.size(c.encode_utf8(&mut buf));
            if used > max {
                return &s[..i];
            }
        }
        s
    }

    /// Alert content as one line of plain text, cut to `max` bytes of what it shows with `…`.
    fn write_plain(&self, out: &mut String, s: &str, max: usize);

    /// The digest's title as its first block (the title itself is made by the plan).
    fn write_title(&self, out: &mut String, title: &str);

    /// A section's heading: its name and count.
    fn write_section(&self, out: &mut String, section: &Section);

    /// A group's heading at levels 0 and 1: its name (alert content) and count.
    fn write_group(&self, out: &mut String, name: &str, count: u64);

    /// One merged alert at levels 0 and 1.
    fn write_entry(&self, out: &mut String, entry: &Entry);

    /// One group at level 2.
    fn write_group_line(&self, out: &mut String, line: &GroupLine);

    /// The groups a partly listed section leaves out.
    fn write_overflow(&self, out: &mut String, overflow: &Overflow);

    /// The count block's heading (when some section is listed above it) and its lines, each
    /// after a [`Dialect::LINE_BREAK`] but the heading, which follows a blank line.
    fn write_counts(&self, out: &mut String, summary: &Summary);

    /// The link to the digest's page, as a destination made safe for [`Dialect::write_link`].
    fn link_target(&self, link: &str) -> String;

    /// The line with the link to the digest's page (`target` from [`Dialect::link_target`]).
    fn write_link(&self, out: &mut String, target: &str);
}
