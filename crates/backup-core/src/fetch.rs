//! Ranged, merged, parallel reads of pack frames, ahead of the threads that need them: how a
//! restore reads a remote store (issue 13).
//!
//! A restore knows, once it has planned, every frame it needs and in which order (files in
//! order, each file's chunks in order). [`Prefetch`] turns that list into ranged GETs close to
//! the way a pack-at-a-time restorer would, while the restore threads still write files one
//! after another: the frames of a pack first needed within [`HORIZON`] bytes of each other are
//! sorted by offset and merged into ranges when the gap between them is at most [`MERGE_GAP`]
//! (reading a little unused data costs less than a request) and the range stays under
//! [`MAX_RANGE`], whatever order the files need them in (a backup fills several packs at once,
//! and files restored one after another alternate between them). Ranges are fetched in the
//! order their first frame is needed, [`IN_FLIGHT`] at once, by a task on the runtime.
//!
//! Memory is bounded: a range takes its size from a budget of [`WINDOW`] bytes before it is
//! fetched; when it arrives its frames are copied out and each keeps its own size of the budget
//! until it is taken, the gaps' share is given back at once. When a range a thread waits for
//! does not fit, frames that arrived early and are needed later than it are dropped, the one
//! needed last first: each of those is read again, directly, when its turn comes. Since every frame needed
//! before the next range is either taken or due to be, this never waits forever (and a frame
//! that no thread will take, its file given up, is dropped after [`STALL`]).
//!
//! A frame needed again (a blob group or blob shared by files restored apart) is served from a
//! [`REPEAT_CACHE`] of recently taken frames the plan needs more than once. One that fell out
//! of it, or one dropped or not brought by a failed fetch, is not served here: the caller reads
//! it directly, with the store's own retries and error.
//!
//! On the toolchain benchmark (1.2 GiB, 37 packs of about 8 MiB) a full restore from S3 made
//! 1,612 requests when a frame merged only with the range before it and repeats were read
//! directly, 608 with a lookahead of a few ranges and the repeat cache, and 291 now (about 85
//! of them for trees); moto's CPU time for the restore fell from 1.6 s to 0.9 s, restic's
//! being 0.3 s (`benches/results/backup-remote.md`).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::format::{self, ChunkId, Tree};
use crate::repo::Repository;

/// Frames of a pack at most this far apart are read in one range: a request costs more than
/// a megabyte read (on moto and s3s-fs each ranged GET reads or copies the whole object; on S3
/// it is a round trip): on the toolchain benchmark about a third more bytes are read than
/// needed, in half the ranges a 256 KiB gap gives.
pub(crate) const MERGE_GAP: u64 = 1024 * 1024;

/// A merged range grows no larger than this (a single larger frame is read alone): a little
/// more than a default pack (8 MiB), so a restore that needs a whole pack reads it in one
/// request (servers such as moto copy the whole object for every ranged GET).
pub(crate) const MAX_RANGE: u64 = 12 * 1024 * 1024;

/// Ranges fetched at once.
pub(crate) const IN_FLIGHT: usize = 16;

/// Bytes reserved for ranges in flight and frames fetched but not yet taken, at most (a single
/// larger range is let through alone).
pub(crate) const WINDOW: u64 = 96 * 1024 * 1024;

/// A range holds only frames first needed within this many bytes (of all frames needed, in
/// order) of each other: a pack's frames are needed all through a restore, and a range over all
/// of them would hold most of its frames for long, leaving the window no room to fetch ahead
/// (each range was then fetched only once a thread waited for it: 27 s instead of 2 on a
/// server answering a request in tens of milliseconds).
pub(crate) const HORIZON: u64 = WINDOW / 2;

/// Bytes of frames needed more than once kept after their first use (see [`RepeatCache`]).
pub(crate) const REPEAT_CACHE: usize = 16 * 1024 * 1024;

/// How long the fetch task waits for the budget, with nothing else to wait for, before it
/// drops frames needed earlier than the next range (frames of a file that was given up).
pub(crate) const STALL: Duration = Duration::from_millis(200);

