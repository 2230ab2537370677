//! The budget search, generic over a [`Dialect`]: which configuration of the plan is written,
//! and the proof that it fits.
//!
//! Sizes are [`Size<D>`], the dialect's own measure, and additive, so they are tracked exactly
//! while writing. A configuration's fixed parts (title, headings, count block, link, footer) are
//! measured first; lines are then written until one would not fit, which rejects the
//! configuration at once, so trying one costs about the budget's worth of formatting at most,
//! whatever the batch size, and only what is listed is ever formatted. The overflow line is
//! reserved at an upper bound: the same block written with the section's total as every count
//! and its five costliest group names.

use std::cmp::Reverse;

use super::Rendered;
use super::dialect::{Dialect, Size};
use super::plan::{
    ALL_EXTRAS, Choice, Extras, Levels, OTHER_GROUP, OVERFLOW_GROUP_BYTES, OVERFLOW_GROUPS,
    Overflow, Plan, SECTIONS,
};
use super::template::Templates;
use super::text::ELLIPSIS;

/// A text being built, with its running size (title included).
pub(crate) struct Out<D: Dialect> {
    pub(crate) text: String,
    used: Size<D>,
}

impl<D: Dialect> Out<D> {
    fn push(&mut self, d: &D, s: &str) {
        self.text.push_str(s);
        self.used += d.size(s);
    }
}

