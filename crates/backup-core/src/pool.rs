//! Recycled byte buffers for chunks and packs.
//!
//! Allocating and freeing a multi-megabyte buffer per chunk and per pack makes glibc's malloc raise
//! its mmap threshold and then keep freed memory in per-thread arenas, which roughly doubles peak
//! memory on large files. Reusing a bounded set of buffers keeps the peak where the pipeline's
//! channel bounds put it.

use std::sync::{Arc, Mutex};

/// A bounded stack of reusable buffers of one capacity.
pub(crate) struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    capacity: usize,
    keep: usize,
}

impl BufferPool {
    /// Buffers of `capacity` bytes; at most `keep` idle ones are kept.
    pub(crate) fn new(capacity: usize, keep: usize) -> Arc<Self> {
        Arc::new(BufferPool {
            free: Mutex::new(Vec::new()),
            capacity,
            keep,
        })
    }

    /// An empty buffer with at least the pool's capacity.
    pub(crate) fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .ok()
            .and_then(|mut f| f.pop())
            .unwrap_or_else(|| Vec::with_capacity(self.capacity))
    }

    /// Returns a buffer for reuse (dropped if the pool is full or it is too small).
    pub(crate) fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() < self.capacity {
            return;
        }
        buf.clear();
        if let Ok(mut free) = self.free.lock()
            && free.len() < self.keep
        {
            free.push(buf);
        }
    }
}

/// Bytes that go back to their pool when the last reference is dropped (after an upload).
pub(crate) struct Pooled {
    buf: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl Pooled {
    pub(crate) fn new(buf: Vec<u8>, pool: Arc<BufferPool>) -> Self {
        Pooled { buf, pool }
    }
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}