/// One frame: its pack, offset and length.
pub(crate) type FrameRef = (Arc<str>, u32, u32);

/// A frame of the plan.
#[derive(Debug)]
struct Planned {
    /// Its place in the order frames are first needed.
    rank: usize,
    length: u32,
    /// How many times the plan needs it.
    needs: u32,
}

/// The frames of a plan by (pack, offset).
type PlannedFrames = HashMap<(Arc<str>, u32), Planned>;

/// One merged range of a pack: its frames (ranks and offsets) and the first rank among them.
#[derive(Debug, PartialEq)]
struct Span {
    pack: Arc<str>,
    range: Range<u64>,
    frames: Vec<(usize, u32)>,
    first: usize,
}

impl Span {
    fn len(&self) -> u64 {
        self.range.end - self.range.start
    }
}

/// Plans the ranges for `frames` (in need order; repeats are counted): each pack's frames by
/// offset, merged when at most `gap` apart and within [`MAX_RANGE`], among the frames of the
/// pack needed within `horizon` bytes of each other; ranges in the order of their first frame.
fn plan(
    frames: impl IntoIterator<Item = FrameRef>,
    gap: u64,
    horizon: u64,
) -> (Vec<Span>, PlannedFrames) {
    let mut planned: PlannedFrames = HashMap::new();
    // Frames by pack and epoch: a pack's frames first needed within `horizon` bytes (of the
    // frames needed, in order) of the first of its epoch share one.
    type Epoch = (Arc<str>, usize);
    let mut by_pack: HashMap<Epoch, Vec<(u32, u32, usize)>> = HashMap::new();
    let mut epochs: HashMap<Arc<str>, (usize, u64)> = HashMap::new();
    let mut needed: u64 = 0;
    for (pack, offset, length) in frames {
        let rank = planned.len();
        let entry = planned.entry((pack.clone(), offset)).or_insert(Planned {
            rank,
            length,
            needs: 0,
        });
        entry.needs = entry.needs.saturating_add(1);
        if entry.needs == 1 {
            let epoch = epochs.entry(pack.clone()).or_insert((0, needed));
            if needed - epoch.1 >= horizon {
                *epoch = (epoch.0 + 1, needed);
            }
            by_pack
                .entry((pack, epoch.0))
                .or_default()
                .push((offset, length, rank));
            needed += u64::from(length);
        }
    }
    let mut spans = Vec::new();
    for ((pack, _), mut frames) in by_pack {
        frames.sort_unstable();
        let mut open: Option<Span> = None;
        for (offset, length, rank) in frames {
            let (start, end) = (u64::from(offset), u64::from(offset) + u64::from(length));
            match &mut open {
                Some(span)
                    if start <= span.range.end + gap && end - span.range.start <= MAX_RANGE =>
                {
                    span.range.end = span.range.end.max(end);
                    span.frames.push((rank, offset));
                    span.first = span.first.min(rank);
                }
                _ => {
                    spans.extend(open.take());
                    open = Some(Span {
                        pack: pack.clone(),
                        range: start..end,
                        frames: vec![(rank, offset)],
                        first: rank,
                    });
                }
            }
        }
        spans.extend(open);
    }
    spans.sort_unstable_by_key(|s| s.first);
    (spans, planned)
}

/// Frames that the plan needs again after their first use, most recently used last, within
/// [`REPEAT_CACHE`] bytes: files sharing a blob group (small files) or a blob are often
/// restored far apart, after the restorer's few decoded groups moved on, and each such need
/// would otherwise be one more request, made by a restore thread while it waits (on moto one
/// that copies the whole pack).
#[derive(Default)]
struct RepeatCache {
    frames: VecDeque<((Arc<str>, u32), Bytes)>,
    bytes: usize,
}

impl RepeatCache {
    fn get(&mut self, key: &(Arc<str>, u32)) -> Option<Bytes> {
        let at = self.frames.iter().position(|(k, _)| k == key)?;
        let entry = self.frames.remove(at)?;
        let frame = entry.1.clone();
        self.frames.push_back(entry);
        Some(frame)
    }

