//! Overlapping Aho-Corasick search of several texts at once.
//!
//! A DFA search is a chain of dependent table lookups, one per byte; with hundreds of patterns
//! the table is larger than the processor's nearest caches, so each lookup waits on memory.
//! Independent chains do not wait on each other: the searches of one unit (the folded text
//! and the lower-cased text) run in one loop, and each long text is also cut in two halves
//! searched side by side. A half starts `max_pattern_len` bytes early, so when it reaches its
//! first reported byte its state is the state a search from the start of the text would have
//! there, and it reports only the matches that end after the cut. The matches come out as
//! `AhoCorasick::find_overlapping_iter` gives them: ordered by their end, and at one end in
//! the automaton's order.

use aho_corasick::automaton::{Automaton as _, StateID};
use aho_corasick::nfa::noncontiguous;
use aho_corasick::{dfa, Anchored, BuildError, MatchKind, PatternID};

/// A match: `(pattern, end offset)`.
pub(crate) type Found = (u32, u32);

/// Texts are cut in pieces of at least this many bytes, at most `PIECES_MAX` of them.
const PIECE_BYTES_MIN: usize = 512;
const PIECES_MAX: usize = 2;

/// The most searches `overlapping` runs at once.
const SEARCHES_MAX: usize = 2;

/// One compiled set of patterns: a DFA, or a non-contiguous NFA when the DFA cannot be built.
#[derive(Debug, Clone)]
pub(crate) enum Automaton {
    Dfa(dfa::DFA),
    Nfa(noncontiguous::NFA),
}

impl Automaton {
    /// Standard (overlapping) semantics. No prefilter: with one the start state is special,
    /// and with hundreds of patterns no prefilter is selective anyway.
    pub(crate) fn new(patterns: &[String]) -> Result<Automaton, BuildError> {
        dfa::Builder::new()
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(patterns)
            .map(Automaton::Dfa)
            .or_else(|_| {
                noncontiguous::Builder::new()
                    .match_kind(MatchKind::Standard)
                    .prefilter(false)
                    .build(patterns)
                    .map(Automaton::Nfa)
            })
    }

    pub(crate) fn pattern_len(&self, pattern: u32) -> usize {
        let pattern = PatternID::new_unchecked(pattern as usize);
        match self {
            Automaton::Dfa(dfa) => dfa.pattern_len(pattern),
            Automaton::Nfa(nfa) => nfa.pattern_len(pattern),
        }
    }
}

/// One search in progress over `text[at..end]`.
#[derive(Clone, Copy)]
struct Chain<'a> {
    dfa: &'a dfa::DFA,
    text: &'a [u8],
    at: usize,
    end: usize,
    sid: StateID,
    /// Matches ending at or before this offset are not reported (the warm-up of a piece).
    report_after: usize,
    text_index: usize,
    out: usize,
}

