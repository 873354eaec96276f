//! Ranged, merged, parallel reads of pack frames, ahead of the threads that need them: how a
//! restore reads a remote store (issue 13).
//!
//! A restore knows, once it has planned, every frame it needs and in which order (files in
//! order, each file's chunks in order). [`Prefetch`] turns that list into ranged GETs: a frame
//! joins the range of its pack opened at most [`LOOKAHEAD`] ranges before when the gap between
//! them is at most [`MERGE_GAP`] (reading a little unused data costs less than a request) and
//! the range stays under [`MAX_RANGE`]; ranges are fetched in need order, [`IN_FLIGHT`] at once, by
//! a task on the runtime, while the restore threads decode and write. Only the bytes needed
//! (plus small gaps) are read, instead of whole packs one request per thread.
//!
//! Memory is bounded: a range takes its size from a budget of [`WINDOW`] bytes before it is
//! fetched and gives it back once every frame in it has been taken. Ranges are fetched in the
//! order they are first needed and the threads take files in that order, so the oldest ranges
//! are always those some thread needs next and the window keeps moving.
//!
//! A frame needed again (a blob group or blob shared by files restored apart) is served from a
//! [`REPEAT_CACHE`] of recently taken frames the plan needs more than once. One that fell out
//! of it, or one a failed fetch did not bring, is not served here: the caller reads it
//! directly, with the store's own retries and error.
//!
//! On the toolchain benchmark (1.2 GiB, 37 packs) a full restore from S3 made 1,612 requests
//! when ranges merged only with the last one and repeats were read directly, 592 with both
//! (`benches/results/backup-remote.md`).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::format::{self, ChunkId, Tree};
use crate::repo::Repository;

/// Frames of a pack at most this far apart are read in one range.
pub(crate) const MERGE_GAP: u64 = 256 * 1024;

/// A merged range grows no larger than this (a single larger frame is read alone): a little
/// more than a default pack (8 MiB), so a restore that needs a whole pack reads it in one
/// request (servers such as moto copy the whole object for every ranged GET).
pub(crate) const MAX_RANGE: u64 = 12 * 1024 * 1024;

/// Ranges fetched at once.
pub(crate) const IN_FLIGHT: usize = 16;

/// Bytes fetched but not yet taken, at most (a single larger range is let through alone).
pub(crate) const WINDOW: u64 = 64 * 1024 * 1024;

/// The permits a range takes: KiB of the window.
const PERMIT: u64 = 1024;

/// One frame: its pack, offset and length.
pub(crate) type FrameRef = (Arc<str>, u32, u32);

/// A planned frame: its span, whether it was taken, and how many times it is needed.
#[derive(Debug)]
struct PlannedFrame {
    span: usize,
    taken: AtomicBool,
    needs: u32,
}

/// Each planned frame by (pack, offset).
type FrameIndex = HashMap<(Arc<str>, u32), PlannedFrame>;

/// Bytes of frames needed more than once kept after their first use (see [`RepeatCache`]).
pub(crate) const REPEAT_CACHE: usize = 32 * 1024 * 1024;

/// Frames that the plan needs again after their first use, most recently used last, within
/// [`REPEAT_CACHE`] bytes: files sharing a blob group (small files) or a blob are often
/// restored far apart, after the restorer's few decoded groups moved on, and each such need
/// would otherwise be one more request, made by a restore thread while it waits (on moto one
/// that copies the whole pack). Copies, so a kept frame does not pin its range's buffer.
#[derive(Default)]
struct RepeatCache {
    frames: std::collections::VecDeque<((Arc<str>, u32), Bytes)>,
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

    fn put(&mut self, key: (Arc<str>, u32), frame: &[u8]) {
        if frame.len() > REPEAT_CACHE {
            return;
        }
        self.bytes += frame.len();
        self.frames.push_back((key, Bytes::copy_from_slice(frame)));
        while self.bytes > REPEAT_CACHE {
            let Some((_, old)) = self.frames.pop_front() else {
                break;
            };
            self.bytes -= old.len();
        }
    }
}