    fn put(&mut self, key: (Arc<str>, u32), frame: Bytes) {
        if frame.len() > REPEAT_CACHE {
            return;
        }
        self.bytes += frame.len();
        self.frames.push_back((key, frame));
        while self.bytes > REPEAT_CACHE {
            let Some((_, old)) = self.frames.pop_front() else {
                break;
            };
            self.bytes -= old.len();
        }
    }
}

/// Where a planned frame is.
enum FrameState {
    /// Its range is not here yet.
    Waiting,
    /// Fetched, a copy of its own, holding its size of the budget.
    Ready(Bytes),
    /// Taken, skipped, dropped, or not brought by a failed fetch.
    Gone,
}

/// What the restore threads and the fetch task share, under one lock.
struct State {
    /// By rank.
    frames: Vec<FrameState>,
    /// Ranks of the `Ready` frames (the ones that can be dropped).
    ready: BTreeSet<usize>,
    /// Ranks restore threads wait for, and how many threads wait for each.
    waiting: std::collections::BTreeMap<usize, usize>,
    /// Budget left, in bytes (below zero while a range larger than the window is held).
    free: i64,
    /// The whole budget.
    window: i64,
    cancelled: bool,
    repeats: RepeatCache,
}

struct Shared {
    planned: PlannedFrames,
    state: Mutex<State>,
    /// Wakes the restore threads: a range arrived, or the prefetch was cancelled.
    arrived: Condvar,
    /// Wakes the fetch task: budget was given back.
    freed: Notify,
}

impl State {
    /// Marks a `Ready` frame `Gone` and gives back its budget; returns its bytes.
    fn release(&mut self, rank: usize, length: u32) -> Option<Bytes> {
        match std::mem::replace(&mut self.frames[rank], FrameState::Gone) {
            FrameState::Ready(bytes) => {
                self.ready.remove(&rank);
                self.free += i64::from(length);
                Some(bytes)
            }
            other => {
                self.frames[rank] = other;
                None
            }
        }
    }
}

/// Frames fetched ahead in merged ranges; see the [module docs](self).
pub(crate) struct Prefetch {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Prefetch {
    /// Starts fetching `frames` (in the order they will be needed) from `store` on `handle`.
    pub(crate) fn start(
        store: Arc<dyn ObjectStore>,
        frames: impl IntoIterator<Item = FrameRef>,
        handle: &tokio::runtime::Handle,
    ) -> Prefetch {
        Self::start_with_window(store, frames, handle, WINDOW)
    }