/// The overlapping matches of each `(automaton, text)` in the `out` of the same index
/// (cleared first). `pieces` holds a buffer per piece of a text, reused from call to call.
/// At most `SEARCHES_MAX` searches.
pub(crate) fn overlapping<const N: usize>(
    searches: [(&Automaton, &[u8]); N],
    out: &mut [Vec<Found>; N],
    pieces: &mut Vec<Vec<Found>>,
) {
    const { assert!(N <= SEARCHES_MAX) };
    let mut chains: [Option<Chain<'_>>; SEARCHES_MAX * PIECES_MAX] =
        [None; SEARCHES_MAX * PIECES_MAX];
    let mut count = 0;
    for (index, (automaton, text)) in searches.into_iter().enumerate() {
        out[index].clear();
        let dfa = match automaton {
            Automaton::Dfa(dfa) => dfa,
            Automaton::Nfa(nfa) => {
                overlapping_simple(nfa, text, &mut out[index]);
                continue;
            }
        };
        let Ok(start) = dfa.start_state(Anchored::No) else {
            unreachable!("the automata are built for unanchored searches");
        };
        if dfa.is_match(start) {
            push_matches(dfa, start, 0, &mut out[index]);
        }
        let piece_count = (text.len() / PIECE_BYTES_MIN).clamp(1, PIECES_MAX);
        for piece in 0..piece_count {
            let from = piece * text.len() / piece_count;
            let to = (piece + 1) * text.len() / piece_count;
            chains[count] = Some(Chain {
                dfa,
                text,
                at: from.saturating_sub(dfa.max_pattern_len()),
                end: to,
                sid: start,
                report_after: from,
                text_index: index,
                out: count,
            });
            count += 1;
        }
    }
    let chains = &mut chains[..count];
    if pieces.len() < count {
        pieces.resize_with(count, Vec::new);
    }
    for piece in pieces.iter_mut() {
        piece.clear();
    }
    run(chains, pieces);
    for chain in chains.iter().flatten() {
        out[chain.text_index].extend_from_slice(&pieces[chain.out]);
    }
}

/// Runs every chain to its end, four at a time while there are four.
fn run(chains: &mut [Option<Chain<'_>>], outs: &mut [Vec<Found>]) {
    loop {
        let mut active = [0; 4];
        let mut count = 0;
        let mut steps = usize::MAX;
        for (index, chain) in chains.iter().enumerate() {
            let Some(chain) = chain else {
                continue;
            };
            if chain.at < chain.end && count < 4 {
                active[count] = index;
                count += 1;
                steps = steps.min(chain.end - chain.at);
            }
        }
        match count {
            0 => return,
            1 => lockstep([active[0]], chains, outs, steps),
            2 => lockstep([active[0], active[1]], chains, outs, steps),
            3 => lockstep([active[0], active[1], active[2]], chains, outs, steps),
            _ => lockstep(active, chains, outs, steps),
        }
    }
}

/// Advances the chains `which` by `steps` bytes each, in one loop.
#[inline(always)]
fn lockstep<const K: usize>(
    which: [usize; K],
    chains: &mut [Option<Chain<'_>>],
    outs: &mut [Vec<Found>],
    steps: usize,
) {
    let picked: [Chain<'_>; K] =
        which.map(|index| chains[index].expect("an active chain is present"));
    let texts: [&[u8]; K] = picked.map(|chain| &chain.text[chain.at..chain.at + steps]);
    let mut sids: [StateID; K] = picked.map(|chain| chain.sid);
    // Each step reads the same offset of every chain's text.
    #[allow(clippy::needless_range_loop)]
    for step in 0..steps {
        for k in 0..K {
            let dfa = picked[k].dfa;
            let sid = dfa.next_state(Anchored::No, sids[k], texts[k][step]);
            sids[k] = sid;
            if dfa.is_special(sid) {
                let chain = &picked[k];
                report(
                    dfa,
                    sid,
                    chain.at + step + 1,
                    chain.report_after,
                    &mut outs[chain.out],
                );
            }
        }
    }
    for (k, index) in which.into_iter().enumerate() {
        if let Some(chain) = &mut chains[index] {
            chain.sid = sids[k];
            chain.at += steps;
        }
    }
}

/// Records the matches of the special state `sid` reached at offset `end`.
#[cold]
#[inline(never)]
fn report(dfa: &dfa::DFA, sid: StateID, end: usize, report_after: usize, out: &mut Vec<Found>) {
    if dfa.is_match(sid) && end > report_after {
        push_matches(dfa, sid, end, out);
    }
}

fn push_matches(dfa: &dfa::DFA, sid: StateID, end: usize, out: &mut Vec<Found>) {
    for index in 0..dfa.match_len(sid) {
        out.push((dfa.match_pattern(sid, index).as_u32(), end as u32));
    }
}

/// The plain search loop, for the NFA.
fn overlapping_simple(nfa: &noncontiguous::NFA, text: &[u8], out: &mut Vec<Found>) {
    let Ok(mut sid) = nfa.start_state(Anchored::No) else {
        unreachable!("the automata are built for unanchored searches");
    };
    let mut push = |sid: StateID, end: usize| {
        if nfa.is_match(sid) {
            for index in 0..nfa.match_len(sid) {
                out.push((nfa.match_pattern(sid, index).as_u32(), end as u32));
            }
        }
    };
    push(sid, 0);
    for (at, &byte) in text.iter().enumerate() {
        sid = nfa.next_state(Anchored::No, sid, byte);
        if nfa.is_special(sid) {
            push(sid, at + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use aho_corasick::AhoCorasick;

    use super::*;

    /// The matches `AhoCorasick::find_overlapping_iter` gives.
    fn reference(patterns: &[String], text: &[u8]) -> Vec<Found> {
        let automaton = AhoCorasick::new(patterns).expect("patterns");
        automaton
            .find_overlapping_iter(text)
            .map(|found| (found.pattern().as_u32(), found.end() as u32))
            .collect()
    }

    fn patterns(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    /// A text of `bytes` pseudo-random bytes drawn from `alphabet`.
    fn text(alphabet: &[u8], bytes: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..bytes)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                alphabet[(state >> 33) as usize % alphabet.len()]
            })
            .collect()
    }

    #[test]
    fn matches_as_the_overlapping_iterator_gives_them() {
        let first = patterns(&["ab", "abab", "b", "bab", "aaaa", "ba", "abba"]);
        let second = patterns(&["a", "aa", "ba", "bbbb"]);
        let automata = [
            Automaton::new(&first).expect("patterns"),
            Automaton::new(&second).expect("patterns"),
        ];
        // Short and long texts, of equal and of different lengths, so that halves start at
        // every kind of offset and chains end at different times.
        for (length_a, length_b) in [(0, 0), (5, 0), (3000, 17), (4097, 9001), (20_000, 2047)] {
            let text_a = text(b"ab", length_a, length_a as u64);
            let text_b = text(b"ab ", length_b, length_b as u64 + 1);
            let mut out = [Vec::new(), Vec::new()];
            overlapping(
                [(&automata[0], &text_a[..]), (&automata[1], &text_b[..])],
                &mut out,
                &mut Vec::new(),
            );
            assert_eq!(out[0], reference(&first, &text_a), "{length_a}");
            assert_eq!(out[1], reference(&second, &text_b), "{length_b}");
        }
    }

    #[test]
    fn the_nfa_gives_the_same_matches() {
        let items = patterns(&["he", "she", "his", "hers"]);
        let nfa = noncontiguous::Builder::new()
            .match_kind(MatchKind::Standard)
            .build(&items)
            .expect("patterns");
        let haystack = text(b"hers i", 5000, 7);
        let mut out = [Vec::new()];
        overlapping(
            [(&Automaton::Nfa(nfa), &haystack[..])],
            &mut out,
            &mut Vec::new(),
        );
        assert_eq!(out[0], reference(&items, &haystack));
    }
}