/// One merged range of a pack, and how many of its frames are still to be taken.
#[derive(Debug)]
struct Span {
    pack: Arc<str>,
    range: Range<u64>,
    frames: usize,
}

enum SpanState {
    Waiting,
    Ready {
        bytes: Bytes,
        _budget: tokio::sync::OwnedSemaphorePermit,
    },
    /// Failed, or every frame taken (its bytes and budget given back).
    Done,
}

/// A span's state and how many of its frames are still to be taken or skipped.
struct Slot {
    left: usize,
    state: SpanState,
}

impl Slot {
    /// One frame fewer to take; the bytes go once none is left.
    fn taken(&mut self) {
        self.left = self.left.saturating_sub(1);
        if self.left == 0 {
            self.state = SpanState::Done;
        }
    }
}

/// Frames fetched ahead in merged ranges; see the [module docs](self).
pub(crate) struct Prefetch {
    spans: Vec<Span>,
    frames: FrameIndex,
    repeats: Mutex<RepeatCache>,
    slots: Arc<Mutex<Vec<Slot>>>,
    changed: Arc<Condvar>,
    cancelled: AtomicBool,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Merges `frames` (in need order; repeats are ignored) into ranges; see the module docs.
fn plan(frames: impl IntoIterator<Item = FrameRef>) -> (Vec<Span>, FrameIndex) {
    plan_with(frames, MERGE_GAP, LOOKAHEAD)
}

/// A frame joins the range of its pack opened at most this many ranges earlier. A backup fills
/// several packs at once, so files restored one after another alternate between packs; merging
/// only with the last range would read a pack in dozens of requests (on moto each copies the
/// whole object). The bound keeps the budget deadlock-free: a range still waiting for a later
/// frame was opened at most `LOOKAHEAD` ranges before the oldest frame a thread waits for, so
/// such ranges hold at most `LOOKAHEAD + 1` ranges of budget and the range that thread needs
/// still fits in the window.
pub(crate) const LOOKAHEAD: usize = (WINDOW / MAX_RANGE) as usize - 2;

/// [`plan`] with frames at most `gap` apart merged into a range of their pack opened at most
/// `lookahead` ranges earlier.
fn plan_with(
    frames: impl IntoIterator<Item = FrameRef>,
    gap: u64,
    lookahead: usize,
) -> (Vec<Span>, FrameIndex) {
    let mut spans: Vec<Span> = Vec::new();
    let mut index = HashMap::new();
    // The newest range of each pack.
    let mut open: HashMap<Arc<str>, usize> = HashMap::new();
    for (pack, offset, length) in frames {
        if let Some(planned) = index.get_mut(&(pack.clone(), offset)) {
            let planned: &mut PlannedFrame = planned;
            planned.needs = planned.needs.saturating_add(1);
            continue;
        }
        let (start, end) = (u64::from(offset), u64::from(offset) + u64::from(length));
        let joined = open.get(&pack).copied().filter(|&i| {
            let r = &spans[i].range;
            spans.len() - i <= lookahead + 1
                && start <= r.end + gap
                && end + gap >= r.start
                && end.max(r.end) - start.min(r.start) <= MAX_RANGE
        });
        let span = match joined {
            Some(i) => {
                let span = &mut spans[i];
                span.range = span.range.start.min(start)..span.range.end.max(end);
                span.frames += 1;
                i
            }
            None => {
                spans.push(Span {
                    pack: pack.clone(),
                    range: start..end,
                    frames: 1,
                });
                open.insert(pack.clone(), spans.len() - 1);
                spans.len() - 1
            }
        };
        let planned = PlannedFrame {
            span,
            taken: AtomicBool::new(false),
            needs: 1,
        };
        index.insert((pack, offset), planned);
    }
    (spans, index)
}

impl Prefetch {
    /// Starts fetching `frames` (in the order they will be needed) from `store` on `handle`.
    pub(crate) fn start(
        store: Arc<dyn ObjectStore>,
        frames: impl IntoIterator<Item = FrameRef>,
        handle: &tokio::runtime::Handle,
    ) -> Prefetch {
        let (spans, frames) = plan(frames);
        let slots = Arc::new(Mutex::new(
            spans
                .iter()
                .map(|s| Slot {
                    left: s.frames,
                    state: SpanState::Waiting,
                })
                .collect::<Vec<_>>(),
        ));
        let changed = Arc::new(Condvar::new());
        let window = (WINDOW / PERMIT) as u32;
        let budget = Arc::new(Semaphore::new(window as usize));
        let work: Vec<(usize, ObjectPath, Range<u64>)> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    i,
                    ObjectPath::from(format::pack_path(&s.pack)),
                    s.range.clone(),
                )
            })
            .collect();
        let task = {
            let (slots, changed) = (slots.clone(), changed.clone());
            handle.spawn(async move {
                let mut fetched = futures::stream::iter(work)
                    .map(|(i, path, range)| {
                        let (store, budget) = (store.clone(), budget.clone());
                        async move {
                            let kib = (range.end - range.start).div_ceil(PERMIT);
                            let permits = u32::try_from(kib).unwrap_or(u32::MAX).clamp(1, window);
                            // The semaphore is fair: ranges get their budget in need order.
                            let permit = budget.acquire_many_owned(permits).await;
                            let bytes = store.get_range(&path, range.clone()).await;
                            (i, permit, bytes, range)
                        }
                    })
                    .buffer_unordered(IN_FLIGHT);
                while let Some((i, permit, bytes, range)) = fetched.next().await {
                    let Ok(mut slots) = slots.lock() else {
                        return;
                    };
                    let slot = &mut slots[i];
                    slot.state = match (permit, bytes) {
                        (Ok(permit), Ok(bytes))
                            if slot.left > 0 && bytes.len() as u64 == range.end - range.start =>
                        {
                            SpanState::Ready {
                                bytes,
                                _budget: permit,
                            }
                        }
                        // Every frame skipped meanwhile; or a short read (a truncated pack) or
                        // an error: the frames are read directly, which names the problem.
                        _ => SpanState::Done,
                    };
                    drop(slots);
                    changed.notify_all();
                }
            })
        };
        Prefetch {
            spans,
            frames,
            repeats: Mutex::default(),
            slots,
            changed,
            cancelled: AtomicBool::new(false),
            task,
        }
    }

    /// The sealed frame at `offset` of `pack`, waiting for its range if need be; `None` when
    /// it is not served here (see the module docs): read it directly then. A frame is
    /// served from its range once, then from the repeat cache while it is there.
    pub(crate) fn take(&self, pack: &Arc<str>, offset: u32, length: u32) -> Option<Bytes> {
        let key = (pack.clone(), offset);
        let planned = self.frames.get(&key)?;
        if planned.taken.swap(true, Ordering::AcqRel) {
            return self.repeats.lock().ok()?.get(&key);
        }
        let span = &planned.span;
        let mut slots = self.slots.lock().ok()?;
        loop {
            if self.cancelled.load(Ordering::Acquire) {
                return None;
            }
            let slot = &mut slots[*span];
            let frame = match &slot.state {
                SpanState::Waiting => {
                    slots = self.changed.wait(slots).ok()?;
                    continue;
                }
                SpanState::Done => None,
                SpanState::Ready { bytes, .. } => {
                    let start = (u64::from(offset) - self.spans[*span].range.start) as usize;
                    let end = start + length as usize;
                    (end <= bytes.len()).then(|| bytes.slice(start..end))
                }
            };
            slot.taken();
            drop(slots);
            if let (Some(frame), true) = (&frame, planned.needs > 1)
                && let Ok(mut repeats) = self.repeats.lock()
            {
                repeats.put(key, frame);
            }
            return frame;
        }
    }

    /// Marks the frame at `offset` of `pack` as not needed (its file was already restored),
    /// so its range's budget is given back once nothing else in it is.
    pub(crate) fn skip(&self, pack: &Arc<str>, offset: u32) {
        let Some(planned) = self.frames.get(&(pack.clone(), offset)) else {
            return;
        };
        if !planned.taken.swap(true, Ordering::AcqRel)
            && let Ok(mut slots) = self.slots.lock()
        {
            slots[planned.span].taken();
        }
    }

    /// Wakes every thread waiting for a range and serves nothing more: called when a restore
    /// thread stops on an error, since the ranges it would have taken never free the window.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.task.abort();
        let _guard = self.slots.lock();
        self.changed.notify_all();
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
    let (spans, index) = plan_with(frames, TREE_GAP, 0);
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
            let span = index.get(&(loc.pack.clone(), loc.offset)).map(|p| p.span);
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

    fn f(pack: &str, offset: u32, length: u32) -> FrameRef {
        (Arc::from(pack), offset, length)
    }

    #[test]
    fn close_frames_of_a_pack_merge_and_others_do_not() {
        let gap = MERGE_GAP as u32;
        let (spans, index) = plan([
            f("a", 0, 100),
            f("a", 100, 50),               // adjacent: merged
            f("a", 150 + gap, 10),         // exactly MERGE_GAP after: merged
            f("a", 0, 100),                // a repeat: ignored
            f("b", 0, 10),                 // another pack
            f("a", 400 + 2 * gap, 10),     // a's again, but after b: a new range
            f("a", 500 + 3 * gap + 1, 10), // more than MERGE_GAP after: a new range
            f("c", 0, MAX_RANGE as u32 - 10),
            f("c", MAX_RANGE as u32 - 10, 20), // would grow past MAX_RANGE
        ]);
        let got: Vec<(&str, Range<u64>, usize)> = spans
            .iter()
            .map(|s| (&*s.pack, s.range.clone(), s.frames))
            .collect();
        let g = MERGE_GAP;
        assert_eq!(
            got,
            [
                ("a", 0..160 + g, 3),
                ("b", 0..10, 1),
                ("a", 400 + 2 * g..410 + 2 * g, 1),
                ("a", 501 + 3 * g..511 + 3 * g, 1),
                ("c", 0..MAX_RANGE - 10, 1),
                ("c", MAX_RANGE - 10..MAX_RANGE + 10, 1),
            ]
        );
        assert_eq!(index.len(), 8);
    }

    #[test]
    fn packs_filled_side_by_side_are_read_in_one_range_each() {
        // Files restored one after another alternate between three packs a backup filled at
        // once: each pack is one range, whatever the order its frames are needed in.
        let frames = (0..30u32).map(|i| f(["a", "b", "c"][i as usize % 3], (i / 3) * 100, 100));
        let (spans, _) = plan(frames.chain([f("a", 0, 100), f("b", 950, 50)]));
        let got: Vec<(&str, Range<u64>, usize)> = spans
            .iter()
            .map(|s| (&*s.pack, s.range.clone(), s.frames))
            .collect();
        assert_eq!(
            got,
            [("a", 0..1000, 10), ("b", 0..1000, 11), ("c", 0..1000, 10)]
        );
        // A pack's range opened more than LOOKAHEAD ranges before is not grown any more.
        let far = (0..=LOOKAHEAD as u32 + 1).map(|i| f(&format!("p{i}"), 0, 10));
        let (spans, _) = plan(far.chain([f("p0", 10, 10)]));
        assert_eq!(spans.len(), LOOKAHEAD + 3);
        assert_eq!(
            spans.last().map(|s| (&*s.pack, s.range.clone())),
            Some(("p0", 10..20))
        );
    }
}