    /// [`Prefetch::start`] with a budget of `window` bytes.
    fn start_with_window(
        store: Arc<dyn ObjectStore>,
        frames: impl IntoIterator<Item = FrameRef>,
        handle: &tokio::runtime::Handle,
        window: u64,
    ) -> Prefetch {
        let (spans, planned) = plan(frames, MERGE_GAP, HORIZON);
        let lengths: Vec<u32> = {
            let mut lengths = vec![0; planned.len()];
            for p in planned.values() {
                lengths[p.rank] = p.length;
            }
            lengths
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                frames: (0..planned.len()).map(|_| FrameState::Waiting).collect(),
                ready: BTreeSet::new(),
                waiting: std::collections::BTreeMap::new(),
                free: window as i64,
                window: window as i64,
                cancelled: false,
                repeats: RepeatCache::default(),
            }),
            planned,
            arrived: Condvar::new(),
            freed: Notify::new(),
        });
        let task = handle.spawn(fetch_all(store, spans, lengths, shared.clone()));
        Prefetch { shared, task }
    }

    /// The sealed frame at `offset` of `pack`, waiting for its range if need be; `None` when
    /// it is not served here (see the module docs): read it directly then. A frame is
    /// served from its range once, then from the repeat cache while it is there.
    pub(crate) fn take(&self, pack: &Arc<str>, offset: u32, length: u32) -> Option<Bytes> {
        let key = (pack.clone(), offset);
        let planned = self.shared.planned.get(&key)?;
        if planned.length != length {
            return None;
        }
        let mut state = self.shared.state.lock().ok()?;
        loop {
            if state.cancelled {
                return None;
            }
            match &state.frames[planned.rank] {
                FrameState::Waiting => {
                    // The fetch task may drop frames for the range of a frame a thread waits
                    // for, and only then: fetching further ahead waits for the budget.
                    *state.waiting.entry(planned.rank).or_default() += 1;
                    self.shared.freed.notify_one();
                    state = self.shared.arrived.wait(state).ok()?;
                    if let Some(n) = state.waiting.get_mut(&planned.rank) {
                        *n -= 1;
                        if *n == 0 {
                            state.waiting.remove(&planned.rank);
                        }
                    }
                }
                FrameState::Gone => return state.repeats.get(&key),
                FrameState::Ready(_) => {
                    let frame = state.release(planned.rank, planned.length)?;
                    if planned.needs > 1 {
                        state.repeats.put(key, frame.clone());
                    }
                    drop(state);
                    self.shared.freed.notify_one();
                    return Some(frame);
                }
            }
        }
    }

    /// Marks the frame at `offset` of `pack` as not needed here (its file was already
    /// restored, or is given up), so its budget is given back.
    pub(crate) fn skip(&self, pack: &Arc<str>, offset: u32) {
        let key = (pack.clone(), offset);
        let Some(planned) = self.shared.planned.get(&key) else {
            return;
        };
        let Ok(mut state) = self.shared.state.lock() else {
            return;
        };
        match &state.frames[planned.rank] {
            FrameState::Waiting => state.frames[planned.rank] = FrameState::Gone,
            FrameState::Ready(_) => {
                if let Some(frame) = state.release(planned.rank, planned.length)
                    && planned.needs > 1
                {
                    state.repeats.put(key, frame);
                }
                drop(state);
                self.shared.freed.notify_one();
            }
            FrameState::Gone => {}
        }
    }

    /// Wakes every thread waiting for a range and serves nothing more: called when a restore
    /// thread stops on an error.
    pub(crate) fn cancel(&self) {
        self.task.abort();
        if let Ok(mut state) = self.shared.state.lock() {
            state.cancelled = true;
        }
        self.shared.arrived.notify_all();
    }
}

/// Reserves `span`'s size of the budget. When it does not fit and a thread waits for one of
/// its frames (or for a frame after it), `Ready` frames needed after its first frame are
/// dropped, the one needed last first; when `stalled`, any `Ready` frame.
fn reserve(state: &mut State, span: &Span, lengths: &[u32], stalled: bool) -> bool {
    let need = (span.len() as i64).min(state.window);
    let needed_now = state
        .waiting
        .keys()
        .next()
        .is_some_and(|&rank| rank >= span.first);
    while state.free < need {
        let victim = match state.ready.last() {
            Some(&rank) if needed_now && rank > span.first => rank,
            _ if stalled => match state.ready.first() {
                Some(&rank) => rank,
                None => return false,
            },
            _ => return false,
        };
        state.release(victim, lengths[victim]);
    }
    state.free -= span.len() as i64;
    true
}

/// Copies the frames of `span` out of its fetched `bytes` (or marks them `Gone` if the fetch
/// failed or came back short) and gives back the rest of its budget.
fn deliver(state: &mut State, span: &Span, lengths: &[u32], bytes: Option<Bytes>) {
    let mut kept = 0i64;
    for &(rank, offset) in &span.frames {
        if !matches!(state.frames[rank], FrameState::Waiting) {
            continue;
        }
        let from = (u64::from(offset) - span.range.start) as usize;
        let frame = bytes
            .as_ref()
            .and_then(|b| b.get(from..from + lengths[rank] as usize));
        state.frames[rank] = match frame {
            Some(frame) => {
                kept += i64::from(lengths[rank]);
                state.ready.insert(rank);
                FrameState::Ready(Bytes::copy_from_slice(frame))
            }
            None => FrameState::Gone,
        };
    }
    state.free += span.len() as i64 - kept;
}

