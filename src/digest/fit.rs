//! The budget search, generic over a [`Dialect`]: which configuration of the plan is written,
//! and the proof that it fits.
//!
//! Sizes are [`Size<D>`], the dialect's own measure, and additive, so they are tracked exactly
//! while writing. A configuration's fixed parts (title, headings, count block, link, footer) are
//! measured first; lines are then written until one would not fit, which rejects the
//! configuration at once, so trying one costs about the budget's worth of formatting at most,
//! whatever the batch size, and only what is listed is ever formatted. A partly listed section
//! lists its entries while each fits with the rest line after it: the rest line is reserved at
//! an upper bound (the costlier of a rest line split by label, used only up to
//! [`REST_LINE_BYTES`], and the group split written with the section's total as every count and
//! its five costliest group names) until an entry does not fit with the bound; from there the
//! counts of what remains ([`RestStats`]) are built once and updated entry by entry, and each
//! entry is tried with its exact rest line, a few hundred bytes' worth of entries at most.

use std::cmp::Reverse;

use super::Rendered;
use super::dialect::{Dialect, Size};
use super::plan::{
    ALL_EXTRAS, Choice, Cut, Extras, Levels, OTHER_GROUP, OVERFLOW_GROUP_BYTES, OVERFLOW_GROUPS,
    Overflow, Plan, SECTIONS,
};
use super::rest::{REST_LINE_BYTES, RestStats};
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

    /// Picks and writes the built-in digest: the first configuration of [`Plan::order`] that
    /// fits (a partly listed one when it lists at least one entry, or is the floor); else
    /// counts only, giving up extras as needed; else the bare title heading and footer.
    pub(crate) fn choose(&self) -> (Choice, Out<D>, u64) {
        for (levels, partial) in self.order() {
            let listing = partial.map(|s| (s, None));
            if let Some(r) = self.write(&levels, listing, ALL_EXTRAS) {
                return self.name_more_titles(self.refill(r));
            }
        }
        let last = *self.sequence().last().expect("never empty");
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
            if let Some(r) = self.write(&last, None, extras) {
                return r;
            }
        }
        let mut out = self.start();
        out.push(self.dialect, D::BLOCK_BREAK);
        out.push(self.dialect, &self.footer);
        let choice = Choice {
            levels: last,
            partial: None,
            titles: 0,
            extras: fewer[3],
            bare: true,
        };
        (choice, out, 0)
    }

    /// Fills what a fully listed choice leaves of the budget: while the choice lists every
    /// section it shows and some of them lost a level after the next less severe section was
    /// counted only, that section comes back, at the poorest level of the sections before it
    /// or poorer, fully listed or partly (see [`Plan::refills`]).
    fn refill(&self, mut best: (Choice, Out<D>, u64)) -> (Choice, Out<D>, u64) {
        while best.0.partial.is_none() {
            let found = self
                .refills(&best.0.levels)
                .into_iter()
                .find_map(|(levels, partial)| {
                    self.write(&levels, partial.map(|t| (t, None)), best.0.extras)
                });
            match found {
                Some(r) => best = r,
                None => break,
            }
        }
        best
    }

    /// Spends what the chosen configuration leaves of the budget on titles its group lines do
    /// not name yet ([`Choice::titles`]), as many as [`Plan::more_titles`] finds that fit.
    pub(crate) fn name_more_titles(&self, best: (Choice, Out<D>, u64)) -> (Choice, Out<D>, u64) {
        let (choice, ..) = &best;
        let exactly = choice.partial.map(|(s, n)| (s, Some(n)));
        let budget = self.budget();
        let written = |titles: usize| {
            self.write_titled(&choice.levels, exactly, choice.extras, titles)
                .filter(|(_, out, _)| out.used <= budget)
        };
        let Ok(titles) = self.more_titles(choice, |t| {
            Ok::<_, std::convert::Infallible>(written(t).is_some())
        });
        match titles {
            0 => best,
            t => written(t).expect("it fitted when it was found"),
        }
    }

    /// The most titles beyond their first ones the group lines of `choice` can name and still
    /// fit, by `fits`: doubled from 1 while they fit, then halved back, so that `t` fits and
    /// `t + 1` does not (or is more than there are). Naming a title may cost less than the one
    /// before it (a line that names all its titles loses its count of the others), so this is
    /// the search both the renderer and templates use, which makes their choices the same.
    pub(crate) fn more_titles<E>(
        &self,
        choice: &Choice,
        mut fits: impl FnMut(usize) -> Result<bool, E>,
    ) -> Result<usize, E> {
        let most = self.unnamed_titles(choice);
        let (mut lo, mut hi) = (0usize, 1usize);
        while hi <= most && fits(hi)? {
            lo = hi;
            hi *= 2;
        }
        let mut hi = hi.min(most + 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
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

    /// The title block, with the title's own size counted when the message carries it too.
    fn start(&self) -> Out<D> {
        let text = self.title_block();
        Out {
            used: self.dialect.title_size(&self.title) + self.size(&text),
            text,
        }
    }

    /// Writes the digest of `levels` (footer included). Without `partial` every section is fully
    /// listed, and `None` is returned when that does not fit. With `partial = Some((s, None))`,
    /// section `s` (the least severe listed one) lists its entries in order as long as they fit,
    /// each with the rest line of what then remains, and then that rest line; `None` when it
    /// lists no entry (unless [`Plan::may_list_none`], and then when even the rest line alone
    /// does not fit). With `Some((s, Some(n)))` it lists exactly its first `n` entries whatever
    /// the budget (for tests, with an unlimited budget).
    pub(crate) fn write(
        &self,
        levels: &Levels,
        partial: Option<(usize, Option<usize>)>,
        extras: Extras,
    ) -> Option<(Choice, Out<D>, u64)> {
        self.write_titled(levels, partial, extras, 0)
    }

    /// [`Plan::write`] with group lines naming `titles` more titles ([`Choice::titles`]). The
    /// budget is checked as for none (their cost is not measured beforehand), so the caller
    /// checks the text's size when `titles > 0`.
    pub(crate) fn write_titled(
        &self,
        levels: &Levels,
        partial: Option<(usize, Option<usize>)>,
        extras: Extras,
        titles: usize,
    ) -> Option<(Choice, Out<D>, u64)> {
        let d = self.dialect;
        let mut left = titles;
        let budget = self.budget();
        let block_break = self.size(D::BLOCK_BREAK);
        let listed_sections: Vec<usize> = (0..SECTIONS)
            .filter(|&s| self.nonempty(s) && levels[s] < 3)
            .collect();
        let partial = partial.filter(|&(s, _)| listed_sections.contains(&s));
        let range = self.range_text.as_deref().filter(|_| extras.range);
        let catch_up = self.catch_up_text.as_deref().filter(|_| extras.catch_up);
        let link = self.link.as_deref().filter(|_| extras.link);
        let mut title_block = String::new();
        d.write_title(&mut title_block, &self.title);
        let mut fixed = d.title_size(&self.title) + self.size(&title_block);
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
            fixed += match partial {
                Some((p, _)) if p == s => self.heading_cost(s),
                _ => self.section_cost(s, levels[s])?,
            };
        }
        if fixed > budget {
            return None;
        }

        let mut out = self.start();
        for line in [range, catch_up].into_iter().flatten() {
            out.push(d, D::BLOCK_BREAK);
            out.push(d, line);
        }
        let mut listed = 0u64;
        let mut chosen_partial = None;
        let mut heading = String::new();
        for &s in &listed_sections {
            heading.clear();
            self.push_section_heading(&mut heading, s);
            out.push(d, D::BLOCK_BREAK);
            out.push(d, &heading);
            match partial {
                Some((p, exactly)) if p == s => {
                    let room = budget.saturating_sub(fixed);
                    let (n, alerts) =
                        self.list_partly(&mut out, s, levels[s], room, exactly, &mut left)?;
                    if exactly.is_none() && n == 0 && !self.may_list_none(levels, s) {
                        return None;
                    }
                    chosen_partial = Some((s, n));
                    listed += alerts;
                }
                _ => {
                    self.each_line(s, levels[s], &mut left, &mut |line, _| {
                        out.push(d, line);
                        true
                    });
                    if levels[s] < 2 {
                        listed += self.index.section_total[s];
                    }
                }
            }
        }
        out.push(d, &summary);
        out.push(d, &link_block);
        out.push(d, D::BLOCK_BREAK);
        out.push(d, &self.footer);
        debug_assert!(
            partial.is_some_and(|p| p.1.is_some()) || titles > 0 || out.used <= budget,
            "{} > {budget}",
            out.used
        );
        let choice = Choice {
            levels: *levels,
            partial: chosen_partial,
            titles: titles - left,
            extras,
            bare: false,
        };
        Some((choice, out, listed))
    }

    /// Lists the first entries of section `s` at `level` (alert lines with their group headings
    /// at levels 0 and 1, group lines at level 2) within `room`, then the rest line of the others;
    /// returns the entries and the alerts on alert lines, or `None` when not even the rest line
    /// alone fits. An entry is listed when it and the rest line of what remains after it fit.
    ///
    /// Until the rest line is near, it is reserved at its bound (the costlier of a rest line by
    /// label, which is never used above [`REST_LINE_BYTES`], and by group, see
    /// [`Plan::overflow_bound`]): no counting is needed there. From the first entry that does
    /// not fit with the bound, the counts of what remains are kept ([`RestStats`]) and updated
    /// entry by entry, and each entry is tried with the exact rest line after it.
    fn list_partly(
        &self,
        out: &mut Out<D>,
        s: usize,
        level: u8,
        room: Size<D>,
        exactly: Option<usize>,
        titles: &mut usize,
    ) -> Option<(usize, u64)> {
        let (d, alerts) = (self.dialect, self.alerts);
        let groups = &self.index.sections[s];
        let line_break = self.size(D::LINE_BREAK);
        let bound = line_break + Size::new(REST_LINE_BYTES).max(self.overflow_bound(s));
        let mut used = Size::ZERO;
        let (mut n, mut listed) = (0usize, 0u64);
        let mut stats: Option<RestStats> = None;
        let mut stop: Option<Cut> = None;
        let mut buf = String::new();
        let mut scratch = String::new();
        'groups: for (gpos, &g) in groups.iter().enumerate() {
            let group = &self.index.groups[g];
            let entries = if level == 2 {
                1
            } else {
                self.index.lines(g, self.alerts).len()
            };
            for j in 0..entries {
                buf.clear();
                // The titles a group line names are used up only when it is listed.
                let mut left = *titles;
                if level == 2 {
                    buf.push_str(D::LINE_BREAK);
                    self.push_group_line(&mut buf, g, &mut left);
                } else {
                    if j == 0 {
                        buf.push_str(D::LINE_BREAK);
                        d.write_group(&mut buf, group.name.unwrap_or(OTHER_GROUP), group.total);
                    }
                    let line = &self.index.lines(g, self.alerts)[j];
                    buf.push_str(D::LINE_BREAK);
                    d.write_entry(&mut buf, &self.entry(s, line, level));
                }
                let cost = self.size(&buf);
                let members = if level == 2 {
                    self.index.group_members(g)
                } else {
                    self.index.line_members(g, j, self.alerts)
                };
                let fits = match exactly {
                    Some(k) => n < k,
                    None if stats.is_none() && used + cost + bound <= room => true,
                    None => {
                        let st = stats.get_or_insert_with(|| {
                            let cut = Cut {
                                group: gpos,
                                line: j,
                                listed,
                            };
                            self.rest_stats(s, level, &cut)
                        });
                        for &i in members {
                            st.remove(&alerts[i], gpos);
                        }
                        let after = if st.total() == 0 {
                            Size::ZERO
                        } else {
                            scratch.clear();
                            self.push_rest(&mut scratch, &self.rest_of(s, st));
                            line_break + self.size(&scratch)
                        };
                        let fits = used + cost + after <= room;
                        if !fits {
                            for &i in members {
                                st.add(&alerts[i], gpos);
                            }
                        }
                        fits
                    }
                };
                if !fits {
                    stop = Some(Cut {
                        group: gpos,
                        line: j,
                        listed,
                    });
                    break 'groups;
                }
                out.push(d, &buf);
                used += cost;
                n += 1;
                *titles = left;
                if level < 2 {
                    listed += self.index.lines(g, self.alerts)[j].count;
                }
            }
        }
        if let Some(cut) = stop {
            let stats = stats.unwrap_or_else(|| self.rest_stats(s, level, &cut));
            buf.clear();
            buf.push_str(D::LINE_BREAK);
            self.push_rest(&mut buf, &self.rest_of(s, &stats));
            let cost = self.size(&buf);
            if exactly.is_none() && used + cost > room {
                debug_assert_eq!(n, 0, "an entry was listed without room for the rest line");
                return None;
            }
            out.push(d, &buf);
        }
        Some((n, listed))
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
            self.each_line(s, level, &mut 0, &mut |line, _| {
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
                by: None,
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
    /// each rendered with its own context, the first that fits wins; a partly listed section
    /// lists the longest prefix of its entries that fits (binary search), when that is at least
    /// one entry (or none, at the floor); group lines then name as many more titles as fit
    /// ([`Plan::more_titles`]); a body that does not fit even counted only is cut.
    pub(crate) fn render_templated(&self, t: &Templates) -> Result<Rendered, minijinja::Error> {
        let budget = self.budget();
        let last = *self.sequence().last().expect("never empty");
        // Work bound: a configuration with more entries than this cannot fit if each entry
        // prints at least 4 bytes, and on a flood its context alone would hold 100 000.
        let cap = budget.get() / 4;
        let title = self.dialect.title_size(&self.title);
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
            titles: 0,
            extras: ALL_EXTRAS,
            bare: false,
        };
        // One configuration of the order (or a refill): fully listed as it is; partly listed,
        // the longest prefix of entries that fits, when at least the least one may list does.
        let try_config = |levels: Levels,
                          partial: Option<usize>|
         -> Result<Option<(Choice, Rendered)>, minijinja::Error> {
            let Some(s) = partial else {
                if self.entries(&levels) > cap {
                    return Ok(None);
                }
                return Ok(try_choice(full(levels))?.map(|r| (full(levels), r)));
            };
            let level = levels[s];
            // Invariant: `lo` entries fit (checked first), `hi` entries do not (the full
            // configuration did not fit, or was over the cap).
            let at = |n: usize| Choice {
                partial: Some((s, n)),
                ..full(levels)
            };
            let others = self.entries(&levels) - self.entries_section(s, level);
            let entries = |n: usize| others + self.entries_partial(s, level, n);
            let lo = usize::from(!self.may_list_none(&levels, s));
            let mut hi = self.entry_count(s, level);
            if lo >= hi || entries(lo) > cap {
                return Ok(None);
            }
            let Some(mut best) = try_choice(at(lo))? else {
                return Ok(None);
            };
            let mut lo = lo;
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if entries(mid) > cap {
                    hi = mid;
                    continue;
                }
                match try_choice(at(mid))? {
                    Some(r) => (lo, best) = (mid, r),
                    None => hi = mid,
                }
            }
            Ok(Some((at(lo), best)))
        };
        for (levels, partial) in self.order() {
            let Some(mut best) = try_config(levels, partial)? else {
                continue;
            };
            // The same refill as the renderer's.
            'refill: while best.0.partial.is_none() {
                for (levels, partial) in self.refills(&best.0.levels) {
                    if let Some(found) = try_config(levels, partial)? {
                        best = found;
                        continue 'refill;
                    }
                }
                break;
            }
            // The same search for more titles as the renderer's.
            let (choice, rendered) = best;
            let mut found = None;
            let titles = self.more_titles(&choice, |titles| {
                let mut more = choice;
                more.titles = titles;
                let r = try_choice(more)?;
                let fitted = r.is_some();
                if fitted {
                    found = r.map(|r| (titles, r));
                }
                Ok::<_, minijinja::Error>(fitted)
            })?;
            // The search only ever raises what fits, so the last that fitted is the one found.
            return Ok(match found {
                Some((t, r)) => {
                    debug_assert_eq!(t, titles);
                    r
                }
                None => rendered,
            });
        }
        let choice = full(last);
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