impl<D: Dialect> Plan<'_, D> {
    fn size(&self, s: &str) -> Size<D> {
        self.dialect.size(s)
    }

    fn budget(&self) -> Size<D> {
        self.dialect.budget(self.spec.max_bytes)
    }

    /// Picks and writes the built-in digest: the first configuration in degradation order that
    /// fits fully listed; else the most severe section at level 2 with an overflow line; else
    /// counts only, giving up extras as needed; else the bare title heading and footer.
    pub(crate) fn choose(&self) -> (Choice, Out<D>, u64) {
        let seq = self.sequence();
        let (last, richer) = seq.split_last().expect("never empty");
        for levels in richer {
            if let Some(r) = self.write(levels, None, ALL_EXTRAS) {
                return r;
            }
        }
        if let (Some(floor), Some(s)) = (richer.last(), self.first_section())
            && let Some(r) = self.write(floor, Some(s), ALL_EXTRAS)
        {
            return r;
        }
        let fewer = [
            ALL_EXTRAS,
            Extras {
                link: false,
                ..ALL_EXTRAS
            },
            Extras {
                range: true,
                catch_up: false,
                link: false,
            },
            Extras {
                range: false,
                catch_up: false,
                link: false,
            },
        ];
        for extras in fewer {
            if let Some(r) = self.write(last, None, extras) {
                return r;
            }
        }
        let mut out = self.start();
        out.push(self.dialect, D::BLOCK_BREAK);
        out.push(self.dialect, &self.footer);
        let choice = Choice {
            levels: *last,
            partial: None,
            extras: fewer[3],
            bare: true,
        };
        (choice, out, 0)
    }

    /// The built-in digest of every configuration that fits fully listed, and the chosen one,
    /// each with its text (for comparing the built-in template with the renderer).
    #[cfg(test)]
    pub(crate) fn written(&self) -> Vec<(Choice, String)> {
        let mut all: Vec<(Choice, String)> = self
            .sequence()
            .iter()
            .filter_map(|l| self.write(l, None, ALL_EXTRAS))
            .map(|(c, out, _)| (c, out.text))
            .collect();
        let (c, out, _) = self.choose();
        all.push((c, out.text));
        all
    }

    /// The title block, with the title's own size counted: the message carries it too.
    fn start(&self) -> Out<D> {
        let text = self.title_block();
        Out {
            used: self.size(&self.title) + self.size(&text),
            text,
        }
    }

    /// Writes the digest of `levels` (footer included). Without `overflow` every section is fully
    /// listed, and `None` is returned when that does not fit. With `overflow = Some(s)`, section
    /// `s` (at level 2, the only one listed) lists the prefix of its groups that fits, then an
    /// overflow line; `None` if even the overflow line alone does not fit.
    pub(crate) fn write(
        &self,
        levels: &Levels,
        overflow: Option<usize>,
        extras: Extras,
    ) -> Option<(Choice, Out<D>, u64)> {
        let d = self.dialect;
        let budget = self.budget();
        let block_break = self.size(D::BLOCK_BREAK);
        let listed_sections: Vec<usize> = (0..SECTIONS)
            .filter(|&s| self.nonempty(s) && levels[s] < 3)
            .collect();
        let range = self.range_text.as_deref().filter(|_| extras.range);
        let catch_up = self.catch_up_text.as_deref().filter(|_| extras.catch_up);
        let link = self.link.as_deref().filter(|_| extras.link);
        let mut title_block = String::new();
        d.write_title(&mut title_block, &self.title);
        let mut fixed = self.size(&self.title) + self.size(&title_block);
        for line in [range, catch_up].into_iter().flatten() {
            fixed += block_break + self.size(line);
        }
        let mut summary = String::new();
        self.push_summary(&mut summary, levels);
        fixed += self.size(&summary);
        let mut link_block = String::new();
        if let Some(l) = link {
            link_block.push_str(D::BLOCK_BREAK);
            d.write_link(&mut link_block, l);
        }
        fixed += self.size(&link_block);
        fixed += block_break + self.size(&self.footer);
        // Fully listed sections are measured (each once per plan) before anything is written.
        for &s in &listed_sections {
            fixed += if overflow == Some(s) {
                self.heading_cost(s)
            } else {
                self.section_cost(s, levels[s])?
            };
        }
        if fixed > budget {
            return None;
        }
        // The overflow line is reserved at its bound until the last group is listed.
        let line_break = self.size(D::LINE_BREAK);
        let reserve = match overflow {
            Some(s) => {
                // Listing nothing must fit; beyond that, the bound is what greedy listing keeps.
                let mut none_listed = String::from(D::LINE_BREAK);
                self.push_overflow(&mut none_listed, &self.index.sections[s]);
                if fixed + self.size(&none_listed) > budget {
                    return None;
                }
                line_break + self.overflow_bound(s)
            }
            None => Size::ZERO,
        };

        let mut out = self.start();
        for line in [range, catch_up].into_iter().flatten() {
            out.push(d, D::BLOCK_BREAK);
            out.push(d, line);
        }
        let mut listed = 0u64;
        let mut partial = None;
        let mut heading = String::new();
        for &s in &listed_sections {
            heading.clear();
            self.push_section_heading(&mut heading, s);
            out.push(d, D::BLOCK_BREAK);
            out.push(d, &heading);
            let groups = &self.index.sections[s];
            if overflow == Some(s) {
                // Greedy: a group line goes in only with room for the overflow line after it,
                // unless it is the last.
                let mut lines = Size::ZERO;
                let shown = self.each_line(s, levels[s], &mut |line, last| {
                    let keep = if last { Size::ZERO } else { reserve };
                    let cost = self.size(line);
                    if fixed + lines + cost + keep > budget {
                        return false;
                    }
                    lines += cost;
                    out.push(d, line);
                    true
                });
                if shown < groups.len() {
                    partial = Some((s, shown));
                    let mut buf = String::from(D::LINE_BREAK);
                    self.push_overflow(&mut buf, &groups[shown..]);
                    debug_assert!(self.size(&buf) <= reserve, "overflow over its bound: {buf}");
                    out.push(d, &buf);
                }
            } else {
                self.each_line(s, levels[s], &mut |line, _| {
                    out.push(d, line);
                    true
                });
                if levels[s] < 2 {
                    listed += self.index.section_total[s];
                }
            }
        }
        out.push(d, &summary);
        out.push(d, &link_block);
        out.push(d, D::BLOCK_BREAK);
        out.push(d, &self.footer);
        debug_assert!(out.used <= budget, "{} > {budget}", out.used);
        let choice = Choice {
            levels: *levels,
            partial,
            extras,
            bare: false,
        };
        Some((choice, out, listed))
    }

    /// A section's heading with the break before it.
    fn heading_cost(&self, s: usize) -> Size<D> {
        let mut heading = String::new();
        self.push_section_heading(&mut heading, s);
        self.size(D::BLOCK_BREAK) + self.size(&heading)
    }

    /// The exact cost of section `s` fully listed at `level` (heading included), or `None` when
    /// it alone is over the budget. A section's lines do not depend on the other sections, so
    /// each (section, level) is formatted once per plan however many configurations use it, and
    /// measuring stops at the budget: a flood costs about the budget's worth of formatting here.
    fn section_cost(&self, s: usize, level: u8) -> Option<Size<D>> {
        let memo = &self.section_costs[s][usize::from(level)];
        if let Some(known) = memo.get() {
            return known;
        }
        let budget = self.budget();
        let mut total = self.heading_cost(s);
        let mut over = total > budget;
        if !over {
            self.each_line(s, level, &mut |line, _| {
                total += self.size(line);
                over = total > budget;
                !over
            });
        }
        let known = (!over).then_some(total);
        memo.set(Some(known));
        known
    }

    /// An upper bound on the cost of section `s`'s overflow line (without the break before
    /// it), whatever prefix of its groups is listed: the line written with the section total as
    /// every count (no count is larger) and the five group names that cost the most.
    fn overflow_bound(&self, s: usize) -> Size<D> {
        let section = &self.index.sections[s];
        let groups = &self.index.groups;
        let total = self.index.section_total[s];
        let mut scratch = String::new();
        let mut names: Vec<(Size<D>, &str)> = section
            .iter()
            .map(|&g| {
                let name = groups[g].name.unwrap_or(OTHER_GROUP);
                scratch.clear();
                self.dialect
                    .write_plain(&mut scratch, name, OVERFLOW_GROUP_BYTES);
                (self.size(&scratch), name)
            })
            .collect();
        names.sort_unstable_by_key(|&(n, _)| Reverse(n));
        let mut named = [("", 0u64); OVERFLOW_GROUPS];
        let shown = section.len().min(OVERFLOW_GROUPS);
        for (slot, &(_, name)) in named.iter_mut().zip(&names) {
            *slot = (name, total);
        }
        let more = section.len() > OVERFLOW_GROUPS;
        let mut worst = String::new();
        self.dialect.write_overflow(
            &mut worst,
            &Overflow {
                count: total,
                groups: &named[..shown],
                // Plural, with as many digits as any count of groups left over can have.
                other_groups: if more { section.len() as u64 } else { 0 },
                other_count: total,
            },
        );
        self.size(&worst)
    }

    // ---- Templates ----

    /// Renders with a custom body template: the same order of configurations as [`Plan::choose`],
    /// each rendered with its own context, the first that fits wins; the level-2 floor lists the
    /// longest prefix of groups that fits (binary search); a body that does not fit even counted
    /// only is cut.
    pub(crate) fn render_templated(&self, t: &Templates) -> Result<Rendered, minijinja::Error> {
        let budget = self.budget();
        let seq = self.sequence();
        let (last, richer) = seq.split_last().expect("never empty");
        // Work bound: a configuration with more entries than this cannot fit if each entry
        // prints at least 4 bytes, and on a flood its context alone would hold 100 000.
        let cap = budget.get() / 4;
        let title = self.size(&self.title);
        let tail = self.size(D::BLOCK_BREAK) + self.size(&self.footer);
        // A body longer than this cannot fit, so its rendering is abandoned there: a
        // configuration that does not fit costs about the budget in output, not all of it.
        let limit = budget.saturating_sub(title + tail).get();
        let fits = |text: &str| self.dialect.message_size(&self.title, text) <= budget;
        let try_choice = |choice: Choice| -> Result<Option<Rendered>, minijinja::Error> {
            let Some(body) = t.render_body_within(&self.context(&choice), limit)? else {
                return Ok(None);
            };
            let text = self.with_footer(&body);
            Ok(fits(&text).then(|| self.finish(text, self.listed(&choice), &choice)))
        };
        let full = |levels: Levels| Choice {
            levels,
            partial: None,
            extras: ALL_EXTRAS,
            bare: false,
        };
        for levels in richer {
            if self.entries(levels) > cap {
                continue;
            }
            if let Some(r) = try_choice(full(*levels))? {
                return Ok(r);
            }
        }
        if let (Some(floor), Some(s)) = (richer.last(), self.first_section()) {
            // Invariant: `lo` groups fit (checked first), `hi` groups do not (the full floor
            // did not fit, or was over the cap).
            let partial = |n: usize| Choice {
                partial: Some((s, n)),
                ..full(*floor)
            };
            let (mut lo, mut hi) = (0, self.index.sections[s].len());
            if let Some(mut best) = try_choice(partial(0))? {
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if self.entries_partial(s, mid) > cap {
                        hi = mid;
                        continue;
                    }
                    match try_choice(partial(mid))? {
                        Some(r) => (lo, best) = (mid, r),
                        None => hi = mid,
                    }
                }
                return Ok(best);
            }
        }
        let choice = full(*last);
        let body = t.render_body(&self.context(&choice))?;
        let text = self.with_footer(&body);
        if fits(&text) {
            return Ok(self.finish(text, self.listed(&choice), &choice));
        }
        // A verbose template: cut its body so that the footer still fits.
        let body = self.keyworded(&body);
        let room = budget.saturating_sub(title + tail);
        let ellipsis = self.size(ELLIPSIS);
        let cut = if self.size(&body) <= room {
            body.as_str()
        } else {
            self.dialect.cut(&body, room.saturating_sub(ellipsis))
        };
        let mut text = String::with_capacity(cut.len() + 8 + self.footer.len());
        text.push_str(cut.trim_end());
        if cut.len() < body.len() && room >= ellipsis {
            text.push_str(ELLIPSIS);
        }
        text.push_str(D::BLOCK_BREAK);
        text.push_str(&self.footer);
        Ok(self.finish(text, self.listed(&choice), &choice))
    }
}