/// The fetch task: ranges in order of their first frame, [`IN_FLIGHT`] at once, each after
/// its budget is reserved.
async fn fetch_all(
    store: Arc<dyn ObjectStore>,
    spans: Vec<Span>,
    lengths: Vec<u32>,
    shared: Arc<Shared>,
) {
    let mut next = 0;
    let mut stalled = false;
    let mut in_flight = FuturesUnordered::new();
    loop {
        while next < spans.len() && in_flight.len() < IN_FLIGHT {
            let reserved = match shared.state.lock() {
                Ok(mut state) if !state.cancelled => {
                    reserve(&mut state, &spans[next], &lengths, stalled)
                }
                _ => return,
            };
            if !reserved {
                break;
            }
            stalled = false;
            let span = &spans[next];
            let (store, path, range) = (
                store.clone(),
                ObjectPath::from(format::pack_path(&span.pack)),
                span.range.clone(),
            );
            in_flight.push(async move {
                let bytes = store.get_range(&path, range.clone()).await.ok();
                (
                    next,
                    bytes.filter(|b| b.len() as u64 == range.end - range.start),
                )
            });
            next += 1;
        }
        if next == spans.len() && in_flight.is_empty() {
            return;
        }
        tokio::select! {
            Some((i, bytes)) = in_flight.next(), if !in_flight.is_empty() => {
                match shared.state.lock() {
                    Ok(mut state) => deliver(&mut state, &spans[i], &lengths, bytes),
                    Err(_) => return,
                }
                shared.arrived.notify_all();
            }
            _ = shared.freed.notified() => {}
            _ = tokio::time::sleep(STALL), if in_flight.is_empty() => stalled = true,
        }
    }
}

/// Ranges of trees read at once by [`load_trees`].
const TREE_RANGES_IN_FLIGHT: usize = 16;

/// Trees of a pack at most this far apart are read in one range by [`load_trees`]: trees sit
/// among data in packs, and a request costs more than the bytes between them (on moto every
/// ranged GET copies the whole object).
const TREE_GAP: u64 = 1024 * 1024;

/// Loads the trees `ids` from a remote store, the trees of a pack close to each other in one
/// ranged GET, several at once.
pub(crate) async fn load_trees(
    repo: &Repository,
    ids: Vec<ChunkId>,
) -> Result<Vec<(ChunkId, Tree)>> {
    use futures::TryStreamExt;
    let mut wanted = Vec::with_capacity(ids.len());
    for id in ids {
        wanted.push((repo.locate(&id)?, id));
    }
    wanted.sort_by(|(a, _), (b, _)| (&a.pack, a.offset).cmp(&(&b.pack, b.offset)));
    let frames = wanted
        .iter()
        .map(|(l, _)| (l.pack.clone(), l.offset, l.length));
    let (spans, planned) = plan(frames, TREE_GAP, u64::MAX);
    let mut span_of = vec![0; planned.len()];
    for (i, span) in spans.iter().enumerate() {
        for &(rank, _) in &span.frames {
            span_of[rank] = i;
        }
    }
    let fetched: Vec<(usize, Bytes)> = futures::stream::iter(spans.iter().enumerate())
        .map(|(i, span)| async move {
            let path = format::pack_path(&span.pack);
            let bytes = repo
                .store
                .get_range(&ObjectPath::from(path.as_str()), span.range.clone())
                .await
                .map_err(|e| match e {
                    object_store::Error::NotFound { .. } => Error::NotFound {
                        what: format!("pack {path} (indexed, but missing from the store)"),
                    },
                    e => Error::store(&path, e),
                })?;
            Ok::<_, Error>((i, bytes))
        })
        .buffer_unordered(TREE_RANGES_IN_FLIGHT)
        .try_collect()
        .await?;
    let mut by_span: Vec<Bytes> = vec![Bytes::new(); spans.len()];
    for (i, bytes) in fetched {
        by_span[i] = bytes;
    }
    wanted
        .into_iter()
        .map(|(loc, id)| {
            let path = format::pack_path(&loc.pack);
            let span = planned
                .get(&(loc.pack.clone(), loc.offset))
                .map(|p| span_of[p.rank]);
            let sealed = span.and_then(|i| {
                let from = (u64::from(loc.offset) - spans[i].range.start) as usize;
                by_span[i].get(from..from + loc.length as usize)
            });
            let sealed = sealed.ok_or_else(|| {
                Error::corrupt(&path, format!("blob {id} lies past the pack's end"))
            })?;
            let bytes = repo.decode_blob(&id, &loc, &path, sealed)?;
            Ok((id, format::decode(&format!("tree {id}"), &bytes)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    fn f(pack: &str, offset: u32, length: u32) -> FrameRef {
        (Arc::from(pack), offset, length)
    }

    fn ranges(spans: &[Span]) -> Vec<(&str, Range<u64>, usize)> {
        spans
            .iter()
            .map(|s| (&*s.pack, s.range.clone(), s.frames.len()))
            .collect()
    }

    #[test]
    fn frames_of_a_pack_merge_by_offset_whatever_order_they_are_needed_in() {
        let gap = MERGE_GAP as u32;
        let (spans, planned) = plan(
            [
                f("a", 150 + gap, 10), // first needed, but after the others in the pack
                f("b", 0, 10),         // another pack
                f("a", 100, 50),
                f("a", 0, 100),
                f("a", 0, 100),                // a repeat: counted, not planned again
                f("a", 500 + 3 * gap + 1, 10), // more than MERGE_GAP after: a new range
                f("c", 0, MAX_RANGE as u32 - 10),
                f("c", MAX_RANGE as u32 - 10, 20), // would grow past MAX_RANGE
            ],
            MERGE_GAP,
            u64::MAX,
        );
        let g = MERGE_GAP;
        assert_eq!(
            ranges(&spans),
            [
                ("a", 0..160 + g, 3),
                ("b", 0..10, 1),
                ("a", 501 + 3 * g..511 + 3 * g, 1),
                ("c", 0..MAX_RANGE - 10, 1),
                ("c", MAX_RANGE - 10..MAX_RANGE + 10, 1),
            ]
        );
        assert_eq!(
            spans.iter().map(|s| s.first).collect::<Vec<_>>(),
            [0, 1, 4, 5, 6]
        );
        assert_eq!(planned.len(), 7);
        assert_eq!(planned[&(Arc::from("a"), 0)].needs, 2);
    }

    #[test]
    fn packs_filled_side_by_side_are_read_in_one_range_each() {
        // Files restored one after another alternate between three packs a backup filled at
        // once, each pack's frames in a shuffled order: each pack is one range.
        let frames = (0..30u32).map(|i| {
            let pack = ["a", "b", "c"][i as usize % 3];
            f(pack, ((i / 3) * 7 % 10) * 100, 100)
        });
        let (spans, _) = plan(frames, MERGE_GAP, u64::MAX);
        assert_eq!(
            ranges(&spans),
            [("a", 0..1000, 10), ("b", 0..1000, 10), ("c", 0..1000, 10)]
        );
    }

    #[test]
    fn frames_of_a_pack_needed_far_apart_are_read_in_separate_ranges() {
        let frames = [f("a", 0, 100), f("b", 0, 1000), f("a", 100, 100)];
        let (near, _) = plan(frames.clone(), MERGE_GAP, 10_000);
        assert_eq!(ranges(&near), [("a", 0..200, 2), ("b", 0..1000, 1)]);
        // a's second frame is needed 1,100 bytes after its first: past a 500-byte horizon.
        let (far, _) = plan(frames, MERGE_GAP, 500);
        assert_eq!(
            ranges(&far),
            [("a", 0..100, 1), ("b", 0..1000, 1), ("a", 100..200, 1)]
        );
    }

    /// Packs of distinct bytes in an in-memory store; frame `i` of pack `p` is bytes
    /// `i * 1000 .. i * 1000 + 1000`.
    async fn packs(names: &[&str], frames_each: u32) -> Arc<dyn ObjectStore> {
        let store = InMemory::new();
        for (n, name) in names.iter().enumerate() {
            let bytes: Vec<u8> = (0..frames_each * 1000)
                .map(|i| (i as usize * 31 + n * 7) as u8)
                .collect();
            let path = ObjectPath::from(format::pack_path(name));
            store.put(&path, PutPayload::from(bytes)).await.unwrap();
        }
        Arc::new(store)
    }

    async fn expected(store: &Arc<dyn ObjectStore>, (pack, offset, length): &FrameRef) -> Bytes {
        let path = ObjectPath::from(format::pack_path(pack));
        let range = u64::from(*offset)..u64::from(*offset) + u64::from(*length);
        store.get_range(&path, range).await.unwrap()
    }

    /// Takes `need` in order on a blocking thread, reading directly what is not served, as
    /// the restorer does; returns how many were served and the bytes of each.
    async fn take_all(
        prefetch: Arc<Prefetch>,
        need: Vec<FrameRef>,
        store: Arc<dyn ObjectStore>,
    ) -> (usize, Vec<Bytes>) {
        let handle = tokio::runtime::Handle::current();
        let taken = tokio::task::spawn_blocking(move || {
            need.iter()
                .map(|frame| {
                    let served = prefetch.take(&frame.0, frame.1, frame.2);
                    let bytes = served
                        .clone()
                        .unwrap_or_else(|| handle.block_on(expected(&store, frame)));
                    (served.is_some(), bytes)
                })
                .collect::<Vec<_>>()
        });
        let taken = tokio::time::timeout(Duration::from_secs(20), taken)
            .await
            .expect("every frame is taken, none waits forever")
            .unwrap();
        (
            taken.iter().filter(|(s, _)| *s).count(),
            taken.into_iter().map(|(_, b)| b).collect(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_frame_is_served_once_and_repeats_from_the_cache() {
        let store = packs(&["a", "b"], 8).await;
        let mut need: Vec<FrameRef> = (0..8)
            .flat_map(|i| [f("a", i * 1000, 1000), f("b", (7 - i) * 1000, 1000)])
            .collect();
        need.push(f("a", 0, 1000)); // needed again
        let prefetch = Arc::new(Prefetch::start(
            store.clone(),
            need.clone(),
            &tokio::runtime::Handle::current(),
        ));
        let (served, bytes) = take_all(prefetch, need.clone(), store.clone()).await;
        assert_eq!(
            served,
            need.len(),
            "every frame served, the repeat from the cache"
        );
        for (frame, got) in need.iter().zip(bytes) {
            assert_eq!(got, expected(&store, frame).await);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_window_drops_frames_needed_late_and_never_waits_forever() {
        // Each pack's first frame is needed early, the rest at the end: holding them all would
        // take eight packs of budget; the window holds three.
        let names = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"];
        let store = packs(&names, 4).await;
        let mut need: Vec<FrameRef> = names.iter().map(|p| f(p, 0, 1000)).collect();
        need.extend(
            names
                .iter()
                .flat_map(|p| (1..4).map(move |i| f(p, i * 1000, 1000))),
        );
        let prefetch = Prefetch::start_with_window(
            store.clone(),
            need.clone(),
            &tokio::runtime::Handle::current(),
            3 * 4000,
        );
        let (served, bytes) = take_all(Arc::new(prefetch), need.clone(), store.clone()).await;
        assert!(
            served < need.len(),
            "some frames were dropped and read directly"
        );
        assert!(
            served >= names.len(),
            "{served}: the early frames were served"
        );
        for (frame, got) in need.iter().zip(bytes) {
            assert_eq!(got, expected(&store, frame).await);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_nobody_takes_do_not_hold_the_window() {
        // The first file is given up (its frames never taken nor skipped): the rest still come.
        let store = packs(&["a", "b", "c"], 4).await;
        let all: Vec<FrameRef> = ["a", "b", "c"]
            .iter()
            .flat_map(|p| (0..4).map(move |i| f(p, i * 1000, 1000)))
            .collect();
        let prefetch = Prefetch::start_with_window(
            store.clone(),
            all.clone(),
            &tokio::runtime::Handle::current(),
            4000,
        );
        let (_, bytes) = take_all(Arc::new(prefetch), all[4..].to_vec(), store.clone()).await;
        for (frame, got) in all[4..].iter().zip(bytes) {
            assert_eq!(got, expected(&store, frame).await);
        }
    }
}
